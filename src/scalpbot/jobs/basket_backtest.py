"""Backtest a bot's basket: each symbol's current release on its stored bars, through the portfolio budget.

The legs are built from the executors a replay of the same bot would use (the release each trades, its risk
limits and market rules, the ``[portfolio]`` limits), and the venue profile of each symbol (fee, order rules),
so :func:`basket_backtest` trades exactly what ``replay`` of the basket trades over the same window (see
:mod:`scalpbot.core.backtest.portfolio` for the order in which the budget sees the entries). A basket of
perpetual swaps pays each symbol's stored funding over the window, as the single-symbol backtest and the paper
broker charge it.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from scalpbot.core.backtest.portfolio import Leg, PortfolioBacktest, portfolio_backtest
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.core.funding import funding_at_bars
from scalpbot.core.venue import Venue
from scalpbot.errors import ConfigError, DataError, ModelError
from scalpbot.inference.signals import release_signals
from scalpbot.jobs.services import Services, stored_funding, venue_profile
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
    does), from ``backtest.initial_equity``, with ``backtest.slippage``; a perpetual swap pays the funding
    rates stored beside its bars (none stored: none charged, as in the single-symbol backtest). The basket is
    all spot or all perpetual swaps.
    """
    if start >= end:
        raise ConfigError(f"the backtest window [{start}, {end}) is empty: its start must be before its end")
    settings = services.settings
    venues = [venue_profile(services.store, settings, series) for series in basket]
    _check_market_types(venues)
    legs = []
    limits = None
    for series, venue in zip(basket, venues, strict=True):
        history = services.dataset.read_with_warmup(series, start, end, FEATURE_WINDOW)
        inside = history.index >= start
        if not inside.any():
            raise DataError(f"no bars of {series} stored in [{start}, {end}); run `scalpbot fetch` first")
        executor = services.executor(series, bot=bot, bars=MemoryHistory(history), mode="replay")
        if not executor.ready():
            raise ModelError(f"no release of {series.symbol} is current; run `scalpbot train` first")
        signals = release_signals(history, executor.model())
        bars = history.loc[inside]
        funding = stored_funding(services.store, series, bars.index[0], bars.index[-1])
        legs.append(
            Leg(
                series.symbol,
                bars,
                signals.loc[inside],
                fee=venue.taker_fee,
                rules=venue.order_rules(),
                limits=executor.limits,
                market_rules=executor.market_rules,
                funding=funding_at_bars(funding, pd.DatetimeIndex(bars.index)),
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


def _check_market_types(venues: Sequence[Venue]) -> None:
    """Raise ``ConfigError`` unless the basket is all spot or all perpetual swaps.

    The settings let spot and swaps of one quote currency share a bot (``BTC/USDT`` beside ``ETH/USDT:USDT``);
    no replay of such a basket has been compared with this backtest, so it is refused rather than claimed
    equal. A dated future is refused too: only spot and perpetual swap baskets are compared with their replays.
    """
    kinds = {venue.market_type for venue in venues}
    dated = [venue.symbol for venue in venues if venue.market_type not in ("spot", "swap")]
    if dated:
        raise ConfigError(
            f"the portfolio backtest trades spot and perpetual swap symbols; {dated[0]} is a dated future"
        )
    if len(kinds) > 1:
        spot = [venue.symbol for venue in venues if venue.market_type == "spot"]
        swaps = [venue.symbol for venue in venues if venue.market_type == "swap"]
        raise ConfigError(
            f"the portfolio backtest trades a basket of spot symbols or one of perpetual swaps, not both: "
            f"{', '.join(spot)} spot beside {', '.join(swaps)} swap; list one kind in bot.symbols (or "
            "--symbol) and run the other in its own bot"
        )
