"""What the dashboard and ``scalpbot bots`` show of a bot of several symbols: the portfolio, and each symbol.

A basket is found in the store, not in the server's configuration: the symbols with state of their own under
``state/{bot}/symbols/`` (:func:`scalpbot.state.scope.stored_symbols`). Units as in
:mod:`scalpbot.dashboard.queries`: money in the quote currency the symbols share, fractions as fractions, times
ISO-8601 UTC. The portfolio's limits (``gross_cap``, ``max_positions``) are the server's ``[portfolio]``
settings, the book they are checked against is the bot's stored risk budget.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd

from scalpbot.core.portfolio_risk import PortfolioLimits
from scalpbot.core.timeframes import timeframe_delta
from scalpbot.dashboard import queries
from scalpbot.state.denials import count_denials
from scalpbot.state.ledger import Ledger
from scalpbot.state.risk_budget import RiskBudget
from scalpbot.state.scope import state_key, stored_symbols
from scalpbot.wiring import Services

__all__ = ["DENIAL_DAYS", "basket_symbols", "bot_status", "for_bot", "portfolio"]

DENIAL_DAYS = 1.0
"""The denials counted by reason are those of the last day up to the bot's last bar close."""


def basket_symbols(services: Services, bot: str) -> tuple[str, ...]:
    """Return the symbols of ``bot`` when it trades several (in ``bot.symbols``' order where configured), else
    an empty tuple."""
    return stored_symbols(services.store, bot, services.settings.symbols)


def for_bot(services: Services, bot: str) -> Services:
    """Return ``services`` whose ``bot.symbols`` are ``bot``'s own, so that every read and the kill switch key
    the bot's state as its cycles wrote it: its basket as the store holds it, or its one symbol when it keeps
    a single-symbol snapshot; a bot with neither yet keeps the configured ones."""
    symbols = basket_symbols(services, bot)
    settings = services.settings
    if not symbols and services.store.head(state_key(bot, "portfolio.json")) is None:
        return services
    if settings.bot.symbols == symbols:
        return services
    bot_settings = settings.bot.model_copy(update={"symbols": symbols})
    return dataclasses.replace(services, settings=settings.model_copy(update={"bot": bot_settings}))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def portfolio(services: Services, bot: str, now: pd.Timestamp) -> dict[str, Any] | None:
    """Return the portfolio of a basket bot, or ``None`` for a bot of one symbol.

    ``equity``: the sum of its symbols' accounts (each symbol's snapshot). ``budget``: the shared risk budget -
    its realized equity, gross exposure (the reserved notionals) against the gross cap, open positions against
    ``max_positions``, its kill switch and the day's realized PnL. ``denials``: the last
    :data:`DENIAL_DAYS` day's denials by reason. ``symbols``: per symbol its position, equity, kill switch, last
    cycle (status, age, latency), reserved notional and its trades' count, wins and PnL (open ones marked).
    """
    symbols = basket_symbols(services, bot)
    if not symbols:
        return None
    services = for_bot(services, bot)
    limits = PortfolioLimits(**services.settings.portfolio.model_dump())
    book = RiskBudget(services.store, bot, limits).load()
    rows = []
    for symbol in symbols:
        held = queries.position(services, bot, symbol)
        state = queries.risk(services, bot, symbol)
        cycle = queries.last_cycle(services, bot, now, symbol)
        totals = queries.trades(services, bot, symbol=symbol)["totals"]
        reserved = None if book is None else book.reservations.get(symbol)
        rows.append(
            {
                "symbol": symbol,
                "last_bar": held["last_bar"],
                "equity": held["equity"],
                "position": held["position"],
                "release_id": held["release_id"] or cycle["release_id"],
                "halted": state["halted"],
                "halt_reason": state["halt_reason"],
                "cycle": {
                    key: cycle[key]
                    for key in ("bar", "status", "age_seconds", "latency_seconds", "cycle_seconds")
                },
                "reserved": None if reserved is None else reserved.notional,
                **totals,
            }
        )
    known = [row["equity"] for row in rows if row["equity"] is not None]
    last_bars = [pd.Timestamp(row["last_bar"]) for row in rows if row["last_bar"] is not None]
    budget: dict[str, Any] | None = None
    if book is not None:
        budget = {
            "equity": book.equity,
            "gross": book.gross,
            "gross_cap": _finite(limits.gross_cap(book.equity)),
            "positions": book.positions,
            "max_positions": limits.max_positions,
            "halted": book.halted,
            "halt_reason": book.halt_reason,
            "halted_at": queries.iso(book.halted_at),
            "day_pnl": book.day_pnl,
            "drawdown": book.equity / book.peak_equity - 1.0 if book.peak_equity > 0 else None,
        }
    denials = None
    if last_bars:
        until = max(last_bars) + timeframe_delta(services.settings.data.timeframe)
        counted = count_denials(Ledger(services.store, bot), until - pd.Timedelta(days=DENIAL_DAYS), until)
        denials = {
            "since": queries.iso(counted.since),
            "until": queries.iso(counted.until),
            "total": counted.total,
            "by_reason": {"portfolio": counted.portfolio, "risk": counted.risk},
            "by_symbol": counted.by_symbol,
        }
    return {
        "bot": bot,
        "symbols": list(symbols),
        "equity": sum(known) if known and len(known) == len(rows) else None,
        "open_positions": sum(1 for row in rows if row["position"] is not None),
        "budget": budget,
        "denials": denials,
        "per_symbol": rows,
    }


def bot_status(
    services: Services, bot: str, now: pd.Timestamp, held: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Return one bot at a glance (``/api/bots``, ``scalpbot bots``): status, last bar, equity, position,
    release, kill switch, drawdown, cycle age and latency; a basket's ``position`` is ``None`` and its
    ``basket`` holds :func:`portfolio` (``held``: already read)."""
    basket = held if held is not None else portfolio(services, bot, now)
    if basket is None:
        held = queries.position(services, bot)
        state = queries.risk(services, bot)
        cycle = queries.last_cycle(services, bot, now)
        return {
            **held,
            "release_id": held["release_id"] or cycle["release_id"],
            "halted": state["halted"],
            "halt_reason": state["halt_reason"],
            "drawdown": state.get("drawdown"),
            "status": "halted" if state["halted"] else ("idle" if cycle["bar"] is None else "trading"),
            "age_seconds": cycle["age_seconds"],
            "latency_seconds": cycle["latency_seconds"],
        }
    rows = basket["per_symbol"]
    budget = basket["budget"] or {}
    halted = bool(budget.get("halted")) or any(row["halted"] for row in rows)
    reasons = [budget.get("halt_reason")] + [row["halt_reason"] for row in rows]
    last_bars = [row["last_bar"] for row in rows if row["last_bar"] is not None]
    total = queries.last_cycle(services, bot, now)  # the bar close as a whole (live baskets)
    ages = [row["cycle"]["age_seconds"] for row in rows if row["cycle"]["age_seconds"] is not None]
    return {
        "bot": bot,
        "last_bar": max(last_bars) if last_bars else None,
        "equity": basket["equity"],
        "release_id": None,
        "position": None,
        "halted": halted,
        "halt_reason": next((reason for reason in reasons if reason), None) if halted else None,
        "drawdown": budget.get("drawdown"),
        "status": "halted" if halted else ("idle" if not last_bars else "trading"),
        "age_seconds": max(ages) if ages else None,  # the symbol furthest behind
        "latency_seconds": total["latency_seconds"],
        "basket": basket,
    }
