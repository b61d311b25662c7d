"""``scalpbot monitor|report|notify-test``: the weekly review, its HTML report and the notification check."""

from __future__ import annotations

import functools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.table import Table

from scalpbot.adapters.progress import progress_bar
from scalpbot.cli.data_cmds import SymbolOpt
from scalpbot.cli.dates import parse_time
from scalpbot.cli.render import out, print_json
from scalpbot.cli.state import reported, state_of
from scalpbot.cli.tables import metric_text
from scalpbot.errors import ConfigError, ObjectNotFound
from scalpbot.reporting.changes import change_row
from scalpbot.state.bots import check_bot_exists
from scalpbot.wiring import Services, build_notifier

BotOpt = typer.Option(None, "--bot", help="Bot name [config bot.name]")


def run_monitor(
    ctx: typer.Context,
    bot: str | None = BotOpt,
    symbol: str | None = SymbolOpt,
    days: float = typer.Option(7.0, "--days", help="Length of the window in days"),
    until: str | None = typer.Option(
        None, "--to", "--until", help="End of the window [the bot's last bar, else now]"
    ),
    improve: bool = typer.Option(
        True, "--improve/--no-improve", help="Run online learning and RL adjustment"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object"),
) -> None:
    """Measure the bot's week from its ledger, compare with the simulator, improve through the gate, report.

    A bot of several symbols (``bot.symbols``) is reviewed as a whole and per symbol (``--symbol``: that symbol
    only)."""
    from scalpbot.jobs.improve import weekly_steps
    from scalpbot.jobs.monitor import monitor, monitor_payload
    from scalpbot.state.scope import symbol_folder

    end = parse_time(until, "--to")  # a bad date is refused before the store is read
    services = state_of(ctx).services({"bot": {"name": bot}, "data": {"symbol": symbol}})
    series, name = services.series(), check_bot_exists(services.store, services.settings.bot.name)
    basket = services.settings.symbols
    if len(basket) > 1 and symbol is None:
        _monitor_basket(services, days, end, improve, as_json)
        return
    steps = weekly_steps(services, series) if improve else ()
    with (
        reported(services, "monitor") as notifier,
        progress_bar(len(steps) + 1, "monitor: measure") as advance,
    ):
        report = monitor(
            services,
            series,
            bot=name,
            days=days,
            until=end,
            notifier=notifier,
            steps=tuple(_advancing(step, advance) for step in steps),
            report_folder=symbol_folder(series.symbol) if len(basket) > 1 else "",
        )
    week = report.week
    if as_json:
        print_json(monitor_payload(report))
        return
    table = Table(title=f"bot {name}: {week.start:%Y-%m-%d %H:%M} .. {week.end:%Y-%m-%d %H:%M} UTC")
    for column in ("metric", "this week", "previous"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    previous = week.previous_metrics
    for metric, value in week.metrics.items():
        before = "" if previous is None else metric_text(metric, previous.get(metric))
        table.add_row(metric, metric_text(metric, value), before)
    out.print(table)
    if previous is None:
        out.print("no previous week: the bot was not trading yet")
    for change in report.changes:
        name, outcome, release, why, *_ = change_row(change)
        out.print(f"{name}: {outcome}{'' if release == '-' else ' ' + release} - {why}")
    for note in report.notes:
        out.print(f"note: {note}")
    out.print(f"report: {report.report_key} in {services.store.describe()}")


def _monitor_basket(
    services: Services, days: float, until: datetime | None, improve: bool, as_json: bool
) -> None:
    """Review the bot's basket: the portfolio and each symbol, one table with a column each."""
    from scalpbot.jobs.basket_monitor import basket_payload, monitor_basket
    from scalpbot.jobs.improve import weekly_steps

    basket = [services.series(each) for each in services.settings.symbols]
    name = services.settings.bot.name
    with reported(services, "monitor") as notifier:
        review = monitor_basket(
            services,
            basket,
            bot=name,
            days=days,
            until=until,
            notifier=notifier,
            steps=(lambda series: weekly_steps(services, series)) if improve else (lambda series: ()),
        )
    if as_json:
        print_json(basket_payload(review))
        return
    title = f"bot {name}: {review.start:%Y-%m-%d %H:%M} .. {review.end:%Y-%m-%d %H:%M} UTC"
    columns = {"portfolio": review.metrics, **{s: each.week.metrics for s, each in review.symbols.items()}}
    for table in _metric_tables(title, columns, out.width):
        out.print(table)
    out.print(f"denied entries: {review.denials.describe()}")
    for symbol, each in review.symbols.items():
        for change in each.changes:
            kind, outcome, release, why, *_ = change_row(change)
            out.print(f"{symbol} {kind}: {outcome}{'' if release == '-' else ' ' + release} - {why}")
        for note in each.notes:
            out.print(f"{symbol} note: {note}")
    out.print(f"report: {review.report_key} in {services.store.describe()}")


_METRIC_WIDTH = 18  # the metric names' column
_VALUE_WIDTH = 13  # a value column: "+1,234,567.89" or a symbol's name


def _metric_tables(title: str, columns: dict[str, Any], width: int) -> list[Table]:
    """Return tables of metric rows with a column per name in ``columns`` (each a metrics mapping), as many
    columns a table as fit in ``width`` characters (80 fits the portfolio and four symbols), the rest in the
    next tables."""
    per_table = max(1, (width - _METRIC_WIDTH) // _VALUE_WIDTH)
    names = list(columns)
    tables = []
    for first in range(0, len(names), per_table):
        chunk = names[first : first + per_table]
        table = Table(
            title=title if first == 0 else None,
            box=box.SIMPLE_HEAD,
            show_edge=False,
            collapse_padding=True,
        )
        table.add_column("metric", no_wrap=True)
        for column in chunk:
            table.add_column(
                column, justify="right", no_wrap=True, overflow="ellipsis", max_width=_VALUE_WIDTH
            )
        for metric in columns[names[0]]:
            table.add_row(metric, *(metric_text(metric, columns[c].get(metric)) for c in chunk))
        tables.append(table)
    return tables


def _advancing(step: Any, advance: Any) -> Any:
    """Return ``step`` advancing the progress bar (and naming the step) when it starts."""

    @functools.wraps(step)
    def run(week: Any) -> Any:
        advance(1, f"monitor: {getattr(step, '__name__', 'step').replace('_', ' ')}")
        return step(week)

    return run


def run_report(
    ctx: typer.Context,
    bot: str | None = BotOpt,
    out_path: Path | None = typer.Option(None, "--out", help="Copy the latest report to this file"),
) -> None:
    """Print (or copy out) the bot's latest weekly report from the store; a copy stands alone (plotly.js inlined)."""
    services = state_of(ctx).read_services({"bot": {"name": bot}})
    name = services.settings.bot.name
    keys = [k for k in services.store.list(f"reports/{name}/") if k.endswith("/report.html")]
    if not keys:
        check_bot_exists(services.store, name)
        raise ConfigError(f"bot {name} has no report yet; run `scalpbot monitor --bot {name}`")
    latest = keys[-1]
    if out_path is None:
        metrics = json.loads(services.store.get(latest.replace("report.html", "metrics.json")).data)
        out.print(f"latest report: {latest} in {services.store.describe()}")
        print_json(metrics)
        return
    try:
        data = services.store.get(latest).data
    except ObjectNotFound:
        raise ConfigError(f"{latest} vanished; run `scalpbot monitor` again") from None
    from scalpbot.reporting.html_report import plotly_asset, standalone

    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(standalone(data.decode(), f"../../assets/{plotly_asset()[0]}"), encoding="utf-8")
    out.print(f"wrote {latest} to {out_path}")


def notify_test(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print one JSON object")
) -> None:
    """Send a test message to every configured channel (console, SNS, apprise URLs)."""
    services = state_of(ctx).services()
    notify = services.settings.notify
    notifier = build_notifier(services.settings, services.store, services.clock)
    notifier.notify(
        "scalpbot notification test", f"bot {services.settings.bot.name}: channels are configured"
    )
    if as_json:
        channels = {
            "console": notify.console,
            "sns": bool(notify.sns_topic_arn),
            "apprise_urls": len(notify.apprise_urls),  # how many, never the URLs (they hold credentials)
        }
        print_json({"sent": True, "bot": services.settings.bot.name, "channels": channels})
        return
    out.print("sent; failures (if any) are in the bot's ledger as notify_error events")
