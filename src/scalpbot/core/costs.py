"""The trading costs every simulation of a venue is scored at: one value, passed whole. Pure.

A fill pays ``fee`` (a fraction of its notional) and is worsened by ``slippage`` (a fraction of its price), on
each side of a trade: a round trip costs about ``2 * (fee + slippage)`` of the notional. The train job, the
online-learning and RL steps and the promotion gate take one :class:`TradingCosts` built from the venue profile
(its taker fee, ``Venue.trading_costs``) and ``backtest.slippage``, so no path scores a challenger at a lower
default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scalpbot.errors import ConfigError

__all__ = ["TradingCosts"]


@dataclass(frozen=True, slots=True)
class TradingCosts:
    """Fee per fill (fraction of notional) and slippage per fill (fraction of price)."""

    fee: float
    slippage: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fee) and 0.0 <= self.fee < 0.1):
            raise ConfigError(f"fee must be a fraction of notional in [0, 0.1), e.g. 0.001; got {self.fee}")
        if not (math.isfinite(self.slippage) and 0.0 <= self.slippage < 0.1):
            raise ConfigError(
                f"slippage must be a fraction of price in [0, 0.1), e.g. 0.0001; got {self.slippage}"
            )

    @property
    def round_trip(self) -> float:
        """Return the approximate cost of entering and leaving, as a fraction of notional."""
        return 2.0 * (self.fee + self.slippage)

    def describe(self) -> str:
        """Return e.g. ``fee 0.040 % + slippage 0.000 % per fill``."""
        return f"fee {self.fee:.3%} + slippage {self.slippage:.3%} per fill".replace("%", " %")
