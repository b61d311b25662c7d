"""``scalpbot models list|show|promote|rollback``: inspect and move the release pointer."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from scalpbot.cli.data_cmds import SymbolOpt
from scalpbot.cli.render import out, print_json
from scalpbot.cli.state import state_of
from scalpbot.core.metrics import Metrics
from scalpbot.errors import CorruptArtifactError
from scalpbot.releases import ReleaseStore

models_app = typer.Typer(help="List, inspect, promote and roll back model releases.", no_args_is_help=True)


def _context(ctx: typer.Context, symbol: str | None) -> tuple[ReleaseStore, str, Any]:
    services = state_of(ctx).services({"data": {"symbol": symbol}})
    return ReleaseStore(services.store), services.settings.data.symbol, services


def _test_metrics(manifest: dict[str, Any]) -> Metrics:
    metrics: Metrics = manifest.get("metrics", {}).get("test", {})
    return metrics


@models_app.command("list")
def list_releases(
    ctx: typer.Context,
    symbol: str | None = SymbolOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object"),
) -> None:
    """List the releases of a symbol with their test-window metrics and gate verdicts; mark the current one.

    ``--json`` adds each release's whole verdict: every criterion and the statistics behind it.
    """
    releases, pair, _ = _context(ctx, symbol)
    pointer = releases.pointer(pair)
    current = None if pointer is None else pointer.release_id
    rows: list[dict[str, Any]] = []
    for release_id in releases.list(pair):
        try:
            manifest = releases.manifest(pair, release_id)
        except CorruptArtifactError as e:  # one bad release must not hide the others
            rows.append({"release_id": release_id, "current": release_id == current, "refused": str(e)})
            continue
        rows.append(
            {
                "release_id": release_id,
                "current": release_id == current,
                "created_at": manifest.get("created_at"),
                "timeframe": manifest.get("timeframe"),
                "data_window": manifest.get("data_window"),
                "metrics": manifest.get("metrics", {}),
                "origin": manifest.get("origin", "train"),
                "gate": manifest.get("gate"),
            }
        )
    if as_json:
        print_json({"symbol": pair, "current": current, "releases": rows})
        return
    table = Table(title=f"releases of {pair}")
    for column in ("release", "current", "origin", "scored return", "trades", "gate"):
        table.add_column(column)
    for row in rows:
        if "refused" in row:
            table.add_row(row["release_id"], "*" if row["current"] else "", "-", "-", "-", row["refused"])
            continue
        scored = row["metrics"].get("test") or row["metrics"].get("recent") or {}
        gate = row["gate"] or {}
        table.add_row(
            row["release_id"],
            "*" if row["current"] else "",
            row["origin"],
            _pct(scored.get("total_return")),
            str(scored.get("trades", "-")),
            _decision(gate.get("promote")),
        )
    out.print(table)
    if not rows:
        out.print("no releases yet: run `scalpbot train`")
    for row in rows:  # one verdict a line, never wrapped
        line = row.get("refused") or (row.get("gate") or {}).get("reason", "no verdict")
        out.print(f"{row['release_id']}: {line}", markup=False)


@models_app.command("show")
def show_release(
    ctx: typer.Context,
    release_id: str = typer.Argument(..., help="Release id"),
    symbol: str | None = SymbolOpt,
) -> None:
    """Print a release's manifest as JSON (checksums, data window, params, metrics, versions)."""
    releases, pair, _ = _context(ctx, symbol)
    print_json(releases.manifest(pair, release_id))


@models_app.command("promote")
def promote_release(
    ctx: typer.Context,
    release_id: str = typer.Argument(..., help="Release id"),
    symbol: str | None = SymbolOpt,
) -> None:
    """Make a release current by hand (its artifacts are verified first); the gate is bypassed."""
    releases, pair, services = _context(ctx, symbol)
    releases.load(pair, release_id, names=("model.onnx", "model.keras"))
    pointer = releases.promote(
        pair, release_id, expected=releases.pointer(pair), reason="promoted by hand", now=services.clock.now()
    )
    out.print(
        f"{pair}: {pointer.release_id} is current (before: {', '.join(pointer.previous[:1]) or 'none'})"
    )


@models_app.command("rollback")
def rollback_release(ctx: typer.Context, symbol: str | None = SymbolOpt) -> None:
    """Make the previously current release current again."""
    releases, pair, services = _context(ctx, symbol)
    pointer = releases.rollback(pair, now=services.clock.now())
    out.print(f"{pair}: rolled back, {pointer.release_id} is current")


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:+.2%}"


def _decision(promote: Any) -> str:
    return "-" if promote is None else "promoted" if promote else "refused"
