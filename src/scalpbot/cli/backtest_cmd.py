"""``scalpbot backtest``: run a strategy over stored bars and print its metrics or JSON."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import typer
from rich.table import Table

from scalpbot.cli.data_cmds import ExchangeOpt, TimeframeOpt
from scalpbot.cli.dates import parse_range
from scalpbot.cli.render import err, iso, out, print_json
from scalpbot.cli.state import state_of
from scalpbot.cli.symbols import SymbolsOpt, data_symbols, for_each_symbol, trading_symbols
from scalpbot.cli.tables import metric_text, trades_table
from scalpbot.config import BacktestSettings
from scalpbot.core.backtest.enums import TRADE_COLUMNS
from scalpbot.core.backtest.frame import BacktestResult, backtest
from scalpbot.core.benchmark import buy_and_hold_equity, buy_and_hold_metrics
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.core.strategies import sma_cross_signals
from scalpbot.core.timeframes import timeframe_delta
from scalpbot.core.venue import Venue
from scalpbot.errors import ConfigError, DataError
from scalpbot.inference.signals import TradingModel, release_signals
from scalpbot.state.funding import load_funding
from scalpbot.state.release_choice import ReleaseChoice, choose_release
from scalpbot.state.releases import ReleaseStore
from scalpbot.state.series import unknown_series_hint
from scalpbot.wiring import Services, venue_profile

SignalBuilder = Callable[[pd.DataFrame, BacktestSettings], pd.DataFrame]

STRATEGIES: dict[str, SignalBuilder] = {
    "sma-cross": lambda bars, p: sma_cross_signals(
        bars, length=p.sma_length, sl=p.sl, tp=p.tp, size=p.size, max_hold=p.max_hold
    ),
}


def run_backtest(
    ctx: typer.Context,
    compared: list[str] | None = typer.Argument(
        None, help="With --compare: strategies and releases (current, latest, newest, an id prefix)"
    ),
    symbol: list[str] | None = SymbolsOpt,
    timeframe: str | None = TimeframeOpt,
    exchange: str | None = ExchangeOpt,
    since: str | None = typer.Option(None, "--from", help="First bar open time, ISO-8601 UTC"),
    until: str | None = typer.Option(None, "--to", help="Stop before this open time"),
    days: float | None = typer.Option(None, "--days", help="The last DAYS before --to (or the newest bar)"),
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
        None, "--release", help="For --strategy release: current | latest | newest | an id prefix [current]"
    ),
    compare: bool = typer.Option(
        False,
        "--compare",
        help="Backtest each strategy or release given as arguments; one table side by side",
    ),
    html_path: Path | None = typer.Option(
        None,
        "--html",
        help="Write a page: equity beside buy and hold, drawdown, price with trades, exit reasons",
    ),
    show_trades: bool = typer.Option(False, "--trades", help="Print the trade list with a totals row"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with metrics and trades"),
    portfolio: bool = typer.Option(
        False,
        "--portfolio",
        help="The bot's basket together: each symbol's current release through the [portfolio] caps",
    ),
) -> None:
    """Backtest a strategy on stored bars with the one fill model on the venue's fee, step, minimums, shorts.

    `scalpbot backtest --compare current newest sma-cross` runs each on the same bars and prints one table.
    Several symbols (``--symbol`` repeated or a comma list, else ``bot.symbols``) are backtested one by one.
    """
    if portfolio:
        _portfolio(ctx, symbol, since, until, days, show_trades, as_json)
        return
    symbols = data_symbols(state_of(ctx).settings(), symbol)
    if len(symbols) > 1 and html_path is not None:
        raise ConfigError("--html writes one symbol's page; give one --symbol with it")

    def one_symbol(one: str | None) -> None:
        _backtest_one(
            ctx=ctx,
            compared=compared,
            symbol=one,
            timeframe=timeframe,
            exchange=exchange,
            since=since,
            until=until,
            days=days,
            strategy=strategy,
            sl=sl,
            tp=tp,
            size=size,
            max_hold=max_hold,
            sma_length=sma_length,
            fee=fee,
            slippage=slippage,
            initial_equity=initial_equity,
            release=release,
            compare=compare,
            html_path=html_path,
            show_trades=show_trades,
            as_json=as_json,
        )

    for_each_symbol(symbols, as_json, one_symbol)


def _backtest_one(
    *,
    ctx: typer.Context,
    compared: list[str] | None,
    symbol: str | None,
    timeframe: str | None,
    exchange: str | None,
    since: str | None,
    until: str | None,
    days: float | None,
    strategy: str | None,
    sl: float | None,
    tp: float | None,
    size: float | None,
    max_hold: int | None,
    sma_length: int | None,
    fee: float | None,
    slippage: float | None,
    initial_equity: float | None,
    release: str | None,
    compare: bool,
    html_path: Path | None,
    show_trades: bool,
    as_json: bool,
) -> None:
    """Backtest one symbol (see :func:`run_backtest`)."""
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
    series = services.series()
    first, end = _window(services, *parse_range(since, until), days)
    if compared and not compare:
        raise ConfigError(
            f"unexpected argument '{compared[0]}'; to compare, use --compare {' '.join(compared)}"
        )
    if compare:
        if not compared or len(compared) < 2:
            raise ConfigError(
                "--compare needs two or more strategies or releases, e.g. --compare current sma-cross"
            )
        venue = venue_profile(services.store, services.settings, series)
        runs = [_run(services, params, venue, item, first, end) for item in compared]
        _print_comparison(runs, series, params, venue.taker_fee, as_json)
        return
    venue = venue_profile(services.store, services.settings, series)
    label = params.strategy if params.strategy != "release" else (release or "current")
    run = _run(services, params, venue, label, first, end, strategy_name=params.strategy)
    result, bars = run.result, run.bars
    if html_path is not None:
        _write_html(html_path, run, series, params.initial_equity, venue.taker_fee)
    if as_json:
        print_json({"metrics": result.metrics, "trades": trades_payload(result.trades), **run.release_json()})
        return
    _print_result(result, f"{run.label} on {series}, {iso(bars.index[0])} .. {iso(bars.index[-1])}")
    if show_trades:
        out.print(trades_table(result.trades, f"trades of {run.label}", out.width))
    if html_path is not None:
        out.print(f"wrote {html_path}")


@dataclass(frozen=True)
class _Run:
    """One backtest of the command: what ran (strategy or release), on which bars, and its result."""

    label: str
    bars: pd.DataFrame
    result: BacktestResult
    release: ReleaseChoice | None

    def release_json(self) -> dict[str, Any]:
        return {} if self.release is None else {"release": self.release.release_id}


def _portfolio(
    ctx: typer.Context,
    symbols: list[str] | None,
    since: str | None,
    until: str | None,
    days: float | None,
    show_trades: bool,
    as_json: bool,
) -> None:
    """Backtest the bot's basket (or the given symbols of it) through its portfolio budget."""
    from scalpbot.jobs.basket_backtest import basket_backtest

    services = state_of(ctx).services()
    basket = [services.series(each) for each in trading_symbols(services.settings, symbols)]
    first, end = _window(services, *parse_range(since, until), days)
    if first is None or end is None:
        raise ConfigError("--portfolio needs a whole window: --from and --to, or --days")
    result = basket_backtest(services, basket, first, end, bot=services.settings.bot.name)
    if as_json:
        print_json(
            {
                "symbols": {
                    symbol: {"metrics": run.metrics, "trades": trades_payload(run.trades)}
                    for symbol, run in result.results.items()
                },
                "denials": [
                    {"bar": iso(d.bar), "symbol": d.symbol, "side": d.side, "codes": list(d.codes)}
                    for d in result.denials
                ],
                "risk_denials": len(result.risk_denials),
            }
        )
        return
    for symbol, run in result.results.items():
        _print_result(run, f"{symbol} in the basket, {iso(pd.Timestamp(first))} .. {iso(pd.Timestamp(end))}")
        if show_trades:
            out.print(trades_table(run.trades, f"trades of {symbol}", out.width))
    codes: dict[str, int] = {}
    for denial in result.denials:
        for code in denial.codes:
            codes[code] = codes.get(code, 0) + 1
    caps = ", ".join(f"{code} {n}" for code, n in sorted(codes.items())) or "none"
    out.print(f"entries denied by the portfolio budget: {len(result.denials)} ({caps})")


def _window(
    services: Services, start: datetime | None, end: datetime | None, days: float | None
) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """Return ``[first, end)`` from --from/--to, or --days before --to (before the newest stored bar)."""
    first, last = _ts(start), _ts(end)
    if days is None:
        return first, last
    if first is not None:
        raise ConfigError("give --from or --days, not both")
    if days <= 0:
        raise ConfigError(f"--days must be > 0; got {days:g}")
    if last is None:
        newest = services.dataset.last_open_time(services.series())
        if newest is None:
            raise DataError(f"no bars of {services.series()} stored; run `scalpbot fetch` first")
        last = newest + timeframe_delta(services.series().timeframe)
    return last - pd.Timedelta(days=days), last


def _run(
    services: Services,
    params: BacktestSettings,
    venue: Venue,
    item: str,
    first: pd.Timestamp | None,
    end: pd.Timestamp | None,
    *,
    strategy_name: str | None = None,
) -> _Run:
    """Backtest ``item``: a strategy name, or a release selector (with ``strategy_name`` ``release``)."""
    series = services.series()
    choice: ReleaseChoice | None = None
    if strategy_name is None and item in STRATEGIES:
        strategy_name = item
    if strategy_name in (None, "release"):
        choice = choose_release(ReleaseStore(services.store), series.symbol, item)
        err.print(f"{item}: {choice.describe()}")
        trading = TradingModel.from_release(
            ReleaseStore(services.store).load(series.symbol, choice.release_id)
        ).for_venue(venue)
        # The feature window's bars before --from (counted in stored bars, as the execute cycle counts them),
        # so the first bar of the window can already trade.
        history = (
            services.dataset.read(series, None, end)
            if first is None
            else services.dataset.read_with_warmup(series, first, end, FEATURE_WINDOW)
        )
        signals = release_signals(history, trading)
        inside = np.ones(len(history), dtype=bool) if first is None else np.asarray(history.index >= first)
        bars, signals = history.loc[inside], signals.loc[inside]
        label = f"release {choice.release_id}"
    else:
        bars = services.dataset.read(series, first, end)
        signals = _strategy(str(strategy_name))(bars, params)
        label = str(strategy_name)
    if len(bars) < 2:
        if services.dataset.last_open_time(series) is None:
            hint = unknown_series_hint(services.store, series)
            raise DataError(f"no bars of {series} are stored{hint}; fetch them with `scalpbot fetch`")
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
        funding=(
            load_funding(services.store, series.exchange, series.symbol, bars.index[0], bars.index[-1])
            if venue.market_type == "swap"
            else None
        ),
    )
    return _Run(label, bars, result, choice)


def _write_html(path: Path, run: _Run, series: object, initial_equity: float, fee: float) -> None:
    from scalpbot.reporting.backtest_report import render_backtest_html

    hold = buy_and_hold_equity(run.bars, initial_equity, fee)
    page = render_backtest_html(
        f"{run.label} on {series}",
        bars=run.bars,
        timeframe=str(getattr(series, "timeframe", "1m")),
        trades=run.result.trades,
        equity=run.result.equity,
        metrics=run.result.metrics,
        benchmark_equity=hold,
        benchmark_metrics=buy_and_hold_metrics(hold),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")


def _print_comparison(
    runs: list[_Run], series: object, params: BacktestSettings, fee: float, as_json: bool
) -> None:
    bars = runs[0].bars
    hold = buy_and_hold_equity(bars, params.initial_equity, fee)
    benchmark = buy_and_hold_metrics(hold)
    if as_json:
        print_json(
            {
                "runs": [{"label": r.label, **r.release_json(), "metrics": r.result.metrics} for r in runs],
                "buy_and_hold": benchmark,
            }
        )
        return
    title = f"{series}, {iso(bars.index[0])} .. {iso(bars.index[-1])}"
    table = Table(title=title)
    table.add_column("metric")
    for run in runs:
        table.add_column(run.label.removeprefix("release "), justify="right")
    table.add_column("buy and hold", justify="right")
    for name in runs[0].result.metrics:
        table.add_row(
            name,
            *(metric_text(name, r.result.metrics.get(name)) for r in runs),
            metric_text(name, benchmark[name]) if name in benchmark else "",
        )
    out.print(table)


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
    """Return the release ``release_id`` selects (see :mod:`scalpbot.state.release_choice`), verified; say which."""
    releases = ReleaseStore(services.store)
    choice = choose_release(releases, symbol, release_id)
    err.print(choice.describe())
    return TradingModel.from_release(releases.load(symbol, choice.release_id))


def trades_payload(trades: pd.DataFrame) -> list[dict[str, Any]]:
    """Return trades as JSON-ready objects: times ISO-8601 UTC, numbers as floats, side as +1/-1."""
    rows: list[dict[str, Any]] = []
    for record in trades.loc[:, list(TRADE_COLUMNS)].itertuples(index=False):
        row = dict(zip(TRADE_COLUMNS, record, strict=True))
        row["entry_time"] = iso(pd.Timestamp(row["entry_time"]))
        row["exit_time"] = iso(pd.Timestamp(row["exit_time"]))
        row["side"] = int(row["side"])
        for name in ("entry_price", "exit_price", "qty", "pnl", "fees", "funding"):
            row[name] = float(row[name])
        row["exit_reason"] = str(row["exit_reason"])
        rows.append(row)
    return rows


def _print_result(result: BacktestResult, title: str) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for name, value in result.metrics.items():
        table.add_row(name, metric_text(name, value))
    out.print(table)
