"""The Deepgram provider through the real deepgram-sdk against the loopback live server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import numpy as np
import pytest
from loopback.deepgram_live import (
    NET0001_REASON,
    Cue,
    DeepgramLoopback,
    Faults,
    SpeechStarted,
    Transcript,
    UtteranceEnd,
    key_of,
    key_tone,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from stt_worker import answers
from stt_worker.providers.base import Heard, ProviderError, ProviderTimeout, SttContext
from stt_worker.providers.deepgram import DeepgramAuthError, DeepgramStt

KEY = "test-key"
CHUNK = 320  # 20 ms, the edge's frame


@dataclass(frozen=True, kw_only=True)
class Settings:
    deepgram_url: str | None
    deepgram_api_key: str | None = KEY
    deepgram_model: str = "nova-3"
    deepgram_language: str = "fr"
    deepgram_endpointing_ms: int = 300
    deepgram_utterance_end_ms: int = 1000
    api_timeout_s: float = 2.0


def ramp(seconds: float) -> bytes:
    """Audio whose every sample holds its own index, so the server side can tell which it got."""
    return np.arange(round(seconds * 8000), dtype="<i2").tobytes()


def sample_indices(audio: bytes | bytearray) -> set[int]:
    return set(np.frombuffer(bytes(audio), dtype="<i2").tolist())


async def feed(
    audio: bytes, pauses: dict[float, Callable[[], Awaitable[object]]] | None = None
) -> AsyncIterator[bytes]:
    """Yield `audio` in 20 ms chunks; before the chunk at each pause time, await its condition."""
    pending = sorted((pauses or {}).items())
    for offset in range(0, len(audio), CHUNK):
        while pending and offset >= pending[0][0] * 16000:
            await pending.pop(0)[1]()
        yield audio[offset : offset + CHUNK]
        await asyncio.sleep(0)


def provider(dg: DeepgramLoopback, **settings: object) -> DeepgramStt:
    tuning = {k: settings.pop(k) for k in list(settings) if k in _TUNING}
    tuning.setdefault("backoff_initial_s", 0.05)
    return DeepgramStt(Settings(deepgram_url=dg.url, **settings), **tuning)  # type: ignore[arg-type]


_TUNING = {"keepalive_interval_s", "max_attempts", "backoff_initial_s", "backoff_max_s"}


def summary(heard: list[Heard]) -> list[tuple[str, str, float, float, bool]]:
    return [(h.kind, h.text, round(h.start, 3), round(h.end, 3), h.speech_final) for h in heard]


@pytest.mark.timeout(10)
async def test_interim_then_final_with_speech_events_and_close_stream() -> None:
    script = [
        Cue(0.3, SpeechStarted(0.2)),
        Cue(0.8, Transcript("je voudrais", 0.2, 0.8, is_final=False)),
        Cue(1.4, Transcript("Je voudrais résilier.", 0.2, 1.4, speech_final=True)),
        Cue(2.5, UtteranceEnd(1.4)),
    ]
    audio = ramp(3.0)
    async with DeepgramLoopback(api_key=KEY, scripts=[script]) as dg:
        heard = [h async for h in provider(dg).stream(feed(audio))]

    assert summary(heard) == [
        ("speech_started", "", 0.2, 0.2, False),
        ("interim", "je voudrais", 0.2, 0.8, False),
        ("final", "Je voudrais résilier.", 0.2, 1.4, True),
        ("utterance_end", "", 1.4, 1.4, False),
    ]
    final = heard[2]
    assert [(w.word, round(w.start, 3), round(w.end, 3)) for w in final.words] == [
        ("je", 0.2, 0.6),
        ("voudrais", 0.6, 1.0),
        ("résilier", 1.0, 1.4),
    ]
    assert final.confidence == pytest.approx(0.97)
    (conn,) = dg.connections
    assert conn.query == {
        "model": "nova-3",
        "language": "fr",
        "encoding": "linear16",
        "sample_rate": "8000",
        "channels": "1",
        "interim_results": "true",
        "endpointing": "300",
        "utterance_end_ms": "1000",
        "vad_events": "true",
        "smart_format": "true",
        "punctuate": "true",
    }
    assert bytes(conn.audio) == audio
    assert conn.close_stream and conn.close_code == 1000
    assert conn.sent[-1]["type"] == "Metadata"


@pytest.mark.timeout(15)
async def test_reconnect_after_drop_resends_unfinalized_audio_in_call_time() -> None:
    first = [
        Cue(0.2, SpeechStarted(0.1)),
        Cue(1.0, Transcript("Bonjour.", 0.0, 1.0)),
        Cue(1.6, Transcript("je voudrais", 1.0, 1.6, is_final=False)),
    ]
    # The second connection starts where the first one's finals stopped: call time 1.0 s.
    second = [
        Cue(1.5, Transcript("je voudrais résilier.", 0.0, 1.5, speech_final=True)),
        Cue(1.9, UtteranceEnd(1.4)),
    ]
    audio = ramp(3.0)
    bonjour_heard = asyncio.Event()
    faults = Faults(drop_after_bytes={0: 2 * 16000})
    async with DeepgramLoopback(api_key=KEY, scripts=[first, second], faults=faults) as dg:
        heard: list[Heard] = []
        # Hold the audio until "Bonjour." is final, so the drop lands mid-utterance after it.
        stream = provider(dg).stream(feed(audio, {1.2: bonjour_heard.wait}))
        async for h in stream:
            heard.append(h)
            if h.kind == "final" and h.text == "Bonjour.":
                bonjour_heard.set()

    assert [c.dropped for c in dg.connections] == [True, False]
    assert summary([h for h in heard if h.kind != "interim"]) == [
        ("speech_started", "", 0.1, 0.1, False),
        ("final", "Bonjour.", 0.0, 1.0, False),
        ("final", "je voudrais résilier.", 1.0, 2.5, True),
        ("utterance_end", "", 2.4, 2.4, False),
    ]
    first_conn, second_conn = dg.connections
    every_sample = set(range(len(audio) // 2))
    assert sample_indices(first_conn.audio) | sample_indices(second_conn.audio) == every_sample
    assert min(sample_indices(second_conn.audio)) == 8000  # re-sent from the last final's end
    assert second_conn.close_stream


@pytest.mark.timeout(10)
async def test_refused_connects_are_retried_with_backoff() -> None:
    script = [Cue(1.0, Transcript("Oui.", 0.2, 0.8, speech_final=True))]
    async with DeepgramLoopback(
        api_key=KEY, scripts=[script], faults=Faults(refuse_connects=2)
    ) as dg:
        heard = [h async for h in provider(dg).stream(feed(ramp(1.0)))]
    assert [(h.kind, h.text) for h in heard] == [("final", "Oui.")]
    assert dg.handshakes == 3
    assert len(dg.connections) == 1


@pytest.mark.timeout(10)
async def test_hung_handshake_raises_provider_timeout_within_bound() -> None:
    async with DeepgramLoopback(api_key=KEY, faults=Faults(hang_connects=100)) as dg:
        stt = provider(dg, api_timeout_s=0.3, max_attempts=3, backoff_max_s=0.1)
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            async for _ in stt.stream(feed(ramp(1.0))):
                pass
        elapsed = time.monotonic() - started
    assert dg.handshakes == 3
    assert elapsed < 3 * 0.3 + 0.05 + 0.1 + 1.0


@pytest.mark.timeout(10)
async def test_silent_server_raises_provider_timeout_without_losing_audio() -> None:
    never = asyncio.Event()
    async with DeepgramLoopback(api_key=KEY, faults=Faults(mute=True)) as dg:
        stt = provider(dg, api_timeout_s=0.4, max_attempts=2)
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            async for _ in stt.stream(feed(ramp(1.0) + ramp(0.02), {1.0: never.wait})):
                pass
        elapsed = time.monotonic() - started
    assert len(dg.connections) == 2
    # Nothing was final, so the second connection got the whole call again.
    assert all(sample_indices(c.audio) == set(range(8000)) for c in dg.connections)
    assert elapsed < 2 * (0.4 + 0.1) + 0.05 + 1.0


@pytest.mark.timeout(10)
async def test_refused_key_is_not_retried() -> None:
    async with DeepgramLoopback(api_key="another-key") as dg:
        with pytest.raises(DeepgramAuthError) as caught:
            async for _ in provider(dg).stream(feed(ramp(0.2))):
                pass
    assert isinstance(caught.value, ProviderError)
    assert not caught.value.retryable
    assert dg.handshakes == 1


@pytest.mark.timeout(10)
async def test_keepalive_holds_the_stream_open_through_a_long_silence() -> None:
    script = [Cue(1.0, Transcript("Non.", 0.6, 0.9, speech_final=True))]
    async with DeepgramLoopback(
        api_key=KEY, scripts=[script], no_audio_timeout_s=0.5, empty_result_every_s=0.25
    ) as dg:

        async def silence_longer_than_server_timeout() -> None:
            # KeepAlives every 0.1 s for more than the server's 0.5 s no-audio timeout.
            await dg.wait_for(lambda d: d.connections[0].keepalives >= 8)

        stt = provider(dg, keepalive_interval_s=0.1)
        audio = ramp(1.0)
        heard = [
            h async for h in stt.stream(feed(audio, {0.5: silence_longer_than_server_timeout}))
        ]

    assert [(h.kind, h.text) for h in heard] == [("final", "Non.")]
    (conn,) = dg.connections
    assert conn.keepalives >= 8
    assert conn.close_code == 1000 and conn.close_stream
    assert bytes(conn.audio) == audio


@pytest.mark.timeout(10)
async def test_loopback_closes_an_idle_stream_like_deepgram() -> None:
    async with DeepgramLoopback(api_key=KEY, no_audio_timeout_s=0.3) as dg:
        url = f"{dg.url}/v1/listen?model=nova-3&encoding=linear16&sample_rate=8000"
        async with connect(url, additional_headers={"Authorization": f"Token {KEY}"}) as ws:
            await ws.send(ramp(0.1))
            with pytest.raises(ConnectionClosedError) as closed:
                await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1011, NET0001_REASON)


@pytest.mark.timeout(10)
async def test_server_idle_close_is_survived_by_reconnecting() -> None:
    script = [Cue(0.5, Transcript("Internet.", 0.1, 0.5, speech_final=True))]
    held = asyncio.Event()
    async with DeepgramLoopback(api_key=KEY, scripts=[script, []], no_audio_timeout_s=0.3) as dg:

        async def until_idle_close() -> None:
            await dg.wait_for(lambda d: d.connections[0].close_code == 1011)
            held.set()

        stt = provider(dg, keepalive_interval_s=60.0)
        heard = [h async for h in stt.stream(feed(ramp(1.0), {0.6: until_idle_close}))]

    assert held.is_set()
    assert [(h.kind, h.text) for h in heard] == [("final", "Internet.")]
    assert len(dg.connections) == 2
    assert dg.connections[1].close_stream
    assert min(sample_indices(dg.connections[1].audio)) == 4000  # after the final's end, 0.5 s


@pytest.mark.timeout(10)
async def test_unreachable_server_raises_provider_error_after_the_budget() -> None:
    async with DeepgramLoopback(api_key=KEY) as dg:
        stt = provider(dg, max_attempts=3, backoff_max_s=0.1)
    # The loopback is stopped: its port now refuses connections.
    with pytest.raises(ProviderError) as caught:
        async for _ in stt.stream(feed(ramp(0.2))):
            pass
    assert not isinstance(caught.value, ProviderTimeout)
    assert "ConnectionRefusedError" in str(caught.value)


@pytest.mark.timeout(10)
async def test_consumer_leaving_early_closes_the_stream() -> None:
    script = [Cue(0.5, Transcript("Oui.", 0.1, 0.5, speech_final=True))]
    never = asyncio.Event()
    async with DeepgramLoopback(api_key=KEY, scripts=[script]) as dg:
        stream = provider(dg).stream(feed(ramp(1.0), {1.0: never.wait}))
        first = await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]
        await dg.wait_for(lambda d: d.connections[0].close_code is not None)
    assert first.text == "Oui."
    assert dg.connections[0].close_code == 1000


@pytest.mark.timeout(10)
async def test_expected_answers_are_keyterms_at_connect_then_configured_live() -> None:
    script = [Cue(1.4, Transcript("Oui.", 0.2, 1.4, speech_final=True))]
    audio = ramp(2.0)
    context = SttContext(expecting="category")
    async with DeepgramLoopback(api_key=KEY, scripts=[script]) as dg:

        async def ask_yes_no() -> None:
            context.expect("yes_no")  # the brain asked a yes/no question mid-stream
            await dg.wait_for(lambda d: d.connections[0].configures, 5)

        stream = provider(dg).stream(feed(audio, {1.0: ask_yes_no}), context=context)
        heard = [h async for h in stream]
    assert [h.text for h in heard if h.kind == "final"] == ["Oui."]
    (conn,) = dg.connections
    assert conn.keyterms == answers.keyterms("category")
    assert "internet" in conn.keyterms and "mobile" in conn.keyterms
    assert conn.configures == [answers.keyterms("yes_no")]
    assert "oui" in answers.keyterms("yes_no") and "non" in answers.keyterms("yes_no")
    assert "keyterm" not in conn.query


@pytest.mark.timeout(10)
async def test_models_without_keyterms_get_none() -> None:
    audio = ramp(1.0)
    context = SttContext(expecting="yes_no")
    async with DeepgramLoopback(api_key=KEY, scripts=[[]]) as dg:
        dg_provider = provider(dg, deepgram_model="nova-2")
        stream = dg_provider.stream(feed(audio), context=context)
        [h async for h in stream]
        context.expect("category")
    (conn,) = dg.connections
    assert conn.keyterms == [] and conn.configures == []


def test_key_tones_are_told_apart_even_in_part() -> None:
    for k in range(20):
        tone = key_tone(k, 0.6)
        assert key_of(tone) == k
        assert key_of(tone[len(tone) // 2 : len(tone) // 2 + 1600]) == k  # 0.1 s from the middle
    assert key_of(bytes(3200)) is None
    noise = np.random.default_rng(1).normal(0, 3000, 8000).astype("<i2").tobytes()
    assert key_of(noise) is None


@pytest.mark.timeout(15)
async def test_keyed_mode_hears_the_same_line_on_any_connection() -> None:
    """A takeover re-sends the caller's audio on a new connection: it must hear the same text,
    including a line the first connection already heard (utterance mode would pop the next)."""
    silence = bytes(16000)
    call = silence[:8000] + key_tone(2) + silence + key_tone(0) + silence
    async with DeepgramLoopback(api_key=KEY, keyed=["Zéro.", "Un.", "Deux."]) as dg:
        first = [h async for h in provider(dg).stream(feed(call))]
        second = [h async for h in provider(dg).stream(feed(call[8000:]))]
    finals = [[h.text for h in heard if h.kind == "final" and h.text] for heard in (first, second)]
    assert finals == [["Deux.", "Zéro."], ["Deux.", "Zéro."]]
    assert len(dg.connections) == 2
