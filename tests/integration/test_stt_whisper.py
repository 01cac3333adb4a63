"""The offline engine on checked-in MBROLA fixtures: model cache, recognition, streaming."""

from __future__ import annotations

import difflib
import os
import re
import signal
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from stt_worker import model_store
from stt_worker.config import DEFAULT_WHISPER_PROMPT
from stt_worker.providers.base import Heard, ProviderError
from stt_worker.providers.whisper_local import WhisperLocalStt, WhisperPool
from stt_worker.vad import VadConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "stt"

pytestmark = pytest.mark.slow


def pcm_of(name: str) -> bytes:
    with wave.open(str(FIXTURES / f"{name}.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        return bytes(w.readframes(w.getnframes()))


def words(text: str) -> str:
    return re.sub(r"[^\w ]", " ", text.lower())


def digits(text: str) -> str:
    return re.sub(r"\D", "", text)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield model_store.ensure_model(tmp_path_factory.mktemp("whisper"))


def test_model_is_joined_once_checked_and_reused(model_dir: Path) -> None:
    assert model_store.is_ready(model_dir)
    stamp = (model_dir / "model.bin").stat().st_mtime_ns
    assert model_store.ensure_model(model_dir) == model_dir
    assert (model_dir / "model.bin").stat().st_mtime_ns == stamp  # reused, not rejoined
    (model_dir / model_store.STAMP).write_text("0" * 64)  # a stamp that does not match
    assert not model_store.is_ready(model_dir)
    model_store.ensure_model(model_dir)
    assert model_store.is_ready(model_dir)
    assert not list(model_dir.glob("*.tmp"))


@pytest.mark.timeout(60)
async def test_whisper_recognises_the_hotline_fixtures(model_dir: Path) -> None:
    pool = WhisperPool(model_dir, workers=1, threads=1)
    await pool.start()
    try:
        heard = {
            name: await pool.recognise(pcm_of(name), DEFAULT_WHISPER_PROMPT, limit_s=20)
            for name in ("oui", "non", "internet", "mobile", "phone", "name")
        }
    finally:
        await pool.stop()
    assert "oui" in words(heard["oui"].text).split()
    assert "non" in words(heard["non"].text).split()
    assert "internet" in words(heard["internet"].text)
    assert "mobile" in words(heard["mobile"].text)
    assert "pierre" in words(heard["name"].text)
    assert "pont" in words(heard["name"].text)
    # "06 12 34 56 78": most digits right is what the dialog can confirm by reading back.
    got = digits(heard["phone"].text)
    assert difflib.SequenceMatcher(None, got, "0612345678").ratio() >= 0.7, got
    for rec in heard.values():
        assert rec.avg_logprob < 0.0
        assert 0.0 <= rec.no_speech_prob < 0.5


@pytest.mark.timeout(60)
async def test_streamed_call_yields_onset_final_and_end_per_utterance(model_dir: Path) -> None:
    silence = bytes(2 * 8000)  # 1 s

    async def call_audio() -> AsyncIterator[bytes]:
        pcm = silence + pcm_of("oui") + silence + pcm_of("mobile") + silence
        for i in range(0, len(pcm), 640):  # 40 ms chunks, as the edge may batch
            yield pcm[i : i + 640]

    pool = WhisperPool(model_dir, workers=1, threads=1)
    await pool.start()
    provider = WhisperLocalStt(pool, vad=VadConfig(), prompt=DEFAULT_WHISPER_PROMPT, timeout_s=20)
    try:
        out: list[Heard] = [h async for h in provider.stream(call_audio(), call_id="test")]
    finally:
        await pool.stop()
    assert [h.kind for h in out] == ["speech_started", "final", "utterance_end"] * 2
    first, second = out[1], out[4]
    assert "oui" in words(first.text) and "mobile" in words(second.text)
    assert first.speech_final and first.avg_logprob is not None
    # "oui" is voiced over 1.20-1.42 s of the stream, "mobile" over 3.29-3.69 s (20 ms frames)
    assert first.start == pytest.approx(1.20, abs=0.03)
    assert first.end == pytest.approx(1.42, abs=0.03)
    assert second.start == pytest.approx(3.29, abs=0.03)
    assert second.end == pytest.approx(3.69, abs=0.03)
    assert out[0].start == first.start


@pytest.mark.timeout(60)
async def test_a_killed_inference_process_fails_one_request_then_the_pool_recovers(
    model_dir: Path,
) -> None:
    pool = WhisperPool(model_dir, workers=1, threads=1)
    await pool.start()
    try:
        [pid] = pool.pids()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ProviderError):
            await pool.recognise(pcm_of("non"), DEFAULT_WHISPER_PROMPT, limit_s=20)
        again = await pool.recognise(pcm_of("non"), DEFAULT_WHISPER_PROMPT, limit_s=20)
        assert "non" in words(again.text).split()
        assert pool.pids() and pool.pids() != [pid]
    finally:
        await pool.stop()
