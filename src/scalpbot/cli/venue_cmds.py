"""``scalpbot venue show|fetch``: the venue profile every simulation and trade uses, and where each value came from."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from scalpbot.cli.data_cmds import ExchangeOpt, SymbolOpt
from scalpbot.cli.render import out, print_json
from scalpbot.cli.state import state_of
from scalpbot.core.venue import Venue
from scalpbot.state.venues import load_venue, save_venue, venue_key
from scalpbot.wiring import fetch_venue_profile, venue_profile

venue_app = typer.Typer(
    help="The venue profile: fees, steps, minimums, shorts, protection.", no_args_is_help=True
)

_UNITS = {
    "taker_fee": "of notional",
    "maker_fee": "of notional",
    "amount_step": "base",
    "price_tick": "quote",
    "min_amount": "base",
    "min_notional": "quote",
    "rate_limit_ms": "ms",
    "request_weight_per_minute": "per minute",
}


@venue_app.command("show")
def venue_show(
    ctx: typer.Context,
    exchange: str | None = ExchangeOpt,
    symbol: str | None = SymbolOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: values and their sources"),
) -> None:
    """Print the venue profile in effect and where each value came from (exchange, ccxt, config, default)."""
    services = state_of(ctx).services({"exchange": {"id": exchange}, "data": {"symbol": symbol}})
    series = services.series()
    venue = venue_profile(services.store, services.settings, series)
    stored = load_venue(services.store, series.exchange, series.symbol) is not None
    where = venue_key(series.exchange, series.symbol) if stored else None
    if as_json:
        print_json({**venue.to_dict(), "stored_at": where})
        return
    _print(venue, where)


@venue_app.command("fetch")
def venue_fetch(
    ctx: typer.Context,
    exchange: str | None = ExchangeOpt,
    symbol: str | None = SymbolOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the stored profile as JSON"),
) -> None:
    """Read the profile from the exchange (ccxt) and store it beside the bars, for offline runs."""
    services = state_of(ctx).services({"exchange": {"id": exchange}, "data": {"symbol": symbol}})
    series = services.series()
    key = save_venue(services.store, fetch_venue_profile(services, series))
    venue = venue_profile(services.store, services.settings, series)
    if as_json:
        print_json({**venue.to_dict(), "stored_at": key})
        return
    _print(venue, key)


def _print(venue: Venue, stored_at: str | None) -> None:
    kind = f"{venue.market_type}, read {venue.fetched_at}" if venue.fetched_at else f"{venue.market_type}"
    table = Table(title=f"venue {venue.exchange} {venue.symbol} ({kind})")
    table.add_column("fact", style="bold")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("source")
    for name, value, source in venue.rows():
        table.add_row(name, _shown(name, value), _UNITS.get(name, ""), source)
    out.print(table)
    if stored_at is None:
        out.print(
            "not fetched: offline defaults; `scalpbot venue fetch` reads the exchange and stores its profile"
        )
    else:
        out.print(f"stored at {stored_at}")


def _shown(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return ", ".join(value) or "none"
    if name.endswith("_fee"):
        return f"{value:.4%}"
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)
