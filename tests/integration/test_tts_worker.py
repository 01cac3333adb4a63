"""The TTS worker against a real nats-server and the loopback OpenAI speech server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from loopback.openai_speech import OpenAISpeechServer, SpeechScript

from events import schemas, subjects
from events.audio import FRAME_BYTES, SAMPLE_RATE, AudioOut, out_headers, parse_out
from events.bus import Bus
from events.claims import Claim
from tts_worker.config import TtsConfig
from tts_worker.frames import pad_to_frames
from tts_worker.providers.openai import OpenAIProvider
from tts_worker.resample import AudioPool
from tts_worker.worker import FIRST_MESSAGE_BYTES, CallSpeech, TtsWorker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


@pytest.fixture(scope="module")
def pool() -> Iterator[AudioPool]:
    shared = AudioPool(2)  # spawning processes once per module keeps the tests fast
    yield shared
    shared.shutdown()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("phrase-cache")


@pytest.fixture
async def speech() -> AsyncIterator[OpenAISpeechServer]:
    async with OpenAISpeechServer(api_key="test-key") as server:
        yield server


@pytest.fixture
async def worker(
    bus: Bus, nats_server: object, pool: AudioPool, cache_dir: Path, speech: OpenAISpeechServer
) -> AsyncIterator[TtsWorker]:
    config = TtsConfig.from_env(
        {
            "TTS_PROVIDER": "openai",
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": speech.base_url,
            "TTS_TIMEOUT_S": "0.5",
            "CACHE_DIR": str(cache_dir),
            "AUDIO_OUT_BATCH_MS": "100",
        }
    )
    tts = TtsWorker(config, bus, pool=pool)
    await tts.start()
    try:
        yield tts
    finally:
        await tts.stop()


class Listener:
    """Collects a call's audio.out messages and error events."""

    def __init__(self) -> None:
        self.audio: list[AudioOut] = []
        self.errors: list[schemas.Error] = []
        self.changed = asyncio.Condition()

    async def attach(self, bus: Bus, call_id: str) -> None:
        async def on_audio(msg: object) -> None:
            self.audio.append(parse_out(msg.headers, msg.data))  # type: ignore[attr-defined]
            async with self.changed:
                self.changed.notify_all()

        async def on_error(env: object) -> None:
            self.errors.append(env.event)  # type: ignore[attr-defined]
            async with self.changed:
                self.changed.notify_all()

        await bus.nc.subscribe(subjects.audio_out(call_id), cb=on_audio)
        await bus.subscribe(subjects.event(call_id, "error"), on_error)

    def of(self, utterance_id: str) -> list[AudioOut]:
        return [m for m in self.audio if m.utterance_id == utterance_id]

    def pcm(self, utterance_id: str) -> np.ndarray:
        return np.frombuffer(b"".join(m.pcm for m in self.of(utterance_id)), dtype=np.int16)

    async def until(self, predicate: object, within_s: float = 10.0) -> None:
        async with asyncio.timeout(within_s), self.changed:
            await self.changed.wait_for(predicate)  # type: ignore[arg-type]

    async def finished(self, utterance_id: str) -> list[AudioOut]:
        await self.until(lambda: any(m.last for m in self.of(utterance_id)))
        return self.of(utterance_id)


async def open_call(bus: Bus) -> tuple[str, Listener]:
    call_id = subjects.new_call_id()
    listener = Listener()
    await listener.attach(bus, call_id)
    await bus.publish(
        subjects.event(call_id, "started"), schemas.Started(call_id=call_id, ts=time.time())
    )
    return call_id, listener


async def say(
    bus: Bus, call_id: str, utterance_id: str, *, phrase: str | None = None, text: str | None = None
) -> None:
    event = schemas.Say(
        call_id=call_id, ts=time.time(), utterance_id=utterance_id, phrase=phrase, text=text
    )
    await bus.publish(subjects.say(call_id), event)


def check_messages(messages: list[AudioOut], batch: int = 5 * FRAME_BYTES) -> None:
    assert messages, "no audio"
    assert [m.seq for m in messages] == list(range(len(messages)))
    assert [m.last for m in messages] == [False] * (len(messages) - 1) + [True]
    for m in messages:
        assert len(m.pcm) % FRAME_BYTES == 0 and len(m.pcm) > 0
    # The first may be shorter: it goes once FIRST_MESSAGE_BYTES (4 frames) are there.
    assert all(len(m.pcm) == batch for m in messages[1:-1])
    assert len(messages) == 1 or FIRST_MESSAGE_BYTES <= len(messages[0].pcm) <= batch


async def test_cached_phrase_costs_no_provider_call(
    bus: Bus, worker: TtsWorker, speech: OpenAISpeechServer
) -> None:
    assert worker.phrases_loaded == len(worker.phrases) > 10
    call_id, listener = await open_call(bus)
    await say(bus, call_id, "u1", phrase="welcome")
    messages = await listener.finished("u1")
    check_messages(messages)
    # The phrase as cached, less its leading digital silence (sent it would only delay it).
    phrase = worker.phrases["welcome"]
    lead = len(phrase) - len(phrase.lstrip(b"\0"))
    lead -= lead % 2
    assert b"".join(m.pcm for m in messages) == pad_to_frames(phrase[lead:])
    assert messages[0].pcm[:2] != b"\0\0"
    assert speech.requests == []  # neither the cache generation nor the say asked the provider
    # The call's start only opened the connection, for a synthesised answer to come.
    await speech.wait_for(lambda: speech.warmups == 1)
    assert speech.connections == 1 and speech.requests == []


async def test_dynamic_text_is_streamed_resampled_and_continuous(
    bus: Bus, worker: TtsWorker, speech: OpenAISpeechServer
) -> None:
    speech.script = SpeechScript(frequency_hz=1000, duration_s=0.5, amplitude=8000)
    call_id, listener = await open_call(bus)
    await say(bus, call_id, "u1", text="Votre box redémarre. Merci de patienter.")
    messages = await listener.finished("u1")
    check_messages(messages)
    assert len(speech.requests) == 2  # one per sentence, in order
    assert speech.requests[0].body["input"] == "Votre boxe redémarre."
    assert speech.requests[0].body["response_format"] == "pcm"
    pcm = listener.pcm("u1").astype(np.int32)
    # Duration: two 0.5 s sentences, within one frame (the tail is padded to a whole frame).
    assert abs(len(pcm) - SAMPLE_RATE) <= FRAME_BYTES // 2
    # Pitch: the 1 kHz tone comes out at 1 kHz.
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(pcm)
    assert abs(peak_hz - 1000) < 3
    # Continuity: no jump at message or sentence boundaries bigger than inside the signal.
    jumps = np.abs(np.diff(pcm[: SAMPLE_RATE - 40]))
    boundaries = [i - 1 for i in range(800, SAMPLE_RATE - 40, 800)]  # every 100 ms message
    boundaries.append(SAMPLE_RATE // 2 - 1)  # between the two sentences
    near = {b + d for b in boundaries for d in range(-3, 4)}
    inside = max(j for i, j in enumerate(jumps) if i >= 40 and i not in near)
    assert max(jumps[b - 3 : b + 4].max() for b in boundaries) <= inside
    assert np.abs(pcm[SAMPLE_RATE // 2 - 40 : SAMPLE_RATE // 2 + 40]).max() > 0.9 * 8000


async def test_repeated_sentence_comes_from_the_lru(
    bus: Bus, worker: TtsWorker, speech: OpenAISpeechServer
) -> None:
    call_id, listener = await open_call(bus)
    await say(bus, call_id, "u1", text="Je vérifie votre ligne.")
    await say(bus, call_id, "u2", text="Je vérifie votre ligne.")
    first, second = await listener.finished("u1"), await listener.finished("u2")
    assert len(speech.requests) == 1
    assert b"".join(m.pcm for m in first) == b"".join(m.pcm for m in second)


async def test_flush_stops_synthesis_and_publishing(
    bus: Bus, worker: TtsWorker, speech: OpenAISpeechServer
) -> None:
    # A 10 s tone streamed at twice real time: plenty of time to interrupt it.
    speech.script = SpeechScript(duration_s=10, chunk_s=0.1, pace_s=0.05)
    call_id, listener = await open_call(bus)
    await say(bus, call_id, "u1", text="Une longue explication. Et une deuxième phrase.")
    await listener.until(lambda: len(listener.of("u1")) >= 2)
    await bus.publish(
        subjects.control(call_id),
        schemas.Flush(call_id=call_id, ts=time.time(), utterance_id="u1"),
    )
    await speech.wait_for(lambda: speech.requests[0].cancelled)
    published = len(listener.of("u1"))
    # The next say is spoken after u1's task is gone: once it is heard, u1 can publish no more.
    await say(bus, call_id, "u2", phrase="ok")
    await listener.finished("u2")
    assert len(listener.of("u1")) == published
    assert not any(m.last for m in listener.of("u1"))
    assert len(speech.requests) == 1  # the second sentence was never asked for
    assert speech.requests[0].bytes_sent < 10 * 24000 * 2


@pytest.mark.parametrize(
    ("script", "code"),
    [
        (SpeechScript(status=500), "provider_error"),
        (SpeechScript(stall_after_s=0.2, duration_s=2), "provider_timeout"),
    ],
)
async def test_provider_failure_falls_back_to_offline_voice(
    bus: Bus, worker: TtsWorker, speech: OpenAISpeechServer, script: SpeechScript, code: str
) -> None:
    speech.queue = [script]
    call_id, listener = await open_call(bus)
    await say(bus, call_id, "u1", text="Bonjour, je suis le SAV.")
    messages = await listener.finished("u1")
    check_messages(messages)
    pcm = listener.pcm("u1")
    assert len(pcm) > SAMPLE_RATE // 2  # espeak said the sentence (about a second)
    assert np.abs(pcm).max() > 1000
    await listener.until(lambda: bool(listener.errors))
    assert listener.errors[0].source == "tts"
    assert listener.errors[0].code == code


async def test_call_end_releases_the_call(bus: Bus, worker: TtsWorker) -> None:
    call_id, _listener = await open_call(bus)
    deadline = time.monotonic() + 10
    while call_id not in worker.calls:
        assert time.monotonic() < deadline, "call never claimed"
        await asyncio.sleep(0.01)
    ended = schemas.Ended(
        call_id=call_id, ts=time.time(), reason="caller", outcome="hangup", duration_s=1.0
    )
    await bus.publish(subjects.event(call_id, "ended"), ended)
    while call_id in worker.calls:
        assert time.monotonic() < deadline, "call never released"
        await asyncio.sleep(0.01)


async def test_takeover_skips_what_the_previous_owner_published(
    bus: Bus, worker: TtsWorker
) -> None:
    """The previous owner published u1 in full and part of u2: u2 is spoken again, then u3."""
    call_id = subjects.new_call_id()
    listener = Listener()
    await listener.attach(bus, call_id)
    for uid, phrase in (("u1", "ok"), ("u2", "hold"), ("u3", "ok")):
        await say(bus, call_id, uid, phrase=phrase)
    partial = out_headers("u2", 3, last=False)
    await bus.js.publish(subjects.audio_out(call_id), bytes(FRAME_BYTES), headers=partial)
    # No `started` event: the claims loop stays out of it, this instance takes the call over.
    started = schemas.Started(call_id=call_id, ts=time.time())
    call = CallSpeech(worker, Claim(started=started, epoch=2, takeover=True))
    task = asyncio.create_task(call.run(takeover=True))
    try:
        await listener.finished("u3")
        assert [m.seq for m in listener.of("u2")][:2] == [3, 0]  # the stale one, then a restart
        assert not listener.of("u1")
        assert b"".join(m.pcm for m in listener.of("u2")[1:]) == worker.phrases["hold"]
    finally:
        ended = schemas.Ended(
            call_id=call_id, ts=time.time(), reason="caller", outcome="hangup", duration_s=1.0
        )
        await bus.publish(subjects.event(call_id, "ended"), ended)
        async with asyncio.timeout(5):
            await task


@pytest.mark.slow
@pytest.mark.timeout(30)
async def test_the_next_synthesised_answer_reuses_the_connection_to_openai(
    pool: AudioPool,
) -> None:
    """Synthesised answers come seconds apart: past the SDK pool's 5 s, each one paid a new
    connection (TCP and TLS handshakes to the service, here `connect_s`) before its audio."""

    async def two_answers(keepalive_s: float | None) -> tuple[int, list[float]]:
        async with OpenAISpeechServer(api_key="k", connect_s=0.3) as server:
            kw = {} if keepalive_s is None else {"keepalive_s": keepalive_s}
            provider = OpenAIProvider(pool, api_key="k", base_url=server.base_url, **kw)
            first_audio: list[float] = []
            try:
                for pause in (6.0, 0.0):  # the caller's turn between the two answers
                    t0 = time.perf_counter()
                    first: float | None = None
                    async for _ in provider.speak_native("Débranchez votre box."):
                        # Read to the end, as the worker does: a connection left mid-answer
                        # is closed, not kept.
                        first = time.perf_counter() - t0 if first is None else first
                    assert first is not None
                    first_audio.append(first)
                    await asyncio.sleep(pause)
            finally:
                await provider.close()
            return server.connections, first_audio

    (ours, s), (sdk_pool, sdk_s) = await asyncio.gather(two_answers(None), two_answers(5.0))
    assert ours == 1 and s[1] < 0.25, s  # the second answer pays no connection
    assert sdk_pool == 2 and sdk_s[1] >= 0.3, sdk_s  # with the SDK's 5 s it did


@pytest.mark.timeout(10)
async def test_warm_opens_the_connection_before_the_first_synthesised_answer(
    pool: AudioPool,
) -> None:
    async with OpenAISpeechServer(api_key="k", connect_s=0.3) as server:
        provider = OpenAIProvider(pool, api_key="k", base_url=server.base_url)
        try:
            await provider.warm()  # the worker's, when it takes a call: the welcome covers it
            assert (server.connections, server.warmups) == (1, 1)
            t0 = time.perf_counter()
            first: float | None = None
            async for _ in provider.speak_native("Débranchez votre box."):
                first = time.perf_counter() - t0 if first is None else first
            await provider.warm()  # a connection is kept: nothing to do
        finally:
            await provider.close()
    assert first is not None and first < 0.25  # the answer paid no connection
    assert (server.connections, server.warmups, len(server.requests)) == (1, 1, 1)
