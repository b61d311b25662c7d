"""The weekly report page and its JSON companion, on a real week of BTC/USDT 1m bars and sma-cross trades."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

import scalpbot.reporting
from scalpbot.core.backtest.enums import TRADE_COLUMNS
from scalpbot.core.backtest.frame import BacktestResult, backtest
from scalpbot.core.metrics import compute_metrics, max_drawdown
from scalpbot.core.strategies import sma_cross_signals
from scalpbot.errors import ConfigError, DataError
from scalpbot.reporting import WeeklyReport, render_html, report_json
from scalpbot.reporting.charts import downsample_bars, downsample_equity, price_figure
from scalpbot.reporting.html_report import METRIC_FORMATS

START = pd.Timestamp("2024-11-25", tz="UTC")
END = START + pd.Timedelta(days=7)
WINDOW_MS = (START.timestamp() * 1000.0, END.timestamp() * 1000.0)

CHANGES: list[dict[str, Any]] = [
    {"kind": "release", "before": "btc-2024-11-18", "after": "btc-2024-11-25", "verdict": "promoted"},
    {
        "kind": "online learning",
        "params_before": {"sl": 0.003, "tp": 0.006},
        "params_after": {"sl": 0.004, "tp": 0.006},
        "verdict": "rejected",
        "reasons": ["sharpe fell from 1.20 to 0.90", "max drawdown above 5 %"],
    },
]
DRIFT: dict[str, Any] = {
    "release_id": "btc-2024-11-25",
    "matched": [
        {"entry_time": "2024-11-25T01:05:00+00:00", "side": 1, "entry_slippage": 0.5, "exit_slippage": -1.25},
        {"entry_time": "2024-11-25T03:10:00+00:00", "side": -1, "entry_slippage": 2.0, "exit_slippage": 0.0},
    ],
    "missed": ["2024-11-25T02:00:00+00:00|1"],
    "extra": [],
    "totals": {"live_pnl": -12.5, "simulated_pnl": -10.0, "matched_trades": 2, "missed_trades": 1},
}


def run(bars: pd.DataFrame) -> BacktestResult:
    return backtest(bars, sma_cross_signals(bars, length=60, max_hold=30), fee=0.0004, slippage=0.0001)


@pytest.fixture(scope="module")
def week(sample_bars: pd.DataFrame) -> WeeklyReport:
    """Return the report of the week 2024-11-25..12-02 (10,080 1m bars) and its previous week."""
    bars = sample_bars.loc[(sample_bars.index >= START) & (sample_bars.index < END)]
    before = sample_bars.loc[(sample_bars.index >= START - (END - START)) & (sample_bars.index < START)]
    this, previous = run(bars), run(before)
    return WeeklyReport(
        bot="btc-scalper",
        symbol="BTC/USDT",
        timeframe="1m",
        start=START,
        end=END,
        bars=bars,
        trades=this.trades,
        equity=this.equity,
        metrics=this.metrics,
        previous_metrics=previous.metrics,
        changes=CHANGES,
        drift=DRIFT,
        notes=["retrieve failed once on Tuesday: exchange timeout, retried"],
    )


@pytest.fixture(scope="module")
def page(week: WeeklyReport) -> str:
    return render_html(week)


def empty_week() -> WeeklyReport:
    index = pd.DatetimeIndex([], tz="UTC")
    trades = pd.DataFrame({c: [] for c in TRADE_COLUMNS})
    equity = pd.Series([], index=index, dtype=np.float64)
    return WeeklyReport(
        bot="idle",
        symbol="BTC/USDT",
        timeframe="1m",
        start=START,
        end=END,
        bars=pd.DataFrame({c: [] for c in ("open", "high", "low", "close")}, index=index, dtype=np.float64),
        trades=trades,
        equity=equity,
        metrics=compute_metrics(trades, equity),
    )


class TagBalance(HTMLParser):
    """Record the first tag that closes out of order, or stays open at the end."""

    VOID = frozenset({"meta", "br", "img", "input", "link", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problem: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.problem = self.problem or f"unexpected </{tag}>"


def tag_problem(page: str) -> str | None:
    parser = TagBalance()
    parser.feed(page)
    parser.close()
    return parser.problem or (f"unclosed {parser.open}" if parser.open else None)


def metric_rows(page: str) -> dict[str, list[str]]:
    """Return each metric row's cells (this week, previous week, change) by metric name."""
    rows = re.findall(r'<tr data-metric="(\w+)">(.*?)</tr>', page)
    return {name: re.findall(r"<td[^>]*>(.*?)</td>", cells) for name, cells in rows}


def test_the_week_has_trades_to_report(week: WeeklyReport) -> None:
    assert len(week.bars) == 10_080
    assert len(week.trades) > 100
    assert week.previous_metrics is not None


def test_metrics_table_shows_this_week_beside_the_previous_week_and_the_change(
    week: WeeklyReport, page: str
) -> None:
    assert "<th>This week</th><th>Previous week</th><th>Change</th>" in page
    rows = metric_rows(page)
    assert list(rows) == list(METRIC_FORMATS)
    previous = week.previous_metrics or {}
    now, before = week.metrics["total_return"], previous["total_return"]
    assert isinstance(now, float) and isinstance(before, float)
    assert rows["total_return"][:3] == [f"{now:.2%}", f"{before:.2%}", f"{(now - before) * 100:+.2f} pp"]
    assert rows["trades"][:2] == [f"{week.metrics['trades']:,}", f"{previous['trades']:,}"]
    sharpe = week.metrics["sharpe"]
    assert isinstance(sharpe, float)
    assert rows["sharpe"][0] == f"{sharpe:,.2f}"
    for label, _, _ in METRIC_FORMATS.values():
        assert f">{label}</th>" in page


def test_a_better_or_worse_change_is_marked(page: str) -> None:
    assert re.search(r'<tr data-metric="max_drawdown">.*?class="delta (better|worse)"', page)
    assert re.search(r'<tr data-metric="trades">.*?class="delta ">', page)  # no direction for a count


def test_missing_values_show_dashes_and_a_missing_previous_week_blank_cells(week: WeeklyReport) -> None:
    metrics = {**week.metrics, "sharpe": None, "profit_factor": math.nan}
    page = render_html(replace(week, metrics=metrics, previous_metrics=None))
    rows = metric_rows(page)
    assert rows["sharpe"] == ["-", "", ""]
    assert rows["profit_factor"][0] == "-"
    assert rows["total_return"][1:] == ["", ""]
    assert "the bot was not trading yet" in page


def test_rounding_noise_never_shows_as_an_exponent_or_a_negative_zero(week: WeeklyReport) -> None:
    noise = -3.552713678800501e-15
    metrics = {**week.metrics, "expectancy": noise, "total_return": -0.00001}
    previous = {**(week.previous_metrics or {}), "expectancy": 0.0, "total_return": 0.0}
    page = render_html(
        replace(
            week, metrics=metrics, previous_metrics=previous, drift={**DRIFT, "totals": {"live_pnl": noise}}
        )
    ).replace(get_plotlyjs(), "")
    rows = metric_rows(page)
    assert rows["expectancy"] == ["0.00", "0.00", "0.00"]
    assert rows["total_return"] == ["0.00%", "0.00%", "0.00 pp"]
    assert "e-15" not in page and "-0.00" not in page


def test_page_has_equity_drawdown_and_price_charts_with_plotly_inlined_once(page: str) -> None:
    assert page.count("Plotly.newPlot(") == 3
    for div in ("equity-chart", "drawdown-chart", "price-chart"):
        assert f'<div id="{div}"' in page
    assert page.count(get_plotlyjs()) == 1


def test_page_tags_are_balanced(week: WeeklyReport, page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert tag_problem(page) is None
    assert tag_problem(render_html(replace(week, previous_metrics=None, drift={}, changes=[]))) is None


def test_page_loads_nothing_from_the_network(page: str) -> None:
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert not re.search(r"<link[^>]*\bhref=", page)
    # plotly.js itself names its CDN (as a default topojson URL, unused here); nothing else may.
    assert "cdn.plot.ly" not in page.replace(get_plotlyjs(), "")


def test_every_trade_has_one_entry_and_one_exit_marker(week: WeeklyReport, page: str) -> None:
    assert len(re.findall(r'"#\d+ (?:long|short) entry', page)) == len(week.trades)
    assert len(re.findall(r'"#\d+ (?:long|short) exit', page)) == len(week.trades)
    figure = price_figure(downsample_bars(week.bars, "1m", 60), week.trades, WINDOW_MS)
    markers = {trace.name: len(trace.x) for trace in figure.data if trace.type == "scatter"}
    longs = int((week.trades["side"] > 0).sum())
    assert markers["long entry"] == longs
    assert markers["short entry"] == len(week.trades) - longs
    assert markers["exit in profit"] + markers["exit at a loss"] == len(week.trades)


def test_exit_reason_is_in_the_marker_hover(week: WeeklyReport, page: str) -> None:
    first = week.trades.iloc[0]
    side = "long" if first["side"] > 0 else "short"
    assert f'"#1 {side} exit · {first["exit_reason"]} · pnl {first["pnl"]:+,.2f}"' in page


def test_a_week_of_1m_bars_is_drawn_as_5m_candles(week: WeeklyReport, page: str) -> None:
    candles = downsample_bars(week.bars, "1m", 60)
    assert (candles.timeframe, candles.merged, candles.x.size) == ("5m", True, 2_016)
    first = week.bars.iloc[:5]
    open_, high, low, close = (values[0] for values in candles.values)
    assert (open_, high, low, close) == (
        first["open"].iloc[0],
        first["high"].max(),
        first["low"].min(),
        first["close"].iloc[-1],
    )
    assert candles.x[1] - candles.x[0] == 300_000.0
    assert "2,016 5m candles merged from 10,080 1m bars" in page


def test_downsampled_drawdown_keeps_the_deepest_point(week: WeeklyReport) -> None:
    points = downsample_equity(week.equity, "1m", 60)
    equity, drawdown = points.values
    assert points.x.size == 2_016
    assert equity[-1] == week.equity.iloc[-1]
    assert points.x[-1] == END.timestamp() * 1000.0  # the last close
    assert -drawdown.min() == pytest.approx(max_drawdown(week.equity), abs=1e-12)


def test_a_short_week_is_not_downsampled(week: WeeklyReport) -> None:
    candles = downsample_bars(week.bars.iloc[:1_000], "1m", 60)
    assert (candles.timeframe, candles.merged, candles.x.size) == ("1m", False, 1_000)


def test_page_of_a_week_of_1m_bars_stays_under_5_mib(page: str) -> None:
    size = len(page.encode())
    data = size - len(get_plotlyjs().encode())
    assert size < 5 * 1024 * 1024, size
    assert data < 400_000, data  # everything but plotly.js: charts and tables


def test_text_from_the_report_is_escaped(week: WeeklyReport) -> None:
    hostile = "<script>alert(1)</script>"
    report = replace(
        week,
        bot="<b>bot</b>",
        notes=[hostile],
        changes=[{"kind": "release", "reason": hostile, "params": {"note": hostile}}],
        drift={"note": hostile, "matched": [{"entry_time": hostile}], "totals": {hostile: 1}},
    )
    page = render_html(report).replace(get_plotlyjs(), "")
    assert "<script>alert(1)" not in page
    assert "<b>bot</b>" not in page
    assert "<li>&lt;script&gt;alert(1)&lt;/script&gt;</li>" in page
    assert "&lt;b&gt;bot&lt;/b&gt;" in page
    assert page.count("&lt;script&gt;") >= 5


def test_changes_read_as_words_and_numbers_not_json(page: str) -> None:
    section = re.search(r'<section id="changes">(.*?)</section>', page)
    assert section is not None
    changes = section.group(1)
    for header in ("Change", "Outcome", "Release", "Why", "Details"):
        assert f"<th>{header}</th>" in changes
    assert changes.count("<tr>") == 1 + len(CHANGES)
    assert "<code>" not in changes and "{" not in changes
    assert "<td>Online learning</td><td>rejected</td>" in changes
    assert "sl 0.0030 → 0.0040" in changes
    assert "sharpe fell from 1.20 to 0.90; max drawdown above 5 %" in changes
    assert "btc-2024-11-25" in changes


def test_a_gate_verdict_shows_the_outcome_the_reason_and_both_sides_metrics() -> None:
    from scalpbot.reporting.changes import change_row

    row = change_row(
        {
            "kind": "reinforcement_learning",
            "release_id": "20250101T000000Z-abcdef12",
            "promoted": False,
            "reason": "challenger sharpe 0.40 below the incumbent's 0.90",
            "challenger": {"total_return": 0.0123, "sharpe": 0.4, "trades": 31},
            "incumbent": {"total_return": -0.0021, "sharpe": 0.9, "trades": 12},
        }
    )
    assert row == (
        "Reinforcement learning",
        "not promoted",
        "20250101T000000Z-abcdef12",
        "challenger sharpe 0.40 below the incumbent's 0.90",
        "return 1.23 %, Sharpe 0.40, 31 trades",
        "return -0.21 %, Sharpe 0.90, 12 trades",
        "-",
    )
    assert change_row({"kind": "online_learning", "skipped": "12 new labelled bars"})[:4] == (
        "Online learning", "skipped", "-", "12 new labelled bars",
    )  # fmt: skip


def test_a_page_can_reference_one_shared_plotly_and_be_made_standalone_again(
    week: WeeklyReport, page: str
) -> None:
    from scalpbot.reporting.html_report import plotly_asset, standalone

    name, script = plotly_asset()
    small = render_html(week, plotly_src=f"../../assets/{name}")
    assert get_plotlyjs() not in small and f'src="../../assets/{name}"' in small
    assert len(small.encode()) < 500_000 and script == get_plotlyjs().encode()
    assert standalone(small, f"../../assets/{name}") == page


def test_drift_shows_totals_and_one_row_per_trade_difference(page: str) -> None:
    section = re.search(r'<section id="drift">(.*?)</section>', page)
    assert section is not None
    drift = section.group(1)
    assert "<h3>Totals</h3>" in drift
    assert "<td>live pnl</td><td>-12.50</td>" in drift
    per_trade = drift.split("<h3>Per trade</h3>")[1]
    assert per_trade.count("<td>matched</td>") == 2
    assert per_trade.count("<td>missed</td>") == 1
    assert "<td>2024-11-25T02:00:00+00:00|1</td>" in per_trade
    assert "<td>-1.25</td>" in per_trade


def test_an_empty_week_renders_sentences_instead_of_charts() -> None:
    page = render_html(empty_week())
    assert tag_problem(page) is None
    assert "Plotly.newPlot" not in page
    assert "No bars in this window." in page
    assert "No equity data in this window." in page
    assert "Nothing changed this week." in page
    assert "No drift measured." in page
    assert "No notes this week." in page
    assert len(page) < 20_000  # plotly.js is left out when there is no chart


def test_a_week_without_trades_still_draws_its_candles(week: WeeklyReport) -> None:
    report = replace(week, trades=week.trades.iloc[:0])
    page = render_html(report)
    assert '<div id="price-chart"' in page
    assert "no trades this week." in page
    assert not re.search(r'"#\d+ (?:long|short) entry', page)


def test_rendering_is_deterministic(week: WeeklyReport, page: str) -> None:
    assert render_html(week) == page


def test_report_json_round_trips_without_nan(week: WeeklyReport) -> None:
    report = replace(
        week,
        metrics={**week.metrics, "sharpe": math.nan},
        drift={**DRIFT, "totals": {**DRIFT["totals"], "mean_slippage": np.float64(np.inf)}},
        changes=[{"kind": "release", "at": pd.Timestamp("2024-11-26 10:00", tz="Europe/Paris")}],
    )
    payload = json.loads(json.dumps(report_json(report), allow_nan=False))
    assert payload["window"] == {"start": "2024-11-25T00:00:00Z", "end": "2024-12-02T00:00:00Z"}
    assert payload["trade_count"] == len(week.trades)
    assert payload["bars"] == 10_080
    assert payload["metrics"]["sharpe"] is None
    assert payload["metrics"]["trades"] == week.metrics["trades"]
    assert payload["previous_metrics"] == week.previous_metrics
    assert payload["changes"] == [{"kind": "release", "at": "2024-11-26T09:00:00Z"}]
    assert payload["drift"]["totals"]["mean_slippage"] is None
    assert payload["drift"]["release_id"] == "btc-2024-11-25"
    assert "matched" not in payload["drift"]  # per-trade lists stay in the page
    assert payload["notes"] == list(week.notes)


def test_report_json_of_an_empty_week() -> None:
    payload = json.loads(json.dumps(report_json(empty_week()), allow_nan=False))
    assert (payload["trade_count"], payload["bars"], payload["previous_metrics"]) == (0, 0, None)
    assert payload["metrics"]["trades"] == 0


def test_a_window_without_timezone_is_rejected_with_a_hint(week: WeeklyReport) -> None:
    with pytest.raises(DataError, match="tz='UTC'"):
        replace(week, start=pd.Timestamp("2024-11-25"))


def test_a_window_that_ends_before_it_starts_is_rejected(week: WeeklyReport) -> None:
    with pytest.raises(DataError, match="before its end"):
        replace(week, start=END, end=START)


def test_trades_missing_a_column_are_rejected(week: WeeklyReport) -> None:
    with pytest.raises(DataError, match="'exit_reason'"):
        replace(week, trades=week.trades.drop(columns="exit_reason"))


def test_an_unknown_timeframe_is_rejected_with_a_suggestion(week: WeeklyReport) -> None:
    with pytest.raises(ConfigError, match="did you mean '1m'"):
        replace(week, timeframe="1min")


def test_the_package_exports_the_report_api() -> None:
    assert scalpbot.reporting.__all__ == ["WeeklyReport", "render_html", "report_json"]
