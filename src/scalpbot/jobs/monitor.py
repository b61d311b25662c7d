"""The monitor job (weekly): metrics from the ledger, drift against the simulator, improvements, report, notify.

The week is ``[until - days, until)``: ``until`` defaults to one bar after the bot's last processed bar (so a
replay bot is measured on what it replayed), else now. Metrics use the same functions as the backtest, on the
trades rebuilt from the ledger and the equity rebuilt from those trades and the stored bars.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Required, TypedDict

import numpy as np
import pandas as pd

from scalpbot.core.backtest.frame import backtest
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.core.ledger_equity import equity_from_trades
from scalpbot.core.metrics import Metrics, compute_metrics
from scalpbot.core.timeframes import timeframe_delta
from scalpbot.errors import DataError, ScalpbotError
from scalpbot.inference.signals import TradingModel, release_signals
from scalpbot.jobs.services import Services, state_symbol, venue_profile
from scalpbot.ports import Notifier
from scalpbot.state.dataset import SeriesId
from scalpbot.state.funding import load_funding
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore
from scalpbot.state.releases import ReleaseStore


class Change(TypedDict, total=False):
    """One row of the week's changes: a release trained in the week, or what an improvement step did.

    ``kind``: ``train``, ``online_learning`` or ``reinforcement_learning``. A step that could not run says why in
    ``skipped``; one that wrote a challenger names it (``release_id``, its ``parent``), whether the gate
    ``promoted`` it and why (``reason``, the gate's ``gate`` summary), the ``challenger`` and ``incumbent``
    metrics it was judged on and, for the RL step, the ``proposed_params`` against the ``static_params``.
    """

    kind: Required[str]
    skipped: str
    parent: str
    release_id: str
    promoted: bool | None
    reason: str | None
    gate: dict[str, Any]
    challenger: Metrics
    incumbent: Metrics
    proposed_params: dict[str, float | int | bool]
    static_params: dict[str, float | int | bool]


Step = Callable[["WeekData"], Change]
"""A weekly improvement step: the measured week in, its change record out (see :func:`monitor`)."""


@dataclass(frozen=True)
class WeekData:
    """A bot's week as the ledger and the store record it."""

    bot: str
    series: SeriesId
    start: pd.Timestamp
    end: pd.Timestamp
    bars: pd.DataFrame
    trades: pd.DataFrame
    equity: pd.Series
    metrics: Metrics
    previous_metrics: Metrics | None
    releases: tuple[str, ...]
    latency: dict[str, float] = field(default_factory=dict)
    """Seconds from bar close to the venue's acknowledgement of the week's orders (live bots): count, p50,
    p95, max; empty when nothing was sent live."""


@dataclass(frozen=True)
class MonitorReport:
    """What the weekly run measured and changed, and where its report is."""

    week: WeekData
    drift: dict[str, Any]
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    report_key: str | None = None


def monitor_payload(report: MonitorReport) -> dict[str, Any]:
    """Return the weekly run as one JSON-ready object: window, metrics, drift totals, changes, report key."""
    from scalpbot.reporting.tables import jsonable

    week = report.week
    payload: dict[str, Any] = jsonable(
        {
            "bot": week.bot,
            "window": {"start": week.start.isoformat(), "end": week.end.isoformat()},
            "metrics": week.metrics,
            "previous_metrics": week.previous_metrics,
            "drift": report.drift.get("totals", report.drift),
            "latency": week.latency,
            "changes": report.changes,
            "notes": report.notes,
            "report": report.report_key,
        }
    )
    return payload


def week_window(
    services: Services, bot: str, series: SeriesId, days: float, until: datetime | None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Return ``[start, end)`` of the week to measure (see the module docstring)."""
    if until is not None:
        end = pd.Timestamp(until)
    else:
        stored = PortfolioStore(services.store, bot, state_symbol(services.settings, series.symbol)).load()
        last = None if stored is None else stored.snapshot.last_bar_time
        end = pd.Timestamp(services.clock.now()) if last is None else last + timeframe_delta(series.timeframe)
    return end - pd.Timedelta(days=days), end


def measure_week(
    services: Services, bot: str, series: SeriesId, start: pd.Timestamp, end: pd.Timestamp
) -> WeekData:
    """Return the week's bars, trades (entered in the week), equity curve and metrics, and the previous week's.

    The previous week's metrics are ``None`` when the bot decided nothing in it (it was not trading yet).
    In a bot of several symbols, the week of ``series``' symbol: its snapshot and its trades.
    """
    ledger = Ledger(services.store, bot)
    scope = state_symbol(services.settings, series.symbol)
    history_start = start - (end - start)
    bars = services.dataset.read(series, history_start, end)
    if bars.empty:
        raise DataError(f"no bars of {series} stored between {start} and {end}; nothing to measure")
    last_close, last_time = float(bars["close"].iloc[-1]), pd.Timestamp(bars.index[-1])
    stored = PortfolioStore(services.store, bot, scope).load()
    # When the week reaches the bot's last cycle, every fill it counted must be in the ledger.
    reaches_end = stored is not None and (
        stored.snapshot.last_bar_time is None or stored.snapshot.last_bar_time < end
    )
    trades = ledger.trades(
        None,
        end,
        mark_price=last_close,
        mark_time=last_time,
        fill_count=stored.snapshot.fill_count if stored is not None and reaches_end else None,
        symbol=scope,
    )
    if (
        stored is not None
        and stored.snapshot.last_bar_time is not None
        and stored.snapshot.last_bar_time <= last_time
    ):
        start_equity = stored.snapshot.equity - float(trades["pnl"].sum())
    else:
        start_equity = services.settings.backtest.initial_equity
    equity_all = equity_from_trades(trades, bars, start_equity)
    this, previous = (bars.index >= start), (bars.index < start)
    entries = pd.DatetimeIndex(trades["entry_time"])
    week_trades = trades.loc[(entries >= start) & (entries < end)].reset_index(drop=True)
    prev_trades = trades.loc[(entries >= history_start) & (entries < start)].reset_index(drop=True)
    metrics = compute_metrics(week_trades, equity_all.loc[this])
    traded_before = bool(ledger.keys(history_start, start, kinds=("decision",)))
    previous_metrics = (
        compute_metrics(prev_trades, equity_all.loc[previous]) if previous.any() and traded_before else None
    )
    decisions = ledger.events(start, end, kinds=("decision",))
    releases = tuple(
        sorted({str(e.payload.get("release_id")) for e in decisions if e.payload.get("release_id")})
    )
    acks = [float(e.payload["ack_seconds"]) for e in ledger.events(start, end, kinds=("latency",))]
    return WeekData(
        bot,
        series,
        start,
        end,
        bars.loc[this],
        week_trades,
        equity_all.loc[this],
        metrics,
        previous_metrics,
        releases,
        latency_summary(acks),
    )


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """Return the distribution of order latencies (seconds): count, p50, p95, max; empty for none."""
    if not seconds:
        return {}
    values = np.asarray(seconds, dtype=np.float64)
    return {
        "count": float(len(values)),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "max": float(values.max()),
    }


def simulate_drift(services: Services, week: WeekData) -> dict[str, Any]:
    """Replay the week through the simulator with the release that traded; compare trade by trade.

    A live trade and a simulated one match when they enter at the same bar on the same side. Reported: the
    simulated metrics, matched trades with their entry/exit price differences (live minus simulated, quote
    currency, signed so that positive is worse for the bot), missed (simulated only, each with the reason the
    ledger gives: a denial, another decision, an error or no cycle) and extra (live only). The simulated equity
    curve is under ``simulated_equity`` (a Series on the week's bars; not JSON: take it out before saving).
    """
    if not week.releases:
        return {"release_id": None, "note": "no decision was recorded this week; nothing to compare"}
    release_id = week.releases[-1]
    releases = ReleaseStore(services.store)
    venue = venue_profile(services.store, services.settings, week.series)
    trading = TradingModel.from_release(releases.load(week.series.symbol, release_id)).for_venue(venue)
    # The feature window is counted in stored bars, as the execute cycle counts it (across holes too).
    history = services.dataset.read_with_warmup(week.series, week.start, week.end, FEATURE_WINDOW)
    signals = release_signals(history, trading)
    inside = np.asarray(history.index >= week.start)
    bars, signals = history.loc[inside], signals.loc[inside]
    costs = services.settings.backtest
    start_equity = float(week.equity.iloc[0]) if len(week.equity) else costs.initial_equity
    sim = backtest(
        bars,
        signals,
        fee=venue.taker_fee,
        slippage=costs.slippage,
        initial_equity=start_equity,
        rules=venue.order_rules(),
        funding=(
            load_funding(services.store, week.series.exchange, week.series.symbol, week.start, week.end)
            if venue.market_type == "swap"
            else None
        ),
    )
    live = week.trades.assign(key=_trade_keys(week.trades))
    simulated = sim.trades.assign(key=_trade_keys(sim.trades))
    both = live.merge(simulated, on="key", suffixes=("_live", "_sim"))
    side = both["side_live"].to_numpy(dtype=np.float64)
    entry_slippage = side * (
        both["entry_price_live"].to_numpy(np.float64) - both["entry_price_sim"].to_numpy(np.float64)
    )
    exit_slippage = -side * (
        both["exit_price_live"].to_numpy(np.float64) - both["exit_price_sim"].to_numpy(np.float64)
    )
    pnl_difference = both["pnl_live"].to_numpy(np.float64) - both["pnl_sim"].to_numpy(np.float64)
    reasons_live = both["exit_reason_live"].astype(str).tolist()
    reasons_sim = both["exit_reason_sim"].astype(str).tolist()
    matched = [
        {
            "entry_time": pd.Timestamp(str(both["key"].iloc[i]).split("|")[0]).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "side": "long" if side[i] > 0 else "short",
            "entry_slippage": float(entry_slippage[i]),
            "exit_slippage": float(exit_slippage[i]),
            "pnl_difference": float(pnl_difference[i]),
            "exit_reason_live": reasons_live[i],
            "exit_reason_sim": reasons_sim[i],
        }
        for i in range(len(both))
    ]
    missed_keys = sorted(set(simulated["key"]) - set(live["key"]))
    missed = [_missed_trade(services, week, key) for key in missed_keys]
    extra = sorted(set(live["key"]) - set(simulated["key"]))
    return {
        "release_id": release_id,
        "simulated_equity": sim.equity,
        "simulated_metrics": sim.metrics,
        "matched": matched,
        "missed": missed,
        "extra": extra,
        "totals": {
            "live_pnl": float(week.trades["pnl"].sum()),
            "simulated_pnl": float(sim.trades["pnl"].sum()),
            "matched_trades": len(matched),
            "missed_trades": len(missed),
            "extra_trades": len(extra),
            "mean_entry_slippage": float(np.mean([m["entry_slippage"] for m in matched])) if matched else 0.0,
        },
    }


def trained_in_week(services: Services, week: WeekData) -> list[Change]:
    """Return the gate's verdict on each release the train job created in ``[week.start, week.end)``.

    The creation time is the release id's (the train job's clock); online-learning and RL releases are left to
    their own steps' records.
    """
    from scalpbot.core.gate import summarize

    releases = ReleaseStore(services.store)
    changes: list[Change] = []
    for release_id in releases.list(week.series.symbol):
        created = pd.Timestamp(datetime.strptime(release_id[:16], "%Y%m%dT%H%M%SZ"), tz="UTC")
        if not week.start <= created < week.end:
            continue
        manifest = releases.manifest(week.series.symbol, release_id)
        if manifest.origin != "train":
            continue
        gate = manifest.gate
        changes.append(
            {
                "kind": "train",
                "release_id": release_id,
                "promoted": gate.get("promote"),
                "reason": gate.get("reason"),
                "gate": summarize(gate.get("statistics") or {}),
            }
        )
    return changes


def _missed_trade(services: Services, week: WeekData, key: str) -> dict[str, Any]:
    """Return a simulated trade the bot did not make, with why: what the ledger holds at its decision bar.

    The simulator enters at the open of the bar after the decision, so the decision bar is one bar earlier.
    """
    stamp, _, side_text = key.partition("|")
    entry, side = pd.Timestamp(stamp), int(side_text)
    bar = entry - timeframe_delta(week.series.timeframe)
    found = Ledger(services.store, week.bot).events(bar, entry, kinds=("decision", "denial", "error", "halt"))
    words = {1: "long", -1: "short", 0: "flat"}
    by_kind = {event.kind: event.payload for event in found}
    if "denial" in by_kind:
        reason = f"denied: {by_kind['denial'].get('message') or by_kind['denial'].get('code')}"
    elif "error" in by_kind:
        reason = f"cycle error: {by_kind['error'].get('message')}"
    elif "halt" in by_kind:
        reason = f"kill switch: {by_kind['halt'].get('reason')}"
    elif "decision" in by_kind:
        decided = int(by_kind["decision"].get("side") or 0)
        reason = (
            f"the bot decided {words.get(decided, decided)}"
            if decided != side
            else "decided the same, but no entry was filled (a position was open or the order failed)"
        )
    else:
        reason = "no cycle recorded at that bar (the bot was not running)"
    return {"entry_time": entry.strftime("%Y-%m-%dT%H:%M:%SZ"), "side": words[side], "reason": reason}


def _trade_keys(trades: pd.DataFrame) -> list[str]:
    """Return ``entry time|side`` per trade: a live and a simulated trade match when their keys are equal."""
    times = pd.DatetimeIndex(trades["entry_time"])
    return [f"{t.isoformat()}|{int(s)}" for t, s in zip(times, trades["side"], strict=True)]


def monitor(
    services: Services,
    series: SeriesId,
    *,
    bot: str,
    days: float = 7.0,
    until: datetime | None = None,
    notifier: Notifier,
    steps: tuple[Step, ...] = (),
    write_report: bool = True,
    report_folder: str = "",
    announce: bool = True,
) -> MonitorReport:
    """Measure the week, compare it with the simulator, run the improvement ``steps``, report and notify.

    The changes start with the gate's verdict on each release trained in the week (:func:`trained_in_week`);
    each step (online learning, reinforcement learning) adds a change record with its verdict; a failing step is
    recorded in the notes and notified, and the others still run.

    ``report_folder``: a folder under the week's report folder (one symbol of a basket:
    ``reports/{bot}/{date}/{BASE_QUOTE}/``); ``announce``: send the weekly summary (a basket sends one for all
    its symbols, :func:`scalpbot.jobs.basket_monitor.monitor_basket`).
    """
    start, end = week_window(services, bot, series, days, until)
    week = measure_week(services, bot, series, start, end)
    notes: list[str] = []
    try:
        drift = simulate_drift(services, week)
    except ScalpbotError as e:
        drift, notes = {"error": str(e)}, [*notes, f"drift: {e}"]
    simulated_equity = drift.pop("simulated_equity", None)
    if week.latency:
        lat = week.latency
        notes.append(
            f"order latency from bar close to acknowledgement over {lat['count']:.0f} submissions: "
            f"p50 {lat['p50']:.2f} s, p95 {lat['p95']:.2f} s, max {lat['max']:.2f} s"
        )
    changes: list[Change] = trained_in_week(services, week)
    for step in steps:
        try:
            changes.append(step(week))
        except ScalpbotError as e:
            notes.append(f"{getattr(step, '__name__', 'step')}: {e}")
            notifier.notify(f"{bot}: monitor step failed", f"{series.symbol}: {e}", level="error")
    report = MonitorReport(week, drift, changes, notes)
    if write_report:
        report = _write_report(services, report, simulated_equity, report_folder)
    if announce:
        summary = week_summary(series.symbol, start, end, week.metrics)
        where = f"; report {report.report_key}" if report.report_key else ""
        notifier.notify(f"{bot}: weekly report", summary + where)
    return report


def week_summary(label: str, start: pd.Timestamp, end: pd.Timestamp, m: Metrics) -> str:
    """Return the week in one line: return, win rate, risk/reward, trades, max drawdown, return on capital."""
    rr = m.get("risk_reward")
    return (
        f"{label} {start:%Y-%m-%d}..{end:%Y-%m-%d}: return {_pct(m.get('total_return'), '+')}, "
        f"win rate {_pct(m.get('win_rate'))}, risk/reward {'-' if rr is None else f'{rr:.2f}'}, "
        f"trades {m.get('trades')}, max drawdown {_pct(m.get('max_drawdown'))}, "
        f"return on capital {_pct(m.get('return_on_capital'), '+')}"
    )


def _pct(value: Any, sign: str = "") -> str:
    return "-" if value is None else f"{value:{sign}.2%}"


REPORT_ASSETS = "reports/assets/"
"""Where the one shared copy of plotly.js that every report page references is kept."""


def _write_report(
    services: Services, report: MonitorReport, simulated_equity: pd.Series | None = None, folder: str = ""
) -> MonitorReport:
    """Write ``report.html`` and ``metrics.json``; the page references one shared plotly.js in the store."""
    from scalpbot.errors import PreconditionFailed
    from scalpbot.reporting.html_report import WeeklyReport, plotly_asset, render_html, report_json

    week = report.week
    weekly = WeeklyReport(
        bot=week.bot,
        symbol=week.series.symbol,
        timeframe=week.series.timeframe,
        start=week.start,
        end=week.end,
        bars=week.bars,
        trades=week.trades,
        equity=week.equity,
        metrics=week.metrics,
        previous_metrics=week.previous_metrics,
        changes=report.changes,
        drift=report.drift,
        notes=report.notes,
        simulated_equity=simulated_equity,
    )
    import json

    name, script = plotly_asset()
    if services.store.head(REPORT_ASSETS + name) is None:
        with contextlib.suppress(PreconditionFailed):  # another run wrote the same file first
            services.store.put_if_absent(REPORT_ASSETS + name, script)
    prefix = f"reports/{week.bot}/{week.end:%Y-%m-%d}/" + (f"{folder}/" if folder else "")
    page = render_html(weekly, plotly_src="../" * (prefix.count("/") - 1) + f"assets/{name}")
    services.store.put(prefix + "report.html", page.encode())
    services.store.put(
        prefix + "metrics.json", json.dumps(report_json(weekly), indent=2, allow_nan=False).encode()
    )
    return MonitorReport(week, report.drift, report.changes, report.notes, prefix + "report.html")
