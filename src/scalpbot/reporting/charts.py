"""Plotly figures of the weekly report: equity, drawdown, and candles with the trades as markers.

Times go to plotly as float milliseconds since the epoch (UTC) on ``date`` axes: plotly.py ships float arrays
as base64 typed arrays, about a third of the bytes of ISO strings. A week with more than ``MAX_POINTS`` bars
(a week of 1m bars has 10,080) is downsampled to the smallest supported timeframe that fits (5m: 2,016
candles) so the page stays small: candles become that timeframe's OHLC, equity keeps the last close of each
bucket and drawdown the deepest point of each bucket. Trade markers are never downsampled: each sits at its
fill time and price.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from scalpbot.core.timeframes import TIMEFRAME_SECONDS

__all__ = [
    "MAX_POINTS",
    "ChartPoints",
    "downsample_bars",
    "downsample_equity",
    "drawdown_figure",
    "equity_figure",
    "figure_div",
    "plotly_script",
    "price_figure",
]

MAX_POINTS = 3_000
"""Most candles (and equity points) a chart carries; more bars are downsampled (see the module docstring)."""

_LADDER = sorted(TIMEFRAME_SECONDS.items(), key=lambda item: item[1])
_MS = 1_000
_GREEN, _RED, _BLUE = "#1a9850", "#d73027", "#2c7fb8"
_CONFIG = {"displaylogo": False, "responsive": True}


@dataclass(frozen=True)
class ChartPoints:
    """Points of a chart after downsampling: ``x`` in ms since the epoch (UTC) and one or more value arrays.

    ``timeframe``: what one point stands for (the bars' own timeframe when nothing was merged);
    ``merged``: whether buckets of several bars were merged into one point.
    """

    x: np.ndarray
    values: tuple[np.ndarray, ...]
    timeframe: str
    merged: bool


def _epoch_ms(index: pd.Index) -> np.ndarray:
    times = pd.DatetimeIndex(index)
    return np.asarray(times.as_unit("ms").asi8, dtype=np.int64)


def _bucket(ticks_ms: np.ndarray, bar_seconds: int, max_points: int) -> tuple[str, int]:
    """Return the smallest supported timeframe (name, ms) >= the bar's that leaves at most ``max_points``."""
    for name, seconds in _LADDER:
        if seconds < bar_seconds:
            continue
        width = seconds * _MS
        if np.unique(ticks_ms // width).size <= max_points:
            return name, width
    name, seconds = _LADDER[-1]
    return name, seconds * _MS


def _bucket_bounds(ticks_ms: np.ndarray, width_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the first and last position of each run of equal ``ticks // width`` (sorted ticks)."""
    ids = ticks_ms // width_ms
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:] - 1, ids.size - 1]
    return starts, ends


def downsample_bars(
    bars: pd.DataFrame, timeframe: str, bar_seconds: int, max_points: int = MAX_POINTS
) -> ChartPoints:
    """Return OHLC candles of ``bars`` (x = candle open), merged into a coarser timeframe past ``max_points``."""
    ticks = _epoch_ms(bars.index)
    prices = [bars[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close")]
    if ticks.size <= max_points:
        return ChartPoints(ticks.astype(np.float64), tuple(prices), timeframe, merged=False)
    name, width = _bucket(ticks, bar_seconds, max_points)
    starts, ends = _bucket_bounds(ticks, width)
    open_, high, low, close = prices
    candles = (
        open_[starts],
        np.maximum.reduceat(high, starts),
        np.minimum.reduceat(low, starts),
        close[ends],
    )
    return ChartPoints(((ticks[starts] // width) * width).astype(np.float64), candles, name, merged=True)


def downsample_equity(
    equity: pd.Series, timeframe: str, bar_seconds: int, max_points: int = MAX_POINTS
) -> ChartPoints:
    """Return (equity, drawdown) at bar **close** times, merged into a coarser timeframe past ``max_points``.

    Drawdown is ``equity / running peak - 1`` (<= 0) computed on every bar first; a merged point carries the
    bucket's last equity and its deepest drawdown, at the bucket's last close.
    """
    ticks = _epoch_ms(equity.index)
    values = equity.to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdown = values / np.maximum.accumulate(values) - 1.0
    closes = ticks + bar_seconds * _MS
    if ticks.size <= max_points:
        return ChartPoints(closes.astype(np.float64), (values, drawdown), timeframe, merged=False)
    name, width = _bucket(ticks, bar_seconds, max_points)
    starts, ends = _bucket_bounds(ticks, width)
    merged = (values[ends], np.minimum.reduceat(drawdown, starts))
    return ChartPoints(closes[ends].astype(np.float64), merged, name, merged=True)


def _layout(
    window_ms: tuple[float, float], height: int, *, xaxis: dict[str, object] | None = None, **extra: object
) -> dict[str, object]:
    return {
        "template": "none",
        "height": height,
        "margin": {"l": 64, "r": 16, "t": 24, "b": 40},
        "xaxis": {"type": "date", "range": list(window_ms), **(xaxis or {})},
        "font": {"family": "system-ui, sans-serif", "size": 12},
        "showlegend": False,
        **extra,
    }


def equity_figure(
    points: ChartPoints,
    window_ms: tuple[float, float],
    simulated: ChartPoints | None = None,
    other_name: str = "simulated",
) -> go.Figure:
    """Return the equity curve (quote currency) at bar closes, and another (``other_name``) dashed beside it."""
    traces = []
    if simulated is not None:
        traces.append(
            go.Scatter(
                x=simulated.x,
                y=simulated.values[0],
                mode="lines",
                line={"color": "#888888", "width": 1.2, "dash": "dash"},
                name=other_name,
                hovertemplate="%{x|%Y-%m-%d %H:%M} UTC<br>" + other_name + " %{y:,.2f}<extra></extra>",
            )
        )
    trace = go.Scatter(
        x=points.x,
        y=points.values[0],
        mode="lines",
        line={"color": _BLUE, "width": 1.5},
        name="equity",
        hovertemplate="%{x|%Y-%m-%d %H:%M} UTC<br>equity %{y:,.2f}<extra></extra>",
    )
    layout = _layout(window_ms, 320, yaxis={"tickformat": ",.0f"})
    if traces:
        layout.update(showlegend=True, legend={"orientation": "h", "y": 1.1, "x": 0})
    return go.Figure([*traces, trace], layout=layout)


def drawdown_figure(points: ChartPoints, window_ms: tuple[float, float]) -> go.Figure:
    """Return the drawdown from the running equity peak, as a negative fraction filled down from zero.

    Sent as float32: seven significant digits are plenty for a fraction, and half the bytes.
    """
    trace = go.Scatter(
        x=points.x,
        y=points.values[1].astype(np.float32),
        mode="lines",
        fill="tozeroy",
        line={"color": _RED, "width": 1},
        name="drawdown",
        hovertemplate="%{x|%Y-%m-%d %H:%M} UTC<br>drawdown %{y:.2%}<extra></extra>",
    )
    return go.Figure(trace, layout=_layout(window_ms, 240, yaxis={"tickformat": ".1%"}))


def _markers(name: str, x: np.ndarray, y: np.ndarray, text: list[str], symbol: str, color: str) -> go.Scatter:
    return go.Scatter(
        x=x,
        y=y,
        text=text,
        mode="markers",
        name=name,
        marker={"symbol": symbol, "color": color, "size": 9, "line": {"width": 1, "color": "#333"}},
        hovertemplate="%{text}<br>%{x|%Y-%m-%d %H:%M:%S} UTC @ %{y:,.8~g}<extra></extra>",
    )


def _trade_traces(trades: pd.DataFrame) -> list[go.Scatter]:
    """Return marker traces: long and short entries (triangles), exits in profit and at a loss (crosses).

    Trades are numbered ``#1``.. in frame order; the hover text names the side, the exit reason and the PnL.
    """
    number = np.arange(1, len(trades) + 1)
    side = trades["side"].to_numpy(dtype=np.int64)
    pnl = trades["pnl"].to_numpy(dtype=np.float64)
    qty = trades["qty"].to_numpy(dtype=np.float64)
    reason = trades["exit_reason"].astype(str).to_numpy()
    entry_x = _epoch_ms(pd.DatetimeIndex(trades["entry_time"])).astype(np.float64)
    exit_x = _epoch_ms(pd.DatetimeIndex(trades["exit_time"])).astype(np.float64)
    entry_y = trades["entry_price"].to_numpy(dtype=np.float64)
    exit_y = trades["exit_price"].to_numpy(dtype=np.float64)
    words = np.where(side > 0, "long", "short")
    entry_text = [f"#{n} {w} entry · qty {q:.6g}" for n, w, q in zip(number, words, qty, strict=True)]
    exit_text = [
        f"#{n} {w} exit · {html.escape(r)} · pnl {p:+,.2f}"
        for n, w, r, p in zip(number, words, reason, pnl, strict=True)
    ]
    traces = []
    groups = (
        ("long entry", side > 0, entry_x, entry_y, entry_text, "triangle-up", _GREEN),
        ("short entry", side < 0, entry_x, entry_y, entry_text, "triangle-down", _RED),
        ("exit in profit", pnl > 0, exit_x, exit_y, exit_text, "x", _GREEN),
        ("exit at a loss", pnl <= 0, exit_x, exit_y, exit_text, "x", _RED),
    )
    for name, mask, x, y, text, symbol, color in groups:
        if mask.any():
            chosen = [t for t, keep in zip(text, mask, strict=True) if keep]
            traces.append(_markers(name, x[mask], y[mask], chosen, symbol, color))
    return traces


def price_figure(candles: ChartPoints, trades: pd.DataFrame, window_ms: tuple[float, float]) -> go.Figure:
    """Return the candlestick chart with each trade's entry and exit as markers.

    Candles are drawn over their whole period (``xperiod``), so a marker lies inside the candle it filled in.
    """
    open_, high, low, close = candles.values
    period_ms = TIMEFRAME_SECONDS[candles.timeframe] * _MS
    candle = go.Candlestick(
        x=candles.x,
        open=open_,
        high=high,
        low=low,
        close=close,
        xperiod=period_ms,
        xperiodalignment="middle",
        name=f"{candles.timeframe} candles",
        increasing={"line": {"color": "#7fbf7b", "width": 1}},
        decreasing={"line": {"color": "#e7959b", "width": 1}},
    )
    layout = _layout(
        window_ms,
        520,
        xaxis={"rangeslider": {"visible": False}},
        yaxis={"tickformat": ",~g"},
        showlegend=True,
        legend={"orientation": "h", "y": 1.08, "x": 0},
        hovermode="closest",
    )
    return go.Figure([candle, *_trade_traces(trades)], layout=layout)


def figure_div(figure: go.Figure, div_id: str) -> str:
    """Return the figure as an HTML ``<div>`` plus its ``Plotly.newPlot`` script (plotly.js not included)."""
    return str(pio.to_html(figure, include_plotlyjs=False, full_html=False, div_id=div_id, config=_CONFIG))


def plotly_script() -> str:
    """Return plotly.js inlined in a ``<script>`` element (about 4.8 MB): the page works offline."""
    return f'<script type="text/javascript">{get_plotlyjs()}</script>'
