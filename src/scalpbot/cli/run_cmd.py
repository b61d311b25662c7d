"""``scalpbot run``: the four jobs on their cadences in one process (wall clock, or ``--replay FROM TO``)."""

from __future__ import annotations

import signal as signals
import threading
from collections.abc import Iterable
from types import FrameType

import pandas as pd
import typer

from scalpbot.adapters.progress import tracked
from scalpbot.cli.dates import parse_range
from scalpbot.cli.render import err, out, print_json
from scalpbot.cli.state import state_of
from scalpbot.cli.summary import release_line, replay_summary
from scalpbot.core.timeframes import timeframe_delta
from scalpbot.errors import CycleFailed, ScalpbotError
from scalpbot.jobs.trading import basket_trader, raise_if_failed, retrieve_closed
from scalpbot.ports import BarHistory
from scalpbot.scheduler import ScheduledJob, Scheduler, replay_ticks, wall_ticks
from scalpbot.wiring import (
    SourceChoice,
    build_executor,
    build_market_data,
    build_notifier,
    replay_history,
    stored_history,
)


def run_all(
    ctx: typer.Context,
    bot: str | None = typer.Option(None, "--bot", help="Bot name [config bot.name]"),
    source: str = typer.Option(
        "ccxt", "--source", help="Where new bars come from: ccxt | file:PATH | sample"
    ),
    replay: tuple[str, str] | None = typer.Option(
        None, "--replay", help="FROM TO: fast-forward through stored bars"
    ),
    train_every_hours: float = typer.Option(24.0, "--train-every", help="Hours between train runs"),
    monitor_every_days: float = typer.Option(7.0, "--monitor-every", help="Days between monitor runs"),
    as_json: bool = typer.Option(
        False, "--json", help="End with one JSON object instead of the summary lines"
    ),
) -> None:
    """Retrieve and execute on each bar close, train daily, monitor weekly; stop cleanly on SIGINT/SIGTERM.

    A bot of several symbols (``bot.symbols``) retrieves, trades, trains and monitors each of them, in that
    order, through the shared portfolio budget; a symbol that fails does not stop the others."""
    from scalpbot.jobs.basket_monitor import monitor_basket
    from scalpbot.jobs.improve import weekly_steps
    from scalpbot.jobs.monitor import monitor
    from scalpbot.jobs.train import train

    services = state_of(ctx).services({"bot": {"name": bot}})
    series, name = services.series(), services.settings.bot.name
    basket = [services.series(symbol) for symbol in services.settings.symbols]
    step = timeframe_delta(series.timeframe)
    notifier = build_notifier(services.settings, services.store, services.clock)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        err.print("stopping: the job in flight finishes first")
        stop.set()

    signals.signal(signals.SIGINT, request_stop)
    signals.signal(signals.SIGTERM, request_stop)
    jobs: list[ScheduledJob] = []
    histories: dict[str, BarHistory] = {}
    if replay is None:
        choice = build_market_data(source, services, [each.symbol for each in basket])
        for each in basket:
            histories[each.symbol] = stored_history(services, each)

        def retrieve_all(tick: pd.Timestamp) -> None:
            failed = []
            for each in basket:  # one symbol's outage does not keep the others' bars out
                try:
                    retrieve_closed(services, choice, each, tick)
                except ScalpbotError as e:
                    failed.append(f"{each.symbol}: {e}")
            if failed:
                raise CycleFailed("; ".join(failed))

        jobs.append(ScheduledJob("retrieve", retrieve_all))
        ticks: Iterable[pd.Timestamp] = wall_ticks(step, lambda: pd.Timestamp(services.clock.now()), stop)
        live: SourceChoice | None = choice
    else:
        first, last = parse_range(*replay, ("--replay FROM", "--replay TO"))
        assert first is not None and last is not None
        start, end = pd.Timestamp(first), pd.Timestamp(last)
        for each in basket:
            histories[each.symbol] = replay_history(services, each, start, end)
        ticks = tracked(replay_ticks(start, end, step), int((end - start) / step), "run --replay")
        live = None
    executors = [
        build_executor(
            services,
            each,
            bot=name,
            bars=histories[each.symbol],
            mode="live" if replay is None else "replay",
            notifier=notifier,
            fallback_latest=True,
        )
        for each in basket
    ]
    # On the wall clock a bar the exchange has not published yet is fetched again, else the newest stored
    # bar is traded (as on Lambda); a replay has every bar in memory. The leases are held for the whole run.
    trader = basket_trader(services, executors, source=live, release_lease=False)
    last_monitor: list[str] = []

    def execute(tick: pd.Timestamp) -> None:
        raise_if_failed(trader(tick))

    def train_job(tick: pd.Timestamp) -> None:
        for each in basket:
            report = train(services, each, until=tick.to_pydatetime())
            notifier.notify(*report.announcement())

    def monitor_job(tick: pd.Timestamp) -> None:
        if len(basket) > 1:  # the portfolio and each symbol, one report and one notification
            review = monitor_basket(
                services,
                basket,
                bot=name,
                days=monitor_every_days,
                until=tick.to_pydatetime(),
                notifier=notifier,
                steps=lambda each: weekly_steps(services, each),
            )
            last_monitor.append(f"{review.report_key}")
            return
        for each in basket:
            report = monitor(
                services,
                each,
                bot=name,
                days=monitor_every_days,
                until=tick.to_pydatetime(),
                notifier=notifier,
                steps=weekly_steps(services, each),
            )
            last_monitor.append(f"{report.report_key}")

    jobs += [
        ScheduledJob("train", train_job, pd.Timedelta(hours=train_every_hours)),
        ScheduledJob("execute", execute),
        # The first review comes after a full period of trading, not on the first bar.
        ScheduledJob("monitor", monitor_job, pd.Timedelta(days=monitor_every_days), wait_first=True),
    ]
    paper = replay is not None or services.settings.execute.broker == "paper"
    err.print(release_line(services, fallback_newest=paper))
    scheduler = Scheduler(jobs, notifier=notifier, symbol=series.symbol, stop=stop)
    try:
        report = scheduler.run(ticks)
    finally:
        trader.close()
    if as_json:
        print_json(
            {
                "bot": name,
                "ticks": report.ticks,
                "runs": report.runs,
                "failures": report.failures,
                "stopped": report.stopped,
                "latest_report": last_monitor[-1] if last_monitor else None,
                "summary": None if replay is None else replay_summary(services, name, start, end),
            }
        )
        return
    runs = ", ".join(f"{job} {n}" for job, n in report.runs.items())
    failures = ", ".join(f"{job} {n}" for job, n in report.failures.items()) or "none"
    state = "stopped on request" if report.stopped else "done"
    out.print(f"{state} after {report.ticks} bar closes: runs {runs}; failures {failures}")
    if last_monitor:
        out.print(f"latest report: {last_monitor[-1]} in {services.store.describe()}")
    if replay is not None:
        out.print(replay_summary(services, name, start, end))
