"""The execute job through the live broker on the strict OKX spot double: a refused protection within the cycle,
and parity with `scalpbot backtest --strategy release` (SL/TP attached to the entry instead of Binance's OCO after
the fill).

Both run on a venue profile with OKX's BTC-USDT rules (lot 0.00000001 BTC, tick 0.1 USDT, minimum 0.00001 BTC,
0.1 % taker fee taken in BTC on buys); spot cannot be shorted.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalpbot.config import load_settings
from scalpbot.errors import ConfigError
from scalpbot.jobs.cycle import run_cycle
from scalpbot.state.history import MemoryHistory
from scalpbot.state.ledger import Ledger
from scalpbot.wiring import build_executor, build_services, live_broker

from support.broker_venue import NOW
from support.cli import run_cli
from support.live_helpers import RecordingNotifier
from support.okx_server import KEY, PASSPHRASE, SECRET
from support.okx_venue import running_okx
from support.parity import STAMP, closed_trades, trade_bar_by_bar
from support.trained import active_services

pytestmark = pytest.mark.slow

OKX_SPOT = {
    "taker_fee": 0.001,
    "amount_step": 0.00000001,
    "price_tick": 0.1,
    "min_amount": 0.00001,
    "min_notional": 0.0,
}
BARS = 300


def test_a_refused_attached_stop_leaves_the_bot_flat_within_the_cycle_with_an_error_event(
    active_release: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = active_services(active_release[0], OKX_SPOT)
    notifier = RecordingNotifier()
    with running_okx(monkeypatch) as okx:
        bars = services.dataset.read(
            services.series(), pd.Timestamp("2024-11-30", tz="UTC"), pd.Timestamp("2024-12-02", tz="UTC")
        )
        executor = build_executor(
            services, services.series(), bot="okx-refused", bars=MemoryHistory(bars), notifier=notifier,
            broker=okx.broker(),
        )  # fmt: skip
        okx.server.book.shift_after_fill = Decimal("0.97")  # the price falls 3 % right after the entry fill
        for _ in range(30):
            report = run_cycle(executor, okx.decided())
            if any(a.intent == "entry" and a.status == "accepted" for a in report.acks):
                break
            okx.server.advance_bar()
        else:
            raise AssertionError("the eager release never went long in 30 bars")

        assert [(a.intent, a.status) for a in report.acks][-1] == ("exit", "accepted")
        assert [a.state for a in okx.server.book.algos] == ["canceled"]
        entry, sold = okx.server.orders()
        assert sold.side == "sell" and sold.sz == (entry.filled - entry.fee).quantize(Decimal("0.00000001"))
    errors = [e for e in Ledger(services.store, "okx-refused").events() if e.kind == "error"]
    assert [e.payload["where"] for e in errors] == ["protection"]
    assert "51280" in str(errors[0].payload["message"])
    assert [level for subject, _, level in notifier.sent if "protection refused" in subject] == ["error"]


def test_trade_cycles_through_the_live_broker_on_the_okx_double_equal_the_backtest_trade_for_trade(
    active_release: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store, _ = active_release
    services = active_services(store, OKX_SPOT)
    for name, value in OKX_SPOT.items():  # the backtest reads OKX's rules from the configuration
        monkeypatch.setenv(f"SCALPBOT_VENUE__{name.upper()}", str(value))
    start = _stretch_firing_both_barriers(capsys, store)
    with running_okx(monkeypatch, start) as okx:
        first = trade_bar_by_bar(services, okx, okx.broker(), bot="okx-live", bars=BARS)
        assert all(a.state in ("live", "effective", "canceled") for a in okx.server.book.algos)

    got, want = closed_trades(capsys, store, services, bot="okx-live", first=first, bars=BARS)

    assert len(want) >= 5, "the eager release should trade several times in the stretch"
    assert {"sl", "tp"} <= set(want["exit_reason"])  # both barriers of the attached protection fired
    assert set(want["side"]) == {1}
    exact = ["entry_time", "exit_time", "side", "entry_price", "exit_price", "exit_reason"]
    pd.testing.assert_frame_equal(got[exact], want[exact], check_dtype=False, rtol=0, atol=1e-9)
    # OKX's lot is the coin's last unit (1e-8 BTC): the commission it takes in BTC, written to 1e-8, can leave
    # one unit more than the kernel's floor(qty x (1 - fee)); nothing else differs. That unit moves the cash by
    # a fraction of a cent, and a market buy spends size x cash floored to the price tick (0.1 USDT): where
    # size x cash lies that close to a tick, the two floors are one tick apart, one tick's worth of BTC.
    unit = OKX_SPOT["amount_step"]
    tick = OKX_SPOT["price_tick"] / want["entry_price"].to_numpy()
    assert np.all(np.abs(got["qty"].to_numpy() - want["qty"].to_numpy()) <= 1.5 * unit + tick)
    worth = 1.5 * unit * float(want["exit_price"].max())  # that unit in USDT
    assert got["fees"].to_numpy() == pytest.approx(want["fees"].to_numpy(), rel=0, abs=worth)
    assert got["pnl"].to_numpy() == pytest.approx(want["pnl"].to_numpy(), rel=0, abs=worth)


def test_the_configured_okx_broker_trades_through_the_api_url_with_key_secret_and_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_okx(monkeypatch) as okx:
        exchange = {
            "id": "okx",
            "api_url": okx.server.url,
            "api_key": KEY,
            "secret": SECRET,
            "timeout_ms": 2000,
        }
        unsigned = build_services(
            load_settings(None, {"store": {"url": str(tmp_path)}, "exchange": exchange})
        )
        broker = live_broker(unsigned, unsigned.series(), bot="wired")
        with pytest.raises(ConfigError, match="rejected the API credentials"):
            broker.snapshot(okx.bars(), None)  # no passphrase: refused before any private request is signed

        settings = load_settings(
            None,
            {
                "store": {"url": str(tmp_path)},
                "exchange": {**exchange, "password": PASSPHRASE},
                "venue": OKX_SPOT,
            },
        )
        services = build_services(settings)
        broker = live_broker(services, services.series(), bot="wired")
        acks = broker.submit(okx.signal(1), broker.snapshot(okx.bars(), None))

    assert [(a.intent, a.status) for a in acks] == [
        ("entry", "accepted"),
        ("sl", "accepted"),
        ("tp", "accepted"),
    ]
    assert services.series().exchange == "okx" and len(okx.server.book.algos) == 1


def _stretch_firing_both_barriers(capsys: pytest.CaptureFixture[str], store: Path) -> datetime:
    """Return the venue's clock for the first ``BARS``-bar stretch of the 24 hours from ``NOW`` in which the
    release's backtest closes trades on both its stop loss and its take profit: 5 s into the bar whose open fills
    the stretch's first entry (the decision bar, just closed, is the one before).

    The stretch starts at an entry of that backtest: the live bot starts flat there, as the backtest of the
    stretch does. Read from the release, so the test keeps its point whatever the shared release trades.
    """
    since = pd.Timestamp(NOW).floor("1min")
    window = ("--from", since.strftime(STAMP), "--to", (since + pd.Timedelta(days=1)).strftime(STAMP))
    code, out, err = run_cli(
        capsys, "--store", str(store), "backtest", "--strategy", "release", *window, "--json"
    )
    assert code == 0, err
    trades = pd.DataFrame(json.loads(out)["trades"])
    entries, exits = pd.to_datetime(trades["entry_time"]), pd.to_datetime(trades["exit_time"])
    for entry in entries:
        inside = trades.loc[(entries >= entry) & (exits < entry + pd.Timedelta(minutes=BARS - 1))]
        if {"sl", "tp"} <= set(inside["exit_reason"]):
            return (entry + pd.Timedelta(seconds=5)).to_pydatetime()
    raise AssertionError(f"the release's backtest from {since} never fires both barriers in {BARS} bars")
