"""The edge when the pipeline fails it: a silent pipeline, a stale owner, a stalled frame."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from audiosocket_peer import AudioSocketPeer
from edge_support import Recorder, edge_config, metric, running_edge

from edge.framing import Kind
from events import audio, schemas, subjects
from events.bus import Bus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def tone(frames: int, hz: float, level: int = 8000) -> bytes:
    t = np.arange(frames * 160) / 8000
    return (np.sin(2 * np.pi * hz * t) * level).astype("<i2").tobytes()


def cache(tmp_path: Path) -> Path:
    """Cached phrases the edge plays itself, each a tone of its own pitch (recognisable)."""
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "hold.raw").write_bytes(tone(25, 440))  # 0.5 s
    (folder / "unavailable.raw").write_bytes(tone(25, 880))
    (folder / "busy.raw").write_bytes(tone(5, 220))
    return folder


PITCHES = (300, 440, 600, 880)  # the tones of this module


def pitch(pcm: bytes) -> int:
    """Which of PITCHES a 20 ms frame is (an FFT of 160 samples has 50 Hz bins)."""
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    peak = float(np.argmax(np.abs(np.fft.rfft(x))) * 8000 / len(x))
    return min(PITCHES, key=lambda hz: abs(hz - peak))


def voiced_runs(peer: AudioSocketPeer, t0: float) -> list[tuple[float, float, int]]:
    """(start, end, pitch) of each stretch of frames of one tone, in seconds from `t0`."""
    runs: list[tuple[float, float, int]] = []
    start, hz, last = None, 0, 0.0
    for m in peer.audio:
        tone_now = pitch(m.payload) if m.payload != audio.SILENCE else 0
        if start is not None and tone_now != hz:
            runs.append((round(start - t0, 2), round(m.t - t0, 2), hz))
            start = None
        if tone_now and start is None:
            start, hz = m.t, tone_now
        last = m.t
    if start is not None:  # the call ended while it played
        runs.append((round(start - t0, 2), round(last + 0.02 - t0, 2), hz))
    return runs


async def test_a_silent_pipeline_gets_the_hold_phrase_then_unavailable_and_a_transfer(
    bus: Bus, tmp_path: Path
) -> None:
    cfg = edge_config(
        tmp_path, cache_dir=cache(tmp_path), hold_after_s=0.6, unavailable_after_s=2.5
    )
    before = metric("voicebot_edge_local_phrases_total", {"phrase": "hold"})
    async with running_edge(bus, cfg) as server:
        call_id = str(uuid.uuid4())
        rec = await Recorder.start(bus, call_id)
        peer = await AudioSocketPeer.connect(*server.address, call_id)
        t0 = asyncio.get_running_loop().time()
        await peer.wait_closed(10)
        ended = await rec.wait_event("event", "ended")
    runs = voiced_runs(peer, t0)
    holds = [r for r in runs if r[2] == 440]
    unavailable = [r for r in runs if r[2] == 880]
    # Nobody answered the call: a hold phrase after 0.6 s, again 0.6 s after it ended...
    assert holds and 0.5 <= holds[0][0] <= 0.9, runs
    assert len(holds) >= 2 and holds[1][0] - holds[0][1] == pytest.approx(0.6, abs=0.15)
    # ...then the unavailable phrase at 2.5 s, played to its end, then the call handed back.
    assert len(unavailable) == 1 and 2.4 <= unavailable[0][0] <= 3.3, runs
    assert unavailable[0][1] - unavailable[0][0] == pytest.approx(0.5, abs=0.1)
    assert peer.hangup.is_set()
    assert (ended.reason, ended.outcome) == ("pipeline_silent", "transfer:technicians")
    assert server.registry.outcome(call_id) == "transfer:technicians"
    error = rec.events("event", "error")[0]
    assert (error.source, error.code) == ("edge", "pipeline_silent")
    started = rec.events("playback", "started")
    assert {p.origin for p in started} == {"edge"}
    assert metric("voicebot_edge_local_phrases_total", {"phrase": "hold"}) >= before + 2


async def test_a_timely_answer_means_no_hold_and_a_late_one_cuts_it(
    bus: Bus, tmp_path: Path
) -> None:
    cfg = edge_config(tmp_path, cache_dir=cache(tmp_path), hold_after_s=0.6)
    async with running_edge(bus, cfg) as server:
        call_id = str(uuid.uuid4())
        rec = await Recorder.start(bus, call_id)
        peer = await AudioSocketPeer.connect(*server.address, call_id)
        t0 = asyncio.get_running_loop().time()
        await rec.wait_event("event", "started")
        await publish_audio(bus, call_id, "u1", tone(20, 300))  # the welcome, in time
        await asyncio.sleep(1.5)
        # The caller says something; the answer comes 1 s late: the hold phrase starts at 0.6 s
        # after the end of the line and is cut when the answer arrives.
        await peer.stream(tone(25, 300, level=12000))
        await peer.stream(bytes(320 * 5))  # the edge's VAD hears the end of the line
        await asyncio.sleep(1.0)
        await publish_audio(bus, call_id, "u2", tone(25, 600))
        await asyncio.sleep(1.0)
        await peer.close()
        await rec.wait_event("event", "ended")
    runs = voiced_runs(peer, t0)
    assert runs[0][2] == 300 and runs[0][0] < 0.5  # the welcome, no hold before it
    holds = [r for r in runs if r[2] == 440]
    assert len(holds) == 1 and holds[0][1] - holds[0][0] < 0.5, runs  # cut short
    answer = next(r for r in runs if r[2] == 600)
    assert answer[0] >= holds[0][1] - 0.05  # the answer plays as the hold phrase stops
    cut = [p for p in rec.events("playback", "interrupted") if p.origin == "edge"]
    assert cut and cut[0].reason == "answered"


async def publish_audio(bus: Bus, call_id: str, utterance: str, pcm: bytes, epoch: int = 0) -> None:
    headers = audio.out_headers(utterance, 0, True, True, epoch)
    await bus.nc.publish(subjects.audio_out(call_id), pcm, headers=headers)
    await bus.nc.flush(timeout=2)


async def test_audio_and_control_from_a_stale_owner_are_ignored(bus: Bus, tmp_path: Path) -> None:
    async with running_edge(bus, edge_config(tmp_path)) as server:
        call_id = str(uuid.uuid4())
        rec = await Recorder.start(bus, call_id)
        peer = await AudioSocketPeer.connect(*server.address, call_id)
        await rec.wait_event("event", "started")
        for service in ("tts_worker", "brain"):
            claimed = schemas.Claimed(
                call_id=call_id, ts=time.time(), epoch=2, service=service, instance="new"
            )
            await bus.publish(subjects.event(call_id, "claimed"), claimed)
        await publish_audio(bus, call_id, "stale", tone(10, 440), epoch=1)  # the old TTS owner
        stale_hangup = schemas.HangupCall(call_id=call_id, ts=time.time(), epoch=1)
        await bus.publish(subjects.control(call_id), stale_hangup)  # the old brain owner
        await publish_audio(bus, call_id, "current", tone(10, 880), epoch=2)
        await rec.wait(lambda: bool(rec.events("playback", "finished")), 5)
        finished = [p.utterance_id for p in rec.events("playback", "finished")]
        assert finished == ["current"]
        assert not peer.closed.is_set()  # the stale hang-up was not obeyed
        assert server.calls[call_id].fence.dropped == 2
        await peer.close()


async def test_a_frame_whose_bytes_stop_coming_ends_the_call(bus: Bus, tmp_path: Path) -> None:
    """`0x10 0xFFFF` then 100 bytes, the connection left open: closed within the bound."""
    before = metric("voicebot_edge_protocol_errors_total", {"kind": "incomplete_frame"})
    async with running_edge(bus, edge_config(tmp_path, frame_timeout_s=0.5)) as server:
        call_id = str(uuid.uuid4())
        rec = await Recorder.start(bus, call_id)
        peer = await AudioSocketPeer.connect(*server.address, call_id)
        await rec.wait_event("event", "started")
        loop = asyncio.get_running_loop()
        await peer.send_raw(bytes([Kind.SLIN, 0xFF, 0xFF]) + bytes(100))
        t0 = loop.time()
        await peer.wait_closed(3)
        waited = loop.time() - t0
        ended = await rec.wait_event("event", "ended")
    assert 0.4 <= waited < 1.5
    assert ended.reason == "protocol:incomplete_frame"
    after = metric("voicebot_edge_protocol_errors_total", {"kind": "incomplete_frame"})
    assert after == before + 1
