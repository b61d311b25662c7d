"""OHLCV bars: validation, gaps and spikes (pure).

A bar frame has a UTC ``DatetimeIndex`` named ``timestamp`` holding each bar's **open** time, and
float64 columns ``open, high, low, close, volume``. Prices are in the quote currency, volume in the
base asset. Missing bars are gaps: they are reported, never filled.

Order flow (:data:`ORDER_FLOW_COLUMNS`) follows, only where the source reports it (Binance klines do):
``trades``, the number of trades in the bar, and ``taker_buy_volume``, the base volume bought by takers
(aggressive buyers), both float64. A source that does not report them leaves the columns out - they are never
filled with zeros. In a stored series a bar whose source did not report them holds NaN there (see
:mod:`scalpbot.state.dataset`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalpbot.core.timeframes import timeframe_seconds
from scalpbot.errors import DataError

PRICE_COLUMNS = ("open", "high", "low", "close")
BAR_COLUMNS = (*PRICE_COLUMNS, "volume")
ORDER_FLOW_COLUMNS = ("trades", "taker_buy_volume")
"""Optional bar columns, in this order after :data:`BAR_COLUMNS`: trade count and taker-buy base volume."""
_NS = 1_000_000_000
_SQRT_HALF_PI = float(np.sqrt(np.pi / 2))


@dataclass(frozen=True, slots=True)
class Gap:
    """Bars missing between two stored bars: ``after`` and ``before`` are the open times around the hole."""

    after: pd.Timestamp
    before: pd.Timestamp
    missing: int


@dataclass(frozen=True, slots=True)
class Spike:
    """A bar whose move is extreme against the recent robust volatility; reported, not removed."""

    time: pd.Timestamp
    log_move: float
    sigmas: float


def empty_bars() -> pd.DataFrame:
    """Return an empty bar frame with the canonical index and columns."""
    index = pd.DatetimeIndex([], tz="UTC", name="timestamp", dtype="datetime64[ns, UTC]")
    return pd.DataFrame({c: pd.Series([], dtype="float64") for c in BAR_COLUMNS}, index=index)


def validate_bars(raw: pd.DataFrame, timeframe: str, *, source: str) -> pd.DataFrame:
    """Return ``raw`` as a canonical bar frame, or raise ``DataError`` naming the first bad row.

    ``raw`` holds a ``timestamp`` column (or index) of UTC open times and the five OHLCV columns, in
    the order received; rows are numbered from 1 in that order. Checks: columns present and numeric,
    timestamps UTC and aligned to ``timeframe``, strictly increasing (sorted, no duplicates), no NaN,
    prices > 0, volume >= 0, and ``low <= min(open, close) <= max(open, close) <= high``.

    The order-flow columns (:data:`ORDER_FLOW_COLUMNS`) are kept when ``raw`` has them: ``trades`` a whole
    number >= 0, ``0 <= taker_buy_volume <= volume``; an empty value (NaN) is a bar without order flow, as a
    series exported from a store that mixes sources has. A column that is empty in every row is dropped (the
    source does not report it); other columns are dropped.
    """
    frame = raw.reset_index() if "timestamp" not in raw.columns and raw.index.name == "timestamp" else raw
    missing = [c for c in ("timestamp", *BAR_COLUMNS) if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {', '.join(missing)}; "
            "expected timestamp, open, high, low, close, volume"
        )
    if len(frame) == 0:
        return empty_bars()
    stamps = _utc_stamps(frame["timestamp"], source)
    values = {c: _numeric(frame[c], c, stamps, source) for c in BAR_COLUMNS}
    ns = stamps.asi8 if stamps.unit == "ns" else stamps.as_unit("ns").asi8
    _check_order(ns, stamps, timeframe, source)
    _check_values(values, stamps, source)
    for name in ORDER_FLOW_COLUMNS:
        if name in frame.columns:
            flow = _numeric(frame[name], name, stamps, source)
            if not np.isnan(flow).all():
                values[name] = flow
    _check_order_flow(values, stamps, source)
    index = pd.DatetimeIndex(stamps.as_unit("ns"), name="timestamp")
    return pd.DataFrame(values, index=index)


def order_flow_columns(bars: pd.DataFrame) -> tuple[str, ...]:
    """Return the order-flow columns ``bars`` holds, in canonical order."""
    return tuple(name for name in ORDER_FLOW_COLUMNS if name in bars.columns)


def canonical_columns(bars: pd.DataFrame) -> pd.DataFrame:
    """Return ``bars`` with the OHLCV columns then its order-flow columns, dropping an order-flow column
    that is NaN in every row (no bar of the frame reports it); the frame itself when already so."""
    keep = [*BAR_COLUMNS, *(c for c in order_flow_columns(bars) if bars[c].notna().any())]
    return bars if list(bars.columns) == keep else bars.loc[:, keep]


def _row(stamps: pd.DatetimeIndex, position: int) -> str:
    return f"row {position + 1} ({stamps[position].strftime('%Y-%m-%dT%H:%M:%SZ')})"


def _utc_stamps(column: pd.Series, source: str) -> pd.DatetimeIndex:
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        if str(column.dtype.tz) != "UTC":
            column = column.dt.tz_convert("UTC")
        return pd.DatetimeIndex(column)
    if pd.api.types.is_datetime64_dtype(column.dtype):
        raise DataError(f"{source}: timestamps have no time zone; give UTC times, e.g. 2024-01-01T00:00:00Z")
    parsed = pd.to_datetime(column, utc=True, errors="coerce", format="ISO8601")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        raise DataError(
            f"{source}: row {bad[0] + 1}: timestamp {column.iloc[bad[0]]!r} is not an ISO-8601 UTC time"
        )
    naive = ~column.astype(str).str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True)
    if naive.any():
        first = int(np.flatnonzero(naive.to_numpy())[0])
        raise DataError(
            f"{source}: row {first + 1}: timestamp {column.iloc[first]!r} has no time zone; "
            "give UTC times, e.g. 2024-01-01T00:00:00Z"
        )
    return pd.DatetimeIndex(parsed)


def _numeric(column: pd.Series, name: str, stamps: pd.DatetimeIndex, source: str) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        return column.to_numpy(dtype="float64", na_value=np.nan)
    converted = pd.to_numeric(column, errors="coerce")
    bad = np.flatnonzero(converted.isna().to_numpy() & column.notna().to_numpy())
    if bad.size:
        raise DataError(
            f"{source}: {_row(stamps, int(bad[0]))}: {name} {column.iloc[bad[0]]!r} is not a number"
        )
    return converted.to_numpy(dtype="float64", na_value=np.nan)


def _check_order(ns: np.ndarray, stamps: pd.DatetimeIndex, timeframe: str, source: str) -> None:
    step = timeframe_seconds(timeframe) * _NS
    unaligned = np.flatnonzero(ns % step)
    if unaligned.size:
        raise DataError(
            f"{source}: {_row(stamps, int(unaligned[0]))}: open time is not aligned to the {timeframe} timeframe; "
            "timestamps must be bar open times"
        )
    steps = np.diff(ns)
    backwards = np.flatnonzero(steps <= 0)
    if backwards.size:
        i = int(backwards[0]) + 1
        what = "repeats" if steps[i - 1] == 0 else "is earlier than"
        hint = "drop duplicate timestamps" if steps[i - 1] == 0 else "sort the bars by time"
        raise DataError(f"{source}: {_row(stamps, i)}: timestamp {what} the previous row's; {hint}")


def _check_values(values: dict[str, np.ndarray], stamps: pd.DatetimeIndex, source: str) -> None:
    for name, array in values.items():
        nan = np.flatnonzero(np.isnan(array))
        if nan.size:
            raise DataError(f"{source}: {_row(stamps, int(nan[0]))}: {name} is missing (NaN)")
    for name in PRICE_COLUMNS:
        bad = np.flatnonzero(values[name] <= 0)
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{source}: {_row(stamps, i)}: {name} {float(values[name][i])!r} must be positive"
            )
    bad_volume = np.flatnonzero(values["volume"] < 0)
    if bad_volume.size:
        i = int(bad_volume[0])
        raise DataError(f"{source}: {_row(stamps, i)}: volume {float(values['volume'][i])!r} is negative")
    o, h, lo, c = (values[n] for n in PRICE_COLUMNS)
    inconsistent = np.flatnonzero((lo > np.minimum(o, c)) | (h < np.maximum(o, c)))
    if inconsistent.size:
        i = int(inconsistent[0])
        raise DataError(
            f"{source}: {_row(stamps, i)}: inconsistent bar open={float(o[i])!r} high={float(h[i])!r} "
            f"low={float(lo[i])!r} close={float(c[i])!r}; need low <= open, close <= high"
        )


def _check_order_flow(values: dict[str, np.ndarray], stamps: pd.DatetimeIndex, source: str) -> None:
    for name in ORDER_FLOW_COLUMNS:
        if name not in values:
            continue
        array = values[name]
        negative = np.flatnonzero(array < 0)
        if negative.size:
            i = int(negative[0])
            raise DataError(f"{source}: {_row(stamps, i)}: {name} {float(array[i])!r} is negative")
    if "trades" in values:
        trades = values["trades"]
        fractional = np.flatnonzero((np.floor(trades) != trades) & ~np.isnan(trades))
        if fractional.size:
            i = int(fractional[0])
            raise DataError(
                f"{source}: {_row(stamps, i)}: trades {float(trades[i])!r} is not a whole number of trades"
            )
    if "taker_buy_volume" in values:
        taker, volume = values["taker_buy_volume"], values["volume"]
        over = np.flatnonzero(taker > volume)
        if over.size:
            i = int(over[0])
            raise DataError(
                f"{source}: {_row(stamps, i)}: taker_buy_volume {float(taker[i])!r} exceeds volume "
                f"{float(volume[i])!r}; taker-buy volume is the part of the bar's base volume bought by takers"
            )


def find_gaps(index: pd.DatetimeIndex, timeframe: str) -> list[Gap]:
    """Return every hole between consecutive bars of a sorted index, oldest first."""
    if len(index) < 2:
        return []
    step = timeframe_seconds(timeframe) * _NS
    ns = index.as_unit("ns").asi8
    jumps = np.diff(ns)
    where = np.flatnonzero(jumps > step)
    return [Gap(index[int(i)], index[int(i) + 1], int(jumps[i] // step) - 1) for i in where]


def find_spikes(
    bars: pd.DataFrame, *, sigmas: float = 15.0, min_move: float = 0.01, window: int = 1440
) -> list[Spike]:
    """Return bars whose close-to-close or high-low log move exceeds both thresholds.

    The scale is the recent volatility: the mean absolute close-to-close log return over the
    ``window`` bars ending at the previous bar, times sqrt(pi/2) (the standard deviation for normal
    returns). ``min_move`` keeps flat, thin markets (scale near 0) from flagging every tick.
    """
    if len(bars) < 3:
        return []
    close = bars["close"].to_numpy()
    ret = np.empty_like(close)
    ret[0] = 0.0
    ret[1:] = np.log(close[1:] / close[:-1])
    wick = np.log(bars["high"].to_numpy() / bars["low"].to_numpy())
    recent = pd.Series(np.abs(ret)).rolling(window, min_periods=30).mean().shift(1).to_numpy()
    scale = recent * _SQRT_HALF_PI
    move = np.maximum(np.abs(ret), wick)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(scale > 0, move / scale, np.inf)
    flagged = np.flatnonzero((move >= min_move) & (z >= sigmas) & ~np.isnan(scale))
    return [Spike(pd.Timestamp(bars.index[int(i)]), float(move[i]), float(z[i])) for i in flagged]
