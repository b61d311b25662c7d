"""The weekly review of a bot of several symbols: each symbol's week, and the whole account's from the one ledger.

Each symbol is reviewed as a bot of one symbol is (:func:`scalpbot.jobs.monitor.monitor`: its metrics, drift
against the simulator, improvement steps), its page at ``reports/{bot}/{date}/{BASE_QUOTE}/report.html``. The
portfolio - the sum of the symbols' accounts, every symbol's trades (:mod:`scalpbot.core.portfolio_metrics`) and
the week's denials by reason - has the week's page at ``reports/{bot}/{date}/report.html``, the one ``scalpbot
report`` and the dashboard read. One notification says the portfolio's week and each symbol's.

All symbols are measured on one window ``[until - days, until)``: ``until`` defaults to one bar after the last
bar any of them processed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from scalpbot.core.metrics import Metrics
from scalpbot.core.portfolio_metrics import account_equity, portfolio_metrics
from scalpbot.core.timeframes import timeframe_delta
from scalpbot.errors import ConfigError
from scalpbot.jobs.monitor import MonitorReport, Step, monitor, week_summary
from scalpbot.jobs.services import Services, state_symbol
from scalpbot.ports import Notifier
from scalpbot.state.dataset import SeriesId
from scalpbot.state.denials import DenialCounts, count_denials
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore
from scalpbot.state.scope import symbol_folder

__all__ = ["BasketReview", "basket_payload", "monitor_basket"]


@dataclass(frozen=True)
class BasketReview:
    """A basket's week: the account's equity (quote currency, at the union of the symbols' bar closes), every
    symbol's trades (a ``symbol`` column added), the account's metrics, the week's denials, each symbol's review
    (in the basket's order) and where the portfolio's page is."""

    bot: str
    start: pd.Timestamp
    end: pd.Timestamp
    equity: pd.Series
    trades: pd.DataFrame
    metrics: Metrics
    denials: DenialCounts
    symbols: dict[str, MonitorReport]
    report_key: str | None = None


def _window_end(
    services: Services, bot: str, basket: Sequence[SeriesId], until: datetime | None
) -> pd.Timestamp:
    if until is not None:
        return pd.Timestamp(until)
    ends = []
    for series in basket:
        stored = PortfolioStore(services.store, bot, state_symbol(services.settings, series.symbol)).load()
        if stored is not None and stored.snapshot.last_bar_time is not None:
            ends.append(stored.snapshot.last_bar_time + timeframe_delta(series.timeframe))
    return max(ends) if ends else pd.Timestamp(services.clock.now())


def monitor_basket(
    services: Services,
    basket: Sequence[SeriesId],
    *,
    bot: str,
    days: float = 7.0,
    until: datetime | None = None,
    notifier: Notifier,
    steps: Callable[[SeriesId], tuple[Step, ...]] = lambda series: (),
    write_report: bool = True,
    symbol_pages: bool = True,
) -> BasketReview:
    """Review each symbol's week and the portfolio's, write their pages, send one notification (see the module
    docstring). ``steps``: each symbol's improvement steps; ``symbol_pages`` off: the symbols' pages are not
    written (on AWS each symbol's own invocation wrote its page, with its improvement steps)."""
    if len(basket) < 2:
        raise ConfigError("a basket review needs several symbols; review one symbol with `monitor`")
    end = _window_end(services, bot, basket, until)
    reviews = {
        series.symbol: monitor(
            services,
            series,
            bot=bot,
            days=days,
            until=end.to_pydatetime(),
            notifier=notifier,
            steps=steps(series),
            write_report=write_report and symbol_pages,
            report_folder=symbol_folder(series.symbol),
            announce=False,
        )
        for series in basket
    }
    start = end - pd.Timedelta(days=days)
    equity = account_equity({symbol: review.week.equity for symbol, review in reviews.items()})
    trades = pd.concat(
        [review.week.trades.assign(symbol=symbol) for symbol, review in reviews.items()], ignore_index=True
    ).sort_values("entry_time", kind="stable", ignore_index=True)
    review = BasketReview(
        bot,
        start,
        end,
        equity,
        trades,
        portfolio_metrics(trades, equity),
        count_denials(Ledger(services.store, bot), start, end),
        reviews,
    )
    if write_report:
        review = _write_report(services, review, basket[0].timeframe)
    lines = [week_summary("portfolio", start, end, review.metrics)]
    lines += [week_summary(symbol, start, end, each.week.metrics) for symbol, each in reviews.items()]
    lines.append(f"denied entries: {review.denials.describe()}")
    if review.report_key:
        lines.append(f"report {review.report_key}")
    notifier.notify(f"{bot}: weekly report", "\n".join(lines))
    return review


def basket_payload(review: BasketReview) -> dict[str, object]:
    """Return the basket's week as one JSON-ready object: the portfolio's window, metrics, denials and report,
    and each symbol's :func:`~scalpbot.jobs.monitor.monitor_payload`."""
    from scalpbot.jobs.monitor import monitor_payload
    from scalpbot.reporting.tables import jsonable

    payload: dict[str, object] = jsonable(
        {
            "bot": review.bot,
            "window": {"start": review.start.isoformat(), "end": review.end.isoformat()},
            "metrics": review.metrics,
            "denials": {
                "portfolio": review.denials.portfolio,
                "risk": review.denials.risk,
                "by_symbol": review.denials.by_symbol,
            },
            "report": review.report_key,
            "symbols": {symbol: monitor_payload(each) for symbol, each in review.symbols.items()},
        }
    )
    return payload


def _write_report(services: Services, review: BasketReview, timeframe: str) -> BasketReview:
    """Write the portfolio's ``report.html`` and ``metrics.json`` beside the symbols' folders."""
    from scalpbot.reporting.html_report import WeeklyReport, plotly_asset, render_html, report_json

    prefix = f"reports/{review.bot}/{review.end:%Y-%m-%d}/"

    def page(symbol: str, key: str | None) -> str | None:
        """The symbol's page relative to the portfolio's, when written (by this review or the symbol's own)."""
        relative = f"{symbol_folder(symbol)}/report.html"
        return relative if key or services.store.head(prefix + relative) is not None else None

    rows = [
        {
            "symbol": symbol,
            "report": page(symbol, each.report_key),
            "pnl": float(each.week.trades["pnl"].sum()) if len(each.week.trades) else 0.0,
            "metrics": each.week.metrics,
        }
        for symbol, each in review.symbols.items()
    ]
    weekly = WeeklyReport(
        bot=review.bot,
        symbol="portfolio of " + ", ".join(review.symbols),
        timeframe=timeframe,
        start=review.start,
        end=review.end,
        bars=pd.DataFrame(),
        trades=review.trades,
        equity=review.equity,
        metrics=review.metrics,
        drift={"note": "each symbol's drift against the simulator is on its own page (Symbols)"},
        notes=[f"denied entries this week: {review.denials.describe()}"],
        symbols=rows,
    )
    name, _ = plotly_asset()  # the symbols' reviews stored it
    services.store.put(
        prefix + "report.html", render_html(weekly, plotly_src=f"../../assets/{name}").encode()
    )
    services.store.put(
        prefix + "metrics.json", json.dumps(report_json(weekly), indent=2, allow_nan=False).encode()
    )
    return dataclasses.replace(review, report_key=prefix + "report.html")
