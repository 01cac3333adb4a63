"""Production as an operator runs it: nats-server with nats.conf's users and permissions, every
service as its own process under them, each serving /metrics and /health on its own port, and
every metric the Grafana dashboard draws present there after a call.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from pipeline import environment, scripted_pipeline

from events import codec, schemas, streams, subjects
from events.auth import LOGINS, Login, password_variable
from events.bus import Bus
from events.streams import ensure_streams
from tts_worker.providers.espeak import synthesize_8k
from voicebot.caller import Caller, parse_script
from voicebot.load_follow import connect_once
from voicebot.servers import NatsServer, free_port

pytestmark = [pytest.mark.integration]

PROJECT = Path(__file__).resolve().parents[2]
DASHBOARD = PROJECT / "deploy" / "grafana" / "dashboards" / "voicebot.json"
CALL = "00000000-0000-4000-8000-000000000001"
# Metrics the dashboard takes from exporters and Prometheus itself, not from our services.
EXPORTER_METRICS = {"up", "pg_up", "pg_stat_database_numbackends"}
EXPORTER_PREFIXES = ("gnatsd_",)


@pytest.fixture
def passwords() -> Iterator[dict[str, str]]:
    values = {password_variable(user): f"pw-{user}" for user in LOGINS.values()}
    with environment(values):
        yield values


@pytest.fixture
def secured_nats(tmp_path: Path, passwords: dict[str, str]) -> Iterator[NatsServer]:
    """nats-server with the production nats.conf (its users read their passwords from the
    environment nats-server inherits)."""
    server = NatsServer(store_dir=tmp_path / "nats", port=free_port(), config=PROJECT / "nats.conf")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def admin(secured_nats: NatsServer) -> AsyncIterator[Bus]:
    bus = await Bus.connect(secured_nats.url, "admin", login=Login.from_env("admin"))
    await ensure_streams(bus.js)
    try:
        yield bus
    finally:
        await bus.close()


async def _refused(url: str, service: str, subject: str, body: bytes = b"{}") -> str:
    """Publish as `service`'s user and return the server's error (fails if there is none)."""
    errors: asyncio.Queue[Exception] = asyncio.Queue()

    async def on_error(e: Exception) -> None:
        errors.put_nowait(e)

    login = Login.from_env(service)
    nc = await nats.connect(
        url, error_cb=on_error, allow_reconnect=False, **login.connect_options(url)
    )
    try:
        await nc.publish(subject, body)
        await nc.flush(timeout=2)
        error = await asyncio.wait_for(errors.get(), timeout=2)
    except TimeoutError:
        return "accepted: the server reported no error"
    finally:
        await nc.close()
    return str(error)


@pytest.mark.timeout(30)
async def test_each_service_may_publish_only_its_own_subjects(
    secured_nats: NatsServer, admin: Bus
) -> None:
    url = secured_nats.url
    forbidden = [
        ("edge", subjects.decision(CALL)),  # the edge cannot decide
        ("edge", subjects.event(CALL, "claimed")),  # nor fake a worker's claim
        ("edge", "$JS.API.STREAM.UPDATE.CALLS"),  # nor shorten the calls' history
        ("brain", subjects.audio_out(CALL)),  # the brain speaks through the TTS only
        ("brain", subjects.event(CALL, "started")),
        ("stt_worker", subjects.say(CALL)),
        ("tts_worker", subjects.transcript(CALL)),
        ("tts_worker", "$JS.API.CONSUMER.DELETE.CALLS.brain-claims"),  # nor drop another's calls
        ("tts_worker", "$JS.ACK.CALLS.brain-claims.1.1.1.1.1"),
        ("archiver", subjects.event(CALL, "started")),
        ("archiver", "$JS.API.STREAM.PURGE.CALLS"),
        ("tracer", subjects.control(CALL)),  # people's tools only read
        ("tracer", subjects.audio_in(CALL)),
    ]
    before = (await admin.js.stream_info(streams.CALLS)).state.messages
    errors = await asyncio.gather(*(_refused(url, s, subject) for s, subject in forbidden))
    for (service, subject), error in zip(forbidden, errors, strict=True):
        assert "permissions violation" in error.lower(), (service, subject, error)
        assert subject.lower() in error.lower(), (service, error)
    info = await admin.js.stream_info(streams.CALLS)
    assert info.state.messages == before  # nothing refused was stored
    assert info.config.max_age == pytest.approx(90 * 86_400)

    # What the contract gives them still goes through, acknowledged by the stream.
    started = schemas.Started(call_id=CALL, ts=time.time(), edge="e1")
    edge = await Bus.connect(url, "edge", login=Login.from_env("edge"))
    brain = await Bus.connect(url, "brain", login=Login.from_env("brain"))
    try:
        assert await edge.publish(subjects.event(CALL, "started"), started) > 0
        say = schemas.Say(call_id=CALL, ts=time.time(), utterance_id="u1", phrase="welcome")
        assert await brain.publish(subjects.say(CALL), say) > 0
    finally:
        await edge.close()
        await brain.close()
    # Anonymous clients are not let in at all (the protocol by hand: nats-py leaks the socket
    # of a refused connection).
    reader, writer = await asyncio.open_connection("127.0.0.1", secured_nats.port)
    try:
        await asyncio.wait_for(reader.readline(), timeout=2)  # INFO
        writer.write(b'CONNECT {"verbose":false}\r\nPING\r\n')
        answer = await asyncio.wait_for(reader.readline(), timeout=2)
    finally:
        writer.close()
        await writer.wait_closed()
    assert b"Authorization Violation" in answer


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def dashboard_metrics() -> set[str]:
    names: set[str] = set()
    for panel in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]:
        for target in panel.get("targets", []):
            # Label matchers, groupings and ranges out; what is left is functions and metrics.
            expr = re.sub(r"\{[^}]*\}|\bby\s*\([^)]*\)|\[[^\]]*\]", " ", target["expr"])
            names |= set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr))
    return names


def exposed(text: str) -> set[str]:
    """Metric names a scrape offers: families (HELP lines, even with no sample yet) and samples."""
    names = set(re.findall(r"^# HELP (\S+)", text, re.MULTILINE))
    names |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.MULTILINE))
    return names


def test_the_dashboard_reads_only_known_metrics() -> None:
    """The parser below finds the metrics of every panel (a check that the check works)."""
    names = dashboard_metrics()
    assert "voicebot_edge_turn_latency_seconds_bucket" in names
    assert "voicebot_edge_local_phrases_total" in names
    assert all(
        n.startswith("voicebot_") or n in EXPORTER_METRICS or n.startswith(EXPORTER_PREFIXES)
        for n in names
    ), names


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_call_under_production_permissions_fills_the_dashboard(
    secured_nats: NatsServer, admin: Bus, database_url: str, tmp_path: Path
) -> None:
    lines = ["Bonjour, j'ai un problème avec ma connexion.", "Pierre Dupont, 06 12 34 56 78."]
    script = "".join(f"say: {line}\n" for line in lines) + "hangup\n"
    ports = {
        name: free_port()
        for name in ("METRICS_PORT", "STT_METRICS_PORT", "BRAIN_METRICS_PORT", "TTS_METRICS_PORT")
    }
    async with scripted_pipeline(
        secured_nats.url, database_url, tmp_path, lines, **{k: str(v) for k, v in ports.items()}
    ) as (pipeline_ports, _dg):
        caller = Caller(
            "127.0.0.1",
            pipeline_ports.audiosocket,
            parse_script(script),
            synth=lambda text: synthesize_8k(text, "fr", 170),
            record=tmp_path / "bot.wav",
            turn_timeout_s=20,
        )
        result = await caller.run()
        # The call's end reaches the edge's metrics a moment after the caller hung up.
        deadline = time.monotonic() + 10
        scrapes: dict[str, str] = {}
        while True:
            for name, port in ports.items():
                status, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
                assert status == 200, name
                scrapes[name] = body.decode()
            if 'voicebot_edge_calls_total{outcome="hangup"}' in scrapes["METRICS_PORT"]:
                break
            assert time.monotonic() < deadline, "the call's end never reached the metrics"
            await asyncio.sleep(0.2)
        health = {
            name: await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/health")
            for name, port in ports.items()
        }
    history = await admin.history(subjects.all_of(result.call_id))
    events = [e.event for e in history]
    # The call went through every service, each speaking as its own NATS user.
    assert any(isinstance(e, schemas.Final) for e in events)
    decisions = [e for e in events if isinstance(e, schemas.Decision)]
    path = [d.state_to for d in decisions if d.state_to != d.state_from]
    assert path[:3] == ["WELCOME", "IDENTIFICATION", "DIAGNOSTIC"], path
    assert any(isinstance(e, schemas.PlaybackStarted) for e in events)
    assert all(codec.tag_of(e) for e in events)
    for name, (status, body) in health.items():
        report = json.loads(body)
        assert status == 200 and report["status"] == "ok", (name, report)
        assert report["checks"]["nats"] is True

    offered = set().union(*(exposed(text) for text in scrapes.values()))
    missing = {
        name
        for name in dashboard_metrics()
        if name.startswith("voicebot_")
        and name not in offered
        and re.sub(r"_(bucket|count|sum)$", "", name) not in offered
    }
    assert not missing, f"the dashboard draws metrics no service serves: {sorted(missing)}"
    # And the ones a call must have moved, moved.
    edge = scrapes["METRICS_PORT"]
    assert re.search(r'voicebot_edge_turn_latency_seconds_count\{after="speech"\} [1-9]', edge)
    assert re.search(r'voicebot_edge_turn_latency_seconds_count\{after="start"\} 1\.0', edge)
    assert re.search(r"voicebot_edge_dead_air_seconds_count [1-9]", edge)
    assert re.search(r"voicebot_brain_answer_seconds_count [1-9]", scrapes["BRAIN_METRICS_PORT"])
    brain = scrapes["BRAIN_METRICS_PORT"]
    assert re.search(r'voicebot_nats_connected\{service="brain"\} 1\.0', brain)


@pytest.mark.timeout(30)
async def test_a_test_caller_refused_by_nats_hears_why_at_once(secured_nats: NatsServer) -> None:
    # `voicebot call` from a checkout without the server's passwords: one quiet attempt, not
    # a warning every 250 ms for the whole call.
    wrong = Login(user="tracer", password="not-the-password")
    started = time.monotonic()
    with pytest.raises(Exception, match="Authorization Violation"):
        await connect_once(secured_nats.url, wrong, "voicebot-call-probe")
    assert time.monotonic() - started < 3.5
    nc = await connect_once(secured_nats.url, Login.from_env("tracer"), "voicebot-call-probe")
    await nc.close()
    with pytest.raises(ConnectionRefusedError, match="nothing listens"):
        await connect_once(f"nats://127.0.0.1:{free_port()}", wrong, "voicebot-call-probe")
