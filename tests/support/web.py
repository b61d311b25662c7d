"""A real uvicorn server on a free loopback port in a thread, a small HTTP client, and headless Chromium.

Chromium and ChromeDriver are Debian's (``chromium``, ``chromium-driver``; ``make browser`` installs them).
Without them the browser tests skip and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1800",
)


@contextmanager
def running_app(app: Starlette) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port until the block ends; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start within 10 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def call(
    url: str, *, method: str = "GET", body: Any = None, token: str | None = None
) -> tuple[int, Any, dict[str, str]]:
    """Send one request; return the status, the decoded JSON body (or text) and the headers."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw, got = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as e:
        status, raw, got = e.code, e.read(), dict(e.headers)
    text = raw.decode()
    try:
        return status, json.loads(text), got
    except ValueError:
        return status, text, got


def chromium_paths() -> tuple[str, str] | None:
    """Return the Chromium and ChromeDriver executables, or ``None`` when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return None if browser is None or driver is None else (browser, driver)


def headless_chromium(profile: Path) -> Any:
    """Return a Selenium driver on Debian's headless Chromium with the browser console log kept; else skip."""
    paths = chromium_paths()
    if paths is None:
        pytest.skip(
            "no chromium/chromedriver on this machine: run `make browser` (root: apt-get install -y chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=paths[1]))


def console_errors(driver: Any) -> list[str]:
    """Return the browser console's messages of level SEVERE since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot_path(tmp_path: Path, name: str) -> Path:
    """Return where to save a screenshot: ``$SCREENSHOT_DIR`` when set (to look at), else the test's folder."""
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def wait_for(driver: Any, condition: Any, seconds: float = 20) -> Any:
    """Return ``condition(driver)`` once it is truthy; fail after ``seconds``.

    The page redraws itself on every refresh, so an element read by ``condition`` may be replaced while it is
    read: that try is repeated, as a missing element is.
    """
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, seconds, ignored_exceptions=ignored).until(condition)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Yield a headless Chromium driver with its own empty profile; quit it afterwards (skip without one)."""
    driver = headless_chromium(tmp_path / "profile")
    try:
        yield driver
    finally:
        driver.quit()
