"""The ``scalpbot`` console script: global options, command registration and error handling."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import typer

from scalpbot.cli.backtest_cmd import run_backtest
from scalpbot.cli.data_cmds import data_app, fetch
from scalpbot.cli.models_cmds import models_app
from scalpbot.cli.monitor_cmds import notify_test, run_monitor, run_report
from scalpbot.cli.render import err, out, print_json
from scalpbot.cli.run_cmd import run_all
from scalpbot.cli.serve_cmd import list_bots, serve
from scalpbot.cli.state import CliState, state_of
from scalpbot.cli.trading_cmds import halt_bot, list_trades, positions, resume_bot, run_replay, trade
from scalpbot.cli.train_cmd import run_train
from scalpbot.cli.venue_cmds import venue_app
from scalpbot.config import redacted
from scalpbot.errors import ScalpbotError

app = typer.Typer(
    help="scalpbot: a scalping trading bot for 1-minute bars.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(config_app, name="config")
app.add_typer(models_app, name="models")
app.add_typer(venue_app, name="venue")
app.command("fetch")(fetch)
app.command("backtest")(run_backtest)
app.command("train")(run_train)
app.command("trade")(trade)
app.command("replay")(run_replay)
app.command("trades")(list_trades)
app.command("positions")(positions)
app.command("halt")(halt_bot)
app.command("resume")(resume_bot)
app.command("monitor")(run_monitor)
app.command("report")(run_report)
app.command("notify-test")(notify_test)
app.command("run")(run_all)
app.command("serve")(serve)
app.command("bots")(list_bots)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"scalpbot {version('scalpbot')}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", help="TOML file [./scalpbot.toml if present]"),
    store: str | None = typer.Option(
        None, "--store", help="Folder path or s3://bucket/prefix [SCALPBOT_STORE, store.url]"
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks of errors"),
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit"
    ),
) -> None:
    """Retrieve, train, execute and monitor: locally or on AWS Lambda."""
    ctx.obj = CliState(config=config, store=store, verbose=verbose)


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective configuration as JSON, secrets redacted."""
    print_json(redacted(state_of(ctx).settings()))


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a ``ScalpbotError`` ends it with one line on stderr and exit status 1."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="scalpbot")
    except ScalpbotError as e:
        if "--verbose" in args or "-v" in args:
            traceback.print_exc()
        err.print(f"[red]error:[/] {e}", markup=True, highlight=False)
        sys.exit(1)
