"""The weekly review of a basket: the whole account's metrics from the one ledger equal an independent
recomputation, each symbol has its own review and page, and one notification says both."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.jobs.basket_monitor import basket_payload, monitor_basket
from scalpbot.jobs.monitor import monitor
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore

from support.operated import BASKET, BASKET_BOT, BASKET_HOURS, START, basket_services, copy_of

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]

END = START + pd.Timedelta(hours=BASKET_HOURS)


def _peak_committed(trades: pd.DataFrame, grid: pd.DatetimeIndex) -> float:
    """The most entry notional held at once, checked at every minute of the window (brute force)."""
    held = np.zeros(len(grid))
    for _, trade in trades.iterrows():
        until = grid[-1] + pd.Timedelta(minutes=1) if trade["exit_reason"] == "open" else trade["exit_time"]
        inside = (grid >= trade["entry_time"]) & (grid < until)
        held[inside] += trade["qty"] * trade["entry_price"]
    return float(held.max())


def test_the_portfolio_week_equals_an_independent_recomputation_and_each_symbol_has_its_own(
    basket_store: Path, tmp_path: Path
) -> None:
    services = basket_services(copy_of(basket_store, tmp_path))
    notifier = ConsoleNotifier()
    basket = [services.series(s) for s in BASKET]
    review = monitor_basket(services, basket, bot=BASKET_BOT, days=BASKET_HOURS / 24, notifier=notifier)

    assert (review.start, review.end) == (START, END)
    ledger = Ledger(services.store, BASKET_BOT)
    finals, starts, per_symbol = {}, {}, {}
    for symbol in BASKET:
        stored = PortfolioStore(services.store, BASKET_BOT, symbol).load()
        assert stored is not None
        bars = services.dataset.read(services.series(symbol), START, END)
        marked = ledger.trades(
            symbol=symbol, mark_price=float(bars["close"].iloc[-1]), mark_time=bars.index[-1]
        )
        finals[symbol] = stored.snapshot.equity
        starts[symbol] = stored.snapshot.equity - float(marked["pnl"].sum())
        per_symbol[symbol] = marked
        # each symbol's own review is the one-symbol review of that symbol
        alone = monitor(
            services, services.series(symbol), bot=BASKET_BOT, days=BASKET_HOURS / 24, until=END.to_pydatetime(),
            notifier=ConsoleNotifier(), write_report=False,
        )  # fmt: skip
        assert dict(review.symbols[symbol].week.metrics) == dict(alone.week.metrics)
    everything = pd.concat(per_symbol.values(), ignore_index=True)
    closed = everything.loc[everything["exit_reason"] != "open"]
    m = review.metrics
    assert m["trades"] == len(closed) == sum(r.week.metrics["trades"] for r in review.symbols.values()) > 10
    assert m["win_rate"] == pytest.approx(float((closed["pnl"] > 0).mean()), rel=1e-12)
    wins, losses = closed["pnl"][closed["pnl"] > 0], closed["pnl"][closed["pnl"] < 0]
    assert len(wins) and len(losses)
    assert m["risk_reward"] == pytest.approx(wins.mean() / -losses.mean(), rel=1e-9)
    assert m["total_return"] == pytest.approx(sum(finals.values()) / sum(starts.values()) - 1, rel=1e-9)
    account = review.equity
    assert account.iloc[-1] == pytest.approx(sum(finals.values()), rel=1e-12)
    assert m["max_drawdown"] == pytest.approx(-float((account / account.cummax() - 1).min()), rel=1e-9)
    grid = pd.date_range(START, END, freq="1min", inclusive="left", tz="UTC")
    peak = _peak_committed(everything, grid)
    assert m["return_on_capital"] == pytest.approx(float(everything["pnl"].sum()) / peak, rel=1e-9)
    # both symbols held positions at once: the largest single entry is not the capital the account committed
    assert peak > float((everything["qty"] * everything["entry_price"]).max())

    denials = ledger.events(START, END, kinds=("denial",))
    assert review.denials.total == len(denials) > 0
    day = f"reports/{BASKET_BOT}/{END:%Y-%m-%d}/"
    assert review.report_key == day + "report.html"
    keys = set(services.store.list(day))
    assert {day + f"{s.replace('/', '_')}/report.html" for s in BASKET} <= keys
    page = services.store.get(day + "report.html").data.decode()
    assert 'href="BTC_USDT/report.html"' in page and 'id="symbols"' in page
    assert '<script type="text/javascript" src="../../assets/plotly-' in page
    symbol_page = services.store.get(day + "ETH_USDT/report.html").data.decode()
    assert '<script type="text/javascript" src="../../../assets/plotly-' in symbol_page
    saved = json.loads(services.store.get(day + "metrics.json").data)
    assert [row["symbol"] for row in saved["symbols"]] == list(BASKET)
    assert saved["metrics"]["return_on_capital"] == pytest.approx(m["return_on_capital"])

    weekly = [s for s in notifier.sent if s[1] == f"{BASKET_BOT}: weekly report"]
    assert len(weekly) == 1  # one notification for the basket, not one per symbol
    lines = weekly[0][2].splitlines()
    assert lines[0].startswith("portfolio 2024-12-29..2024-12-29: return ")
    assert [line.split(" ", 1)[0] for line in lines[1:3]] == list(BASKET)
    assert all("risk/reward" in line and "return on capital" in line for line in lines[:3])
    assert lines[3].startswith("denied entries: portfolio ") and lines[4] == f"report {review.report_key}"
    payload = basket_payload(review)
    assert set(payload["symbols"]) == set(BASKET)  # type: ignore[arg-type]
    json.dumps(payload, allow_nan=False)
