"""Parity: `trade` cycles through the live broker on the strict Binance spot double make the paper broker's trades.

Both run the execute job bar by bar over the same real bars with the same release, at Binance spot's real fee
(0.1 % per side) and amount step (0.00001 BTC). Spot cannot be shorted, so the paper broker is given the live
broker's reading of a short signal: close a long, never open a short. The trades must match in entry and exit
times and exit reasons, in prices to the venue's tick, in quantities to its step and commission.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.config import load_settings
from scalpbot.jobs.cycle import run_cycle
from scalpbot.state.history import MemoryHistory
from scalpbot.state.ledger import Ledger
from scalpbot.wiring import build_executor, build_services, paper_broker

from support.broker_venue import running_venue
from support.live_helpers import SpotPaper
from support.trained import LOOSE_RISK

pytestmark = pytest.mark.slow

BINANCE_SPOT_FEE = 0.001
BARS = 300


def test_trade_cycles_through_the_live_broker_on_the_strict_double_make_the_paper_brokers_trades(
    active_release: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = {
        "store": {"url": str(active_release[0])},
        "risk": LOOSE_RISK,
        "venue": {"taker_fee": BINANCE_SPOT_FEE},
        "backtest": {"slippage": 0.0},
    }
    services = build_services(load_settings(None, overrides))
    series = services.series()
    with running_venue(monkeypatch) as venue:
        first = venue.decided()
        bars = services.dataset.read(
            series, first - pd.Timedelta(days=1), first + pd.Timedelta(minutes=BARS + 1)
        )
        history = MemoryHistory(bars)
        live = build_executor(
            services,
            series,
            bot="parity-live",
            bars=history,
            notifier=ConsoleNotifier(),
            broker=venue.broker(),
        )
        paper = build_executor(
            services,
            series,
            bot="parity-paper",
            bars=history,
            notifier=ConsoleNotifier(),
            broker=SpotPaper(
                paper_broker(
                    services.store, services.settings, bot="parity-paper", series=series, bars=history
                )
            ),
        )
        for _ in range(BARS):
            bar = venue.decided()
            assert run_cycle(live, bar).status == "ok"
            assert run_cycle(paper, bar).status == "ok"
            venue.server.advance_bar()
        assert all(o.status != "PARTIALLY_FILLED" for o in venue.server.orders())

    got = Ledger(services.store, "parity-live").trades()
    want = Ledger(services.store, "parity-paper").trades()

    assert len(want) >= 5, "the eager release should trade several times in the stretch"
    assert list(got["entry_time"]) == list(want["entry_time"])
    assert list(got["exit_time"]) == list(want["exit_time"])
    assert list(got["exit_reason"]) == list(want["exit_reason"])
    assert (got["side"] == 1).all()
    tick = 0.01
    assert got["entry_price"].to_numpy() == pytest.approx(want["entry_price"].to_numpy(), abs=tick)
    assert got["exit_price"].to_numpy() == pytest.approx(want["exit_price"].to_numpy(), abs=tick)
    # live: size x equity / last close, less the commission taken in BTC, rounded down to the 0.00001 step;
    # paper: size x cash / fill, unrounded. Fees: 0.1 % of each side's notional, plus the sub-step dust.
    step = 0.00001
    assert got["qty"].to_numpy() == pytest.approx(want["qty"].to_numpy(), rel=2e-3, abs=2 * step)
    dust = 2 * step * got["entry_price"].to_numpy()
    assert got["fees"].to_numpy() == pytest.approx(want["fees"].to_numpy(), rel=2e-3, abs=dust.max())
