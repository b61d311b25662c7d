"""The weekly report that `scalpbot monitor` wrote, opened from the store in headless Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scalpbot.cli.app import main

from support.web import console_errors, screenshot_path, wait_for

pytestmark = pytest.mark.slow


def test_the_stored_report_draws_its_charts_from_the_shared_plotly_without_console_errors(
    operated_store: Path, tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    page = operated_store / "reports" / "alpha" / "2024-12-29" / "report.html"
    assert page.stat().st_size < 500_000  # plotly.js is one shared file beside the reports
    browser.get(page.as_uri())
    for chart in ("equity-chart", "drawdown-chart", "price-chart"):
        wait_for(browser, lambda d, c=chart: d.find_elements(By.CSS_SELECTOR, f"#{c} svg.main-svg"))
    traces = browser.find_elements(By.CSS_SELECTOR, "#equity-chart g.scatterlayer .trace")
    assert len(traces) == 2  # live and simulated equity
    assert browser.find_elements(By.CSS_SELECTOR, "#price-chart .point")
    previous = browser.find_elements(By.CSS_SELECTOR, "td.previous-week")
    assert previous and all(cell.text == "" for cell in previous)  # the bot did not exist a week before
    browser.set_window_size(1280, int(browser.execute_script("return document.body.scrollHeight")) + 40)
    browser.save_screenshot(str(screenshot_path(tmp_path, "weekly-report.png")))
    assert console_errors(browser) == []


def test_a_copied_out_report_stands_alone(operated_store: Path, tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    copy = tmp_path / "out" / "week.html"
    with pytest.raises(SystemExit) as ended:
        main(["--store", str(operated_store), "report", "--bot", "alpha", "--out", str(copy)])
    assert ended.value.code == 0
    assert copy.stat().st_size > 4_000_000  # plotly.js inlined: nothing else to carry along
    browser.get(copy.as_uri())
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#price-chart svg.main-svg"))
    assert console_errors(browser) == []
