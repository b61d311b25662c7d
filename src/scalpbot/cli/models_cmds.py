"""``scalpbot models list|show|promote|rollback``: inspect and move the release pointer."""

from __future__ import annotations

import textwrap
from typing import Any

import typer
from rich import box
from rich.table import Table

from scalpbot.cli.data_cmds import SymbolOpt
from scalpbot.cli.render import err, out, print_json
from scalpbot.cli.state import state_of
from scalpbot.cli.tables import WIDE, percent
from scalpbot.errors import CorruptArtifactError
from scalpbot.state.release_choice import choose_release, release_origin
from scalpbot.state.releases import ReleaseStore

models_app = typer.Typer(help="List, inspect, promote and roll back model releases.", no_args_is_help=True)


def _context(ctx: typer.Context, symbol: str | None) -> tuple[ReleaseStore, str, Any]:
    services = state_of(ctx).read_services({"data": {"symbol": symbol}})
    return ReleaseStore(services.store), services.settings.data.symbol, services


@models_app.command("list")
def list_releases(
    ctx: typer.Context,
    symbol: str | None = SymbolOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object"),
) -> None:
    """List the releases of a symbol: full id, origin (train, online, rl), model kind, the gate's verdict and
    reason."""
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
                "created_at": manifest.created_at,
                "timeframe": manifest.get("timeframe"),
                "data_window": manifest.get("data_window"),
                "metrics": manifest.metrics,
                "origin": release_origin(manifest),
                "model_kind": manifest.model_kind,
                "gate": manifest.get("gate"),
                "passed_gate": manifest.gate.get("promote"),
                "reason": manifest.gate.get("reason"),
            }
        )
    if as_json:
        print_json({"symbol": pair, "current": current, "releases": rows})
        return
    wide = out.width >= WIDE
    table = Table(
        title=f"releases of {pair} (* current)", box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True
    )
    table.add_column("release", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("origin", no_wrap=True)
    table.add_column("model", no_wrap=True)
    table.add_column("gate", no_wrap=True)
    table.add_column("return", justify="right", no_wrap=True)
    if wide:
        table.add_column("trades", justify="right", no_wrap=True)
        table.add_column("sharpe", justify="right", no_wrap=True)
    for row in rows:
        if "refused" in row:
            table.add_row(
                row["release_id"],
                "*" if row["current"] else "",
                "-",
                "-",
                "unreadable",
                "-",
                *(["-", "-"] if wide else []),
            )
            continue
        judged = row["metrics"].get("test") or row["metrics"].get("recent") or {}
        gate = row["passed_gate"]
        cells = [
            row["release_id"],
            "*" if row["current"] else "",
            row["origin"],
            row["model_kind"],
            "-" if gate is None else ("promoted" if gate else "refused"),
            percent(judged.get("total_return")),
        ]
        if wide:
            cells += [str(judged.get("trades", "-")), _num(judged.get("sharpe"))]
        table.add_row(*cells)
    out.print(table)
    if not rows:
        out.print("no releases yet: run `scalpbot train`")
    for row in rows:  # the gate's verdict, or why the release cannot be read: one paragraph each
        verdict = f"{row['release_id']}: {row.get('refused') or row.get('reason') or 'no verdict'}"
        out.print(
            textwrap.fill(
                verdict,
                width=max(out.width, 40),
                subsequent_indent="  ",
                break_on_hyphens=False,
                break_long_words=False,
            ),
            markup=False,
        )


@models_app.command("show")
def show_release(
    ctx: typer.Context,
    release_id: str = typer.Argument(
        ..., help="current | latest | newest | an id (a unique prefix is enough)"
    ),
    symbol: str | None = SymbolOpt,
) -> None:
    """Print a release's manifest as JSON (checksums, data window, params, metrics, versions)."""
    releases, pair, _ = _context(ctx, symbol)
    choice = choose_release(releases, pair, release_id)
    err.print(choice.describe())
    print_json(releases.manifest(pair, choice.release_id))


@models_app.command("promote")
def promote_release(
    ctx: typer.Context,
    release_id: str = typer.Argument(
        ..., help="current | latest | newest | an id (a unique prefix is enough)"
    ),
    symbol: str | None = SymbolOpt,
) -> None:
    """Make a release current by hand (its artifacts are verified first); the gate is bypassed."""
    releases, pair, services = _context(ctx, symbol)
    release_id = choose_release(releases, pair, release_id).release_id
    releases.load(pair, release_id, names=tuple(releases.manifest(pair, release_id).artifacts))
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


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"
