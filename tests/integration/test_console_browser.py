"""The call console in a real headless browser (Debian's chromium through chromedriver), on a
whole `voicebot up` pipeline: a call placed through the AudioSocket port appears on the live
page while it runs; after the hang-up its page shows what was said, the dialog's states, the
latency bars and an audio element that plays with the timeline following; the search finds
it; an agent's browser never holds the caller's full number.

CONSOLE_SCREENSHOTS=docs writes the two screenshots of the README to docs/ (else tmp_path)."""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from browser import chromium, missing
from console_support import AGENT, SUPERVISOR, TOKEN, USERS
from pipeline import scripted_pipeline

from tts_worker.providers.espeak import synthesize_8k
from voicebot.caller import Caller, parse_script
from voicebot.servers import NatsServer, free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(missing() is not None, reason=str(missing())),
]

ROOT = Path(__file__).resolve().parents[2]
NUMBER = "0612345678"
SCRIPT = """\
say: Bonjour, j'ai un problème avec ma connexion.
say: Pierre Dupont, 06 12 34 56 78.
say: Je voudrais parler à un conseiller.
"""


def wait_for(check: Callable[[], Any], within_s: float, what: str) -> Any:
    """Poll `check` (a browser query) until it returns something true, or fail saying what."""
    deadline = time.monotonic() + within_s
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def text(driver: Any, selector: str) -> str | None:
    """An element's text in one step (the live page redraws its rows: no stale handles)."""
    found: str | None = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;", selector
    )
    return found


def screenshot(driver: Any, path: Path) -> None:
    """The whole page, not only the window."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, max(900, min(int(height) + 20, 3000)))
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)


def shots_dir(tmp_path: Path) -> Path:
    wanted = os.environ.get("CONSOLE_SCREENSHOTS")
    return (ROOT / wanted) if wanted else tmp_path


async def test_a_placed_call_on_the_console(
    nats_server: NatsServer, database_url: str, tmp_path: Path
) -> None:
    steps = parse_script(SCRIPT)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    shots = shots_dir(tmp_path)
    async with scripted_pipeline(
        nats_server.url,
        database_url,
        tmp_path,
        [s.arg for s in steps],
        CONSOLE_PORT=str(port),
        CONSOLE_METRICS_PORT="0",
        CONSOLE_USERS=USERS,
        CONSOLE_TOKEN=TOKEN,
        CONSOLE_LIVE_INTERVAL_S="0.2",
    ) as (ports, _):
        caller = Caller(
            "127.0.0.1",
            ports.audiosocket,
            steps,
            synth=lambda text: synthesize_8k(text, "fr", 170),
            out=io.StringIO(),
        )
        cid = caller.call_id
        async with aiohttp.ClientSession() as http:  # as the dialplan registers the caller
            url = f"http://127.0.0.1:{ports.http}/calls/{cid}/caller"
            async with http.put(url, data=NUMBER) as r:
                assert r.status in (200, 204), await r.text()
        with chromium(*SUPERVISOR) as driver:
            driver.get(base + "/")
            wait_for(lambda: driver.find_element("id", "live-status").text == "live", 10, "live")
            call = asyncio.create_task(caller.run())

            def on_live_page() -> None:
                row = f'#live tr[data-call-id="{cid}"]'
                wait_for(lambda: text(driver, row), 20, "the call's row")
                # Its second line heard and decided on: state, transcript, decision shown.
                wait_for(
                    lambda: "06" in (text(driver, row + " td.said") or ""),
                    30,
                    "the caller's number said, on the live page",
                )
                # The caller's number is masked on the live page, even for a supervisor.
                assert text(driver, row + " td.caller") == "06••••••78"
                assert text(driver, row + " .state")
                assert text(driver, row + " td.decided")
                elapsed = text(driver, row + " td.elapsed") or ""
                assert elapsed.startswith("0:"), elapsed
                screenshot(driver, shots / "console-live.png")

            await asyncio.to_thread(on_live_page)
            result = await asyncio.wait_for(call, 90)
            assert result.hung_up_by == "bot", result
            await asyncio.to_thread(search_finds_it, driver, base, cid)
            await asyncio.to_thread(call_page, driver, base, cid, shots)
        with chromium(*AGENT) as driver:
            await asyncio.to_thread(agent_sees_no_number, driver, base, cid)


def search_finds_it(driver: Any, base: str, cid: str) -> None:
    """By the caller's number written another way; the archiver writes the row on hang-up."""
    driver.get(base + "/")
    field = driver.find_element("css selector", "#search input[name=caller]")
    field.send_keys("+33 6 12 34 56 78")
    row = f'#results tr[data-call-id="{cid}"]'

    def found() -> bool:
        driver.find_element("css selector", "#search button").click()
        time.sleep(0.3)
        return bool(text(driver, row))

    wait_for(found, 15, "the call in the search results")
    shown = text(driver, row) or ""
    assert NUMBER in shown and "transfer" in shown, shown  # a supervisor sees the number


def call_page(driver: Any, base: str, cid: str, shots: Path) -> None:
    driver.get(f"{base}/calls/{cid}")
    css = driver.find_elements
    wait_for(lambda: css("css selector", "#transcript li.caller"), 15, "what the caller said")
    said = [e.text for e in css("css selector", "#transcript li.caller")]
    assert any("problème" in s for s in said) and any("conseiller" in s for s in said), said
    assert css("css selector", "#transcript li.bot"), "what the bot said"
    states = [e.text for e in css("css selector", "#transcript li.state")]
    assert any("WELCOME → IDENTIFICATION" in s for s in states), states
    assert len(css("css selector", "#timeline .state-band")) >= 3
    bars = css("css selector", "#latency .latency-bar")
    assert len(bars) >= 3, "a latency bar per caller turn"
    assert all(
        css(
            "css selector",
            f'#latency .latency-bar[data-turn="{b.get_attribute("data-turn")}"] .seg.stt',
        )
        for b in bars
    )
    wait_for(lambda: css("css selector", "#timeline path.wave.caller"), 20, "the waveforms")
    player = driver.find_element("id", "player")
    wait_for(
        lambda: driver.execute_script(
            "return arguments[0].readyState >= 2 && arguments[0].duration > 1", player
        ),
        20,
        "a playable audio element",
    )
    duration = driver.execute_script("return arguments[0].duration", player)
    facts = driver.find_element("id", "facts").text
    assert "0:" in facts and NUMBER in facts  # a supervisor: the full number
    # It plays (muted), and the timeline follows it.
    driver.execute_script("arguments[0].muted = true; arguments[0].play();", player)
    wait_for(
        lambda: driver.execute_script("return arguments[0].currentTime", player) > 1.0,
        15,
        "playing",
    )
    driver.execute_script("arguments[0].pause();", player)
    x = float(driver.find_element("css selector", "#timeline line.playhead").get_attribute("x1"))
    assert x > 78 + 1.0 * 12, "the playhead follows the audio"
    # A click on the timeline seeks.
    driver.execute_script("Call.seek(arguments[0] / 2)", duration)
    assert (
        abs(driver.execute_script("return arguments[0].currentTime", player) - duration / 2) < 0.5
    )
    link = driver.find_element("id", "export").get_attribute("href")
    assert link.endswith(f"/api/calls/{cid}/export")
    driver.execute_script("arguments[0].currentTime = 0;", player)
    screenshot(driver, shots / "console-call.png")


def agent_sees_no_number(driver: Any, base: str, cid: str) -> None:
    driver.get(f"{base}/calls/{cid}")
    wait_for(lambda: driver.find_elements("css selector", "#transcript li.caller"), 15, "lines")
    text = driver.page_source
    assert "06••••••78" in text and NUMBER not in text and "06 12 34 56 78" not in text
    assert "disabled" in driver.find_element("id", "export").get_attribute("class")
    driver.get(base + "/")
    wait_for(
        lambda: driver.find_elements("css selector", f'#results tr[data-call-id="{cid}"]'),
        15,
        "the call in the list",
    )
    assert NUMBER not in driver.page_source
