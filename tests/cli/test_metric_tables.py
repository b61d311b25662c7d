"""A basket's weekly metrics stay readable at 80 columns however many symbols it trades."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from rich.console import Console

from scalpbot.cli.monitor_cmds import _metric_tables
from scalpbot.core.backtest.enums import TRADE_COLUMNS
from scalpbot.core.metrics import compute_metrics


def test_a_basket_of_seven_symbols_is_split_into_tables_that_fit_80_columns() -> None:
    equity = pd.Series(
        1_000_000.0 * np.exp(np.linspace(0.0, 0.2, 100)),
        index=pd.date_range("2024-12-22", periods=100, freq="1h", tz="UTC"),
    )
    metrics = compute_metrics(pd.DataFrame(columns=list(TRADE_COLUMNS)), equity)
    symbols = [f"{base}/USDT" for base in ("BTC", "ETH", "SOL", "DOGE", "AVAX", "LINK", "MATIC")]
    columns = {"portfolio": metrics, **dict.fromkeys(symbols, metrics)}
    buffer = io.StringIO()
    console = Console(file=buffer, width=80, color_system=None)
    tables = _metric_tables("bot basket: a week", columns, 80)
    for table in tables:
        console.print(table)
    lines = buffer.getvalue().splitlines()
    assert len(tables) == 2 and max(len(line) for line in lines) <= 80
    for name in ("portfolio", *symbols):
        assert sum(name in line.split() for line in lines) == 1, name
    rows = [line.split()[0] for line in lines if line.split()[:1] == ["total_return"]]
    assert rows == ["total_return", "total_return"]  # every metric in each table
