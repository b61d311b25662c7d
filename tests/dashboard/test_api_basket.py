"""The dashboard's JSON API on a basket bot: the portfolio (budget, denials by reason) and each symbol's reads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from scalpbot.config import load_settings
from scalpbot.core.portfolio_risk import PortfolioLimits
from scalpbot.dashboard.app import build_app
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore
from scalpbot.state.risk_budget import RiskBudget
from scalpbot.wiring import build_services

from support.operated import BASKET, BASKET_BOT, BASKET_LIMITS, basket_services
from support.web import call, running_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(basket_store: Path) -> Iterator[str]:
    # The server's configuration is a plain one (one symbol, no [portfolio] caps but the basket's): the
    # basket is found in the store.
    settings = load_settings(None, {"store": {"url": str(basket_store)}, "portfolio": dict(BASKET_LIMITS)})
    with running_app(build_app(build_services(settings))) as url:
        yield url


def test_bots_shows_the_basket_with_its_portfolio_and_each_symbol(base: str, basket_store: Path) -> None:
    status, body, _ = call(f"{base}/api/bots")
    assert status == 200 and [b["bot"] for b in body["bots"]] == ["alpha", BASKET_BOT]
    alpha, pair = body["bots"]
    assert "basket" not in alpha and alpha["last_bar"] == "2024-12-29T00:59:00Z"
    services = basket_services(basket_store)
    snapshots = {s: PortfolioStore(services.store, BASKET_BOT, s).load() for s in BASKET}
    assert all(stored is not None for stored in snapshots.values())
    basket = pair["basket"]
    assert basket["symbols"] == list(BASKET) and pair["position"] is None
    assert pair["equity"] == pytest.approx(sum(s.snapshot.equity for s in snapshots.values()))  # type: ignore[union-attr]
    assert pair["last_bar"] == "2024-12-29T02:59:00Z" and pair["status"] == "trading"
    book = RiskBudget(services.store, BASKET_BOT, PortfolioLimits(**BASKET_LIMITS)).load()
    assert book is not None
    budget = basket["budget"]
    assert budget["gross"] == pytest.approx(book.gross) and budget["positions"] == book.positions
    assert budget["gross_cap"] == BASKET_LIMITS["max_gross_notional"] and budget["max_positions"] is None
    assert budget["halted"] is False
    for row in basket["per_symbol"]:
        trades = Ledger(services.store, BASKET_BOT).trades(symbol=row["symbol"])
        assert row["trades"] == len(trades) > 3
        assert row["pnl"] == pytest.approx(float(trades["pnl"].sum()))
        assert row["cycle"]["bar"] == "2024-12-29T02:59:00Z" and row["cycle"]["status"] == "ok"
    assert basket["open_positions"] == sum(1 for row in basket["per_symbol"] if row["position"] is not None)


def test_the_denials_are_counted_by_reason_as_the_ledger_holds_them(base: str, basket_store: Path) -> None:
    _, body, _ = call(f"{base}/api/bots/{BASKET_BOT}/portfolio")
    denials = body["denials"]
    assert (denials["since"], denials["until"]) == ("2024-12-28T03:00:00Z", "2024-12-29T03:00:00Z")
    services = basket_services(basket_store)
    events = Ledger(services.store, BASKET_BOT).events(kinds=("denial",))
    expected = Counter(
        r["code"] for e in events if e.payload.get("scope") == "portfolio" for r in e.payload["reasons"]
    )
    assert denials["by_reason"]["portfolio"] == dict(expected) and sum(expected.values()) > 0
    assert denials["by_symbol"] == dict(Counter(str(e.payload["symbol"]) for e in events))
    assert denials["total"] == len(events)


def test_each_symbols_reads_answer_for_that_symbol_and_a_symbol_outside_the_basket_is_refused(
    base: str, basket_store: Path
) -> None:
    services = basket_services(basket_store)
    for symbol in BASKET:
        quoted = symbol.replace("/", "%2F")
        _, trades, _ = call(f"{base}/api/bots/{BASKET_BOT}/trades?symbol={quoted}")
        expected = Ledger(services.store, BASKET_BOT).trades(symbol=symbol)
        assert trades["symbol"] == symbol and len(trades["trades"]) == len(expected)
        _, held, _ = call(f"{base}/api/bots/{BASKET_BOT}/position?symbol={quoted}")
        stored = PortfolioStore(services.store, BASKET_BOT, symbol).load()
        assert stored is not None and held["equity"] == pytest.approx(stored.snapshot.equity)
        _, equity, _ = call(f"{base}/api/bots/{BASKET_BOT}/equity?days=0.1&symbol={quoted}")
        assert len(equity["equity"]) == 144 and equity["equity"][-1] == pytest.approx(stored.snapshot.equity)
        _, price, _ = call(f"{base}/api/bots/{BASKET_BOT}/price?days=0.1&symbol={quoted}")
        assert len(price["close"]) == 144
        _, events, _ = call(f"{base}/api/bots/{BASKET_BOT}/events?kind=decision&limit=5&symbol={quoted}")
        assert {e["payload"]["symbol"] for e in events} == {symbol}
        _, releases, _ = call(f"{base}/api/releases?symbol={quoted}")
        assert releases["symbol"] == symbol and {r["model_kind"] for r in releases["releases"]} == {"mlp"}
    _, first, _ = call(f"{base}/api/bots/{BASKET_BOT}/cycle")  # no symbol: the basket's first
    assert first["bar"] == "2024-12-29T02:59:00Z" and set(first["events"]) >= {"decision"}
    status, body, _ = call(f"{base}/api/bots/{BASKET_BOT}/trades?symbol=SOL%2FUSDT")
    assert status == 400 and "not in bot pair's basket: BTC/USDT, ETH/USDT" in body["error"]
    status, body, _ = call(f"{base}/api/bots/alpha/trades?symbol=ETH%2FUSDT")
    assert status == 400 and "trades one symbol" in body["error"]
    _, single, _ = call(f"{base}/api/bots/alpha/portfolio")
    assert single == {"bot": "alpha", "symbols": []}
