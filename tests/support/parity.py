"""Live-versus-backtest parity: run the execute job bar by bar on a venue double, then read both trade lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from scalpbot.adapters.notify.console import ConsoleNotifier
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


SAME_QUANTITY_SHARE = 0.97
"""The share of swap trades whose live quantity must equal the backtest's: the live broker sizes a swap entry at
the decision bar's close, the kernel at the fill (the next open), both rounded down to the venue's step, so the two
differ by one step where the prices straddle a step boundary."""


def quantities_within_a_step(got: np.ndarray, want: np.ndarray, step: float) -> np.ndarray:
    """Assert that live and backtest quantities differ by at most one ``step`` and agree on at least
    ``SAME_QUANTITY_SHARE`` of the trades; return where they are equal."""
    same = np.asarray(got == want)
    assert np.abs(got - want).max() <= step + 1e-12, "a quantity differs by more than one step"
    assert same.mean() >= SAME_QUANTITY_SHARE, f"only {same.mean():.1%} of quantities are equal"
    return same
