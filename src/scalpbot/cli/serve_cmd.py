"""``scalpbot serve|bots``: the dashboard and JSON API over the store, and the list of bots in it."""

from __future__ import annotations

import textwrap
from typing import Any

import pandas as pd
import typer
from rich.table import Table

from scalpbot.cli.render import out, print_json
from scalpbot.cli.state import state_of
from scalpbot.cli.tables import money
from scalpbot.dashboard import basket, queries


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Address to listen on [serve.host: 127.0.0.1]"),
    port: int | None = typer.Option(None, "--port", help="TCP port [serve.port: 8080]"),
) -> None:
    """Serve the dashboard and its JSON API over the store until Ctrl-C.

    Halt and resume need the token in serve.token (SCALPBOT_SERVE__TOKEN); without it they are refused.
    """
    import uvicorn

    from scalpbot.dashboard.app import build_app

    services = state_of(ctx).read_services({"serve": {"host": host, "port": port}})
    settings = services.settings.serve
    actions = "enabled (token set)" if settings.token is not None else "disabled (no serve.token)"
    out.print(
        f"dashboard of {services.store.describe()} on http://{settings.host}:{settings.port}/ "
        f"- halt/resume {actions}; Ctrl-C stops"
    )
    uvicorn.run(build_app(services), host=settings.host, port=settings.port, log_level="warning")


def list_bots(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print one JSON object")
) -> None:
    """List the bots that have state in the store: status, last bar, equity and position.

    A bot of several symbols shows its portfolio (the sum of its symbols' equity, open positions) and a row per
    symbol, then its risk budget in one line: gross exposure against the cap, positions against the maximum,
    its kill switch and the last day's denials by reason (``basket`` in JSON)."""
    services = state_of(ctx).read_services()
    now = pd.Timestamp(services.clock.now())
    rows = []
    for name in queries.bot_names(services.store):
        held = basket.portfolio(services, name, now)
        if held is None:
            position, risk = queries.position(services, name), queries.risk(services, name)
            rows.append({**position, "halted": risk["halted"], "halt_reason": risk["halt_reason"]})
            continue
        status = basket.bot_status(services, name, now, held)
        row = {key: status[key] for key in ("bot", "last_bar", "equity", "release_id", "position")}
        rows.append({**row, "halted": status["halted"], "halt_reason": status["halt_reason"], "basket": held})
    if as_json:
        print_json({"store": services.store.describe(), "bots": rows})
        return
    if not rows:
        out.print(f"no bots in {services.store.describe()} yet: run `scalpbot replay` or `scalpbot trade`")
        return
    table = Table(title=f"bots in {services.store.describe()}")
    for column, justify in (
        ("bot", "left"),
        ("status", "left"),
        ("last bar UTC", "left"),
        ("equity", "right"),
        ("position", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        held = row.get("basket")
        table.add_row(
            row["bot"],
            "halted" if row["halted"] else "ok",
            _compact(row["last_bar"]),
            money(row["equity"]),
            f"{len(held['symbols'])} symbols, {held['open_positions']} open"
            if held
            else _held(row["position"]),
        )
        for each in held["per_symbol"] if held else ():
            table.add_row(
                f" {each['symbol']}",
                "halted" if each["halted"] else "ok",
                _compact(each["last_bar"]),
                money(each["equity"]),
                _held(each["position"]),
            )
    out.print(table)
    for row in rows:
        if row.get("basket"):
            out.print(_wrapped(_budget_line(row["bot"], row["basket"])), markup=False)


def _held(position: dict[str, Any] | None) -> str:
    if position is None:
        return "flat"
    return f"{position['side']} {position['qty']:g} @ {position['entry_price']:,.2f}"


def _budget_line(bot: str, held: dict[str, Any]) -> str:
    """Return a basket's risk budget in one sentence (``-`` parts where the budget has not started)."""
    budget = held["budget"]
    if budget is None:
        book = "no risk budget yet (no entry reserved)"
    else:
        cap = "no cap" if budget["gross_cap"] is None else f"cap {money(budget['gross_cap'])}"
        most = "no max" if budget["max_positions"] is None else f"max {budget['max_positions']}"
        switch = f"HALTED: {budget['halt_reason']}" if budget["halted"] else "kill switch off"
        book = (
            f"gross {money(budget['gross'])} ({cap}), {budget['positions']} positions ({most}), "
            f"budget equity {money(budget['equity'])}, {switch}"
        )
    denials = held["denials"]
    reasons = "-" if denials is None else _reasons(denials["by_reason"])
    return f"{bot} portfolio: {book}; denied in the last day: {reasons}"


def _reasons(by_reason: dict[str, dict[str, int]]) -> str:
    parts = [
        f"{scope} " + ", ".join(f"{code} {n}" for code, n in counts.items())
        for scope, counts in by_reason.items()
        if counts
    ]
    return "; ".join(parts) or "none"


def _wrapped(text: str) -> str:
    return textwrap.fill(text, width=max(out.width, 40), subsequent_indent="  ", break_on_hyphens=False)


def _compact(iso: str | None) -> str:
    return "-" if iso is None else iso.replace("T", " ")[:16]
