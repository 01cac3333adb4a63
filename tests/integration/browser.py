"""A real headless browser for the console's end-to-end tests: Debian's chromium driven
through its chromedriver by selenium. Nothing is downloaded: the driver's path is given, so
selenium's own driver manager never runs. Missing browser: the tests skip, saying why."""

from __future__ import annotations

import base64
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
INSTALL = "apt-get install -y chromium chromium-driver"


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (make setup installs the dev extras)"
    if _first(CHROMIUM) is None:
        return f"no chromium ({INSTALL}; .ci/run does it)"
    if _first(CHROMEDRIVER) is None:
        return f"no chromedriver ({INSTALL}; .ci/run does it)"
    return None


def _first(paths: tuple[str, ...]) -> str | None:
    return next((p for p in paths if Path(p).exists()), None)


@contextmanager
def chromium(user: str | None = None, password: str | None = None) -> Iterator[object]:
    """A headless chromium in a fresh profile; with credentials, every request it makes
    (pages, fetches, event streams, media) carries them as HTTP Basic auth."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _first(CHROMIUM), _first(CHROMEDRIVER)
    assert binary is not None and driver_path is not None, missing()
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        driver.set_page_load_timeout(30)
        if user is not None and password is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd(
                "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
            )
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
