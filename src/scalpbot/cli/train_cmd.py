"""``scalpbot train``: train, tune and score a release; promote it only through the gate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import typer
from rich.table import Table

from scalpbot.cli.data_cmds import ExchangeOpt, TimeframeOpt
from scalpbot.cli.dates import parse_time
from scalpbot.cli.render import err, out, print_json
from scalpbot.cli.state import reported, state_of
from scalpbot.cli.symbols import SymbolsOpt, data_symbols, for_each_symbol

_IMPORTANT = 8
_SHOWN = ("total_return", "sharpe", "max_drawdown", "win_rate", "risk_reward", "trades", "fees_paid")


def run_train(
    ctx: typer.Context,
    symbol: list[str] | None = SymbolsOpt,
    timeframe: str | None = TimeframeOpt,
    exchange: str | None = ExchangeOpt,
    until: str | None = typer.Option(
        None, "--to", "--until", help="Train on bars before this time [newest stored bar]"
    ),
    trials: int | None = typer.Option(
        None, "--trials", help="Bayesian optimization trials [config train.trials]"
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        help="Processes tuning the policy study together; > 1 needs train.study_storage on PostgreSQL",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (a list for several symbols)"),
) -> None:
    """Train the model on stored bars, tune the policy, score it out of sample and maybe promote it.

    Several symbols (``--symbol`` repeated or a comma list, else ``bot.symbols``): one release each, in turn."""
    symbols = data_symbols(state_of(ctx).settings(), symbol)
    for_each_symbol(
        symbols, as_json, lambda one: _train(ctx, one, timeframe, exchange, until, trials, workers, as_json)
    )


def _train(
    ctx: typer.Context,
    symbol: str | None,
    timeframe: str | None,
    exchange: str | None,
    until: str | None,
    trials: int | None,
    workers: int,
    as_json: bool,
) -> None:
    """Train one symbol (see :func:`run_train`)."""
    from scalpbot.jobs.train import train

    services = state_of(ctx).services(
        {"exchange": {"id": exchange}, "data": {"symbol": symbol, "timeframe": timeframe}}
    )
    with reported(services, "train") as notifier:
        report = train(
            services,
            services.series(),
            until=parse_time(until, "--to"),
            trials=trials,
            workers=workers,
            show_progress=not as_json,
            log=(lambda _: None) if as_json else (lambda line: err.print(line)),
        )
        notifier.notify(*report.announcement())
    payload = report.payload()
    if as_json:
        print_json(payload)
        return
    timings = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in report.timings.items())
    out.print(f"time split: {timings} (total {sum(report.timings.values()):.1f}s)")
    table = Table(title=f"release {report.release_id} of {report.series}: validation and test windows")
    columns: dict[str, Mapping[str, Any]] = {
        "validation": report.validation,
        "test": report.test,
        **{f"test: {name}": metrics for name, metrics in report.baselines.items()},
    }
    if report.incumbent and "metrics" in report.incumbent:
        columns[f"test: current {report.incumbent['release_id']}"] = report.incumbent["metrics"]
    table.add_column("metric", style="bold", no_wrap=True)
    for name in columns:
        table.add_column(name, justify="right")
    for metric in _SHOWN:
        table.add_row(metric, *(_fmt(metric, column.get(metric)) for column in columns.values()))
    out.print(table)
    out.print(_fold_lines(report.folds), markup=False, highlight=False)
    from scalpbot.jobs.learning import describe_label
    from scalpbot.jobs.train import floor_text

    dsr = report.tuning.get("deflated_sharpe")
    floor = f", {floor_text(report.tuning['floor'])}" if report.tuning.get("floor") else ""
    out.print(
        f"tuning: {report.tuning.get('trials_run')} trials ({report.tuning.get('effective_trials')} effective), "
        f"best fold objective {report.tuning.get('best_value'):.2f}{floor}, deflated "
        f"Sharpe ratio {'-' if dsr is None else f'{dsr:.3f}'}; label: {describe_label(report.labels)}"
    )
    shown = list(report.importance.items())[:_IMPORTANT]
    out.print(
        "feature importance (validation folds, log-loss rise): "
        + ", ".join(f"{name} {value:+.4f}" for name, value in shown)
    )
    if report.meta_label:
        verdict = "kept" if report.meta_label.get("adopted") else "not kept"
        out.print(f"meta filter {verdict}: {report.meta_label.get('reason')}", markup=False, highlight=False)
    out.print(report.reason, markup=False, highlight=False)


def _fold_lines(folds: list[dict[str, Any]]) -> str:
    lines = ["walk-forward validation folds, each scored by its own model:"]
    for fold in folds:
        first, last = (stamp[:16].replace("T", " ") for stamp in fold.get("validation", ["", ""]))
        lines.append(
            f"  fold {fold.get('fold')} {first} .. {last}: {_fmt('total_return', fold.get('total_return'))}, "
            f"{fold.get('trades')} trades, Sharpe {_fmt('sharpe', fold.get('sharpe'))}, "
            f"{fold.get('epochs_run')} epochs on {fold.get('train_rows', 0):,} rows"
        )
    return "\n".join(lines)


def _fmt(metric: str, value: Any) -> str:
    if value is None:
        return "-"
    if metric in ("total_return", "max_drawdown", "win_rate"):
        return f"{value:+.2%}" if metric == "total_return" else f"{value:.2%}"
    if metric == "trades":
        return f"{value:,}"
    return f"{value:,.2f}"
