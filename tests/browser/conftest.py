"""Real-browser fixtures: Debian's headless Chromium through Selenium, and the middleware's
pages served on `localhost` (so `Secure` session cookies work over plain HTTP) with the
GitHub and GitLab stand-ins beside them.

Selenium is pointed at Debian's /usr/bin/chromedriver and /usr/bin/chromium explicitly, so
it never downloads a driver. Every test saves a screenshot of each page it visits under
build/screenshots/ (`make screenshots` copies the ones the README shows to docs/screenshots/).
"""

from __future__ import annotations

import base64
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = ROOT / "build" / "screenshots"


@pytest.fixture(scope="session")
def chrome() -> Iterator[WebDriver]:
    """One headless Chromium for the session; each test starts from a blank page, cookies cleared."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Debian's chromium and chromium-driver are missing: scripts/services.sh installs them")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never reach the network for a driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chrome: WebDriver) -> Iterator[WebDriver]:
    chrome.delete_all_cookies()
    yield chrome
    chrome.get("about:blank")
    chrome.delete_all_cookies()


def shoot(driver: WebDriver, name: str) -> Path:
    """Save a screenshot of the current page as build/screenshots/<name>.png, and a half-scale
    one of its top (what the README shows) as build/screenshots/small/<name>.png."""
    (SHOTS / "small").mkdir(parents=True, exist_ok=True)
    file_name = f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"
    path = SHOTS / file_name
    driver.save_screenshot(str(path))
    size = driver.get_window_size()
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 760), "scale": 0.5}
    small = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "clip": clip})
    (SHOTS / "small" / file_name).write_bytes(base64.b64decode(small["data"]))
    return path


class LiveServer:
    """A WSGI app served on localhost:<port> from a thread, for the browser to reach."""

    def __init__(self, app: object, port: int = 0) -> None:
        from werkzeug.serving import make_server

        self._server = make_server("localhost", port, app, threaded=True)  # type: ignore[arg-type]
        self.url = f"http://localhost:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
