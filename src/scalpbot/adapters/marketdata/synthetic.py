"""Seeded synthetic 1-minute bars that behave like a liquid crypto market, for tests, demos and replays.

Time: bars are labelled by their open time (UTC). Day ``d`` starts at ``EPOCH + d`` days; EPOCH
(2017-01-01) is the source's first bar and ``HORIZON`` (2100-01-01) bounds it. Other timeframes aggregate
the 1m bars (every supported timeframe divides a day).

Window independence: the random numbers of day ``d`` come from a generator seeded with
``(seed, crc32(symbol), d)``, and the per-day quantities that chain days together (day-open price,
volatility regime) are computed once per symbol over the whole calendar. A bar's values therefore never
depend on the requested window: overlapping requests return identical bars, bit for bit. Each day is
computed with arrays of the same shape, so even vectorised math gives the same bits for it every time.

Model for day ``d`` and minute ``t`` of the day:

* returns ``r_t = s_t z_t`` with ``z`` Student-t (5 degrees of freedom, unit variance): fat tails;
* ``s_t = minute_volatility * regime_d * profile_t * sqrt(h_t)``: ``regime`` is a slow, seeded multi-week
  cycle (quieter weekends), ``profile`` the intraday shape (busiest in US hours, a bump at each full hour) and
  ``h`` a unit-mean GARCH(1,1), ``h_t = (1 - a - b) + a h_{t-1} z_{t-1}^2 + b h_{t-1}``. Its recursion for day
  ``d`` starts at ``h = 1`` at the start of day ``d - 1`` and runs through that day's innovations (a one-day
  burn-in): with ``a + b = 0.99`` the start value's weight is below 1e-6 by midnight, so volatility clusters
  flow across days while a day needs only days ``d - 1`` and ``d``;
* the day's returns are nudged in proportion to ``s_t^2`` so they add up to the move of the day-open walk
  ``L_{d+1} = L_d + daily_sigma_d * n_d - k (L_d - log start_price)`` (``k = 0.002``: prices wander but stay
  plausible), and the last close of day ``d`` is exactly the open of day ``d + 1``;
* open = previous close, times ``exp(gap)`` where ``gap`` has ``gap_bps`` basis points of spread (default 0);
* high and low reach beyond max/min(open, close) by exponential excursions scaled by ``s_t``;
* volume = ``base_volume * profile^1.5 * sqrt(h_t) * (0.6 + |z_t|) * lognormal``: positive, seasonal,
  clustered with volatility and correlated with the bar's absolute return.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from scalpbot.adapters.marketdata._bars import bars_frame, utc_ms
from scalpbot.core.timeframes import timeframe_seconds
from scalpbot.errors import ConfigError
from scalpbot.ports import Clock

__all__ = ["EPOCH", "HORIZON", "SyntheticMarketData"]

EPOCH = datetime(2017, 1, 1, tzinfo=UTC)
HORIZON = datetime(2100, 1, 1, tzinfo=UTC)
_MINUTES = 1440
_DAY_MS = 86_400_000
_EPOCH_MS = utc_ms(EPOCH, "EPOCH")
_N_DAYS = (utc_ms(HORIZON, "HORIZON") - _EPOCH_MS) // _DAY_MS
_GARCH_A, _GARCH_B = 0.06, 0.93
_T_DOF = 5.0
_REVERSION = 0.002
_GARCH_BLOCK = 480  # steps per closed-form block: keeps the running products far from float overflow
_CHUNK_DAYS = 7


def _intraday_profile() -> np.ndarray:
    """Return the read-only volatility shape of the 1440 minutes of a UTC day, scaled to unit mean square."""
    phase = 2 * np.pi * (np.arange(_MINUTES) - 870) / _MINUTES  # peak near 14:30 UTC
    shape: np.ndarray = (
        1 + 0.3 * np.cos(phase) + 0.1 * np.cos(2 * phase) + 0.25 * (np.arange(_MINUTES) % 60 == 0)
    )
    shape /= np.sqrt(np.mean(shape**2))
    shape.flags.writeable = False
    return shape


_PROFILE = _intraday_profile()
_VOLUME_PROFILE = _PROFILE**1.5
_VOLUME_PROFILE.flags.writeable = False


@dataclass(frozen=True, slots=True)
class _Calendar:
    """Per-day quantities of one symbol over the whole calendar: regime, day-open log price and price."""

    regime: np.ndarray
    log_open: np.ndarray
    open_price: np.ndarray


class SyntheticMarketData:
    """Seeded synthetic bars for any symbol; deterministic for a (seed, symbol, bar time)."""

    def __init__(
        self,
        clock: Clock,
        seed: int = 0,
        *,
        start_price: float = 50_000.0,
        minute_volatility: float = 0.0007,
        base_volume: float = 5.0,
        gap_bps: float = 0.0,
        name: str = "synthetic",
    ) -> None:
        if seed < 0:
            raise ConfigError(f"synthetic seed must be a non-negative integer, got {seed}")
        if start_price <= 0 or minute_volatility <= 0 or base_volume <= 0 or gap_bps < 0:
            raise ConfigError(
                "synthetic market needs start_price, minute_volatility and base_volume > 0 and gap_bps >= 0"
            )
        self.name = name
        self._clock = clock
        self._seed = seed
        self._start_price = start_price
        self._minute_volatility = minute_volatility
        self._base_volume = base_volume
        self._gap = gap_bps * 1e-4
        self._calendars: dict[str, _Calendar] = {}

    def __repr__(self) -> str:
        return f"SyntheticMarketData(seed={self._seed}, start_price={self._start_price})"

    def fetch_bars(
        self, symbol: str, timeframe: str, since: datetime | None, until: datetime | None
    ) -> Iterator[pd.DataFrame]:
        """Yield closed bars in chunks of up to a week, oldest first.

        ``since`` is inclusive and ``until`` exclusive (bar open times, aware UTC); ``None`` means from EPOCH /
        up to the last bar closed at ``clock.now()`` (read once when iteration starts).
        """
        step_ms = timeframe_seconds(timeframe) * 1000
        start_ms = (
            _EPOCH_MS if since is None else max(_EPOCH_MS, -(-utc_ms(since, "since") // step_ms) * step_ms)
        )
        until_ms = _EPOCH_MS + _N_DAYS * _DAY_MS
        if until is not None:
            until_ms = min(until_ms, utc_ms(until, "until"))
        return self._chunks(symbol, step_ms // 60_000, start_ms, until_ms)

    def _chunks(self, symbol: str, minutes: int, start_ms: int, until_ms: int) -> Iterator[pd.DataFrame]:
        end_ms = min(until_ms, utc_ms(self._clock.now(), "clock.now()") - minutes * 60_000 + 1)
        if start_ms >= end_ms:
            return
        calendar = self._calendar(symbol)
        key = zlib.crc32(symbol.encode())
        first_day, last_day = (start_ms - _EPOCH_MS) // _DAY_MS, (end_ms - 1 - _EPOCH_MS) // _DAY_MS
        previous_z = self._draws(key, first_day - 1)[0]
        for chunk_start in range(first_day, last_day + 1, _CHUNK_DAYS):
            days = range(chunk_start, min(chunk_start + _CHUNK_DAYS, last_day + 1))
            blocks = []
            for day in days:
                draws = self._draws(key, day)
                blocks.append(_aggregate(self._day_bars(calendar, day, previous_z, draws), minutes))
                previous_z = draws[0]
            ohlcv = np.concatenate(blocks)
            open_ms = _EPOCH_MS + days[0] * _DAY_MS + np.arange(len(ohlcv), dtype=np.int64) * minutes * 60_000
            keep = (open_ms >= start_ms) & (open_ms < end_ms)
            yield bars_frame(open_ms[keep], ohlcv[keep])

    def _draws(self, key: int, day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return day ``day``'s innovations z, high/low excursions, volume noise and gap noise (1440 each)."""
        rng = np.random.default_rng([self._seed, key, 1, day + 1])  # day -1 (EPOCH's burn-in) is entropy 0
        z = rng.standard_t(_T_DOF, _MINUTES) * np.sqrt((_T_DOF - 2) / _T_DOF)
        excursions = rng.standard_exponential((2, _MINUTES))
        return z, excursions, rng.standard_normal(_MINUTES), rng.standard_normal(_MINUTES)

    def _calendar(self, symbol: str) -> _Calendar:
        """Return (and cache) the symbol's regimes and day-open prices from EPOCH to HORIZON."""
        if symbol not in self._calendars:
            rng = np.random.default_rng([self._seed, zlib.crc32(symbol.encode()), 0])
            phases = rng.uniform(0, 2 * np.pi, 2)
            shocks = rng.standard_normal((2, _N_DAYS))
            days = np.arange(_N_DAYS)
            weekend = np.where((days + 6) % 7 >= 5, 0.75, 1.0)  # EPOCH was a Sunday
            cycles = 0.35 * np.sin(2 * np.pi * days / 97 + phases[0]) + 0.2 * np.sin(
                2 * np.pi * days / 29 + phases[1]
            )
            regime = weekend * np.exp(cycles + 0.15 * shocks[1])
            moves = (self._minute_volatility * np.sqrt(_MINUTES) * regime * shocks[0]).tolist()
            anchor = float(np.log(self._start_price))
            log_open = [anchor]
            for move in moves:
                level = log_open[-1]
                log_open.append(level + move - _REVERSION * (level - anchor))
            levels = np.array(log_open)
            self._calendars[symbol] = _Calendar(regime, levels, np.exp(levels))
        return self._calendars[symbol]

    def _day_bars(
        self,
        calendar: _Calendar,
        day: int,
        previous_z: np.ndarray,
        draws: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ) -> np.ndarray:
        """Return day ``day``'s 1440 one-minute bars as an ``(1440, 5)`` OHLCV array."""
        z, excursions, volume_noise, gap_noise = draws
        h = _garch_variance(np.concatenate([previous_z, z]))[_MINUTES:]
        sigma = self._minute_volatility * calendar.regime[day] * _PROFILE * np.sqrt(h)
        returns = sigma * z
        weights = sigma**2 / np.sum(sigma**2)
        returns += (calendar.log_open[day + 1] - calendar.log_open[day] - np.sum(returns)) * weights
        close = np.exp(calendar.log_open[day] + np.cumsum(returns))
        close[-1] = calendar.open_price[day + 1]
        previous_close = np.concatenate([[calendar.open_price[day]], close[:-1]])
        open_ = previous_close * np.exp(self._gap * gap_noise)
        high = np.maximum(open_, close) * np.exp(0.5 * sigma * excursions[0])
        low = np.minimum(open_, close) * np.exp(-0.5 * sigma * excursions[1])
        volume = (
            self._base_volume * _VOLUME_PROFILE * np.sqrt(h) * (0.6 + np.abs(z)) * np.exp(0.5 * volume_noise)
        )
        return np.column_stack([open_, high, low, close, volume])


def _garch_variance(z: np.ndarray) -> np.ndarray:
    """Return unit-mean GARCH(1,1) variances for innovations ``z``, starting at ``h_0 = 1``.

    ``h_t = w + c_t h_{t-1}`` with ``c_t = a z_{t-1}^2 + b`` is linear in ``h``, so each block is solved in
    closed form: ``h_t = P_t (h_start + w * sum_{j<=t} 1 / P_j)`` with ``P_t`` the running product of ``c``.
    """
    w = 1.0 - _GARCH_A - _GARCH_B
    growth = _GARCH_A * z[:-1] ** 2 + _GARCH_B
    h = np.empty(len(z))
    h[0] = 1.0
    for begin in range(0, len(growth), _GARCH_BLOCK):
        product = np.exp(np.cumsum(np.log(growth[begin : begin + _GARCH_BLOCK])))
        h[begin + 1 : begin + 1 + len(product)] = product * (h[begin] + w * np.cumsum(1.0 / product))
    return h


def _aggregate(bars: np.ndarray, minutes: int) -> np.ndarray:
    """Return one day's 1m OHLCV bars merged into ``minutes``-long bars (``minutes`` divides 1440)."""
    if minutes == 1:
        return bars
    grouped = bars.reshape(_MINUTES // minutes, minutes, 5)
    return np.column_stack(
        [
            grouped[:, 0, 0],
            grouped[:, :, 1].max(axis=1),
            grouped[:, :, 2].min(axis=1),
            grouped[:, -1, 3],
            grouped[:, :, 4].sum(axis=1),
        ]
    )
