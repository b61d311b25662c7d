"""The execute job through the live broker on the strict Binance USDⓈ-M double, over held-out bars with shorts, makes
the trades of ``scalpbot backtest --strategy release``, funding included; and the liquidation guard denies what
the venue would liquidate first.

The release was trained and tuned on bars before 2024-12-25 (see ``support.swap_trained``); the double and the
backtest share one funding series (a fixed pattern of typical rates: the venue's history is not bundled) and
Binance's rules (0.001 BTC step, 100 USDT minimum notional, 0.05 % taker). ``SWAP_PARITY_DAYS`` sets how many
days of the held-out week the parity test trades (the whole week: 7).
"""

from __future__ import annotations

import os
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from scalpbot.state.ledger import Ledger
from scalpbot.wiring import venue_profile

from support.binance_usdm_server import ORDER, running_usdm
from support.liquidation_guard import assert_only_guard_denials, guarded_start, run_guarded_cycles
from support.parity import assert_trades_match, marked_trades, release_backtest_trades, trade_held_out
from support.swap_trained import BINANCE_USDM, HELD_OUT, funding_rates, swap_release, usdm_services

__all__ = ["swap_release"]
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"
)

MINUTE = pd.Timedelta(minutes=1)
DAYS = int(os.environ.get("SWAP_PARITY_DAYS", "1"))


def test_trade_cycles_on_the_binance_usdm_double_over_held_out_bars_make_the_backtests_trades_funding_included(
    swap_release: tuple[Path, str],
    sample_bars: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    store, _ = swap_release
    services = usdm_services(store, sample_bars)
    series = services.series()
    start = pd.Timestamp(HELD_OUT)
    end = start + pd.Timedelta(days=DAYS)
    funding = funding_rates()
    rates = {t: float(r) for t, r in funding.items() if start - MINUTE <= t < end + pd.Timedelta(hours=8)}
    with running_usdm(monkeypatch, funding=rates, start=(start + MINUTE + pd.Timedelta(seconds=5))) as venue:
        trade_held_out(services, venue, venue.broker(leverage=3), bot="usdm-live", start=start, end=end)
        assert venue.book.liquidations == []
        end_ms = int(end.timestamp() * 1000)  # what the last cycle sent fills after the window
        entries = [o for o in venue.book.orders if not o.reduce_only and o.time < end_ms]
        algos = len([a for a in venue.book.algos if a.create_time < end_ms])
        assert len(venue.posts(ORDER)) == len(venue.book.orders) - len(fired_or_liquidated(venue))
    got = marked_trades(services, bot="usdm-live", end=end)
    want = release_backtest_trades(
        capsys,
        store,
        tmp_path / "scalpbot.toml",
        exchange="binanceusdm",
        venue=BINANCE_USDM,
        start=start,
        end=end,
    )

    assert len(want) >= 20 * DAYS and set(want["side"]) == {-1, 1}  # shorts, natively
    assert (want["funding"] != 0).sum() >= 2 * DAYS  # positions held through funding times
    # Both size an entry at the decision bar's close (contracts rounded down to 0.001 BTC) and fill it at the next
    # open; SL/TP at their trigger prices on the tick. Funding: the same settlements (times, rates, prices) on
    # every trade, each rounded to 8 decimals as Binance books it (the kernel's ``funding_step``): equal to 1e-9
    # USDT, and to the settlements recomputed here in decimal as Binance writes them.
    assert_trades_match(got, want, amount_step=BINANCE_USDM["amount_step"])
    opens = services.dataset.read(series, start, end + MINUTE)["open"]
    settled = [_settlements(t, rates, opens) for t in want.itertuples()]
    funding_got, funding_want = got["funding"].to_numpy(), want["funding"].to_numpy()
    venue_rounded = [
        _venue_funding(t.side, t.qty, s) for t, s in zip(want.itertuples(), settled, strict=True)
    ]
    assert np.abs(funding_got - np.array(venue_rounded)).max() < 1e-9
    assert np.abs(funding_want - np.array(venue_rounded)).max() < 1e-9
    events = Ledger(services.store, "usdm-live").events(None, end, kinds=("funding",))
    assert len(events) == (funding_want != 0).sum()
    assert sum(e.payload["amount"] for e in events) == pytest.approx(funding_got.sum(), abs=1e-9)
    # every position was protected on the Algo Service (a stop and a take profit), every exit reduce-only
    assert len(entries) == len(want) and algos == 2 * len(want)
    print(
        f"binance usd-m parity over {DAYS} day(s): {len(want)} trades, {(want['side'] < 0).sum()} short, "
        f"{len(events)} funding settlements ({funding_want.sum():+.6f} USDT), {algos} conditional orders"
    )
    venue_rules = venue_profile(services.store, services.settings, series)
    assert (venue_rules.market_type, venue_rules.amount_step, venue_rules.min_notional) == (
        "swap",
        0.001,
        100.0,
    )


def fired_or_liquidated(venue: Any) -> list[Any]:
    """Return the orders the venue placed itself: triggered conditional orders and liquidations."""
    return [o for o in venue.book.orders if o.client_id.startswith(("autoAlgo_", "autoclose-"))]


def _settlements(trade: Any, rates: dict[pd.Timestamp, float], opens: pd.Series) -> list[tuple[float, float]]:
    """Return ``(open, rate)`` of the funding times a trade held through: after its entry's open, up to and
    including its exit's open (the kernel's rule 8)."""
    entry, exit_ = pd.Timestamp(trade.entry_time), pd.Timestamp(trade.exit_time)
    return [(float(opens[t]), r) for t, r in sorted(rates.items()) if entry < t <= exit_]


def _venue_funding(side: int, qty: float, settled: list[tuple[float, float]]) -> float:
    """Return what a position of ``side x qty`` pays over ``settled``, each settlement rounded as Binance writes
    it (8 decimals, half to even)."""
    paid = Decimal(0)
    for open_, rate in settled:
        amount = (
            Decimal(repr(float(side * qty)))
            * Decimal(f"{open_:.8f}").normalize()
            * Decimal(repr(float(rate)))
        )
        paid += amount.quantize(Decimal("0.00000001"), ROUND_HALF_EVEN)
    return float(paid)


def test_an_entry_whose_stop_lies_beyond_the_liquidation_guard_is_denied(
    swap_release: tuple[Path, str], sample_bars: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = swap_release
    services = usdm_services(store, sample_bars, leverage=125.0, maintenance_margin=0.004)  # 0.4 % away
    start = pd.Timestamp(HELD_OUT)
    with running_usdm(monkeypatch, start=guarded_start(start)) as venue:
        reports = run_guarded_cycles(
            services, venue, venue.broker(leverage=125), bot="usdm-guarded", start=start
        )
        assert venue.book.position is None and venue.book.orders == [] and venue.book.algos == []
        assert venue.book.leverage == 125
    assert_only_guard_denials(services, reports, bot="usdm-guarded")
