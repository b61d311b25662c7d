"""The execute job through the live broker on the strict OKX swap double, over the held-out week with shorts,
makes the trades of ``scalpbot backtest --strategy release``, funding included; and the liquidation guard
denies what the venue would liquidate first.

The release was trained and tuned on bars before 2024-12-25 (see ``support.swap_trained``); the double and the
backtest share one funding series (a fixed pattern of typical rates: the venue's history is not bundled).
``SWAP_PARITY_DAYS`` sets how many days of the week the parity test trades (the whole week: 7).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.jobs.trading import replay
from scalpbot.state.ledger import Ledger
from scalpbot.wiring import venue_profile

from support.cli import run_cli
from support.liquidation_guard import assert_only_guard_denials, guarded_start, run_guarded_cycles
from support.okx_swap_venue import running_okx_swap
from support.parity import assert_trades_match, marked_trades, release_backtest_trades, trade_held_out
from support.swap_trained import HELD_OUT, OKX_SWAP, funding_rates, swap_release, swap_services

__all__ = ["swap_release"]
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"
)

MINUTE = pd.Timedelta(minutes=1)
DAYS = int(os.environ.get("SWAP_PARITY_DAYS", "1"))


def test_trade_cycles_on_the_okx_swap_double_over_the_held_out_week_make_the_backtests_trades_funding_included(
    swap_release: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    store, _ = swap_release
    services = swap_services(store)
    series = services.series()
    start = pd.Timestamp(HELD_OUT)
    end = start + pd.Timedelta(days=DAYS)
    funding = funding_rates()
    rates = {t: float(r) for t, r in funding.items() if start - MINUTE <= t < end + pd.Timedelta(hours=8)}
    with running_okx_swap(
        monkeypatch, funding=rates, start=(start + MINUTE + pd.Timedelta(seconds=5))
    ) as okx:
        trade_held_out(services, okx, okx.broker(leverage=3), bot="swap-live", start=start, end=end)
        assert okx.book.liquidations == []
    got = marked_trades(services, bot="swap-live", end=end)
    want = release_backtest_trades(
        capsys, store, tmp_path / "scalpbot.toml", exchange="okx", venue=OKX_SWAP, start=start, end=end
    )

    assert len(want) >= 20 * DAYS and set(want["side"]) == {-1, 1}  # shorts, natively
    assert (want["funding"] != 0).sum() >= 2 * DAYS  # positions held through funding times
    # Both size an entry at the decision bar's close (contracts rounded down to 0.01 = 0.0001 BTC) and fill it at
    # the next open; SL/TP fill at their trigger prices on the tick in both (the kernel rounds a stop to the venue's
    # tick as the broker does), or at the open of a bar that gaps through them. Quantities to the venue's
    # decimals, fees to its 8 decimals, funding to 1e-9 USDT on every trade.
    assert_trades_match(got, want, amount_step=OKX_SWAP["amount_step"])
    funding_got, funding_want = got["funding"].to_numpy(), want["funding"].to_numpy()
    events = Ledger(services.store, "swap-live").events(None, end, kinds=("funding",))
    assert len(events) == (funding_want != 0).sum()
    assert sum(e.payload["amount"] for e in events) == pytest.approx(funding_got.sum(), abs=1e-9)
    print(
        f"swap parity over {DAYS} day(s): {len(want)} trades, {(want['side'] < 0).sum()} short, "
        f"{len(events)} funding settlements ({funding_want.sum():+.6f} USDT), every quantity, fee and funding equal"
    )
    venue = venue_profile(services.store, services.settings, series)
    assert (venue.market_type, venue.taker_fee, venue.amount_step) == ("swap", 0.0005, 0.0001)


def test_an_entry_whose_stop_lies_beyond_the_liquidation_guard_is_denied(
    swap_release: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = swap_release
    services = swap_services(store, leverage=125.0, maintenance_margin=0.004)  # liquidated 0.4 % away
    start = pd.Timestamp(HELD_OUT)
    with running_okx_swap(monkeypatch, start=guarded_start(start)) as okx:
        reports = run_guarded_cycles(services, okx, okx.broker(leverage=125), bot="guarded", start=start)
        assert okx.book.position is None and okx.book.orders == []
    assert_only_guard_denials(services, reports, bot="guarded")


def test_a_swap_replay_makes_exactly_the_backtests_trades_with_shorts_and_funding(
    swap_release: tuple[Path, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store, _ = swap_release
    services = swap_services(store)
    series = services.series()
    start = pd.Timestamp("2024-12-26T06:00:00Z")
    end = start + pd.Timedelta(hours=12)  # through the 08:00 and 16:00 settlements
    report = replay(services, series, start, end, bot="swap-replay", notifier=ConsoleNotifier())
    assert report.cycles == {"ok": 720}
    config = tmp_path / "scalpbot.toml"
    config.write_text(
        '[exchange]\nid = "okx"\n[data]\nsymbol = "BTC/USDT:USDT"\n[venue]\n'
        + "".join(f"{k} = {v!r}\n" for k, v in OKX_SWAP.items())
    )
    args = ("--config", str(config), "--store", str(store), "backtest", "--strategy", "release",
            "--from", start.isoformat(), "--to", end.isoformat(), "--json")  # fmt: skip
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    want = pd.DataFrame(json.loads(out)["trades"])
    last = end - MINUTE
    last_close = float(services.dataset.read(series, last, end)["close"].iloc[-1])
    got = Ledger(services.store, "swap-replay").trades(start, end, mark_price=last_close, mark_time=last)
    assert len(want) > 50 and set(want["side"]) == {-1, 1} and (want["funding"] != 0).sum() >= 2
    assert [t.isoformat() for t in got["entry_time"]] == [
        pd.Timestamp(t).isoformat() for t in want["entry_time"]
    ]
    assert got["exit_reason"].astype(str).tolist() == want["exit_reason"].tolist()
    for column in ("side", "entry_price", "exit_price", "qty", "fees", "funding", "pnl"):
        assert got[column].to_numpy() == pytest.approx(want[column].to_numpy(), rel=0, abs=1e-9), column
    assert_trades_match(got, want, amount_step=OKX_SWAP["amount_step"], money=1e-9)
