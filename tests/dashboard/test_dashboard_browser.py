"""The dashboard in headless Chromium: charts drawn, no console error, a bot halted through the page."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import copy_of
from scalpbot.config import load_settings
from scalpbot.dashboard import build_app
from scalpbot.services import build_services
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore

from support.web import console_errors, headless_chromium, running_app

TOKEN = "page-token-1234"


def screenshot_path(tmp_path: Path, name: str) -> Path:
    """Return where to save a screenshot: ``$SCREENSHOT_DIR`` when set (to look at), else the test's folder."""
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    driver = headless_chromium(tmp_path / "profile")
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Any, seconds: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds).until(condition)


def test_the_page_draws_every_chart_and_halts_a_bot_with_the_token(
    operated_store: Path, tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    store = copy_of(operated_store, tmp_path)
    settings = load_settings(None, {"store": {"url": str(store)}, "serve": {"token": TOKEN}})
    services = build_services(settings)
    with running_app(build_app(services)) as url:
        browser.get(url)
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#bots tr[data-bot]")) == 2)
        for chart in ("equity-chart", "drawdown-chart", "price-chart"):
            _wait(browser, lambda d, c=chart: d.find_elements(By.CSS_SELECTOR, f"#{c} svg.main-svg"))
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#price-chart .point")) > 0)
        assert browser.find_elements(By.CSS_SELECTOR, "#price-chart g.cartesianlayer .trace")
        assert browser.find_elements(By.CSS_SELECTOR, "#decisions tr")
        releases = browser.find_elements(By.CSS_SELECTOR, "#releases tr")
        assert len(releases) == 2 and "current" in " ".join(r.text for r in releases)
        assert "live PnL" in browser.find_element(By.ID, "drift").text
        browser.save_screenshot(str(screenshot_path(tmp_path, "dashboard.png")))
        assert console_errors(browser) == []

        halt = browser.find_element(By.CSS_SELECTOR, 'button[data-bot="beta"][data-action="halt"]')
        halt.click()  # no token typed: refused, nothing changes
        _wait(browser, lambda d: "refused" in d.find_element(By.ID, "status").text)
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.CSS_SELECTOR, 'button[data-bot="beta"][data-action="halt"]').click()
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-bot="beta"] .badge.halted'))
        assert browser.find_elements(By.CSS_SELECTOR, 'button[data-bot="beta"][data-action="resume"]')
        browser.save_screenshot(str(screenshot_path(tmp_path, "dashboard-halted.png")))
        errors = console_errors(browser)
    loaded = PortfolioStore(services.store, "beta").load()
    assert loaded is not None and loaded.snapshot.risk.halted
    assert loaded.snapshot.risk.halt_reason == "halted from the dashboard"
    assert [e.kind for e in Ledger(services.store, "beta").events(kinds=("halt",))] == ["halt"]
    assert [e for e in errors if "401" not in e] == []  # the refused attempt is the only one logged
