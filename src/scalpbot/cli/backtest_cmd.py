"""``scalpbot backtest``: run a strategy over stored bars and print its metrics or JSON."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import typer
from rich.table import Table

from scalpbot.backtest import BacktestResult, backtest
from scalpbot.cli.data_cmds import ExchangeOpt, SymbolOpt, TimeframeOpt
from scalpbot.cli.dates import parse_range
from scalpbot.cli.render import iso, out, print_json
from scalpbot.cli.state import state_of
from scalpbot.config import BacktestSettings
from scalpbot.core.backtest.enums import TRADE_COLUMNS
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.core.strategies import sma_cross_signals
from scalpbot.core.timeframes import timeframe_delta
from scalpbot.errors import ConfigError, DataError, ModelError
from scalpbot.release_signals import ReleaseCache, TradingModel, release_signals
from scalpbot.releases import ReleaseStore
from scalpbot.wiring import Services, venue_profile

SignalBuilder = Callable[[pd.DataFrame, BacktestSettings], pd.DataFrame]

STRATEGIES: dict[str, SignalBuilder] = {
    "sma-cross": lambda bars, p: sma_cross_signals(
        bars, length=p.sma_length, sl=p.sl, tp=p.tp, size=p.size, max_hold=p.max_hold
    ),
}


def run_backtest(
    ctx: typer.Context,
    symbol: str | None = SymbolOpt,
    timeframe: str | None = TimeframeOpt,
    exchange: str | None = ExchangeOpt,
    since: str | None = typer.Option(None, "--from", help="First bar open time, ISO-8601 UTC"),
    until: str | None = typer.Option(None, "--to", help="Stop before this open time"),
    strategy: str | None = typer.Option(
        None, "--strategy", help="sma-cross | release [config backtest.strategy]"
    ),
    sl: float | None = typer.Option(None, "--sl", help="Stop loss, fraction of the fill price"),
    tp: float | None = typer.Option(None, "--tp", help="Take profit, fraction of the fill price"),
    size: float | None = typer.Option(None, "--size", help="Fraction of equity committed per entry"),
    max_hold: int | None = typer.Option(None, "--max-hold", help="Time stop in bars (0 = none)"),
    sma_length: int | None = typer.Option(None, "--sma-length", help="SMA length in bars for sma-cross"),
    fee: float | None = typer.Option(
        None, "--fee", help="Fee per fill, fraction of notional [the venue's taker fee, venue.taker_fee]"
    ),
    slippage: float | None = typer.Option(None, "--slippage", help="Adverse fill move, fraction of price"),
    initial_equity: float | None = typer.Option(None, "--equity", help="Starting equity, quote currency"),
    release: str | None = typer.Option(
        None, "--release", help="Release id for --strategy release, or 'latest' [current]"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with metrics and trades"),
) -> None:
    """Backtest a strategy on stored bars with the one fill model on the venue's fee, step, minimums, shorts."""
    overrides: dict[str, dict[str, Any]] = {
        "exchange": {"id": exchange},
        "data": {"symbol": symbol, "timeframe": timeframe},
        "venue": {"taker_fee": fee},
        "backtest": {
            "strategy": strategy,
            "sl": sl,
            "tp": tp,
            "size": size,
            "max_hold": max_hold,
            "sma_length": sma_length,
            "slippage": slippage,
            "initial_equity": initial_equity,
        },
    }
    services = state_of(ctx).services(overrides)
    params = services.settings.backtest
    start, end = parse_range(since, until)
    first = None if start is None else pd.Timestamp(start)
    series = services.series()
    venue = venue_profile(services.store, services.settings, series)
    if params.strategy == "release":
        trading = load_trading_model(services, series.symbol, release).for_venue(venue)
        # Read the feature warm-up before --from so the first bar of the window can already trade.
        warmup = FEATURE_WINDOW * timeframe_delta(series.timeframe)
        history = services.dataset.read(series, None if first is None else first - warmup, _ts(end))
        signals = release_signals(history, trading)
        inside = np.ones(len(history), dtype=bool) if first is None else np.asarray(history.index >= first)
        bars, signals = history.loc[inside], signals.loc[inside]
    else:
        bars = services.dataset.read(series, first, _ts(end))
        signals = _strategy(params.strategy)(bars, params)
    if len(bars) < 2:
        raise DataError(
            f"{len(bars)} bars of {series} stored in that window; fetch more with `scalpbot fetch`"
        )
    result = backtest(
        bars,
        signals,
        fee=venue.taker_fee,
        slippage=params.slippage,
        initial_equity=params.initial_equity,
        rules=venue.order_rules(),
    )
    if as_json:
        print_json({"metrics": result.metrics, "trades": trades_payload(result.trades)})
        return
    _print_result(result, f"{params.strategy} on {series}, {iso(bars.index[0])} .. {iso(bars.index[-1])}")


def _strategy(name: str) -> SignalBuilder:
    try:
        return STRATEGIES[name]
    except KeyError:
        names = [*STRATEGIES, "release"]
        match = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean '{match[0]}'?)" if match else ""
        raise ConfigError(f"unknown strategy '{name}'{hint}; use one of {', '.join(names)}") from None


def _ts(value: datetime | None) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value)


def load_trading_model(services: Services, symbol: str, release_id: str | None) -> TradingModel:
    """Return the named release, or the current one, verified and ready to trade."""
    releases = ReleaseStore(services.store)
    if release_id == "latest":
        return ReleaseCache(releases, symbol, "latest").current()
    if release_id is None:
        pointer = releases.pointer(symbol)
        if pointer is None:
            raise ModelError(f"no release of {symbol} is current; run `scalpbot train` or pass --release ID")
        release_id = pointer.release_id
    return TradingModel.from_release(releases.load(symbol, release_id))


def trades_payload(trades: pd.DataFrame) -> list[dict[str, Any]]:
    """Return trades as JSON-ready objects: times ISO-8601 UTC, numbers as floats, side as +1/-1."""
    rows: list[dict[str, Any]] = []
    for record in trades.loc[:, list(TRADE_COLUMNS)].itertuples(index=False):
        row = dict(zip(TRADE_COLUMNS, record, strict=True))
        row["entry_time"] = iso(pd.Timestamp(row["entry_time"]))
        row["exit_time"] = iso(pd.Timestamp(row["exit_time"]))
        row["side"] = int(row["side"])
        for name in ("entry_price", "exit_price", "qty", "pnl", "fees"):
            row[name] = float(row[name])
        row["exit_reason"] = str(row["exit_reason"])
        rows.append(row)
    return rows


def _print_result(result: BacktestResult, title: str) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    percent = {"total_return", "win_rate", "max_drawdown", "return_on_capital", "exposure"}
    for name, value in result.metrics.items():
        if value is None:
            shown = "-"
        elif name in percent:
            shown = f"{value:.2%}"
        elif isinstance(value, int):
            shown = f"{value:,}"
        else:
            shown = f"{value:,.4f}"
        table.add_row(name, shown)
    out.print(table)
