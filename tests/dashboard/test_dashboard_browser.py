"""The dashboard in headless Chromium: charts drawn, no console error, a bot halted through the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scalpbot.config import load_settings
from scalpbot.dashboard.app import build_app
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore
from scalpbot.wiring import build_services

from support.operated import BASKET, BASKET_BOT, BASKET_LIMITS, copy_of
from support.web import call, console_errors, running_app, screenshot_path
from support.web import wait_for as _wait

pytestmark = pytest.mark.slow

TOKEN = "page-token-1234"


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


def test_the_page_refreshes_by_itself_and_shows_a_bots_denials(
    operated_store: Path, tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    store = copy_of(operated_store, tmp_path)
    settings = load_settings(
        None, {"store": {"url": str(store)}, "serve": {"token": TOKEN, "refresh_seconds": 1}}
    )
    services = build_services(settings)
    with running_app(build_app(services)) as url:
        browser.get(url)
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-bot="beta"]'))

        def select_beta(d: Any) -> bool:
            d.find_element(By.CSS_SELECTOR, 'tr[data-bot="beta"]').click()  # again if a refresh replaced it
            return bool(d.find_element(By.ID, "bot-name").text == "beta")

        _wait(browser, select_beta)
        denied = _wait(
            browser, lambda d: [c.text for c in d.find_elements(By.CSS_SELECTOR, "#decisions td.neg")]
        )
        assert all(text == "denial" for text in denied)
        assert _wait(browser, lambda d: "cool-down" in d.find_element(By.ID, "decisions").text)
        status, _, _ = call(
            f"{url}/api/bots/alpha/halt", method="POST", body={"reason": "elsewhere"}, token=TOKEN
        )
        assert status == 200  # halted by another client: the page shows it without a reload
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-bot="alpha"] .badge.halted'), 10)
        assert browser.find_element(By.ID, "bot-name").text == "beta"  # the selection survives a refresh
        browser.save_screenshot(str(screenshot_path(tmp_path, "dashboard-denials.png")))
        assert console_errors(browser) == []


def test_a_basket_bot_shows_its_portfolio_and_each_symbol_and_charts_the_symbol_clicked(
    basket_store: Path, tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    store = copy_of(basket_store, tmp_path)
    settings = load_settings(
        None, {"store": {"url": str(store)}, "serve": {"token": TOKEN}, "portfolio": dict(BASKET_LIMITS)}
    )
    services = build_services(settings)
    with running_app(build_app(services)) as url:
        browser.get(url)
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-bot="{BASKET_BOT}"]'))
        alpha = browser.find_element(By.ID, "portfolio")
        assert not alpha.is_displayed()  # alpha (one symbol) is selected first: no portfolio section
        browser.find_element(By.CSS_SELECTOR, f'tr[data-bot="{BASKET_BOT}"]').click()
        _wait(browser, lambda d: d.find_element(By.ID, "portfolio").is_displayed())
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-bot="{BASKET_BOT}"]').text
        assert "basket of 2: " in row and " open" in row
        summary = _wait(browser, lambda d: d.find_element(By.ID, "portfolio-summary").text)
        assert "gross exposure" in summary and "of 10,000.00 cap" in summary
        assert "open positions" in summary and "(no max)" in summary
        assert "max_gross_exposure" in summary  # the denials by reason
        symbols = browser.find_elements(By.CSS_SELECTOR, "#symbols tr[data-symbol]")
        assert [r.get_attribute("data-symbol") for r in symbols] == list(BASKET)
        assert "selected" in (symbols[0].get_attribute("class") or "")
        assert browser.find_element(By.ID, "bot-name").text == f"{BASKET_BOT} · BTC/USDT"
        for chart in ("equity-chart", "price-chart"):
            _wait(browser, lambda d, c=chart: d.find_elements(By.CSS_SELECTOR, f"#{c} svg.main-svg"))

        def select_eth(d: Any) -> bool:
            d.find_element(By.CSS_SELECTOR, '#symbols tr[data-symbol="ETH/USDT"]').click()
            return bool(d.find_element(By.ID, "bot-name").text == f"{BASKET_BOT} · ETH/USDT")

        _wait(browser, select_eth)
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#price-chart .point")) > 0)
        assert _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#decisions tr"))  # ETH/USDT's own
        assert "mlp" in browser.find_element(By.ID, "releases").text  # the model kind of its releases
        browser.save_screenshot(str(screenshot_path(tmp_path, "dashboard-basket.png")))
        assert console_errors(browser) == []

        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.CSS_SELECTOR, f'button[data-bot="{BASKET_BOT}"][data-action="halt"]').click()
        _wait(
            browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-bot="{BASKET_BOT}"] .badge.halted')
        )
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#symbols .badge.halted")) == 2)
        assert console_errors(browser) == []
    for symbol in BASKET:  # a halt from the page reaches every symbol of the basket
        loaded = PortfolioStore(services.store, BASKET_BOT, symbol).load()
        assert loaded is not None and loaded.snapshot.risk.halted
    assert PortfolioStore(services.store, BASKET_BOT).load() is None  # no single-symbol snapshot made up
