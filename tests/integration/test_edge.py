"""The edge against real NATS, driven by an AudioSocket peer that behaves like Asterisk."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import uvloop
from audiosocket_peer import AudioSocketPeer
from edge_support import Recorder, edge_config, metric, running_edge

from edge.framing import Kind
from edge.server import EdgeServer
from events import audio, schemas, subjects
from events.bus import Bus
from events.streams import ensure_streams
from voicebot.servers import NatsServer

pytestmark = pytest.mark.integration


def tone(frames: int, level: int = 8000) -> bytes:
    t = np.arange(frames * 160) / 8000
    return (np.sin(2 * np.pi * 440 * t) * level).astype("<i2").tobytes()


async def connected(server: EdgeServer, bus: Bus) -> tuple[AudioSocketPeer, Recorder]:
    call_id = str(uuid.uuid4())
    rec = await Recorder.start(bus, call_id)
    peer = await AudioSocketPeer.connect(*server.address, call_id)
    # The edge reads bot audio and control from streams it tails since it started, so what the
    # test publishes from now on reaches the call.
    await rec.wait_event("event", "started")
    return peer, rec


async def say(
    bus: Bus,
    call_id: str,
    utterance: str,
    pcm: bytes,
    *,
    per_message: int = 5,
    interruptible: bool = True,
) -> None:
    """Publish bot audio as the TTS worker does: whole frames, a few per message."""
    step = per_message * audio.FRAME_BYTES
    chunks = [pcm[i : i + step] for i in range(0, len(pcm), step)]
    for seq, chunk in enumerate(chunks):
        headers = audio.out_headers(utterance, seq, seq == len(chunks) - 1, interruptible)
        await bus.nc.publish(subjects.audio_out(call_id), chunk, headers=headers)
    await bus.nc.flush(timeout=2)


@pytest.mark.timeout(20)
async def test_silent_caller_gets_paced_silence_and_hangs_up(bus: Bus, tmp_path: Path) -> None:
    async with running_edge(bus, edge_config(tmp_path)) as server:
        peer, rec = await connected(server, bus)
        started = rec.events("event", "started")[0]
        assert started.edge == "edge-test" and started.peer.startswith("127.0.0.1:")
        t0 = asyncio.get_running_loop().time()
        frames = await peer.wait_audio(25)
        elapsed = asyncio.get_running_loop().time() - t0
        assert peer.violations == []
        assert all(f.kind == Kind.SLIN and len(f.payload) == 320 for f in frames)
        assert all(f.payload == audio.SILENCE for f in frames)
        # Paced, not bursted: 25 frames take about half a second (generous bounds for CI).
        assert 0.3 < elapsed + 0.06 < 1.5
        await peer.close()
        ended = await rec.wait_event("event", "ended")
        hangup = rec.events("event", "hangup")[0]
        assert hangup.by == "caller" and ended.outcome == "hangup"
        assert ended.frames_out >= 25 and ended.frames_in == 0
        assert server.registry.outcome(peer.call_id) == "hangup"
        assert peer.call_id not in server.calls


@pytest.mark.timeout(20)
async def test_caller_audio_dtmf_and_high_rate_reach_the_bus(bus: Bus, tmp_path: Path) -> None:
    async with running_edge(bus, edge_config(tmp_path, audio_in_batch_ms=40)) as server:
        peer, rec = await connected(server, bus)
        await peer.stream(tone(10)[: 276 * 5], frame_bytes=276)  # odd sizes, as a played file
        await peer.send_dtmf("5")
        await peer.stream(tone(10, 4000) * 2, frame_bytes=640, kind=Kind.SLIN16)  # slin16
        await rec.wait_event("event", "dtmf")
        expected = 276 * 5 + 10 * 320  # slin16 arrives at half the bytes once at 8 kHz
        await peer.close()
        ended = await rec.wait_event("event", "ended")
        await rec.wait(lambda: sum(len(m.data) for m in rec.audio_in()) >= expected - 320)
        msgs = [audio.parse_in(m.headers, m.data) for m in rec.audio_in()]
        assert [m.seq for m in msgs] == list(range(len(msgs)))
        assert all(len(m.pcm) <= 640 + 320 for m in msgs)
        assert msgs[1].audio_t == pytest.approx(len(msgs[0].pcm) / 16000, abs=0.001)
        total = sum(len(m.pcm) for m in msgs)
        assert abs(total - expected) <= 320  # the resampler's filter may hold a few samples
        dtmf = rec.events("event", "dtmf")[0]
        assert dtmf.digit == "5" and dtmf.seq == 1
        assert ended.frames_in == total // 320


@pytest.mark.timeout(20)
async def test_bot_audio_plays_then_flush_cuts_it_within_a_tick(bus: Bus, tmp_path: Path) -> None:
    async with running_edge(bus, edge_config(tmp_path)) as server:
        peer, rec = await connected(server, bus)
        flushes = metric("voicebot_edge_flushes_total", {"source": "control"})
        await say(bus, peer.call_id, "u1", tone(100))  # 2 s
        await rec.wait_event("playback", "started")
        await peer.wait_audio(len(peer.audio) + 10)
        await bus.publish(
            subjects.control(peer.call_id), schemas.Flush(call_id=peer.call_id, ts=time.time())
        )
        interrupted = await rec.wait_event("playback", "interrupted")
        t_event = asyncio.get_running_loop().time()
        await peer.wait_audio(len(peer.audio) + 10)
        after = [f for f in peer.audio if f.t > t_event]
        # The flush is applied before the interrupted event is sent: at most the frame already
        # in flight may still be voice after it.
        assert sum(f.payload != audio.SILENCE for f in after) <= 1
        assert interrupted.utterance_id == "u1" and interrupted.reason == "flush"
        assert 0 < interrupted.frames < 100
        assert metric("voicebot_edge_flushes_total", {"source": "control"}) == flushes + 1
        assert rec.events("playback", "finished") == []
        await peer.close()


async def send_out(
    bus: Bus, call_id: str, utterance: str, seq: int, pcm: bytes, *, last: bool
) -> None:
    """One audio.out message, as the TTS worker sends them while the provider speaks."""
    headers = audio.out_headers(utterance, seq, last)
    await bus.nc.publish(subjects.audio_out(call_id), pcm, headers=headers)
    await bus.nc.flush(timeout=2)


@pytest.mark.timeout(20)
async def test_after_bot_audio_ran_dry_the_next_utterance_waits_for_more(
    bus: Bus, tmp_path: Path
) -> None:
    """An utterance's next message came late (a TTS worker short of CPU) and it ran dry: a gap
    in the middle of the bot's words. The edge then queues more of the next utterance before it
    plays it (EDGE_PREBUFFER_MS 40 -> 80 ms), so that one plays through."""
    async with running_edge(bus, edge_config(tmp_path)) as server:
        peer, rec = await connected(server, bus)
        cid = peer.call_id
        assert metric("voicebot_edge_prebuffer_seconds") == pytest.approx(0.04)
        await send_out(bus, cid, "u1", 0, tone(4), last=False)
        await rec.wait_event("playback", "started")
        await peer.wait_audio(len(peer.audio) + 12)  # its 4 frames, then nothing to play
        assert server.prebuffer.gaps == 1
        await send_out(bus, cid, "u1", 1, tone(4), last=True)
        await rec.wait_event("playback", "finished")
        assert metric("voicebot_edge_prebuffer_seconds") == pytest.approx(0.08)

        heard = len(peer.audio)
        await send_out(bus, cid, "u2", 0, tone(2), last=False)  # 40 ms: no longer enough
        await peer.wait_audio(heard + 10)
        assert all(f.payload == audio.SILENCE for f in peer.audio[heard:])
        assert [p.utterance_id for p in rec.events("playback", "started")] == ["u1"]
        await send_out(bus, cid, "u2", 1, tone(2), last=False)  # 80 ms: it starts
        await send_out(bus, cid, "u2", 2, tone(4), last=True)
        await rec.wait(lambda: len(rec.events("playback", "finished")) == 2)
        voiced = [f for f in peer.audio[heard:] if f.payload != audio.SILENCE]
        assert len(voiced) == 8 and server.prebuffer.gaps == 1  # played through
        await peer.close()


@pytest.mark.timeout(20)
async def test_hangup_waits_for_the_queued_goodbye(bus: Bus, tmp_path: Path) -> None:
    async with running_edge(bus, edge_config(tmp_path)) as server:
        peer, rec = await connected(server, bus)
        goodbye = tone(15)
        await say(bus, peer.call_id, "bye", goodbye)
        await bus.publish(
            subjects.control(peer.call_id), schemas.HangupCall(call_id=peer.call_id, ts=time.time())
        )
        await peer.wait_closed()
        assert peer.hangup.is_set() and peer.received[-1].kind == Kind.HANGUP
        voiced = b"".join(f.payload for f in peer.audio if f.payload != audio.SILENCE)
        assert voiced == goodbye  # every frame, in order, nothing clipped
        ended = await rec.wait_event("event", "ended")
        finished = rec.events("playback", "finished")[0]
        assert finished.frames == 15
        assert ended.outcome == "hangup" and rec.events("event", "hangup")[0].by == "bot"
        assert server.registry.outcome(peer.call_id) == "hangup"
        assert peer.violations == []


@pytest.mark.timeout(20)
async def test_hangup_waits_for_an_announced_say_whose_audio_is_late(
    bus: Bus, tmp_path: Path
) -> None:
    async with running_edge(bus, edge_config(tmp_path)) as server:
        peer, rec = await connected(server, bus)
        cid = peer.call_id
        await bus.publish(
            subjects.say(cid),
            schemas.Say(call_id=cid, ts=time.time(), utterance_id="bye", phrase="goodbye"),
        )
        await bus.publish(subjects.control(cid), schemas.HangupCall(call_id=cid, ts=time.time()))
        await asyncio.sleep(0.2)  # the TTS is slow: the edge must still be waiting
        assert not peer.closed.is_set()
        await say(bus, cid, "bye", tone(5))
        await peer.wait_closed()
        assert sum(f.payload != audio.SILENCE for f in peer.audio) == 5
        await rec.wait_event("event", "ended")


@pytest.mark.timeout(20)
async def test_transfer_outcome(bus: Bus, tmp_path: Path) -> None:
    async with running_edge(bus, edge_config(tmp_path)) as server:
        peer, rec = await connected(server, bus)
        assert server.registry.outcome(peer.call_id) == "pending"
        await bus.publish(
            subjects.control(peer.call_id),
            schemas.Transfer(call_id=peer.call_id, ts=time.time(), target="n2"),
        )
        await peer.wait_closed()
        ended = await rec.wait_event("event", "ended")
        assert ended.outcome == "transfer:n2"
        assert server.registry.outcome(peer.call_id) == "transfer:n2"


@pytest.mark.timeout(20)
async def test_above_the_limit_callers_hear_busy_then_hang_up(bus: Bus, tmp_path: Path) -> None:
    busy_pcm = bytes([7]) * (320 * 4)
    (tmp_path / "busy.raw").write_bytes(busy_pcm)
    async with running_edge(bus, edge_config(tmp_path, max_concurrent_calls=1)) as server:
        first, _ = await connected(server, bus)
        busy_id = str(uuid.uuid4())
        rec = await Recorder.start(bus, busy_id)
        second = await AudioSocketPeer.connect(*server.address, busy_id)
        await second.wait_closed()
        assert second.hangup.is_set() and second.violations == []
        assert b"".join(f.payload for f in second.audio) == busy_pcm
        assert len(server.calls) == 1 and first.call_id in server.calls
        assert rec.events("event") == []  # the pipeline never hears of it
        assert server.registry.outcome(busy_id) == "hangup"
        await first.close()


@pytest.mark.timeout(20)
async def test_peer_outside_the_allow_list_is_closed_at_once(bus: Bus, tmp_path: Path) -> None:
    refused = metric("voicebot_edge_refused_peers_total")
    cfg = edge_config(tmp_path, allowed_peers=("192.0.2.10",))
    async with running_edge(bus, cfg) as server:
        peer = await AudioSocketPeer.connect(*server.address, send_uuid=False)
        await peer.wait_closed(2)
        assert peer.received == [] and server.calls == {}
        assert metric("voicebot_edge_refused_peers_total") == refused + 1
        await peer.close()


@pytest.mark.timeout(20)
async def test_graceful_stop_hangs_up_after_the_grace(bus: Bus, tmp_path: Path) -> None:
    server = EdgeServer(edge_config(tmp_path), bus)
    await server.start()
    peer, rec = await connected(server, bus)
    port = server.address[1]
    await server.stop(0.2)
    await peer.wait_closed()
    assert peer.hangup.is_set()
    ended = await rec.wait_event("event", "ended")
    assert ended.reason == "shutdown" and rec.events("event", "hangup")[0].by == "edge"
    with pytest.raises(OSError):  # no longer accepting
        await AudioSocketPeer.connect("127.0.0.1", port)


@pytest.mark.timeout(20)
async def test_local_vad_barges_in_over_an_interruptible_prompt(bus: Bus, tmp_path: Path) -> None:
    async with running_edge(bus, edge_config(tmp_path, bargein_vad=True)) as server:
        peer, rec = await connected(server, bus)
        await say(bus, peer.call_id, "welcome", tone(150))
        await rec.wait_event("playback", "started")
        await peer.stream(tone(10, 12000))
        bargein = await rec.wait_event("event", "bargein")
        interrupted = await rec.wait_event("playback", "interrupted")
        assert bargein.utterance_id == "welcome" and interrupted.reason == "bargein"
        await peer.close()


@pytest.mark.timeout(20)
async def test_vad_leaves_a_non_interruptible_prompt_alone(bus: Bus, tmp_path: Path) -> None:
    async with running_edge(bus, edge_config(tmp_path, bargein_vad=True)) as server:
        peer, rec = await connected(server, bus)
        await say(bus, peer.call_id, "legal", tone(30), interruptible=False)
        await rec.wait_event("playback", "started")
        await peer.stream(tone(10, 12000))
        await rec.wait_event("playback", "finished")
        assert rec.events("event", "bargein") == []
        await peer.close()


@pytest.mark.timeout(30)
def test_a_call_on_uvloop(nats_server: NatsServer, tmp_path: Path) -> None:
    """Production runs on uvloop, whose transports are not asyncio's classes."""

    async def scenario() -> None:
        bus = await Bus.connect(nats_server.url, "test-uvloop")
        try:
            await ensure_streams(bus.js)
            async with running_edge(bus, edge_config(tmp_path)) as server:
                peer, rec = await connected(server, bus)
                await say(bus, peer.call_id, "u1", tone(5))
                await bus.publish(
                    subjects.control(peer.call_id),
                    schemas.HangupCall(call_id=peer.call_id, ts=time.time()),
                )
                await peer.wait_closed()
                assert sum(f.payload != audio.SILENCE for f in peer.audio) == 5
                assert peer.hangup.is_set() and peer.violations == []
                await rec.wait_event("event", "ended")
        finally:
            await bus.close()

    uvloop.run(scenario())
