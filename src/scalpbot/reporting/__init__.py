"""Reports for people: the weekly HTML page of a bot and its JSON companion. Pure rendering, no I/O.

:func:`render_html` turns a :class:`WeeklyReport` (what the monitor job gathered: bars, trades, equity, metrics
of this week and the previous one, changes, drift against the simulator, notes) into one self-contained page
that opens offline; :func:`report_json` gives the same facts as JSON-serializable values. Storing and sending
them is the caller's job. Charts (plotly) live in :mod:`scalpbot.reporting.charts`.
"""

from scalpbot.reporting.html_report import WeeklyReport, render_html, report_json

__all__ = ["WeeklyReport", "render_html", "report_json"]
