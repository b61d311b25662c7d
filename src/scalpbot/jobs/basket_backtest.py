"""Backtest a bot's basket: each symbol's current release on its stored bars, through the portfolio budget.

The legs are built from the executors a replay of the same bot would use (the release each trades, its risk
limits and market rules, the ``[portfolio]`` limits), and the venue profile of each symbol (fee, order rules),
so :func:`basket_backtest` trades exactly what ``replay`` of the basket trades over the same window (see
:mod:`scalpbot.core.backtest.portfolio` for the order in which the budget sees the entries).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from scalpbot.core.backtest.portfolio import Leg, PortfolioBacktest, portfolio_backtest
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.errors import ConfigError, DataError, ModelError
from scalpbot.inference.signals import release_signals
from scalpbot.jobs.services import Services, venue_profile
from scalpbot.state.dataset import SeriesId
from scalpbot.state.history import MemoryHistory

__all__ = ["basket_backtest"]


def basket_backtest(
    services: Services,
    basket: Sequence[SeriesId],
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    bot: str,
) -> PortfolioBacktest:
    """Backtest the symbols of ``basket`` (in their cycle order) over bars ``[start, end)`` as bot ``bot``.

    Each symbol trades its current release (its newest written while none is current, as a paper replay
    does), from ``backtest.initial_equity``, with ``backtest.slippage``; swaps are not supported (no funding).
    """
    if start >= end:
        raise ConfigError(f"the backtest window [{start}, {end}) is empty: its start must be before its end")
    settings = services.settings
    legs = []
    limits = None
    for series in basket:
        venue = venue_profile(services.store, settings, series)
        if venue.market_type != "spot":
            raise ConfigError(
                f"the portfolio backtest trades spot symbols; {series.symbol} is a {venue.market_type}"
            )
        history = services.dataset.read_with_warmup(series, start, end, FEATURE_WINDOW)
        inside = history.index >= start
        if not inside.any():
            raise DataError(f"no bars of {series} stored in [{start}, {end}); run `scalpbot fetch` first")
        executor = services.executor(series, bot=bot, bars=MemoryHistory(history), mode="replay")
        if not executor.ready():
            raise ModelError(f"no release of {series.symbol} is current; run `scalpbot train` first")
        signals = release_signals(history, executor.model())
        legs.append(
            Leg(
                series.symbol,
                history.loc[inside],
                signals.loc[inside],
                fee=venue.taker_fee,
                rules=venue.order_rules(),
                limits=executor.limits,
                market_rules=executor.market_rules,
            )
        )
        limits = executor.portfolio
    assert limits is not None  # the basket is not empty (checked by portfolio_backtest too)
    return portfolio_backtest(
        legs,
        limits,
        bot=bot,
        slippage=settings.backtest.slippage,
        initial_equity=settings.backtest.initial_equity,
    )
