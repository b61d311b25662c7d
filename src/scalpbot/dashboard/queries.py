"""What the dashboard and its JSON API show, read from the store the jobs write: no second database.

Every function takes :class:`~scalpbot.wiring.Services` (the store, the dataset and the settings) and returns
JSON-ready values: times as ISO-8601 UTC strings (``YYYY-MM-DDTHH:MM:SSZ``), money in the quote currency,
fractions as fractions (0.012 is 1.2 %), ``None`` where nothing is known. Bar times are bar **open** times;
equity points are at bar **closes**. One timeframe per server, the configured ``data`` one.

``symbol`` (where a function takes it): one symbol of a bot of several (a basket, whose symbols keep their own
state: :mod:`scalpbot.state.scope`); ``None``: the bot's single-symbol state and the configured ``data.symbol``.
A basket's functions expect services whose ``bot.symbols`` are that bot's (:func:`scalpbot.dashboard.basket.
for_bot`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from scalpbot.core.timeframes import timeframe_delta
from scalpbot.errors import ObjectNotFound, ScalpbotError
from scalpbot.reporting.tables import jsonable
from scalpbot.state.bots import bot_names, check_bot_exists
from scalpbot.state.cycle_timing import load_cycle_timing
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioSnapshot, PortfolioStore
from scalpbot.state.release_choice import release_origin
from scalpbot.wiring import Services

__all__ = [
    "NOTIFICATION_KINDS",
    "bot_names",
    "check_bot_exists",
    "drift",
    "equity_curve",
    "events",
    "first_event_time",
    "iso",
    "last_cycle",
    "notifications",
    "position",
    "price_with_trades",
    "releases",
    "risk",
    "trade_rows",
    "trades",
]

NOTIFICATION_KINDS = ("halt", "resume", "error", "notify_error")
"""Ledger kinds shown as the bot's notifications: kill switch, errors, failed notifications."""

_MAX_CHART_POINTS = 2_000


def iso(time: pd.Timestamp | None) -> str | None:
    """Return ``time`` as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC), ``None`` for ``None``."""
    return None if time is None else pd.Timestamp(time).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _snapshot(services: Services, bot: str, symbol: str | None = None) -> PortfolioSnapshot | None:
    stored = PortfolioStore(services.store, bot, symbol).load()
    return None if stored is None else stored.snapshot


def position(services: Services, bot: str, symbol: str | None = None) -> dict[str, Any]:
    """Return the bot's last bar, equity, open position (``side`` as ``long``/``short``) and release."""
    snap = _snapshot(services, bot, symbol)
    if snap is None:
        return {"bot": bot, "last_bar": None, "equity": None, "position": None, "release_id": None}
    held = snap.position
    return {
        "bot": bot,
        "last_bar": iso(snap.last_bar_time),
        "equity": snap.equity,
        "release_id": snap.release_id,
        "position": None
        if held is None
        else {
            "side": "long" if held.side > 0 else "short",
            "qty": held.qty,
            "entry_price": held.entry_price,
            "entry_time": iso(held.entry_time),
            "sl_price": held.sl_price,
            "tp_price": held.tp_price,
        },
    }


def risk(services: Services, bot: str, symbol: str | None = None) -> dict[str, Any]:
    """Return the kill switch, cool-down, losing streak and the equity marks the risk limits are checked on."""
    snap = _snapshot(services, bot, symbol)
    if snap is None:
        return {"bot": bot, "halted": False, "halt_reason": None, "known": False}
    state = snap.risk
    peak = state.peak_equity
    return {
        "bot": bot,
        "known": True,
        "halted": state.halted,
        "halt_reason": state.halt_reason,
        "halted_at": iso(state.halted_at),
        "cooldown_until": iso(state.cooldown_until),
        "consecutive_losses": state.consecutive_losses,
        "day": state.day.isoformat(),
        "day_start_equity": state.day_start_equity,
        "peak_equity": peak,
        "last_equity": state.last_equity,
        "drawdown": state.last_equity / peak - 1.0 if peak > 0 else None,
        "daily_return": state.last_equity / state.day_start_equity - 1.0
        if state.day_start_equity > 0
        else None,
        "limits": jsonable(services.settings.risk.model_dump()),
    }


def last_cycle(services: Services, bot: str, now: pd.Timestamp, symbol: str | None = None) -> dict[str, Any]:
    """Return the last processed bar, its status and events, and its age: ``now`` (UTC) minus the bar's close.

    The age is how late the bot is: about one bar for a bot trading live, more when a cycle is stuck or the
    bot stopped. A live cycle also records its wall-clock timing: ``latency_seconds`` from the bar's close to
    the end of its cycle, and ``cycle_seconds`` (``None`` for a bot that only replayed).
    """
    timing = load_cycle_timing(services.store, bot, symbol)
    timed = {
        "latency_seconds": None if timing is None else round(timing.latency_seconds, 3),
        "cycle_seconds": None if timing is None else round(timing.cycle_seconds, 3),
    }
    snap = _snapshot(services, bot, symbol)
    if snap is None or snap.last_bar_time is None:
        return {
            "bot": bot,
            "bar": None,
            "status": None,
            "age_seconds": None,
            "events": [],
            "release_id": None,
            **timed,
        }
    bar = pd.Timestamp(snap.last_bar_time)
    close = bar + timeframe_delta(services.settings.data.timeframe)
    recorded = [
        event
        for event in Ledger(services.store, bot).events(bar, close)
        if symbol is None or event.payload.get("symbol") in (None, symbol)
    ]
    decided = [e.payload.get("release_id") for e in recorded if e.kind == "decision"]
    return {
        "release_id": snap.release_id or (str(decided[-1]) if decided and decided[-1] else None),
        "bot": bot,
        "bar": iso(bar),
        "status": "halted" if snap.risk.halted else "ok",
        "age_seconds": max((now - close).total_seconds(), 0.0),
        "events": [event.kind for event in recorded],
        **timed,
    }


def events(
    services: Services,
    bot: str,
    *,
    kinds: Iterable[str] | None = None,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Return the newest ``limit`` ledger events in ``[since, until)`` of the given ``kinds``, newest first."""
    found = Ledger(services.store, bot).events(since, until, kinds)
    return [
        {"kind": e.kind, "time": iso(e.time), "event_id": e.event_id, "payload": jsonable(dict(e.payload))}
        for e in reversed(found[-limit:] if limit > 0 else [])
    ]


def notifications(services: Services, bot: str, limit: int = 50) -> list[dict[str, Any]]:
    """Return the newest kill-switch, error and failed-notification events, newest first."""
    return events(services, bot, kinds=NOTIFICATION_KINDS, limit=limit)


def first_event_time(services: Services, bot: str) -> pd.Timestamp | None:
    """Return the time of the bot's first ledger event (from the key names alone), or ``None``."""
    keys = services.store.list(Ledger(services.store, bot).prefix)
    if not keys:
        return None
    stamp = keys[0].rpartition("/")[2][:22]
    return pd.Timestamp(pd.to_datetime(stamp, format="%Y%m%dT%H%M%S%fZ", utc=True))


def _window(
    services: Services, bot: str, days: float, symbol: str | None = None
) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """Return the bot's last ``days`` up to its last bar's close, starting no earlier than its first event."""
    snap = _snapshot(services, bot, symbol)
    if snap is None or snap.last_bar_time is None:
        return None
    end = pd.Timestamp(snap.last_bar_time) + timeframe_delta(services.settings.data.timeframe)
    start = end - pd.Timedelta(days=days)
    first = first_event_time(services, bot)
    return (start if first is None else max(start, first.floor("min")), end)


def trades(
    services: Services,
    bot: str,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
    symbol: str | None = None,
) -> dict[str, Any]:
    """Return the bot's trades entered in ``[since, until)`` (open ones marked at the last close) and totals."""
    frame = Ledger(services.store, bot).trades(since, until, symbol=symbol)
    rows = trade_rows(frame)
    totals = {
        "trades": len(rows),
        "wins": sum(1 for r in rows if r["pnl"] > 0),
        "pnl": float(sum(r["pnl"] for r in rows)),
        "fees": float(sum(r["fees"] for r in rows)),
    }
    return {"bot": bot, **({"symbol": symbol} if symbol else {}), "trades": rows, "totals": totals}


def trade_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Return a trades frame (backtest trade columns) as JSON-ready rows, ``side`` as ``long``/``short``."""
    entry = [iso(t) for t in pd.DatetimeIndex(frame["entry_time"])]
    exit_ = [iso(t) for t in pd.DatetimeIndex(frame["exit_time"])]
    sides = frame["side"].to_numpy(dtype=np.int64)
    numbers = {
        name: frame[name].to_numpy(dtype=np.float64).tolist()
        for name in ("entry_price", "exit_price", "qty", "pnl", "fees")
    }
    reasons = frame["exit_reason"].astype(str).tolist()
    return [
        {
            "entry_time": entry[i],
            "exit_time": exit_[i],
            "side": "long" if sides[i] > 0 else "short",
            **{name: values[i] for name, values in numbers.items()},
            "exit_reason": reasons[i],
        }
        for i in range(len(frame))
    ]


def equity_curve(
    services: Services, bot: str, days: float = 2.0, symbol: str | None = None
) -> dict[str, Any]:
    """Return equity and drawdown at bar closes over the bot's last ``days``, as the monitor job measures them.

    At most 2,000 points: longer windows keep each bucket's last equity and deepest drawdown.
    """
    from scalpbot.core.timeframes import timeframe_seconds
    from scalpbot.jobs.monitor import measure_week
    from scalpbot.reporting.charts import downsample_equity

    window = _window(services, bot, days, symbol)
    if window is None:
        return {"bot": bot, "time": [], "equity": [], "drawdown": []}
    week = measure_week(services, bot, services.series(symbol), *window)
    timeframe = services.settings.data.timeframe
    points = downsample_equity(week.equity, timeframe, timeframe_seconds(timeframe), _MAX_CHART_POINTS)
    times = pd.to_datetime(points.x, unit="ms", utc=True)
    return {
        "bot": bot,
        "time": [iso(t) for t in times],
        "equity": [float(v) for v in points.values[0]],
        "drawdown": [float(v) for v in points.values[1]],
        "metrics": jsonable(week.metrics),
    }


def price_with_trades(
    services: Services, bot: str, days: float = 1.0, symbol: str | None = None
) -> dict[str, Any]:
    """Return OHLC candles (bar open times) over the bot's last ``days`` and the trades entered in them."""
    from scalpbot.core.timeframes import timeframe_seconds
    from scalpbot.reporting.charts import downsample_bars

    window = _window(services, bot, days, symbol)
    if window is None:
        return {"bot": bot, "time": [], "open": [], "high": [], "low": [], "close": [], "trades": []}
    bars = services.dataset.read(services.series(symbol), *window)
    timeframe = services.settings.data.timeframe
    candles = downsample_bars(bars, timeframe, timeframe_seconds(timeframe), _MAX_CHART_POINTS)
    times = pd.to_datetime(candles.x, unit="ms", utc=True)
    return {
        "bot": bot,
        "timeframe": candles.timeframe,
        "time": [iso(t) for t in times],
        **{
            name: [float(v) for v in values]
            for name, values in zip(("open", "high", "low", "close"), candles.values, strict=True)
        },
        "trades": trades(services, bot, *window, symbol=symbol)["trades"],
    }


def releases(services: Services, symbol: str | None = None) -> dict[str, Any]:
    """Return the configured symbol's releases, newest first: origin, model kind, gate verdict and reason, key
    metrics."""
    from scalpbot.state.releases import ReleaseStore

    store = ReleaseStore(services.store)
    symbol = symbol or services.settings.data.symbol
    pointer = store.pointer(symbol)
    current = None if pointer is None else pointer.release_id
    rows = []
    for release_id in reversed(store.list(symbol)):
        manifest = store.manifest(symbol, release_id)
        gate = manifest.gate
        judged = manifest.judged_metrics()
        rows.append(
            {
                "release_id": release_id,
                "current": release_id == current,
                "created_at": manifest.created_at,
                "origin": release_origin(manifest),
                "model_kind": manifest.model_kind,
                "passed_gate": gate.get("promote"),
                "reason": gate.get("reason"),
                "total_return": judged.get("total_return"),
                "sharpe": judged.get("sharpe"),
                "trades": judged.get("trades"),
                "max_drawdown": judged.get("max_drawdown"),
            }
        )
    return {
        "symbol": symbol,
        "current": current,
        "promoted_at": None if pointer is None else pointer.promoted_at,
        "promotion_reason": None if pointer is None else pointer.reason,
        "releases": jsonable(rows),
    }


def drift(services: Services, bot: str, symbol: str | None = None) -> dict[str, Any]:
    """Return live against simulated results from the bot's latest weekly report (``scalpbot monitor``); a
    basket's symbol: from that symbol's page of the week (``reports/{bot}/{date}/{BASE_QUOTE}/``)."""
    from scalpbot.state.scope import symbol_folder

    ending = "/metrics.json" if symbol is None else f"/{symbol_folder(symbol)}/metrics.json"
    keys = [k for k in services.store.list(f"reports/{bot}/") if k.endswith(ending)]
    if symbol is None:  # the bot's own pages: reports/{bot}/{date}/metrics.json
        keys = [k for k in keys if k.count("/") == 3]
    if not keys:
        return {"bot": bot, "report": None, "totals": None}
    try:
        body = json.loads(services.store.get(keys[-1]).data)
    except (ObjectNotFound, ValueError) as e:
        raise ScalpbotError(f"{keys[-1]} cannot be read ({e}); run `scalpbot monitor --bot {bot}`") from None
    found = body.get("drift") or {}
    return {
        "bot": bot,
        "report": keys[-1],
        "window": body.get("window"),
        "release_id": found.get("release_id"),
        "totals": found.get("totals"),
        "note": found.get("note") or found.get("error"),
    }
