"""Bus helpers against a real nats-server: bad messages are counted and skipped, streams are
idempotent, calls are claimed by one instance and taken over when it dies."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from nats.js import api

from events import codec, schemas, streams, subjects
from events.auth import LOGINS, Login, password_variable
from events.bus import BAD_MESSAGES, Bus, Envelope
from events.claims import CallClaims, Claim
from voicebot.servers import NatsServer, free_port

NATS_CONF = Path(__file__).resolve().parents[2] / "nats.conf"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

CID = "0b3f2c1e-1111-4222-8333-444455556666"

VALID = {
    "event": (subjects.event(CID, "dtmf"), schemas.Dtmf(call_id=CID, ts=1.0, digit="1", seq=1)),
    "transcript": (subjects.transcript(CID), schemas.Final(call_id=CID, ts=1.0, text="oui")),
    "decision": (
        subjects.decision(CID),
        schemas.Decision(
            call_id=CID, ts=1.0, turn=0, trigger="t", trigger_seq=0, state_from="A", state_to="B"
        ),
    ),
    "say": (subjects.say(CID), schemas.Say(call_id=CID, ts=1.0, utterance_id="u1", phrase="ok")),
    "playback": (
        subjects.playback(CID),
        schemas.PlaybackStarted(call_id=CID, ts=1.0, utterance_id="u1"),
    ),
    "control": (subjects.control(CID), schemas.Flush(call_id=CID, ts=1.0)),
}


def bad_count(service: str, kind: str) -> float:
    return BAD_MESSAGES.labels(service, kind)._value.get()


async def wait_for(predicate, within_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("kind", sorted(VALID))
async def test_core_subscriber_counts_and_skips_garbage(bus: Bus, kind: str) -> None:
    subject, good = VALID[kind]
    got: list[Envelope] = []

    async def handler(env: Envelope) -> None:
        got.append(env)

    await bus.subscribe(subject, handler)
    before = bad_count("test", kind)
    await bus.nc.publish(subject, b"\xff garbage")
    await bus.nc.publish(subject, b'{"v":1}')
    await bus.publish(subject, good)
    await wait_for(lambda: len(got) == 1)
    assert got[0].event == good
    assert bad_count("test", kind) == before + 2


@pytest.mark.parametrize("kind", sorted(VALID))
async def test_stream_replay_counts_and_skips_garbage(bus: Bus, kind: str) -> None:
    subject, good = VALID[kind]
    before = bad_count("test", kind)
    await bus.js.publish(subject, b"not json at all")
    await bus.publish(subject, good)
    history = await bus.history(subject)
    assert [env.event for env in history] == [good]
    assert history[0].stream_seq > 0
    assert bad_count("test", kind) == before + 1


async def test_streams_are_created_idempotently(bus: Bus) -> None:
    await streams.ensure_streams(bus.js)
    await streams.ensure_streams(bus.js, streams.Retention(calls_days=30))
    info = await bus.js.stream_info(streams.CALLS)
    assert info.config.max_age == 30 * streams.DAY_S
    audio = await bus.js.stream_info(streams.AUDIO)
    assert set(audio.config.subjects or []) == set(streams.AUDIO_SUBJECTS)


async def test_streams_already_as_wanted_are_not_updated(bus: Bus) -> None:
    """Every process ensures the streams at its start: an update of an unchanged stream is a
    needless proposal to a cluster's meta leader (seven at once timed out on a fresh cluster)."""
    wanted = streams.Retention(calls_days=30)
    await streams.ensure_streams(bus.js, wanted)
    for cfg in streams.stream_configs(wanted):
        have = (await bus.js.stream_info(cfg.name or "")).config
        assert not streams._differs(have, cfg), cfg.name
    for cfg in streams.stream_configs(streams.Retention(calls_days=31, replicas=3)):
        have = (await bus.js.stream_info(cfg.name or "")).config
        assert streams._differs(have, cfg), cfg.name


async def test_duplicate_publishes_with_one_msg_id_are_stored_once(bus: Bus) -> None:
    subject, good = VALID["say"]
    first = await bus.publish(subject, good, msg_id="same")
    second = await bus.publish(subject, good, msg_id="same")
    assert first == second
    assert len(await bus.history(subject)) == 1


async def _started(bus: Bus, call_id: str) -> None:
    await bus.publish(
        subjects.event(call_id, "started"), schemas.Started(call_id=call_id, ts=time.time())
    )


async def test_each_call_is_claimed_by_exactly_one_instance(
    nats_server: NatsServer, bus: Bus
) -> None:
    owners: dict[str, list[str]] = {}
    release = asyncio.Event()

    def instance(name: str):  # type: ignore[no-untyped-def]
        async def on_call(claim: Claim) -> None:
            owners.setdefault(claim.call_id, []).append(name)
            await release.wait()

        return on_call

    buses = [await Bus.connect(nats_server.url, f"w{i}") for i in range(2)]
    claim = streams.ClaimConsumer(service="tester", ack_wait_s=2.0)
    tasks = [
        asyncio.create_task(CallClaims(b, claim, instance(f"w{i}")).run())
        for i, b in enumerate(buses)
    ]
    await asyncio.sleep(0.2)  # both pull loops are waiting (they create the durable)
    ids = [subjects.new_call_id() for _ in range(10)]
    for call_id in ids:
        await _started(bus, call_id)
    await wait_for(lambda: len(owners) == 10)
    await asyncio.sleep(2.5)  # longer than ack_wait: the heartbeat must keep every claim
    assert all(len(v) == 1 for v in owners.values()), owners
    release.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for b in buses:
        await b.close()


async def test_a_dead_instance_s_call_is_taken_over(nats_server: NatsServer, bus: Bus) -> None:
    seen: list[tuple[str, bool]] = []
    claim = streams.ClaimConsumer(service="tester2", ack_wait_s=1.0)

    async def hold(claim: Claim) -> None:
        seen.append(("a", claim.takeover))
        await asyncio.Event().wait()

    async def second(claim: Claim) -> None:
        seen.append(("b", claim.takeover))

    bus_a = await Bus.connect(nats_server.url, "a")
    task_a = asyncio.create_task(CallClaims(bus_a, claim, hold).run())
    await asyncio.sleep(0.2)
    call_id = subjects.new_call_id()
    await _started(bus, call_id)
    await wait_for(lambda: seen == [("a", False)])
    # Instance a dies without releasing its claim: its connection simply goes away.
    task_a.cancel()
    await asyncio.gather(task_a, return_exceptions=True)
    await bus_a.nc.close()
    bus_b = await Bus.connect(nats_server.url, "b")
    task_b = asyncio.create_task(CallClaims(bus_b, claim, second).run())
    t0 = time.monotonic()
    await wait_for(lambda: ("b", True) in seen, within_s=10)
    assert time.monotonic() - t0 < 5
    task_b.cancel()
    await asyncio.gather(task_b, return_exceptions=True)
    await bus_b.close()


async def test_garbage_on_the_started_subject_does_not_stop_claims(bus: Bus) -> None:
    seen: list[str] = []

    async def on_call(claim: Claim) -> None:
        seen.append(claim.call_id)

    claim = streams.ClaimConsumer(service="tester3")
    task = asyncio.create_task(CallClaims(bus, claim, on_call).run())
    await asyncio.sleep(0.2)
    call_id = subjects.new_call_id()
    before = bad_count("test", "event")
    await bus.js.publish(subjects.event(call_id, "started"), b"garbage")
    await _started(bus, call_id)
    await wait_for(lambda: seen == [call_id])
    assert bad_count("test", "event") == before + 1
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_publish_survives_a_nats_restart(nats_server: NatsServer, bus: Bus) -> None:
    """A publish during the outage is retried until acknowledged, and stored once."""
    subject, good = VALID["say"]
    nats_server.kill()
    publish = asyncio.create_task(bus.publish(subject, good, msg_id="across-restart"))
    await asyncio.sleep(0.5)
    assert not publish.done()
    nats_server.start()
    await asyncio.wait_for(publish, 15)
    assert [e.event for e in await bus.history(subject)] == [good]
    assert codec.tag_of(good) == "say"


async def test_streams_start_twice_on_the_project_nats_conf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nats.conf's store limits, a second start must not fail for lack of storage."""
    for user in LOGINS.values():  # nats.conf's users read their passwords from here
        monkeypatch.setenv(password_variable(user), f"pw-{user}")
    admin = Login.from_env("admin")
    server = NatsServer(store_dir=tmp_path / "nats", port=free_port(), config=NATS_CONF)
    server.start()
    try:
        for _ in range(2):
            b = await Bus.connect(server.url, "twice", login=admin)
            await streams.ensure_streams(b.js)
            await streams.ensure_streams(b.js)
            await b.close()
            server.restart()
        b = await Bus.connect(server.url, "twice", login=admin)
        info = await b.js.stream_info(streams.AUDIO)
        await b.close()
        assert info.config.max_bytes == streams.Retention().audio_max_bytes
    finally:
        server.stop()


async def test_a_wildcard_subscriber_passes_over_audio_without_counting_it(bus: Bus) -> None:
    got: list[Envelope] = []

    async def handler(env: Envelope) -> None:
        got.append(env)

    await bus.subscribe(subjects.all_of(CID), handler)
    before = bad_count("test", "audio.out")
    await bus.publish_audio(subjects.audio_out(CID), bytes(320), {"Voicebot-Seq": "1"})
    subject, good = VALID["say"]
    await bus.publish(subject, good)
    await wait_for(lambda: len(got) == 1)
    assert got[0].event == good
    assert bad_count("test", "audio.out") == before


async def test_audio_is_flushed_asynchronously_and_events_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nats.conf's `sync_interval: always`, fsyncing every audio message dropped more than
    half of them at 200 calls: AUDIO is async (R1), CALLS stays synced. A stream made by an
    older release keeps its mode (it cannot change in place) and start-up still succeeds."""
    for user in LOGINS.values():  # nats.conf's users read their passwords from here
        monkeypatch.setenv(password_variable(user), f"pw-{user}")
    server = NatsServer(store_dir=tmp_path / "nats", port=free_port(), config=NATS_CONF)
    server.start()
    try:
        b = await Bus.connect(server.url, "modes", login=Login.from_env("admin"))
        await streams.ensure_streams(b.js)
        audio = await b.js.stream_info(streams.AUDIO)
        calls = await b.js.stream_info(streams.CALLS)
        assert audio.config.persist_mode == api.PersistMode.ASYNC
        assert calls.config.persist_mode in (None, api.PersistMode.DEFAULT)
        await b.js.delete_stream(streams.AUDIO)
        old = streams.stream_configs(streams.Retention())[1]
        old.persist_mode = None
        await b.js.add_stream(old)
        await streams.ensure_streams(b.js)  # no error: kept as it is
        assert (await b.js.stream_info(streams.AUDIO)).config.persist_mode is None
        await b.close()
    finally:
        server.stop()


async def test_streams_take_more_consumers_than_the_servers_default_thousand(bus: Bus) -> None:
    """nats-server 2.15 caps a stream at 1000 consumers unless it sets its own limit: 200 calls
    starting together hold more than that (three CALLS tails a call, and the workers')."""
    for name in (streams.CALLS, streams.AUDIO):
        info = await bus.js.stream_info(name)
        assert info.config.max_consumers == streams.MAX_CONSUMERS
    tails = [
        bus.tail(streams.CALLS, [subjects.all_of(subjects.new_call_id())], name=f"t{n}")
        for n in range(1100)
    ]
    try:
        await asyncio.gather(*(tail.start() for tail in tails))
        info = await bus.js.stream_info(streams.CALLS)
        assert info.state.consumer_count >= 1100
    finally:
        await asyncio.gather(*(tail.close() for tail in tails))
