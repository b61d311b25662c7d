"""``scalpbot run``: the four jobs on their cadences in one process (wall clock, or ``--replay FROM TO``)."""

from __future__ import annotations

import signal as signals
import threading
from types import FrameType

import pandas as pd
import typer

from scalpbot.cli.data_cmds import parse_time
from scalpbot.cli.render import err, out
from scalpbot.cli.state import state_of
from scalpbot.cli.summary import release_line, replay_summary
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.core.timeframes import timeframe_delta
from scalpbot.errors import CycleFailed
from scalpbot.jobs.execute import run_cycle
from scalpbot.jobs.trading import build_executor, memory_bars, retrieve_closed, stored_bars, trade_bar
from scalpbot.progress import tracked
from scalpbot.scheduler import ScheduledJob, Scheduler, replay_ticks, wall_ticks
from scalpbot.services import SourceChoice, build_market_data, build_notifier


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
) -> None:
    """Retrieve and execute on each bar close, train daily, monitor weekly; stop cleanly on SIGINT/SIGTERM."""
    from scalpbot.jobs.improve import weekly_steps
    from scalpbot.jobs.monitor import monitor
    from scalpbot.jobs.train import train

    services = state_of(ctx).services({"bot": {"name": bot}})
    series, name = services.series(), services.settings.bot.name
    step = timeframe_delta(series.timeframe)
    notifier = build_notifier(services.settings, services.store, services.clock)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        err.print("stopping: the job in flight finishes first")
        stop.set()

    signals.signal(signals.SIGINT, request_stop)
    signals.signal(signals.SIGTERM, request_stop)
    jobs: list[ScheduledJob] = []
    live: SourceChoice | None = None
    if replay is None:
        bars = stored_bars(services, series)
        choice = live = build_market_data(source, services)
        jobs.append(
            ScheduledJob(
                "retrieve",
                lambda tick: retrieve_closed(services, choice, series, tick),
            )
        )
        ticks = wall_ticks(step, lambda: pd.Timestamp(services.clock.now()), stop)
    else:
        start, end = (pd.Timestamp(parse_time(v, "--replay") or v) for v in replay)
        bars = memory_bars(services.dataset.read(series, start - FEATURE_WINDOW * step, end))
        ticks = tracked(replay_ticks(start, end, step), int((end - start) / step), "run --replay")
    executor = build_executor(services, series, bot=name, bars=bars, notifier=notifier, fallback_latest=True)
    last_monitor: list[str] = []

    def execute(tick: pd.Timestamp) -> None:
        # On the wall clock a bar the exchange has not published yet is fetched again, else the newest
        # stored bar is traded (as on Lambda); a replay has every bar in memory.
        report = (
            run_cycle(executor, tick - step)
            if live is None
            else trade_bar(services, executor, live, series, tick)
        )
        if report.status == "failed":
            raise CycleFailed(report.message)

    def train_job(tick: pd.Timestamp) -> None:
        report = train(services, series, until=tick.to_pydatetime())
        notifier.notify(*report.announcement())

    def monitor_job(tick: pd.Timestamp) -> None:
        report = monitor(
            services,
            series,
            bot=name,
            days=monitor_every_days,
            until=tick.to_pydatetime(),
            notifier=notifier,
            steps=weekly_steps(services, series),
        )
        last_monitor.append(f"{report.report_key}")

    jobs += [
        ScheduledJob("train", train_job, pd.Timedelta(hours=train_every_hours)),
        ScheduledJob("execute", execute),
        # The first review comes after a full period of trading, not on the first bar.
        ScheduledJob("monitor", monitor_job, pd.Timedelta(days=monitor_every_days), wait_first=True),
    ]
    err.print(release_line(services, fallback_newest=services.settings.execute.broker == "paper"))
    scheduler = Scheduler(jobs, notifier=notifier, symbol=series.symbol, stop=stop)
    report = scheduler.run(ticks)
    runs = ", ".join(f"{job} {n}" for job, n in report.runs.items())
    failures = ", ".join(f"{job} {n}" for job, n in report.failures.items()) or "none"
    state = "stopped on request" if report.stopped else "done"
    out.print(f"{state} after {report.ticks} bar closes: runs {runs}; failures {failures}")
    if last_monitor:
        out.print(f"latest report: {last_monitor[-1]} in {services.store.describe()}")
    if replay is not None:
        out.print(replay_summary(services, name, start, end))
