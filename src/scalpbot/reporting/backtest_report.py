"""A backtest as a page: equity beside buy and hold, drawdown, price with the trades, exit reasons. Pure.

Same charts and plotly.js handling as the weekly report (inlined unless ``plotly_src`` is given).
"""

from __future__ import annotations

import html
from collections.abc import Mapping

import numpy as np
import pandas as pd

from scalpbot.core.metrics import Metrics
from scalpbot.core.timeframes import timeframe_seconds
from scalpbot.reporting import charts
from scalpbot.reporting.changes import number_text
from scalpbot.reporting.html_report import METRIC_FORMATS
from scalpbot.reporting.tables import table

__all__ = ["exit_reason_rows", "render_backtest_html"]


def exit_reason_rows(trades: pd.DataFrame) -> list[dict[str, float | int | str]]:
    """Return per exit reason (sl, tp, time, signal, open, ...): trade count, wins, PnL and mean PnL (quote)."""
    rows: list[dict[str, float | int | str]] = []
    if trades.empty:
        return rows
    reasons = trades["exit_reason"].astype(str).to_numpy()
    pnl = trades["pnl"].to_numpy(dtype=np.float64)
    for reason in dict.fromkeys(reasons):
        chosen = pnl[reasons == reason]
        rows.append(
            {
                "exit_reason": str(reason),
                "trades": int(chosen.size),
                "wins": int((chosen > 0).sum()),
                "pnl": float(chosen.sum()),
                "mean_pnl": float(chosen.mean()),
            }
        )
    return rows


def _metric_text(value: object, kind: str) -> str:
    if value is None or not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    if kind == "percent":
        return number_text(float(value) * 100) + "%"
    if kind == "count":
        return f"{int(value):,}"
    return number_text(float(value))


def _metrics_table(metrics: Metrics, benchmark: Mapping[str, float | int | None]) -> str:
    rows = []
    for name, value in metrics.items():
        label, kind, _ = METRIC_FORMATS.get(name, (name.replace("_", " "), "ratio", None))
        shown = _metric_text(benchmark[name], kind) if name in benchmark else ""
        rows.append([html.escape(label), _metric_text(value, kind), shown])
    return table(["Metric", "Strategy", "Buy and hold"], rows, "metrics")


_STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1rem 1.5rem;color:#222}
h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:1.6rem}.caption{color:#555;font-size:.9rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}thead th{background:#f4f4f4}
.metrics td,.reasons td{text-align:right;font-variant-numeric:tabular-nums}
"""


def render_backtest_html(
    title: str,
    *,
    bars: pd.DataFrame,
    timeframe: str,
    trades: pd.DataFrame,
    equity: pd.Series,
    metrics: Metrics,
    benchmark_equity: pd.Series,
    benchmark_metrics: Mapping[str, float | int | None],
    plotly_src: str | None = None,
) -> str:
    """Return the page of one backtest; ``bars`` (UTC open times), ``equity`` and ``benchmark_equity`` at closes."""
    seconds = timeframe_seconds(timeframe)
    start = pd.Timestamp(bars.index[0])
    end = pd.Timestamp(bars.index[-1]) + pd.Timedelta(seconds=seconds)
    window = (start.timestamp() * 1000.0, end.timestamp() * 1000.0)
    points = charts.downsample_equity(equity, timeframe, seconds)
    hold = charts.downsample_equity(benchmark_equity, timeframe, seconds)
    candles = charts.downsample_bars(bars, timeframe, seconds)
    reason_rows = [
        [
            html.escape(str(r["exit_reason"])),
            f"{r['trades']:,}",
            f"{r['wins']:,}",
            number_text(float(r["pnl"])),
            number_text(float(r["mean_pnl"])),
        ]
        for r in exit_reason_rows(trades)
    ]
    reasons = (
        table(["Exit reason", "Trades", "Wins", "PnL", "Mean PnL"], reason_rows, "reasons")
        if reason_rows
        else "<p>No trades.</p>"
    )
    script = (
        charts.plotly_script()
        if plotly_src is None
        else f'<script type="text/javascript" src="{html.escape(plotly_src)}"></script>'
    )
    sections = (
        f"<h1>{html.escape(title)}</h1>"
        f"<p class=caption>{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC · {len(bars):,} bars · "
        f"{len(trades):,} trades</p>"
        f'<section id="metrics"><h2>Metrics</h2>{_metrics_table(metrics, benchmark_metrics)}</section>'
        '<section id="equity"><h2>Equity beside buy and hold (dashed)</h2>'
        + charts.figure_div(charts.equity_figure(points, window, hold, "buy and hold"), "equity-chart")
        + '</section><section id="drawdown"><h2>Drawdown</h2>'
        + charts.figure_div(charts.drawdown_figure(points, window), "drawdown-chart")
        + '</section><section id="price"><h2>Price and trades</h2>'
        + charts.figure_div(charts.price_figure(candles, trades, window), "price-chart")
        + f'</section><section id="exit-reasons"><h2>Exit reasons</h2>{reasons}</section>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>{script}</head>"
        f"<body>{sections}</body></html>\n"
    )
