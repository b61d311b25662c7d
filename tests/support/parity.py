"""Live-versus-backtest parity: run the execute job bar by bar on a venue double, read both trade lists and
compare them trade for trade."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.core.lots import step_decimals_nb
from scalpbot.jobs.cycle import run_cycle
from scalpbot.jobs.services import Services
from scalpbot.ports import Broker
from scalpbot.state.history import MemoryHistory
from scalpbot.state.ledger import Ledger
from scalpbot.wiring import build_executor

from support.cli import run_cli

STAMP = "%Y-%m-%dT%H:%M:%SZ"


def trade_bar_by_bar(services: Services, market: Any, broker: Broker, *, bot: str, bars: int) -> pd.Timestamp:
    """Run ``bars`` live cycles of ``bot`` through ``broker`` on ``market`` (a venue double: ``decided()``,
    ``server.advance_bar()``), each on the bar that just closed; return the first decision bar."""
    series = services.series()
    first = market.decided()
    window = services.dataset.read(
        series, first - pd.Timedelta(days=1), first + pd.Timedelta(minutes=bars + 1)
    )
    live = build_executor(
        services, series, bot=bot, bars=MemoryHistory(window), notifier=ConsoleNotifier(), broker=broker
    )
    for _ in range(bars):
        assert run_cycle(live, market.decided()).status == "ok"
        market.server.advance_bar()
    return pd.Timestamp(first)


def closed_trades(
    capsys: pytest.CaptureFixture[str],
    store: Path,
    services: Services,
    *,
    bot: str,
    first: pd.Timestamp,
    bars: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(the bot's ledger trades, backtest --strategy release's trades)`` closed on the ``bars`` decision
    bars from ``first``, times as ISO text, side as int and exit reason as str in both."""
    last = first + pd.Timedelta(minutes=bars - 1)  # the last bar a cycle decided on
    window = ("--from", first.strftime(STAMP), "--to", (last + pd.Timedelta(minutes=1)).strftime(STAMP))
    code, out, err = run_cli(
        capsys, "--store", str(store), "backtest", "--strategy", "release", *window, "--json"
    )
    assert code == 0, err
    want = pd.DataFrame(json.loads(out)["trades"])
    want = want.loc[want["exit_reason"] != "open"].reset_index(drop=True)
    trades = Ledger(services.store, bot).trades()
    trades = trades.loc[trades["exit_time"] <= last].reset_index(drop=True)  # closed within the window
    got = trades.assign(
        entry_time=trades["entry_time"].map(lambda t: t.strftime(STAMP)),
        exit_time=trades["exit_time"].map(lambda t: t.strftime(STAMP)),
        exit_reason=trades["exit_reason"].astype(str),
        side=trades["side"].astype(int),
    )
    return got, want


def trade_held_out(
    services: Services, market: Any, broker: Broker, *, bot: str, start: pd.Timestamp, end: pd.Timestamp
) -> None:
    """Run live cycles of ``bot`` through ``broker`` on ``market`` (a venue double started a bar after
    ``start``) on every bar from ``start`` to ``end`` (exclusive), the features warmed up on earlier bars."""
    series = services.series()
    history = MemoryHistory(services.dataset.read_with_warmup(series, start, end, FEATURE_WINDOW))
    live = build_executor(services, series, bot=bot, bars=history, notifier=ConsoleNotifier(), broker=broker)
    while market.decided() < end:  # the last cycle records the last bar's fills; what it sends fills after
        assert run_cycle(live, market.decided()).status == "ok"
        market.server.advance_bar()


def marked_trades(services: Services, *, bot: str, end: pd.Timestamp) -> pd.DataFrame:
    """Return the bot's ledger trades up to ``end``, a position still open marked at the last close before it."""
    last = end - pd.Timedelta(minutes=1)
    last_close = float(services.dataset.read(services.series(), last, end)["close"].iloc[-1])
    return Ledger(services.store, bot).trades(None, end, mark_price=last_close, mark_time=last)


def release_backtest_trades(
    capsys: pytest.CaptureFixture[str],
    store: Path,
    config: Path,
    *,
    exchange: str,
    venue: dict[str, Any],
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> pd.DataFrame:
    """Return the trades of ``backtest --strategy release`` over ``[start, end)`` on ``exchange``'s
    BTC/USDT:USDT swap with the venue rules ``venue`` (written to the config file ``config``)."""
    config.write_text(
        f'[exchange]\nid = "{exchange}"\n[data]\nsymbol = "BTC/USDT:USDT"\n[venue]\n'
        + "".join(f"{k} = {v!r}\n" for k, v in venue.items())
    )
    args = ("--config", str(config), "--store", str(store), "backtest", "--strategy", "release",
            "--from", start.isoformat(), "--to", end.isoformat(), "--json")  # fmt: skip
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    return pd.DataFrame(json.loads(out)["trades"])


def assert_trades_match(
    got: pd.DataFrame,
    want: pd.DataFrame,
    *,
    amount_step: float,
    money: float = 2e-8,
    funding: float = 1e-9,
) -> None:
    """Assert the live ledger's trades ``got`` are the backtest's ``want`` (both ``TRADE_COLUMNS``), trade for trade.

    Equal: entry and exit times, sides, exit reasons, entry and exit prices, and quantities written with the
    venue's decimals (those of ``amount_step``, base units). Fees and PnL within ``money`` (quote currency: the
    venue writes amounts to 8 decimals, two units of the last by default); funding within ``funding`` (quote
    currency) on **every** trade, PnL within ``money + funding``.
    """
    assert len(got) == len(want), f"{len(got)} live trades, {len(want)} in the backtest"
    for column in ("entry_time", "exit_time"):
        times_got = [pd.Timestamp(t).isoformat() for t in got[column]]
        times_want = [pd.Timestamp(t).isoformat() for t in want[column]]
        assert times_got == times_want, column
    assert got["side"].astype(int).tolist() == want["side"].astype(int).tolist()
    assert got["exit_reason"].astype(str).tolist() == want["exit_reason"].astype(str).tolist()
    for column in ("entry_price", "exit_price"):
        np.testing.assert_array_equal(got[column].to_numpy(float), want[column].to_numpy(float), column)
    decimals = int(step_decimals_nb(amount_step))
    qty_got = np.round(got["qty"].to_numpy(float), decimals)
    qty_want = np.round(want["qty"].to_numpy(float), decimals)
    apart = np.flatnonzero(qty_got != qty_want)
    assert apart.size == 0, (
        f"{apart.size} of {len(want)} quantities differ, first trade {apart[0] if apart.size else None}: "
        f"live {qty_got[apart[:3]]}, backtest {qty_want[apart[:3]]}"
    )
    for column, tolerance in (("fees", money), ("funding", funding), ("pnl", money + funding)):
        error = np.abs(got[column].to_numpy(float) - want[column].to_numpy(float))
        assert error.max(initial=0.0) <= tolerance, (
            f"{column}: off by {error.max():.3g} at trade {error.argmax()}"
        )
