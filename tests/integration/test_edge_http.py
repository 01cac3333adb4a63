"""The edge's HTTP API: health, readiness, caller registration (guarded), call outcome."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from audiosocket_peer import AudioSocketPeer
from edge_support import Recorder, edge_config, metric, running_edge

from edge.config import EdgeConfig
from edge.http_api import HttpApi, Request
from edge.registry import CallRegistry
from events import schemas, subjects
from events.bus import Bus

REFUSALS = "voicebot_edge_http_refusals_total"


async def http(
    api: HttpApi, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection(*api.address)
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: edge\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        writer.write(head.encode() + b"\r\n" + body)
        await writer.drain()
        async with asyncio.timeout(5):
            raw = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    _, _, body_out = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), body_out.decode()


def request(
    method: str, path: str, peer: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> Request:
    return Request(method, path, headers or {}, body, peer)


CALL = "0b5c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3"
PUT_PATH = f"/calls/{CALL}/caller"


@pytest.mark.integration
@pytest.mark.timeout(20)
async def test_health_ready_caller_and_outcome_over_http(bus: Bus, tmp_path: Path) -> None:
    cfg = edge_config(tmp_path, api_token="s3cret")
    async with running_edge(bus, cfg) as server:
        api = HttpApi(cfg, server)
        await api.start()
        try:
            assert await http(api, "GET", "/health") == (200, "ok\n")
            assert await http(api, "GET", "/ready") == (200, "ready\n")
            assert (await http(api, "GET", f"/calls/{CALL}/outcome"))[0] == 404

            refused = metric(REFUSALS, {"reason": "bad_token"})
            status, _ = await http(
                api, "PUT", PUT_PATH, b"0612345678", {"Authorization": "Bearer wrong"}
            )
            assert status == 403 and metric(REFUSALS, {"reason": "bad_token"}) == refused + 1
            status, _ = await http(
                api, "PUT", PUT_PATH, b"0612345678", {"Authorization": "Bearer s3cret"}
            )
            assert status == 204

            rec = await Recorder.start(bus, CALL)
            peer = await AudioSocketPeer.connect(*server.address, CALL)
            started = await rec.wait_event("event", "started")
            assert started.caller == "0612345678"
            assert await http(api, "GET", f"/calls/{CALL}/outcome") == (200, "pending")

            await bus.publish(
                subjects.control(CALL), schemas.Transfer(call_id=CALL, ts=time.time(), target="n2")
            )
            await peer.wait_closed()
            await rec.wait_event("event", "ended")
            assert await http(api, "GET", f"/calls/{CALL}/outcome") == (200, "transfer:n2")
            await peer.close()
        finally:
            await api.stop()
        assert server.ready


@pytest.mark.integration
@pytest.mark.timeout(20)
async def test_malformed_and_slow_requests_are_answered(bus: Bus, tmp_path: Path) -> None:
    cfg = edge_config(tmp_path)
    api = HttpApi(cfg, CallRegistry())
    await api.start()
    try:
        reader, writer = await asyncio.open_connection(*api.address)
        writer.write(b"NONSENSE\r\n\r\n")
        async with asyncio.timeout(5):
            assert (await reader.read()).startswith(b"HTTP/1.1 400")
        writer.close()
        status, _ = await http(api, "PUT", PUT_PATH, b"x" * 1000)
        assert status == 413
        assert (await http(api, "GET", "/nope"))[0] == 404
    finally:
        await api.stop()


def make_api(**overrides: object) -> HttpApi:
    base = EdgeConfig.from_env({})
    return HttpApi(dataclasses.replace(base, **overrides), CallRegistry())  # type: ignore[arg-type]


def test_without_token_or_allow_list_only_loopback_may_write() -> None:
    api = make_api()
    before = metric(REFUSALS, {"reason": "not_loopback"})
    assert api.handle(request("PUT", PUT_PATH, "192.0.2.7", b"0611")).status == 403
    assert metric(REFUSALS, {"reason": "not_loopback"}) == before + 1
    assert api.handle(request("PUT", PUT_PATH, "127.0.0.1", b"0611")).status == 204
    assert api.handle(request("PUT", PUT_PATH, "::1", b"0611")).status == 204
    assert api.handle(request("POST", PUT_PATH, "::1", b"0611")).status == 204  # CURL()'s verb
    assert api.registry.caller(CALL) == "0611"


def test_allow_list_alone() -> None:
    api = make_api(allowed_peers=("192.0.2.7",))
    assert api.handle(request("PUT", PUT_PATH, "127.0.0.1", b"0611")).status == 403
    assert api.handle(request("PUT", PUT_PATH, "::ffff:192.0.2.7", b"0611")).status == 204


def test_allow_list_and_token_both_required_when_both_set() -> None:
    api = make_api(allowed_peers=("192.0.2.7",), api_token="t")
    good = {"authorization": "Bearer t"}
    assert api.handle(request("PUT", PUT_PATH, "192.0.2.7", b"0611")).status == 403
    assert api.handle(request("PUT", PUT_PATH, "192.0.2.8", b"0611", good)).status == 403
    assert api.handle(request("PUT", PUT_PATH, "192.0.2.7", b"0611", good)).status == 204


def test_token_from_any_address() -> None:
    api = make_api(api_token="t")
    assert (
        api.handle(
            request("PUT", PUT_PATH, "198.51.100.1", b"0611", {"authorization": "Bearer t"})
        ).status
        == 204
    )
    assert api.handle(request("PUT", PUT_PATH, "127.0.0.1", b"0611")).status == 403


@pytest.mark.parametrize("body", [b"", b"06 12; DROP", "é".encode(), b"1" * 41])
def test_caller_body_is_validated(body: bytes) -> None:
    api = make_api()
    assert api.handle(request("PUT", PUT_PATH, "127.0.0.1", body)).status == 400


def test_routes_and_methods() -> None:
    api = make_api()
    assert api.handle(request("POST", "/health", "127.0.0.1")).status == 405
    assert api.handle(request("GET", PUT_PATH, "127.0.0.1")).status == 405
    assert api.handle(request("GET", "/calls/not-a-uuid/outcome", "127.0.0.1")).status == 404
    upper = f"/calls/{CALL.upper()}/outcome"
    api.registry.call_started(CALL)
    assert api.handle(request("GET", upper, "127.0.0.1")).body == "pending"


def test_outcomes_expire_after_their_ttl() -> None:
    now = [0.0]
    reg = CallRegistry(outcome_ttl_s=3600, clock=lambda: now[0])
    call = str(uuid.uuid4())
    reg.call_started(call)
    assert reg.outcome(call) == "pending"
    reg.call_ended(call, "hangup")
    now[0] = 3599
    assert reg.outcome(call) == "hangup"
    now[0] = 3601
    assert reg.outcome(call) is None


@pytest.mark.integration
@pytest.mark.timeout(30)
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None,
    reason="needs root, unshare and ip to make a network namespace with a second address",
)
def test_with_the_defaults_another_host_cannot_register_a_caller() -> None:
    """Over real sockets from an address that is not loopback (a network namespace of our own
    gives its loopback interface a second, TEST-NET address): with neither API_TOKEN nor
    ALLOWED_PEERS, the write endpoint refuses it, and says why at start-up."""
    probe = Path(__file__).with_name("netns_http_probe.py")
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        ["unshare", "--net", sys.executable, str(probe)],
        capture_output=True,
        text=True,
        timeout=25,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["other_host"] == 403 and seen["registered_after_other"] is None
    assert seen["loopback"] == 204 and seen["registered"] == "0612345678"
    assert "loopback clients only" in seen["banner"] and "API_TOKEN" in seen["banner"]
