"""Parity: `trade` cycles through the live broker on the strict Binance spot double make exactly the trades of
`scalpbot backtest --strategy release` on the same bars.

The live bot runs the execute job bar by bar over a whole held-out day of real bars (in the trained release's
test window, never fitted or tuned on) with the release, against the strict double
at Binance spot's real fee (0.1 % per side, taken in BTC on buys), amount step (0.00001 BTC) and tick. The
backtest reads the same release and bars with the default venue profile. The trades must be equal: entry and exit
times and exit reasons, prices, quantities and fees - to the last unit the venue writes (1e-8).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.config import load_settings
from scalpbot.wiring import build_services

from support.broker_venue import running_venue
from support.parity import closed_trades, trade_bar_by_bar
from support.trained import LOOSE_RISK

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]

HELD_OUT_DAY = datetime(2024, 12, 28, 0, 0, 5, tzinfo=UTC)  # in the release's untouched test window
BARS = 1440
COLUMNS = ["entry_time", "exit_time", "side", "entry_price", "exit_price", "qty", "fees", "exit_reason"]


def test_trade_cycles_through_the_live_broker_on_the_strict_double_equal_the_backtest_trade_for_trade(
    active_release: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store, _ = active_release
    overrides = {"store": {"url": str(store)}, "risk": LOOSE_RISK}
    services = build_services(load_settings(None, overrides))
    with running_venue(monkeypatch, HELD_OUT_DAY + timedelta(minutes=1)) as venue:
        first = trade_bar_by_bar(services, venue, venue.broker(), bot="parity-live", bars=BARS)
        assert all(o.status != "PARTIALLY_FILLED" for o in venue.server.orders())

    got, want = closed_trades(capsys, store, services, bot="parity-live", first=first, bars=BARS)

    assert len(want) >= 5, "the eager release should trade several times in the stretch"
    assert len(set(want["exit_reason"]) & {"sl", "tp", "time", "signal"}) >= 2
    assert set(want["side"]) == {1}  # spot: no short, live or simulated
    pd.testing.assert_frame_equal(
        got[COLUMNS], want[COLUMNS], check_dtype=False, rtol=0, atol=1e-8, check_exact=False
    )
    assert got["pnl"].to_numpy() == pytest.approx(want["pnl"].to_numpy(), abs=1e-8)
