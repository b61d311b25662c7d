"""AWS Lambda entry points: the four jobs on S3 (the store) and SNS (notifications).

A function is configured like the CLI, from its environment only: ``SCALPBOT_STORE=s3://BUCKET/PREFIX``,
``SCALPBOT_NOTIFY__SNS_TOPIC_ARN``, and for live trading ``SCALPBOT_EXECUTE__BROKER=ccxt`` with
``SCALPBOT_EXCHANGE__SECRET_ID`` (``deploy/aws/template.yaml`` sets them). The settings, the store's S3 client
and the notifier's SNS client are built once per execution environment, when this module is imported, and
reused by every warm invocation; the exchange client and the executor are built by the first invocation that
needs them and kept.

Each handler makes one call into its job and returns a JSON summary. Time alignment: a handler acts at the
``time`` of the EventBridge scheduled event that invoked it (UTC, the start of the scheduled minute), or at
the wall clock when the event has none, so a retried event redoes the same work: retrieve stores the bars
that closed before that time, execute trades the bar that closed last at that time, train uses the bars up to
it, and monitor reviews the days before it.

**One symbol per invocation.** An event may name the ``symbol`` it is for (``{"symbol": "ETH/USDT", "time":
...}``): the job runs for that symbol only, on its own state - its run lease and snapshot (the keys
``basket_trader`` gives it locally), the bot's shared portfolio risk budget (compare-and-swap in the store),
ledger events that name it. A bot of several symbols (``bot.symbols``) is fanned out by the template's state
machines, one invocation per symbol in parallel; invoked without a symbol it refuses (``ConfigError``), since
one invocation cannot trade every symbol within its minute. A bot of one symbol may omit it and runs exactly
as it always did. A symbol outside ``bot.symbols`` is refused before anything is written.

**A train split into phases.** With several tuning workers the daily state machine invokes the train function
with ``"phase": "prepare"``, then ``"tune"`` (``"worker": k``) several times at once, then ``"finish"`` (see
:mod:`scalpbot.jobs.train_phases`); an event without a phase trains in one invocation, as always. A tune
invocation stops starting trials ``TUNE_MARGIN_S`` before its timeout.

A failing job is notified (job, symbol, cause), logged as one structured record and raised again, so that
Lambda counts the error (the alarms) and the state machine catches it into a notice of that symbol (an
asynchronous invocation by hand goes to the function's on-failure destination). Imports
stay light for retrieve and execute: the ML stack loads only in the train and monitor handlers.
"""

from __future__ import annotations

import difflib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Lambda's file system is read-only but for /tmp: numba's kernel cache and Keras' config go there. Set before
# anything imports numba (which reads NUMBA_CACHE_DIR when it is imported) or keras.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "numba-cache"))
os.environ.setdefault("KERAS_HOME", os.path.join(tempfile.gettempdir(), ".keras"))

import pandas as pd

from scalpbot.adapters.notify.fanout import notify_job_error
from scalpbot.config import NUMBA_CACHE_SEED_ENV, Settings, load_settings
from scalpbot.core.bars import Gap
from scalpbot.errors import ConfigError
from scalpbot.jobs.cycle import CycleReport
from scalpbot.jobs.trading import BarTrader, basket_trader, raise_if_failed, retrieve_closed
from scalpbot.ports import Notifier
from scalpbot.state.dataset import SeriesId
from scalpbot.wiring import (
    Services,
    SourceChoice,
    build_executor,
    build_market_data,
    build_notifier,
    build_services,
    run_lease,
    stored_history,
)

__all__ = [
    "TUNE_MARGIN_S",
    "LambdaRuntime",
    "data_retrieval_lambda_handler",
    "event_symbol",
    "event_time",
    "execution_lambda_handler",
    "monitoring_and_optimization_lambda_handler",
    "seed_numba_cache",
    "training_and_deployment_lambda_handler",
    "tuning_seconds",
]

_log = logging.getLogger("scalpbot.aws")
_log.setLevel(logging.INFO)


def _job_line(job: str) -> Callable[[str], None]:
    """Return a callback that logs a job's progress lines (the train log: folds, fits, labels) as INFO."""
    return lambda line: _log.info(line, extra={"job": job})


Event = Mapping[str, Any]
"""The invoking event: an EventBridge scheduled event, or any JSON object (``time`` and ``symbol`` are read)."""


def event_time(event: object, wall_clock: Callable[[], pd.Timestamp]) -> pd.Timestamp:
    """Return the UTC time a handler acts at: the event's ISO-8601 ``time``, else ``wall_clock()``.

    A ``time`` that is present but not a parseable timestamp is refused (``ConfigError``) rather than
    replaced by the wall clock, so a malformed event changes nothing.
    """
    raw = event.get("time") if isinstance(event, Mapping) else None
    if raw is None:
        return wall_clock()
    try:
        at = pd.Timestamp(str(raw))
        valid = not pd.isna(at)
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(f"event time {raw!r} is not an ISO-8601 timestamp, e.g. 2024-12-31T12:00:00Z")
    return at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")


def event_symbol(event: object, bot: str, symbols: Sequence[str]) -> str:
    """Return the symbol an invocation is for: the event's ``symbol``, one of the bot's ``symbols``.

    A bot of one symbol may omit it (that symbol, as before symbols were listed). Refused (``ConfigError``): a
    symbol the bot does not trade, and a bot of several symbols invoked without one (the fan-out names it).
    """
    raw = event.get("symbol") if isinstance(event, Mapping) else None
    if raw is None:
        if len(symbols) == 1:
            return symbols[0]
        raise ConfigError(
            f"bot {bot} trades {len(symbols)} symbols ({', '.join(symbols)}); invoke once per symbol with "
            '{"symbol": ..., "time": ...} (the state machines of deploy/aws/template.yaml do)'
        )
    if raw not in symbols:
        close = difflib.get_close_matches(str(raw), symbols, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(
            f"event symbol {raw!r} is not traded by bot {bot} (bot.symbols: {', '.join(symbols)}){hint}"
        )
    return str(raw)


class LambdaRuntime:
    """The clients of one execution environment and the four jobs run against them.

    ``source`` names where new bars come from (``ccxt`` on AWS; see ``services.build_market_data``).
    ``series`` is the bot's first symbol; each invocation runs for the symbol its event names (see
    :func:`event_symbol`), and the execute use case of each symbol is built once and kept while warm.
    """

    def __init__(self, services: Services, notifier: Notifier, *, source: str = "ccxt") -> None:
        self.services = services
        self.notifier = notifier
        self.series = services.series(services.settings.symbols[0])
        self._source_spec = source
        self._source: SourceChoice | None = None
        self._traders: dict[str, BarTrader] = {}

    @classmethod
    def from_environment(cls, settings: Settings | None = None) -> LambdaRuntime:
        """Return the runtime configured from the environment (``SCALPBOT_*`` variables, no config file)."""
        settings = settings or load_settings(None, {})
        services = build_services(settings)
        return cls(services, build_notifier(settings, services.store, services.clock))

    @property
    def source(self) -> SourceChoice:
        """The market data source, connected on first use."""
        if self._source is None:
            self._source = build_market_data(self._source_spec, self.services, self.services.settings.symbols)
        return self._source

    def trader(self, owner: str, series: SeriesId | None = None) -> BarTrader:
        """The execute use case of ``series`` (default: the bot's first symbol), built on first use.

        As ``basket_trader`` builds it for that symbol locally: its broker and snapshot, the bot's risk budget,
        its run lease (a bot of one symbol: the bot's). ``owner`` names this invocation in the run lease,
        which is taken and given back on every invocation.
        """
        services, bot = self.services, self.services.settings.bot.name
        series = series or self.series
        trader = self._traders.get(series.symbol)
        if trader is None:
            executor = build_executor(
                services,
                series,
                bot=bot,
                bars=stored_history(services, series),
                notifier=self.notifier,
            )
            built = basket_trader(services, [executor], source=self.source, release_lease=True)
            assert isinstance(built, BarTrader)  # one executor: one symbol's trader
            trader = self._traders[series.symbol] = built
        trader.lease = run_lease(services, bot, owner=owner, symbol=series.symbol)
        return trader

    def now(self) -> pd.Timestamp:
        """Return the wall clock (UTC)."""
        return pd.Timestamp(self.services.clock.now())

    @contextmanager
    def job(self, name: str, event: object, context: object) -> Iterator[tuple[pd.Timestamp, SeriesId]]:
        """Run one job: yield its time and series, log start and end as structured records, notify and
        re-raise errors (a refused symbol too, named as the event gave it)."""
        started = time.perf_counter()
        settings = self.services.settings
        named = event.get("symbol") if isinstance(event, Mapping) else None
        if named is None and len(settings.symbols) == 1:
            named = self.series.symbol
        fields = {"job": name, "symbol": None if named is None else str(named), "bot": settings.bot.name}
        try:
            at = event_time(event, self.now)
            series = self.services.series(event_symbol(event, settings.bot.name, settings.symbols))
            fields["symbol"] = series.symbol
            _log.info("%s started", name, extra={**fields, "at": at.isoformat()})
            yield at, series
        except Exception as e:
            _log.exception("%s failed", name, extra={**fields, "seconds": _elapsed(started)})
            notify_job_error(self.notifier, name, fields["symbol"], e)
            raise
        _log.info("%s finished", name, extra={**fields, "seconds": _elapsed(started)})

    def retrieve(self, event: object, context: object) -> dict[str, Any]:
        """Store the bars closed before the event's time; the first run fetches ``data.lookback_days``."""
        with self.job("retrieve", event, context) as (at, series):
            report = retrieve_closed(self.services, self.source, series, at)
            # A day's partition is checked whole on every append: warn about the holes this run found only.
            fresh = [g for g in report.gaps if report.since is None or g.before >= report.since]
            if fresh or report.conflicts:
                self.notifier.notify(
                    f"retrieve {series}: check the data",
                    _data_warning(fresh, report.conflicts),
                    level="warning",
                )
            summary = report.payload()
            if report.funding is not None and report.funding.error is not None:
                # the bars are stored; the rates are asked for again on the next run
                _log.error(report.funding.error, extra={"job": "retrieve", "result": summary})
                self.notifier.notify(f"retrieve {series}: funding", report.funding.error, level="error")
            _log.info(
                "retrieve stored %d new bars", report.added, extra={"job": "retrieve", "result": summary}
            )
        return summary

    def execute(self, event: object, context: object) -> dict[str, Any]:
        """Trade the bar that closed last at the event's time for its symbol, under that symbol's run lease."""
        with self.job("execute", event, context) as (at, series):
            owner = f"lambda:{getattr(context, 'aws_request_id', os.getpid())}"
            report = self.trader(owner, series)(at)
            summary = {"symbol": series.symbol, **_cycle_summary(report)}
            if report.status == "idle":
                # Nothing was ever traded without a release: idle until the train job promotes one.
                _log.warning("execute idle: no current release", extra={"job": "execute", "result": summary})
                return summary
            _log.info("execute cycle %s", report.status, extra={"job": "execute", "result": summary})
            raise_if_failed(report)
        return summary

    def train(self, event: object, context: object) -> dict[str, Any]:
        """Train on the bars up to the event's time, tune the policy, promote only through the gate.

        An event with a ``phase`` runs one phase of a run split across invocations (see :meth:`train_phase`).
        """
        from scalpbot.jobs.train import train

        if isinstance(event, Mapping) and event.get("phase") is not None:
            return self.train_phase(event, context)
        with self.job("train", event, context) as (at, series):
            report = train(self.services, series, until=at.to_pydatetime(), log=_job_line("train"))
            self.notifier.notify(*report.announcement())
            summary = report.payload()
            _log.info(
                "train %s",
                "promoted" if report.promoted else "kept the current release",
                extra={
                    "job": "train",
                    "result": {k: summary[k] for k in ("release_id", "promoted", "reason", "timings")},
                },
            )
        return summary

    def train_phase(self, event: Event, context: object) -> dict[str, Any]:
        """Run the event's phase of the train run of its (symbol, time), split so that workers tune together.

        ``{"phase": "prepare"}`` fits and writes the hand-over; ``{"phase": "tune", "worker": k}`` joins the
        shared studies until they are complete or the invocation's remaining time, less
        ``TUNE_MARGIN_S``, is spent; ``{"phase": "finish"}`` completes the studies and publishes through the
        gate, announcing the verdict as the one-invocation train does (:mod:`scalpbot.jobs.train_phases`).
        """
        from scalpbot.jobs.train_phases import PHASES, finish_phase, prepare_phase, tune_phase

        phase = event.get("phase")
        with self.job(f"train {phase}", event, context) as (at, series):
            until = at.to_pydatetime()
            if phase == "prepare":
                summary = prepare_phase(self.services, series, until, log=_job_line("train prepare"))
            elif phase == "tune":
                summary = tune_phase(
                    self.services, series, until, worker=_worker(event), seconds=tuning_seconds(context)
                )
            elif phase == "finish":
                report = finish_phase(self.services, series, until)
                self.notifier.notify(*report.announcement())
                summary = {"phase": "finish", **report.payload()}
            else:
                raise ConfigError(f"train phase {phase!r} is not one of {', '.join(PHASES)}")
            _log.info(
                "train %s %s", phase, summary.get("status", ""), extra={"job": "train", "result": summary}
            )
        return summary

    def monitor(self, event: object, context: object) -> dict[str, Any]:
        """Review the week before the event's time, run online learning and the RL adjustment, report.

        A symbol of a basket writes its page under the week's folder in its own (``{BASE_QUOTE}/``) and sends
        no summary; the event ``{"scope": "portfolio", "time": ...}``, sent once the symbols are reviewed, writes
        the whole account's page and the one notification with every symbol's line (:meth:`portfolio_monitor`).
        """
        from scalpbot.jobs.improve import weekly_steps
        from scalpbot.jobs.monitor import monitor, monitor_payload
        from scalpbot.state.scope import symbol_folder

        if isinstance(event, Mapping) and event.get("scope") == "portfolio":
            return self.portfolio_monitor(event, context)
        basket = len(self.services.settings.symbols) > 1
        with self.job("monitor", event, context) as (at, series):
            report = monitor(
                self.services,
                series,
                bot=self.services.settings.bot.name,
                until=at.to_pydatetime(),
                notifier=self.notifier,
                steps=weekly_steps(self.services, series),
                report_folder=symbol_folder(series.symbol) if basket else "",
                announce=not basket,  # a basket's one weekly notification comes with the portfolio's review
            )
            summary = monitor_payload(report)
            _log.info("monitor wrote %s", report.report_key, extra={"job": "monitor", "result": summary})
        return summary

    def portfolio_monitor(self, event: Mapping[str, Any], context: object) -> dict[str, Any]:
        """Review a basket's week as one account (its page and one notification), from the symbols' weeks;
        their own pages, written by their invocations, are left as they are. A bot of one symbol has no
        portfolio beside it: nothing to do."""
        from scalpbot.jobs.basket_monitor import basket_payload, monitor_basket

        settings = self.services.settings
        if len(settings.symbols) == 1:
            return {"scope": "portfolio", "skipped": "a bot of one symbol: its review is the portfolio's"}
        bot = settings.bot.name
        fields = {"job": "monitor", "symbol": None, "bot": bot, "scope": "portfolio"}
        started = time.perf_counter()
        try:
            at = event_time(event, self.now)
            review = monitor_basket(
                self.services,
                [self.services.series(symbol) for symbol in settings.symbols],
                bot=bot,
                until=at.to_pydatetime(),
                notifier=self.notifier,
                symbol_pages=False,
            )
        except Exception as e:
            _log.exception("monitor failed", extra={**fields, "seconds": _elapsed(started)})
            notify_job_error(self.notifier, "monitor", None, e)
            raise
        summary = basket_payload(review)
        _log.info("monitor wrote %s", review.report_key, extra={**fields, "seconds": _elapsed(started)})
        return summary


TUNE_MARGIN_S = 60.0
"""Seconds a tune-phase invocation keeps for itself: it starts no trial after its remaining time falls below."""


def tuning_seconds(context: object) -> float | None:
    """Return how long a tune-phase invocation may tune: its remaining time less ``TUNE_MARGIN_S``.

    ``None`` (no limit) when the context does not tell its remaining time (a local call).
    """
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return float(remaining()) / 1000.0 - TUNE_MARGIN_S


def _worker(event: Event) -> int:
    raw = event.get("worker", 0)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ConfigError(f"event worker {raw!r} must be a worker index >= 0")
    return raw


def _elapsed(started: float) -> float:
    return round(time.perf_counter() - started, 3)


def _data_warning(gaps: list[Gap], conflicts: int) -> str:
    parts = []
    if gaps:
        largest = max(gaps, key=lambda g: g.missing)
        parts.append(f"{len(gaps)} gaps (largest: {largest.missing} bars after {largest.after.isoformat()})")
    if conflicts:
        parts.append(f"{conflicts} bars differ from the stored copy (kept the stored one)")
    return "; ".join(parts)


def _cycle_summary(report: CycleReport) -> dict[str, Any]:
    signal = report.signal
    return {
        "bar": report.bar.isoformat(),
        "status": report.status,
        "equity": report.equity,
        "signal": None
        if signal is None
        else {"side": signal.side, "size": signal.size, "sl": signal.sl, "tp": signal.tp},
        "denial": report.denial,
        "orders": [{"intent": a.intent, "status": a.status, "client_id": a.client_id} for a in report.acks],
        "fills": len(report.fills),
        "message": report.message,
    }


def seed_numba_cache(seed: str | None, cache_dir: str) -> int:
    """Copy into ``cache_dir`` the files of the prebuilt kernel cache ``seed`` that it lacks; return how many.

    The images carry the execute path's kernels compiled at build time (``python -m scalpbot.warmup``, with
    ``NUMBA_CPU_NAME=generic`` so that they load on any x86-64 host) in ``SCALPBOT_NUMBA_CACHE_SEED``: a new
    execution environment loads them instead of compiling for several seconds. Kernels compile on their
    first call, not on import, so the copy only has to be in place before the first invocation.
    """
    if not seed or not os.path.isdir(seed):
        return 0
    copied = 0
    for source in Path(seed).rglob("*"):
        target = Path(cache_dir) / source.relative_to(seed)
        if source.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            copied += 1
    return copied


seed_numba_cache(os.environ.get(NUMBA_CACHE_SEED_ENV), os.environ["NUMBA_CACHE_DIR"])

# One runtime per execution environment, built at import (the init phase) and reused while warm. A bad
# setting fails the init with the setting's name in the log; the on-failure destination reports it.
_RUNTIME = LambdaRuntime.from_environment()


def data_retrieval_lambda_handler(event: Event, context: object) -> dict[str, Any]:
    """Every minute: store the newly closed bars (S3)."""
    return _RUNTIME.retrieve(event, context)


def execution_lambda_handler(event: Event, context: object) -> dict[str, Any]:
    """Every minute: reconcile, decide and place the orders for the bar that just closed."""
    return _RUNTIME.execute(event, context)


def training_and_deployment_lambda_handler(event: Event, context: object) -> dict[str, Any]:
    """Daily: train, tune, and promote the new release only if it beats the current one."""
    return _RUNTIME.train(event, context)


def monitoring_and_optimization_lambda_handler(event: Event, context: object) -> dict[str, Any]:
    """Weekly: metrics, online learning, RL parameter adjustment, report and notifications."""
    return _RUNTIME.monitor(event, context)
