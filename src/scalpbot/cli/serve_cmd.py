"""``scalpbot serve|bots``: the dashboard and JSON API over the store, and the list of bots in it."""

from __future__ import annotations

import typer
from rich.table import Table

from scalpbot.cli.render import out, print_json
from scalpbot.cli.state import state_of
from scalpbot.dashboard import queries


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
    """List the bots that have state in the store: status, last bar, equity and position."""
    services = state_of(ctx).read_services()
    rows = []
    for name in queries.bot_names(services.store):
        held, risk = queries.position(services, name), queries.risk(services, name)
        rows.append({**held, "halted": risk["halted"], "halt_reason": risk["halt_reason"]})
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
        position = row["position"]
        table.add_row(
            row["bot"],
            "halted" if row["halted"] else "ok",
            _compact(row["last_bar"]),
            "-" if row["equity"] is None else f"{row['equity']:,.2f}",
            "flat"
            if position is None
            else f"{position['side']} {position['qty']:g} @ {position['entry_price']:,.2f}",
        )
    out.print(table)


def _compact(iso: str | None) -> str:
    return "-" if iso is None else iso.replace("T", " ")[:16]
