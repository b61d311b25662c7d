"""``scalpbot fetch`` and ``scalpbot data show|export``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pandas as pd
import typer
from rich.table import Table

from scalpbot.adapters.progress import progress_bar
from scalpbot.cli.dates import parse_range
from scalpbot.cli.render import err, iso, out, print_json
from scalpbot.cli.state import reported, state_of
from scalpbot.cli.symbols import SymbolsOpt, data_symbols, for_each_symbol
from scalpbot.core.timeframes import timeframe_delta
from scalpbot.core.venue import market_type_of
from scalpbot.errors import ConfigError, DataError
from scalpbot.jobs.retrieve import RetrieveReport, retrieve
from scalpbot.state.bar_codec import encode_bars
from scalpbot.state.dataset import DatasetSummary
from scalpbot.state.series import stored_series, unknown_series_hint
from scalpbot.state.venues import load_venue, save_venue
from scalpbot.wiring import build_market_data, fetch_venue_profile, store_funding_history

data_app = typer.Typer(help="Inspect and export the stored bars.", no_args_is_help=True)

SymbolOpt = typer.Option(None, "--symbol", help="Unified symbol, e.g. BTC/USDT [config data.symbol]")
TimeframeOpt = typer.Option(None, "--timeframe", help="Bar timeframe, e.g. 1m [config data.timeframe]")
ExchangeOpt = typer.Option(None, "--exchange", help="ccxt exchange id [config exchange.id]")


def _overrides(exchange: str | None, symbol: str | None, timeframe: str | None) -> dict[str, dict[str, Any]]:
    return {"exchange": {"id": exchange}, "data": {"symbol": symbol, "timeframe": timeframe}}


def synthetic_exchange(source: str, exchange: str | None) -> str | None:
    """Return the exchange id to store under: ``synthetic`` for synthetic bars (refusing a real one)."""
    if source.partition(":")[0] != "synthetic":
        return exchange
    if exchange not in (None, "synthetic"):
        raise ConfigError(
            f"synthetic bars are stored under the exchange id 'synthetic', not '{exchange}': drop --exchange"
        )
    return "synthetic"


def fetch(
    ctx: typer.Context,
    source: str = typer.Option("ccxt", "--source", help="ccxt | file:PATH | sample | synthetic[:SEED]"),
    exchange: str | None = ExchangeOpt,
    symbol: list[str] | None = SymbolsOpt,
    timeframe: str | None = TimeframeOpt,
    since: str | None = typer.Option(None, "--from", "--since", help="First bar open time, ISO-8601 UTC"),
    until: str | None = typer.Option(None, "--to", "--until", help="Stop before this open time [now]"),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object (a list of them for several symbols)"
    ),
) -> None:
    """Retrieve closed bars into the store: validated, deduplicated, append-only.

    Synthetic bars are stored under the exchange id ``synthetic``, never mixed into a real exchange's series.
    From an exchange (``--source ccxt``), the market's venue profile is stored too when none is yet, and for a
    perpetual swap (``BTC/USDT:USDT``) its funding-rate history over the window. Several symbols (``--symbol``
    repeated or a comma list, else ``bot.symbols``) are fetched one after another.
    """
    symbols = data_symbols(state_of(ctx).settings(), symbol)
    for_each_symbol(
        symbols, as_json, lambda one: _fetch(ctx, source, exchange, one, timeframe, since, until, as_json)
    )


def _fetch(
    ctx: typer.Context,
    source: str,
    exchange: str | None,
    symbol: str | None,
    timeframe: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """Fetch one symbol's bars (see :func:`fetch`)."""
    exchange = synthetic_exchange(source, exchange)
    services = state_of(ctx).services(_overrides(exchange, symbol, timeframe))
    settings = services.settings
    series = services.series()
    start, end = parse_range(since, until)
    choice = build_market_data(source, services)
    default_since = services.clock.now() - pd.Timedelta(days=settings.data.lookback_days)
    expected = None
    if start is not None:
        stop = end or services.clock.now()
        expected = max(int((pd.Timestamp(stop) - pd.Timestamp(start)) / timeframe_delta(series.timeframe)), 1)
    with (
        reported(services, "retrieve") as notifier,
        progress_bar(expected, f"fetch {series} from {choice.source.name}") as step,
    ):

        def advance(count: int, last: pd.Timestamp) -> None:
            step(count, description=f"fetch {series} up to {iso(last)}")

        report = retrieve(
            services.dataset,
            choice.source,
            series,
            since=start,
            until=end,
            default_since=default_since if choice.resume else None,
            resume=choice.resume,
            spike_sigmas=settings.data.spike_sigmas,
            spike_min_move=settings.data.spike_min_move,
            on_progress=advance,
        )
    if as_json:
        print_json(report.payload())
    else:
        _print_retrieve(report, services.store.describe())
    if source == "ccxt" and load_venue(services.store, series.exchange, series.symbol) is None:
        key = save_venue(services.store, fetch_venue_profile(services, series))
        if not as_json:
            out.print(
                f"venue profile of {series.exchange} {series.symbol} stored at {key} (`scalpbot venue show`)"
            )
    if source == "ccxt" and market_type_of(series.symbol) != "spot":
        stored = store_funding_history(services, series, start or default_since, end or services.clock.now())
        if not as_json:
            out.print(
                f"{stored} new funding rates of {series.exchange} {series.symbol} stored beside the bars"
            )
    if report.added or report.gaps or report.conflicts:
        gaps = f", {len(report.gaps)} gaps" if report.gaps else ""
        notifier.notify(f"retrieve {series}", f"{report.added} new bars, newest {iso(report.last)}{gaps}")


def _print_retrieve(report: RetrieveReport, where: str) -> None:
    out.print(
        f"{report.series}: {report.added} new bars stored, {report.already_stored} already stored, "
        f"{report.partitions_written} partitions written in {where}; newest bar {iso(report.last) or '-'}"
    )
    if report.conflicts:
        err.print(
            f"[yellow]warning:[/] {report.conflicts} bars differ from the stored copy; kept the stored bars"
        )
    if report.gaps:
        missing = sum(g.missing for g in report.gaps)
        err.print(f"[yellow]gaps:[/] {len(report.gaps)} gaps, {missing} missing bars (recorded, not filled)")
    if report.spikes:
        err.print(
            f"[yellow]spikes:[/] {len(report.spikes)} bars move extremely, first at {iso(report.spikes[0].time)}"
        )


@data_app.command("show")
def show(
    ctx: typer.Context,
    exchange: str | None = ExchangeOpt,
    symbol: str | None = SymbolOpt,
    timeframe: str | None = TimeframeOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object"),
) -> None:
    """Summarise a stored series: bar count, first and last bar, gaps and spikes."""
    services = state_of(ctx).read_services(_overrides(exchange, symbol, timeframe))
    data = services.settings.data
    summary = services.dataset.summary(
        services.series(), spike_sigmas=data.spike_sigmas, spike_min_move=data.spike_min_move
    )
    if summary.bars == 0 and stored_series(services.store):  # another series is stored: a typo, likely
        hint = unknown_series_hint(services.store, services.series())
        raise DataError(f"no bars of {services.series()} are stored{hint}")
    if as_json:
        print_json(summary_payload(summary))
        return
    _print_summary(summary, services.store.describe())


def summary_payload(summary: DatasetSummary) -> dict[str, Any]:
    """Return the JSON form of a dataset summary (times ISO-8601 UTC, bar open times)."""
    largest = summary.largest_gap
    return {
        "exchange": summary.series.exchange,
        "symbol": summary.series.symbol,
        "timeframe": summary.series.timeframe,
        "bars": summary.bars,
        "first": iso(summary.first),
        "last": iso(summary.last),
        "partitions": summary.partitions,
        "gaps": len(summary.gaps),
        "missing_bars": summary.missing_bars,
        "largest_gap": None
        if largest is None
        else {"after": iso(largest.after), "before": iso(largest.before), "missing": largest.missing},
        "spikes": [{"time": iso(s.time), "log_move": s.log_move, "sigmas": s.sigmas} for s in summary.spikes],
        "order_flow_bars": summary.order_flow_bars,
    }


def _print_summary(summary: DatasetSummary, where: str) -> None:
    table = Table(title=f"{summary.series} in {where}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    largest = summary.largest_gap
    rows = [
        ("bars", f"{summary.bars:,}"),
        ("first bar", iso(summary.first) or "-"),
        ("last bar", iso(summary.last) or "-"),
        ("daily partitions", str(summary.partitions)),
        ("gaps", f"{len(summary.gaps)} ({summary.missing_bars:,} missing bars)"),
        ("largest gap", "-" if largest is None else f"{largest.missing} bars after {iso(largest.after)}"),
        ("spikes", str(len(summary.spikes))),
        ("order flow", f"{summary.order_flow_bars:,} bars with trades and taker-buy volume"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)
    if summary.bars == 0:
        err.print("nothing stored yet: run `scalpbot fetch` (or `scalpbot fetch --source sample` offline)")


@data_app.command("export")
def export(
    ctx: typer.Context,
    out_path: Path = typer.Option(..., "--out", help="Destination file"),
    fmt: str = typer.Option("parquet", "--format", help="csv | parquet"),
    exchange: str | None = ExchangeOpt,
    symbol: str | None = SymbolOpt,
    timeframe: str | None = TimeframeOpt,
    since: str | None = typer.Option(None, "--from", help="First bar open time, ISO-8601 UTC"),
    until: str | None = typer.Option(None, "--to", help="Stop before this open time"),
) -> None:
    """Write a stored series to one CSV or Parquet file in the import schema."""
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"--format {fmt!r} is not supported; use csv or parquet")
    file_format: Literal["csv", "parquet"] = "csv" if fmt == "csv" else "parquet"
    start, end = parse_range(since, until)  # a bad date is refused before the store is read
    services = state_of(ctx).read_services(_overrides(exchange, symbol, timeframe))
    bars = services.dataset.read(
        services.series(),
        None if start is None else pd.Timestamp(start),
        None if end is None else pd.Timestamp(end),
    )
    if bars.empty:
        raise DataError(f"no bars stored for {services.series()} in that window; run `scalpbot fetch` first")
    payload = encode_bars(bars, file_format)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_bytes(payload)
    tmp.replace(out_path)
    out.print(f"wrote {len(bars):,} bars of {services.series()} to {out_path}")
