"""The STT worker through real NATS: claims, transcripts, provider failure, takeover."""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from events import audio, schemas, streams, subjects
from events.bus import Bus
from events.claims import Claim
from events.env import ConfigError
from stt_worker import answers, model_store
from stt_worker.config import SttConfig
from stt_worker.providers.base import Heard, ProviderTimeout
from stt_worker.worker import CallTranscriber, SttWorker, Timeline, last_accepted, resume_point
from voicebot.servers import NatsServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "stt"
SILENCE_1S = bytes(2 * 8000)


def pcm_of(name: str) -> bytes:
    with wave.open(str(FIXTURES / f"{name}.wav")) as w:
        return bytes(w.readframes(w.getnframes()))


# --- pure parts --------------------------------------------------------------------------


def chunk(audio_t: float, seconds: float, capture_ts: float = 1000.0) -> audio.AudioIn:
    return audio.AudioIn(0, capture_ts, audio_t, bytes(int(seconds * 8000) * 2))


def test_timeline_maps_stream_time_across_skipped_audio() -> None:
    tl = Timeline()
    tl.add(chunk(10.0, 1.0, capture_ts=500.0))
    tl.add(chunk(15.0, 1.0, capture_ts=505.0))  # 4 s of call audio were never fed
    assert tl.audio_t(0.5) == pytest.approx(10.5)
    assert tl.audio_t(1.25) == pytest.approx(15.25)
    assert tl.capture_ts(1.25) == pytest.approx(505.25)
    tl.restart()
    assert tl.capture_ts(0.0) is None
    assert tl.audio_t(2.0) == 2.0


def test_resume_point_after_the_dead_owners_last_transcript() -> None:
    base: dict[str, Any] = {"call_id": "c", "ts": 0.0}
    assert resume_point(schemas.UtteranceEnd(**base, last_word_end=4.2)) == 4.2
    assert resume_point(schemas.Final(**base, text="oui", end=3.0)) == 3.0
    assert resume_point(schemas.SpeechStarted(**base, at=5.5)) == 5.5  # unfinished: redo it
    assert resume_point(None) == 0.0


def test_a_takeover_resumes_after_the_last_transcript_receivers_took() -> None:
    base: dict[str, Any] = {"call_id": "c", "ts": 0.0}

    def claimed(service: str, epoch: int) -> schemas.Claimed:
        return schemas.Claimed(**base, epoch=epoch, service=service, instance="i")

    heard = schemas.Final(**base, epoch=1, seq=0, text="Pierre Dupont", end=3.0)
    # The dead owner's gap, retried through an election, stored after the new owner's claim:
    # the brain drops it, so it covers nothing (a brain claim does not fence the STT).
    stale = schemas.Gap(**base, epoch=1, seq=1, from_s=4.0, to_s=9.5, reason="audio_lost")
    history = [heard, claimed("brain", 2), claimed("stt_worker", 2), stale]
    assert last_accepted(history) == (heard, 2)
    # Stored before the claim, the same gap was taken: the new owner goes on after it.
    assert last_accepted([heard, stale, claimed("stt_worker", 2)]) == (stale, 2)
    assert last_accepted([claimed("stt_worker", 1)]) == (None, 0)


def test_config_picks_deepgram_only_with_a_key_and_names_bad_variables() -> None:
    assert SttConfig.from_env({}).provider == "whisper"
    assert SttConfig.from_env({"DEEPGRAM_API_KEY": "k"}).provider == "deepgram"
    assert SttConfig.from_env({"DEEPGRAM_API_KEY": "k", "STT_PROVIDER": "whisper"}).provider == (
        "whisper"
    )
    with pytest.raises(ConfigError, match="DEEPGRAM_API_KEY"):
        SttConfig.from_env({"STT_PROVIDER": "deepgram"})
    with pytest.raises(ConfigError, match="STT_WORKERS"):
        SttConfig.from_env({"STT_WORKERS": "0"})
    with pytest.raises(ConfigError, match="VAD_MIN_SILENCE_MS"):
        SttConfig.from_env({"VAD_MIN_SILENCE_MS": "soon"})
    cfg = SttConfig.from_env({"WHISPER_CACHE_DIR": "/tmp/w", "STT_WORKERS": "2"})
    assert (str(cfg.whisper_cache_dir), cfg.stt_workers) == ("/tmp/w", 2)
    assert SttConfig().whisper_cache_dir.is_absolute()  # under the project, whatever the cwd


# --- through NATS --------------------------------------------------------------------------


def whisper_config(tmp_model: Path) -> SttConfig:
    return SttConfig(provider="whisper", whisper_cache_dir=tmp_model, api_timeout_s=20)


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return model_store.ensure_model(SttConfig().whisper_cache_dir)


async def until(check: Callable[[], Awaitable[Any]], deadline_s: float, what: str) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if result := await check():
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")


async def claims_ready(bus: Bus) -> None:
    async def exists() -> bool:
        try:
            await bus.js.consumer_info(streams.CALLS, streams.CLAIMS["stt_worker"].durable)
        except Exception:
            return False
        return True

    await until(exists, 10, "the stt claim consumer")


async def start_call(bus: Bus) -> tuple[str, float]:
    cid = subjects.new_call_id()
    now = time.time()
    await bus.publish(subjects.event(cid, "started"), schemas.Started(call_id=cid, ts=now))
    return cid, now


async def send_audio(bus: Bus, cid: str, pcm: bytes, audio_t: float, seq: int) -> tuple[float, int]:
    """Publish `pcm` as 100 ms audio.in messages; returns the next audio time and seq."""
    step = 1600
    for i in range(0, len(pcm), step):
        body = pcm[i : i + step]
        await bus.publish_audio(
            subjects.audio_in(cid), body, audio.in_headers(seq, time.time(), audio_t)
        )
        audio_t += len(body) / 2 / 8000
        seq += 1
    await bus.nc.flush(timeout=5)
    return audio_t, seq


async def ask_yes_no(bus: Bus, cid: str) -> None:
    decision = schemas.Decision(
        call_id=cid,
        ts=time.time(),
        turn=1,
        trigger="started",
        trigger_seq=0,
        state_from="SOLUTION",
        state_to="VERIFICATION",
        expecting="yes_no",
    )
    await bus.publish(subjects.decision(cid), decision)


async def end_call(bus: Bus, cid: str) -> None:
    ended = schemas.Ended(
        call_id=cid, ts=time.time(), reason="test", outcome="hangup", duration_s=1.0
    )
    await bus.publish(subjects.event(cid, "ended"), ended)


async def transcripts(bus: Bus, cid: str) -> list[Any]:
    return [env.event for env in await bus.history(subjects.transcript(cid))]


def finals(events: list[Any]) -> list[schemas.Final]:
    return [e for e in events if isinstance(e, schemas.Final)]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_worker_publishes_transcripts_of_a_call_and_releases_it(
    bus: Bus, nats_server: NatsServer, model_dir: Path
) -> None:
    worker_bus = await Bus.connect(nats_server.url, "stt_worker")
    worker = SttWorker(whisper_config(model_dir), worker_bus)
    await worker.start()
    try:
        assert worker.provider_name == "whisper" and worker.pool_workers == 1
        await claims_ready(bus)
        cid, _ = await start_call(bus)
        await ask_yes_no(bus, cid)
        await send_audio(bus, cid, SILENCE_1S + pcm_of("oui") + SILENCE_1S, 0.0, 0)

        async def final() -> list[schemas.Final]:
            return finals(await transcripts(bus, cid))

        [got] = await until(final, 20, "a final transcript")
        assert answers.meanings(got.text) == {"oui"}
        assert got.provider == "whisper" and got.speech_final
        assert got.start == pytest.approx(1.2, abs=0.07)
        assert got.latency_ms is not None and 0 < got.latency_ms < 20_000
        assert got.avg_logprob is not None and got.no_speech_prob is not None
        await end_call(bus, cid)
        assert worker.claims is not None
        held = worker.claims.held

        async def released() -> bool:
            return cid not in held

        await until(released, 10, "the call to be released")
        events = await transcripts(bus, cid)
        assert [type(e).__name__ for e in events] == ["SpeechStarted", "Final", "UtteranceEnd"]
        assert [e.seq for e in events] == [0, 1, 2]
    finally:
        await worker.stop()
        await worker_bus.close()


class FlakyProvider:
    """Scripted: the first stream times out, the next one hears every chunk as a word."""

    name = "flaky"

    def __init__(self) -> None:
        self.streams = 0

    async def stream(
        self, audio_in: AsyncIterator[bytes], *, call_id: str = "-", context: object = None
    ) -> AsyncIterator[Heard]:
        self.streams += 1
        fed = 0.0
        async for pcm in audio_in:
            if self.streams == 1:
                raise ProviderTimeout("scripted timeout")
            start, fed = fed, fed + len(pcm) / 16000
            yield Heard("final", text="allo", start=start, end=fed, speech_final=True)


@pytest.mark.integration
@pytest.mark.timeout(30)
async def test_provider_failure_publishes_an_error_and_the_call_goes_on(bus: Bus) -> None:
    cid, now = await start_call(bus)
    started = schemas.Started(call_id=cid, ts=now)
    provider = FlakyProvider()
    call = CallTranscriber(
        bus, provider, SttConfig(), Claim(started=started, epoch=1, takeover=False)
    )
    task = asyncio.create_task(call.run())
    try:
        await send_audio(bus, cid, bytes(3200 * 5), 7.0, 0)

        async def final() -> list[schemas.Final]:
            return finals(await transcripts(bus, cid))

        got = await until(final, 10, "a final after the restart")
        assert provider.streams == 2
        # The failed stream took the first chunk; the restarted one maps its times onward.
        assert got[0].start == pytest.approx(7.1)
        errors = [e.event for e in await bus.history(subjects.event(cid, "error"))]
        assert [(e.source, e.code) for e in errors] == [("stt", "provider_timeout")]
        [gap] = [e for e in await transcripts(bus, cid) if isinstance(e, schemas.Gap)]
        assert gap.reason == "provider_timeout"
        assert gap.from_s == pytest.approx(7.0) and gap.to_s == pytest.approx(7.1)
        assert gap.seq == 0 and got[0].seq == 1
        await end_call(bus, cid)
        await asyncio.wait_for(task, 10)
    finally:
        task.cancel()


class EchoProvider:
    """Scripted: every chunk is heard as a word, at its own times."""

    name = "echo"

    async def stream(
        self, audio_in: AsyncIterator[bytes], *, call_id: str = "-", context: object = None
    ) -> AsyncIterator[Heard]:
        fed = 0.0
        async for pcm in audio_in:
            start, fed = fed, fed + len(pcm) / 16000
            yield Heard("final", text="allo", start=start, end=fed, speech_final=True)


@pytest.mark.integration
@pytest.mark.timeout(30)
async def test_caller_audio_that_never_reached_the_stream_is_a_gap(bus: Bus) -> None:
    """A 3-node cluster without an AUDIO leader for a few seconds stores none of the audio
    published meanwhile: the STT worker sees its call-audio time jump and says so."""
    cid, now = await start_call(bus)
    started = schemas.Started(call_id=cid, ts=now)
    call = CallTranscriber(
        bus, EchoProvider(), SttConfig(), Claim(started=started, epoch=1, takeover=False)
    )
    task = asyncio.create_task(call.run())
    try:
        audio_t, seq = await send_audio(bus, cid, bytes(3200 * 3), 0.0, 0)  # 0.0 - 0.6 s
        await send_audio(bus, cid, bytes(3200 * 2), audio_t + 1.5, seq + 15)  # 1.5 s lost

        async def gap() -> list[schemas.Gap]:
            return [e for e in await transcripts(bus, cid) if isinstance(e, schemas.Gap)]

        [lost] = await until(gap, 10, "the gap")
        assert lost.reason == "audio_lost"
        assert (lost.from_s, lost.to_s) == (pytest.approx(0.6), pytest.approx(2.1))
        assert len(finals(await transcripts(bus, cid))) >= 3  # the audio around it still heard
        await end_call(bus, cid)
        await asyncio.wait_for(task, 10)
    finally:
        task.cancel()


@pytest.mark.integration
@pytest.mark.timeout(30)
async def test_a_gap_the_dead_owner_reported_too_late_is_reported_again(bus: Bus) -> None:
    """The owner saw caller audio missing while NATS elected a leader and published a `gap`;
    the publish was retried until the election ended, and meanwhile another instance claimed
    the call. Stored after that claim, the gap is dropped by the brain as stale: the new owner
    must see the missing audio itself and say so, or the bot never asks the caller to repeat."""
    cid, now = await start_call(bus)
    started = schemas.Started(call_id=cid, ts=now)
    audio_t, seq = await send_audio(bus, cid, bytes(3200 * 15), 0.0, 0)  # 0.0 - 3.0 s
    await send_audio(bus, cid, bytes(3200 * 5), audio_t + 4.0, seq + 40)  # 3.0 - 7.0 s lost
    common: dict[str, Any] = {"call_id": cid, "ts": time.time()}
    for subject, event in [
        (subjects.transcript(cid), schemas.Final(**common, epoch=1, seq=0, text="allo", end=2.0)),
        (
            subjects.event(cid, "claimed"),
            schemas.Claimed(**common, epoch=2, service="stt_worker", instance="new", takeover=True),
        ),
        (
            subjects.transcript(cid),
            schemas.Gap(**common, epoch=1, seq=1, from_s=3.0, to_s=7.0, reason="audio_lost"),
        ),
    ]:
        await bus.publish(subject, event)
    call = CallTranscriber(
        bus, EchoProvider(), SttConfig(), Claim(started=started, epoch=2, takeover=True)
    )
    task = asyncio.create_task(call.run())
    try:

        async def own_gap() -> list[schemas.Gap]:
            gaps = [e for e in await transcripts(bus, cid) if isinstance(e, schemas.Gap)]
            return [g for g in gaps if g.epoch == 2]

        [gap] = await until(own_gap, 10, "the new owner's gap")
        assert gap.reason == "audio_lost"
        assert (gap.from_s, gap.to_s) == (pytest.approx(3.0), pytest.approx(7.0))
        assert gap.seq >= 2  # after every seq the dead owner used
        # It went on after the last transcript taken (2.0 s), not after the dropped gap.
        assert call.resume_from == pytest.approx(2.0)
        await end_call(bus, cid)
        await asyncio.wait_for(task, 10)
    finally:
        task.cancel()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_a_dead_instances_call_moves_to_the_other_without_a_false_gap(
    bus: Bus, nats_server: NatsServer, model_dir: Path
) -> None:
    buses = [await Bus.connect(nats_server.url, "stt_worker") for _ in range(2)]
    workers = [SttWorker(whisper_config(model_dir), b) for b in buses]
    await asyncio.gather(*(w.start() for w in workers))
    try:
        await claims_ready(bus)
        cid, _ = await start_call(bus)

        async def owner() -> SttWorker | None:
            return next((w for w in workers if w.claims and cid in w.claims.held), None)

        first = await until(owner, 10, "an owner")
        # The bot asked a yes/no question: both owners read the answers against it (the new
        # one from the stored decision), so the words are not left to free decoding.
        await ask_yes_no(bus, cid)
        audio_t, seq = await send_audio(bus, cid, SILENCE_1S + pcm_of("oui") + SILENCE_1S, 0, 0)

        async def utterance_end() -> bool:
            return any(isinstance(e, schemas.UtteranceEnd) for e in await transcripts(bus, cid))

        await until(utterance_end, 20, "the first utterance")
        # Kill the owner: its claim is never acked, its connection goes away.
        assert first._claims is not None
        first._claims.cancel()
        await first.bus.nc.close()
        killed_at = time.monotonic()
        await send_audio(bus, cid, pcm_of("non") + SILENCE_1S, audio_t, seq)

        async def second_final() -> list[schemas.Final]:
            got = finals(await transcripts(bus, cid))
            return got if len(got) >= 2 else []

        got = await until(second_final, 20, "a final from the new owner")
        moved_after = time.monotonic() - killed_at
        other = next(w for w in workers if w is not first)
        assert other.claims is not None and cid in other.claims.held
        assert moved_after < 12
        events = await transcripts(bus, cid)
        kinds = [type(e).__name__ for e in events]
        assert kinds[:3] == ["SpeechStarted", "Final", "UtteranceEnd"]
        # The new owner re-read the audio after the last transcript from the AUDIO stream:
        # nothing went untranscribed, so no gap (which would make the bot ask to repeat).
        assert "Gap" not in kinds
        assert answers.meanings(got[0].text) == {"oui"}
        assert answers.meanings(got[1].text) == {"non"}
        assert len(got) == 2  # the first utterance was not transcribed twice
        assert [e.seq for e in events] == list(range(len(events)))
    finally:
        for w in workers:
            await w.stop()
        for b in buses:
            if not b.nc.is_closed:
                await b.close()


@pytest.mark.integration
@pytest.mark.timeout(30)
async def test_worker_with_deepgram_maps_times_onto_the_call_and_closes_the_stream(
    bus: Bus, nats_server: NatsServer
) -> None:
    from loopback.deepgram_live import Cue, DeepgramLoopback, Transcript, UtteranceEnd
    from loopback.deepgram_live import SpeechStarted as DgSpeechStarted

    script = [
        Cue(0.4, DgSpeechStarted(0.3)),
        Cue(0.8, Transcript("bonjour", 0.3, 0.7, is_final=False)),
        Cue(1.0, Transcript("bonjour", 0.3, 0.9, is_final=True, speech_final=True)),
        Cue(1.6, UtteranceEnd(0.9)),
    ]
    async with DeepgramLoopback(api_key="k", scripts=[script]) as dg:
        cfg = SttConfig(provider="deepgram", deepgram_api_key="k", deepgram_url=dg.url)
        worker_bus = await Bus.connect(nats_server.url, "stt_worker")
        worker = SttWorker(cfg, worker_bus)
        await worker.start()
        try:
            assert worker.provider_name == "deepgram" and worker.pool_workers == 0
            await claims_ready(bus)
            cid, _ = await start_call(bus)
            # The call's audio starts at 20 s (a takeover or an edge that dropped the start).
            await send_audio(bus, cid, bytes(2 * 8000 * 2), 20.0, 0)

            async def utterance_end() -> list[Any]:
                events = await transcripts(bus, cid)
                done = any(isinstance(e, schemas.UtteranceEnd) for e in events)
                return events if done else []

            events = await until(utterance_end, 10, "the utterance end")
            await end_call(bus, cid)
            await dg.wait_for(lambda d: d.connections and d.connections[0].close_stream, 10)
        finally:
            await worker.stop()
            await worker_bus.close()
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["SpeechStarted", "Interim", "Final", "UtteranceEnd"]
    started, _, final, end = events
    assert started.at == pytest.approx(20.3, abs=0.01)
    assert (final.text, final.speech_final, final.provider) == ("bonjour", True, "deepgram")
    assert final.start == pytest.approx(20.3, abs=0.01)
    assert final.end == pytest.approx(20.9, abs=0.01)
    assert final.latency_ms is not None and final.latency_ms > 0
    assert end.last_word_end == pytest.approx(20.9, abs=0.01)
