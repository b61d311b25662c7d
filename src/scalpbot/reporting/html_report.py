"""The weekly report of one bot: an HTML page and its JSON companion. Pure: values in, text out.

The page needs plotly.js only when it has a chart: either inlined (about 4.8 MB, the page stands alone) or
referenced by ``plotly_src`` (one shared copy beside the reports, see :func:`plotly_asset`); :func:`standalone`
turns a page with a reference into one that stands alone. No network is needed to open either. Every text that
comes from the report (names, notes, changes, drift) is HTML-escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from plotly.offline import get_plotlyjs

from scalpbot.core.backtest.enums import TRADE_COLUMNS
from scalpbot.core.metrics import Metrics
from scalpbot.core.timeframes import timeframe_seconds
from scalpbot.errors import DataError
from scalpbot.reporting import charts
from scalpbot.reporting.changes import CHANGE_COLUMNS, change_rows, number_text
from scalpbot.reporting.tables import cell, iso_utc, jsonable, key_values, records_table, table

__all__ = ["METRIC_FORMATS", "WeeklyReport", "plotly_asset", "render_html", "report_json", "standalone"]

METRIC_FORMATS: dict[str, tuple[str, str, str | None]] = {
    "total_return": ("Total return", "percent", "higher"),
    "win_rate": ("Win rate", "percent", "higher"),
    "risk_reward": ("Risk/reward", "ratio", "higher"),
    "max_drawdown": ("Max drawdown", "percent", "lower"),
    "return_on_capital": ("Return on capital", "percent", "higher"),
    "sharpe": ("Sharpe (annualized)", "ratio", "higher"),
    "sortino": ("Sortino (annualized)", "ratio", "higher"),
    "profit_factor": ("Profit factor", "ratio", "higher"),
    "expectancy": ("Expectancy per trade", "money", "higher"),
    "trades": ("Closed trades", "count", None),
    "exposure": ("Exposure", "percent", None),
    "avg_hold_bars": ("Average hold (bars)", "ratio", None),
    "fees_paid": ("Fees paid", "money", "lower"),
    "funding_paid": ("Funding paid (swaps; negative: received)", "money", "lower"),
}
"""Metric name -> (label, kind, which direction is better); kinds: percent, ratio, money, count."""


@dataclass(frozen=True)
class WeeklyReport:
    """What the monitor job gathered about one bot's week.

    ``start``/``end``: the window ``[start, end)``, timezone-aware (shown in UTC). ``bars``: the week's bars
    (UTC DatetimeIndex of open times; open, high, low, close). ``trades``: the trades frame
    (:data:`~scalpbot.core.backtest.enums.TRADE_COLUMNS`), may be empty. ``equity``: account value at each bar
    close, on the bar index. ``metrics``/``previous_metrics``: :func:`~scalpbot.core.metrics.compute_metrics`
    of this week and the week before (``None`` when there was none).
    ``changes``: one mapping per change of the week (release before/after, params before/after, online-learning
    and RL results, promotion verdicts and reasons); any keys, shown as table columns.
    ``drift``: live or paper trading against the simulator; lists of per-trade mappings (e.g. ``matched``,
    ``missed``, ``extra``) become rows of one table, ``totals`` and other mappings key/value tables, scalars
    (``release_id``, ``note``, ``error``) a summary. ``notes``: free text, e.g. the week's errors.
    """

    bot: str
    symbol: str
    timeframe: str
    start: datetime
    end: datetime
    bars: pd.DataFrame
    trades: pd.DataFrame
    equity: pd.Series
    metrics: Metrics
    previous_metrics: Metrics | None = None
    changes: Sequence[Mapping[str, Any]] = ()
    drift: Mapping[str, Any] = field(default_factory=dict)
    notes: Sequence[str] = ()
    simulated_equity: pd.Series | None = None
    symbols: Sequence[Mapping[str, Any]] = ()
    """A portfolio's week (a bot of several symbols): one row per symbol - ``symbol``, ``report`` (its own
    page, relative to this one), ``pnl`` and its ``metrics`` - shown in a "Symbols" section."""

    def __post_init__(self) -> None:
        timeframe_seconds(self.timeframe)  # ConfigError naming the supported ones
        start, end = _utc(self.start, "start"), _utc(self.end, "end")
        if not start < end:
            raise DataError(f"window start {start} must be before its end {end}")
        if len(self.bars):
            missing = [c for c in ("open", "high", "low", "close") if c not in self.bars.columns]
            if missing:
                raise DataError(f"bars is missing column '{missing[0]}'; expected open, high, low, close")
            _check_index(self.bars.index, "bars")
        if len(self.equity):
            _check_index(self.equity.index, "equity")
        if self.simulated_equity is not None and len(self.simulated_equity):
            _check_index(self.simulated_equity.index, "simulated_equity")
        if len(self.trades):
            missing = [c for c in TRADE_COLUMNS if c not in self.trades.columns]
            if missing:
                raise DataError(
                    f"trades is missing column '{missing[0]}'; expected {', '.join(TRADE_COLUMNS)}"
                )

    @property
    def window(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """Return ``(start, end)`` as UTC timestamps."""
        return _utc(self.start, "start"), _utc(self.end, "end")


def _utc(moment: datetime, name: str) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is None:
        raise DataError(
            f"window {name} {stamp} has no timezone; pass an aware time, e.g. pd.Timestamp('{stamp}', tz='UTC')"
        )
    return stamp.tz_convert("UTC")


def _check_index(index: pd.Index, name: str) -> None:
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise DataError(
            f"{name} must have a timezone-aware DatetimeIndex (UTC bar open times); got "
            f"{type(index).__name__}: use {name}.tz_localize('UTC')"
        )
    if not index.is_monotonic_increasing:
        raise DataError(f"{name} index is not sorted; use {name}.sort_index()")


def report_json(report: WeeklyReport) -> dict[str, Any]:
    """Return the report's JSON companion; ``json.dumps(..., allow_nan=False)`` accepts it.

    Keys: bot, symbol, timeframe, ``window`` (ISO-8601 UTC start and end), ``bars`` and ``trade_count`` (rows,
    open trades included), ``metrics``, ``previous_metrics``, ``changes``, ``drift`` (without its per-trade
    lists: ``totals``, release and summary entries) and ``notes``.
    """
    start, end = report.window
    drift = {k: v for k, v in report.drift.items() if not _is_rows(v)}
    payload = {
        "bot": report.bot,
        "symbol": report.symbol,
        "timeframe": report.timeframe,
        "window": {"start": iso_utc(start), "end": iso_utc(end)},
        "bars": len(report.bars),
        "trade_count": len(report.trades),
        "metrics": report.metrics,
        "previous_metrics": report.previous_metrics,
        "changes": list(report.changes),
        "drift": drift,
        "notes": list(report.notes),
    }
    if report.symbols:
        payload["symbols"] = [dict(row) for row in report.symbols]
    result: dict[str, Any] = jsonable(payload)
    return result


def _metric(value: object, kind: str) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return cell(value)
    if not math.isfinite(value):
        return "-"
    if kind == "percent":
        return number_text(value * 100) + "%"
    if kind == "count":
        return f"{int(value):,}"
    return number_text(value)


def _delta(now: object, before: object, kind: str, better: str | None) -> tuple[str, str]:
    """Return (text, css class) of ``now - before``; ``-`` when either is missing."""
    numbers = [v for v in (now, before) if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) < 2 or not all(math.isfinite(v) for v in numbers):
        return "-", ""
    change = numbers[0] - numbers[1]
    shown = change * 100 if kind == "percent" else change
    if kind == "count":
        text = f"{int(change):+,}"
    else:
        text = number_text(shown)
        text = text if text.startswith("-") or text == number_text(0.0) else "+" + text
        text += " pp" if kind == "percent" else ""
    if better is None or text.lstrip("+-").strip(" p") in ("0", number_text(0.0)):
        return text, ""
    return text, "better" if (change > 0) == (better == "higher") else "worse"


def _is_rows(value: object) -> bool:
    return isinstance(value, list | tuple)


# ---- sections --------------------------------------------------------------------------------------------


def _metrics_section(report: WeeklyReport) -> str:
    """Return the metrics table; the previous week's column is blank when there was no previous week."""
    previous: Mapping[str, float | int | None] = report.previous_metrics or {}
    blank = report.previous_metrics is None
    names = [*METRIC_FORMATS, *(k for k in (*report.metrics, *previous) if k not in METRIC_FORMATS)]
    rows = []
    for name in dict.fromkeys(names):
        label, kind, better = METRIC_FORMATS.get(name, (name.replace("_", " "), "ratio", None))
        now, before = report.metrics.get(name), previous.get(name)
        delta, css = _delta(now, before, kind, better)
        rows.append(
            f'<tr data-metric="{html.escape(name)}"><th scope="row">{html.escape(label)}</th>'
            f'<td class="this-week">{_metric(now, kind)}</td>'
            f'<td class="previous-week">{"" if blank else _metric(before, kind)}</td>'
            f'<td class="delta {css}">{"" if blank else delta}</td></tr>'
        )
    missing = "" if not blank else "<p>No previous week to compare with: the bot was not trading yet.</p>"
    head = "<tr><th>Metric</th><th>This week</th><th>Previous week</th><th>Change</th></tr>"
    return (
        f'<section id="metrics"><h2>Metrics</h2><table class="metrics"><thead>{head}</thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{missing}</section>"
    )


def _charts_sections(report: WeeklyReport) -> tuple[str, bool]:
    """Return the equity, drawdown and price sections, and whether any of them holds a plotly chart."""
    start, end = report.window
    window_ms = (start.timestamp() * 1000.0, end.timestamp() * 1000.0)
    bar_seconds = timeframe_seconds(report.timeframe)
    if len(report.equity):
        points = charts.downsample_equity(report.equity, report.timeframe, bar_seconds)
        caption = (
            f"<p class=caption>At bar closes; {len(report.equity):,} {html.escape(report.timeframe)} bars shown "
            f"as {points.x.size:,} {points.timeframe} points (last equity, deepest drawdown of each).</p>"
            if points.merged
            else ""
        )
        simulated = None
        if report.simulated_equity is not None and len(report.simulated_equity):
            simulated = charts.downsample_equity(report.simulated_equity, report.timeframe, bar_seconds)
            caption += (
                "<p class=caption>Live equity (solid) beside the simulator's with the release that traded "
                "(dashed): where they part, the venue filled differently or trades were missed.</p>"
            )
        figure = charts.equity_figure(points, window_ms, simulated)
        equity = caption + charts.figure_div(figure, "equity-chart")
        drawdown = charts.figure_div(charts.drawdown_figure(points, window_ms), "drawdown-chart")
    else:
        equity = drawdown = "<p>No equity data in this window.</p>"
    if len(report.bars):
        candles = charts.downsample_bars(report.bars, report.timeframe, bar_seconds)
        caption = (
            f"{candles.x.size:,} {candles.timeframe} candles merged from {len(report.bars):,} "
            f"{html.escape(report.timeframe)} bars to keep the page small; "
            if candles.merged
            else f"{candles.x.size:,} {html.escape(report.timeframe)} candles; "
        )
        count = len(report.trades)
        caption += (
            f"{count:,} trades: triangles mark entries (up long, down short), crosses exits at their fill "
            "price (hover for the exit reason and PnL)."
            if count
            else "no trades this week."
        )
        trades = report.trades if count else pd.DataFrame(columns=list(TRADE_COLUMNS))
        figure = charts.price_figure(candles, trades, window_ms)
        price = f"<p class=caption>{caption}</p>" + charts.figure_div(figure, "price-chart")
    else:
        price = "<p>No bars in this window" + (
            f"; {len(report.trades):,} trades not charted.</p>" if len(report.trades) else ".</p>"
        )
    sections = (
        f'<section id="equity"><h2>Equity</h2>{equity}</section>'
        f'<section id="drawdown"><h2>Drawdown</h2>{drawdown}</section>'
        f'<section id="price"><h2>Price and trades</h2>{price}</section>'
    )
    return sections, bool(len(report.equity) or len(report.bars))


def _changes_section(report: WeeklyReport) -> str:
    rows = [[html.escape(text) for text in row] for row in change_rows(report.changes)]
    body = table(CHANGE_COLUMNS, rows, "changes") if rows else "<p>Nothing changed this week.</p>"
    return f'<section id="changes"><h2>Changes</h2>{body}</section>'


def _same_as_simulated(status: str, item: object) -> bool:
    """Return whether a matched trade equals its simulated twin (no slippage, PnL difference or other exit)."""
    if status != "matched" or not isinstance(item, Mapping):
        return False
    numbers = [item.get(k) for k in ("entry_slippage", "exit_slippage", "pnl_difference")]
    if not all(isinstance(v, int | float) and abs(v) < 1e-9 for v in numbers):
        return False
    return bool(item.get("exit_reason_live", "") == item.get("exit_reason_sim", ""))


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    rows = []
    for name, value in metrics.items():
        label, kind, _ = METRIC_FORMATS.get(name, (name.replace("_", " "), "ratio", None))
        rows.append([html.escape(label), _metric(value, kind)])
    return table(["", "value"], rows, "key-values")


def _drift_section(report: WeeklyReport) -> str:
    drift = report.drift
    if not drift:
        return '<section id="drift"><h2>Drift against the simulator</h2><p>No drift measured.</p></section>'
    summary = {k: v for k, v in drift.items() if not _is_rows(v) and not isinstance(v, Mapping)}
    parts = [key_values(summary)] if summary else []
    tables = sorted(
        ((k, v) for k, v in drift.items() if isinstance(v, Mapping)), key=lambda item: item[0] != "totals"
    )
    for name, mapping in tables:
        body = _metrics_table(mapping) if name.endswith("metrics") else key_values(mapping)
        parts.append(f"<h3>{html.escape(str(name).replace('_', ' ').capitalize())}</h3>{body}")
    rows: list[Mapping[str, Any]] = []
    same = 0
    for status, items in drift.items():
        if _is_rows(items):
            for item in items:
                if _same_as_simulated(status, item):
                    same += 1
                elif isinstance(item, Mapping):
                    rows.append({"status": status, **item})
                else:
                    rows.append({"status": status, "trade": item})
    identical = f"<p>{same:,} matched trades equal the simulator's exactly.</p>" if same else ""
    parts.append(
        f"<h3>Per trade</h3>{identical}{records_table(rows, first=['status'])}"
        if rows
        else f"<h3>Per trade</h3>{identical or '<p>No per-trade drift.</p>'}"
    )
    return f'<section id="drift"><h2>Drift against the simulator</h2>{"".join(parts)}</section>'


_SYMBOL_METRICS = ("total_return", "win_rate", "risk_reward", "max_drawdown", "return_on_capital", "trades")


def _symbols_section(report: WeeklyReport) -> str:
    """Return the per-symbol table of a portfolio's week (nothing for one symbol's week)."""
    if not report.symbols:
        return ""
    head = "".join(
        f"<th>{html.escape(label)}</th>"
        for label in ("Symbol", *(METRIC_FORMATS[name][0] for name in _SYMBOL_METRICS), "PnL")
    )
    rows = []
    for row in report.symbols:
        symbol = html.escape(str(row.get("symbol")))
        link = row.get("report")
        name = f'<a href="{html.escape(str(link))}">{symbol}</a>' if link else symbol
        metrics: Mapping[str, Any] = row.get("metrics") or {}
        cells = "".join(
            f"<td>{_metric(metrics.get(metric), METRIC_FORMATS[metric][1])}</td>"
            for metric in _SYMBOL_METRICS
        )
        rows.append(
            f'<tr data-symbol="{symbol}"><th scope="row">{name}</th>{cells}'
            f"<td>{_metric(row.get('pnl'), 'money')}</td></tr>"
        )
    return (
        '<section id="symbols"><h2>Symbols</h2><table class="metrics">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _notes_section(report: WeeklyReport) -> str:
    body = (
        "<ul>" + "".join(f"<li>{html.escape(str(note))}</li>" for note in report.notes) + "</ul>"
        if report.notes
        else "<p>No notes this week.</p>"
    )
    return f'<section id="notes"><h2>Notes</h2>{body}</section>'


_STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1rem 1.5rem;color:#222}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
.window{color:#555;margin-top:0}.caption{color:#555;font-size:.9rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top}
thead th{background:#f4f4f4}.metrics td{text-align:right;font-variant-numeric:tabular-nums}
td code{white-space:pre-wrap;word-break:break-word;font-size:.8rem}
.better{color:#1a7f37}.worse{color:#c62828}
"""


def plotly_asset() -> tuple[str, bytes]:
    """Return the file name (with plotly's version) and content of the plotly.js that report pages reference."""
    import plotly

    return f"plotly-{plotly.__version__}.min.js", get_plotlyjs().encode()


def _script_tag(src: str) -> str:
    return f'<script type="text/javascript" src="{html.escape(src)}"></script>'


def standalone(page: str, plotly_src: str) -> str:
    """Return ``page`` with its reference to plotly.js at ``plotly_src`` replaced by plotly.js itself."""
    return page.replace(_script_tag(plotly_src), charts.plotly_script(), 1)


def render_html(report: WeeklyReport, *, plotly_src: str | None = None) -> str:
    """Return the report as one HTML page: plotly.js inlined (about 5 MB), or referenced at ``plotly_src``.

    Sections: title and window, metrics of this week beside the previous week and the change, equity and
    drawdown curves, candles with the trades as markers (downsampled past ``charts.MAX_POINTS`` bars), changes,
    drift against the simulator, notes. Deterministic: the same report renders the same page.
    """
    start, end = report.window
    title = f"{report.bot} · {report.symbol} {report.timeframe} · week of {start:%Y-%m-%d}"
    chart_sections, has_charts = _charts_sections(report)
    head = (
        f'<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        + ((charts.plotly_script() if plotly_src is None else _script_tag(plotly_src)) if has_charts else "")
    )
    header = (
        f"<header><h1>{html.escape(title)}</h1><p class=window>{start:%Y-%m-%d %H:%M} to "
        f"{end:%Y-%m-%d %H:%M} UTC · {len(report.bars):,} bars · {len(report.trades):,} trades</p></header>"
    )
    body = "".join(
        (
            header,
            _metrics_section(report),
            _symbols_section(report),
            chart_sections,
            _changes_section(report),
            _drift_section(report),
            _notes_section(report),
        )
    )
    return f'<!DOCTYPE html>\n<html lang="en"><head>{head}</head><body>{body}</body></html>\n'
