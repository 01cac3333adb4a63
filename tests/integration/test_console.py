"""The call console against real NATS and PostgreSQL: nobody gets in without credentials;
an agent never receives a caller's full number, by any route; the live feed shows a call while
it runs; a call's audio plays from the streams, then from its archived MP3."""

from __future__ import annotations

import gzip
import io
import json
import re
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from archive_support import FakeCall
from console_support import AGENT, SUPERVISOR, TOKEN, basic, read_events, serving
from test_archive import options, projected
from test_archiver import config

from archiver import archive
from events.bus import Bus
from voicebot.servers import NatsServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NUMBER = "0612345678"
# The number however it travels: as registered, as said, as a slot.
FULL = re.compile(r"0?6[ .]?12[ .]?34[ .]?56[ .]?78|612345678")
ZERO = "00000000-0000-0000-0000-000000000000"


async def numbered_call(bus: Bus, *, end: bool = True) -> FakeCall:
    """A call whose number is everywhere: registered, said, understood, read back."""
    call = FakeCall(bus, caller=NUMBER)
    await call.start()
    await call.bot_says(0.6, phrase="ask_identity")
    await call.decide("IDENTIFICATION")
    await call.caller_says("Pierre Dupont, 06 12 34 56 78.", 0.8)
    await call.bot_says(0.6, text="Votre numéro est le 06.12.34.56.78, c'est bien ça ?")
    await call.decide(
        "CONFIRM_PHONE",
        text="Pierre Dupont, 06 12 34 56 78.",
        intent="inform",
        slots={"name": "Pierre Dupont", "phone": NUMBER},
        say_ms=420.0,
    )
    if end:
        await call.decide("CLOSED", outcome="solved")
        await call.end()
    return call


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic " + "Ym9iOndyb25n", "Bearer wrong-token", "Digest x", "Basic !!!"],
    ids=["none", "wrong-password", "wrong-token", "other-scheme", "garbage"],
)
async def test_every_route_refuses_a_request_without_valid_credentials(
    nats_server: NatsServer, bus: Bus, database_url: str, authorization: str | None
) -> None:
    routes = [
        "/",
        "/static/live.js",
        "/calls/" + ZERO,
        "/api/me",
        "/api/live",
        "/api/calls",
        f"/api/calls/{ZERO}",
        f"/api/calls/{ZERO}/live",
        f"/api/calls/{ZERO}/waveform",
        f"/api/calls/{ZERO}/audio",
        f"/api/calls/{ZERO}/export",
    ]
    headers = {"Authorization": authorization} if authorization else {}
    async with serving(nats_server.url, database_url) as console, aiohttp.ClientSession() as http:
        for route in routes:
            async with http.get(console.url + route, headers=headers) as r:
                assert r.status == 401, route
                assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
                assert "Voicebot" not in await r.text() or route == "/"
        # The same routes with credentials: in (a call that does not exist is a 404).
        async with http.get(console.url + "/api/me", headers=basic(AGENT)) as r:
            assert r.status == 200 and (await r.json())["role"] == "agent"
        async with http.get(
            console.url + "/api/me", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as r:
            assert r.status == 200
        async with http.get(console.url + f"/api/calls/{ZERO}", headers=basic(SUPERVISOR)) as r:
            assert r.status == 404


async def test_an_agent_never_receives_the_full_number(
    nats_server: NatsServer, bus: Bus, database_url: str
) -> None:
    agent, supervisor = basic(AGENT), basic(SUPERVISOR)
    timeout = aiohttp.ClientTimeout(total=20)
    async with (
        serving(nats_server.url, database_url) as console,
        aiohttp.ClientSession(timeout=timeout) as http,
    ):
        live_agent = await http.get(console.url + "/api/live", headers=agent)
        live_supervisor = await http.get(console.url + "/api/live", headers=supervisor)
        call = await numbered_call(bus, end=False)
        cid = call.call_id
        # The live feed shows the call while it runs, its caller masked for everyone; an
        # agent gets no full number at all, a supervisor the words as they were said.
        seen = await read_events(live_agent, "CONFIRM_PHONE")
        assert cid in seen and '"caller":"06••••••78"' in seen and not FULL.search(seen)
        seen = await read_events(live_supervisor, "CONFIRM_PHONE")
        assert '"caller":"06••••••78"' in seen and "06 12 34 56 78" in seen
        live_agent.close()
        live_supervisor.close()
        page = await http.get(console.url + f"/api/calls/{cid}/live", headers=agent)
        first = await read_events(page, "CONFIRM_PHONE")
        assert '"live":true' in first.replace(" ", "") and not FULL.search(first)
        await call.decide("CLOSED", outcome="solved")
        await call.end()
        rest = await read_events(page, "event: ended")
        assert "event: ended" in rest and not FULL.search(rest)
        page.close()

        await projected(nats_server.url, database_url, bus)

        bodies = {}
        for route in (
            f"/api/calls/{cid}",
            f"/api/calls?caller={NUMBER}",
            "/api/calls?caller=+33 6 12 34 56 78",
            "/api/calls",
        ):
            async with http.get(console.url + route, headers=agent) as r:
                assert r.status == 200, route
                bodies[route] = await r.text()
            assert not FULL.search(bodies[route]), route
            assert cid in bodies[route], f"{route} does not find the call"
        model = json.loads(bodies[f"/api/calls/{cid}"])
        assert model["caller"] == "06••••••78" and model["phone"] == "06••••••78"
        assert any("06••••••78" in line["text"] for line in model["lines"])
        assert model["call_id"] == cid  # identifiers are left alone

        # A supervisor sees the number, and only a supervisor gets the export file.
        async with http.get(console.url + f"/api/calls/{cid}", headers=supervisor) as r:
            assert (await r.json())["caller"] == NUMBER
        async with http.get(console.url + f"/api/calls/{cid}/export", headers=agent) as r:
            assert r.status == 403 and NUMBER not in await r.text()
        async with http.get(console.url + f"/api/calls/{cid}/export", headers=supervisor) as r:
            assert r.status == 200
            assert r.headers["Content-Disposition"] == f'attachment; filename="{cid}.jsonl.gz"'
            lines = gzip.decompress(await r.read()).decode().splitlines()
        header = json.loads(lines[0])
        assert header["format"] == "voicebot-call" and header["call_id"] == cid
        assert header["audio_in"] > 0 and header["audio_out"] > 0


async def test_a_calls_audio_plays_from_the_streams_then_from_its_mp3(
    nats_server: NatsServer, bus: Bus, database_url: str, tmp_path: Path
) -> None:
    call = await FakeCall(bus).simple()
    await projected(nats_server.url, database_url, bus)
    auth = basic(AGENT)
    url = f"/api/calls/{call.call_id}"
    async with serving(nats_server.url, database_url) as console, aiohttp.ClientSession() as http:
        async with http.get(console.url + url + "/waveform", headers=auth) as r:
            stream = await r.json()
        assert stream["source"] == "stream" and stream["per_s"] == 50
        check_peaks(stream, call)
        async with http.get(console.url + url + "/audio", headers=auth) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "audio/wav"
            wav = await r.read()
        async with http.get(
            console.url + url + "/audio", headers={**auth, "Range": "bytes=44-"}
        ) as r:
            assert (
                r.status == 206
                and r.headers["Content-Range"] == f"bytes 44-{len(wav) - 1}/{len(wav)}"
            )
            assert await r.read() == wav[44:]
        async with http.get(
            console.url + url + "/audio", headers={**auth, "Range": f"bytes={len(wav)}-"}
        ) as r:
            assert r.status == 416

        cfg = config(nats_server.url, database_url, archive_dir=tmp_path / "calls", settle_s=0)
        report = await archive.archive(cfg, options(delete_raw=True), io.StringIO())
        assert report.exit_code == 0 and len(report.archived) == 1
        async with http.get(console.url + url + "/waveform", headers=auth) as r:
            archived = await r.json()
        assert archived["source"] == "mp3"
        check_peaks(archived, call)
        async with http.get(console.url + url + "/audio", headers=auth) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "audio/mpeg"
            assert (await r.read()) == report.archived[0].path.read_bytes()
        async with http.get(console.url + url, headers=auth) as r:
            assert (await r.json())["archived"] is True


def check_peaks(peaks: dict[str, object], call: FakeCall) -> None:
    """Each side is loud where that side spoke, and quiet where only the other did."""
    per_s = int(peaks["per_s"])  # type: ignore[call-overload]
    for side, spoken, other in (
        ("caller", call.caller_pcm, call.bot_pcm),
        ("bot", call.bot_pcm, call.caller_pcm),
    ):
        bars = np.asarray(peaks[side])
        for at, pcm in spoken:
            middle = int((at + len(pcm) / 16000 / 2) * per_s)
            assert bars[middle] > 20, (side, at)
        for at, pcm in other:
            middle = int((at + len(pcm) / 16000 / 2) * per_s)
            assert bars[middle] < 5, (side, "quiet while the other spoke", at)
