"""The week's changes in words and numbers: one row per change record of the monitor job. Pure.

A change record (``jobs.improve``) holds ``kind``, and either ``skipped`` (why nothing was tried) or the new
``release_id``, ``promoted``, the gate's ``reason`` and the ``challenger``/``incumbent`` metrics on the window
the gate judged. Other keys (``params_before``/``params_after``, ``reasons``, ``verdict``, ...) are shown as
short ``name value`` phrases, never as raw JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from scalpbot.reporting.tables import scalar_text

__all__ = ["CHANGE_COLUMNS", "change_row", "number_text"]

CHANGE_COLUMNS = ("Change", "Outcome", "Release", "Why", "New (return, Sharpe, trades)", "Before", "Details")
"""The columns of the changes table, in order."""

_KINDS = {
    "online_learning": "Online learning",
    "reinforcement_learning": "Reinforcement learning",
    "release": "Release",
    "train": "Training",
}
_PARAM_PAIRS = (("params_before", "params_after"), ("static_params", "proposed_params"))
"""Parameter sets before and after a change, shown as ``name old → new`` for what changed."""
_SHOWN = {"kind", "step", "skipped", "promoted", "verdict", "release_id", "reason", "challenger", "incumbent"}


def number_text(value: float, digits: int = 2) -> str:
    """Return ``value`` with thousands separators and ``digits`` decimals; never ``-0.00`` or ``1e-15``."""
    if not math.isfinite(value):
        return "-"
    text = f"{value:,.{digits}f}"
    if text.lstrip("-").replace("0", "").replace(".", "").replace(",", "") == "":
        return text.lstrip("-")
    return text


def _percent(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return number_text(value * 100) + " %"
    return "-"


def _metrics_text(metrics: object) -> str:
    if not isinstance(metrics, Mapping) or not metrics:
        return "-"
    sharpe = metrics.get("sharpe")
    trades = metrics.get("trades")
    parts = [
        f"return {_percent(metrics.get('total_return'))}",
        "Sharpe " + (number_text(sharpe) if isinstance(sharpe, int | float) else "-"),
        f"{trades:,} trades" if isinstance(trades, int) else "- trades",
    ]
    return ", ".join(parts)


def _value_text(value: object) -> str:
    text = scalar_text(value, lambda number: number_text(number, 4 if abs(number) < 1 else 2))
    if text is not None:
        return text
    if isinstance(value, Mapping):
        return ", ".join(f"{str(k).replace('_', ' ')} {_value_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "; ".join(_value_text(v) for v in value)
    return str(value)


def _params_delta(before: object, after: object) -> str:
    """Return ``name old → new`` for each parameter that changed (all of them when only one side is known)."""
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return _value_text(after if isinstance(after, Mapping) else before)
    changed = [k for k in after if before.get(k) != after.get(k)]
    if not changed:
        return "parameters unchanged"
    return ", ".join(f"{k} {_value_text(before.get(k))} → {_value_text(after.get(k))}" for k in changed)


def change_row(change: Mapping[str, Any]) -> tuple[str, ...]:
    """Return one change as plain texts, in the order of :data:`CHANGE_COLUMNS` (escape before use in HTML)."""
    kind = str(change.get("kind") or change.get("step") or "change")
    name = _KINDS.get(kind, kind.replace("_", " ").capitalize())
    if "skipped" in change:
        outcome, why = "skipped", _value_text(change["skipped"])
    elif isinstance(change.get("promoted"), bool):
        outcome = "promoted" if change["promoted"] else "not promoted"
        why = _value_text(change.get("reason"))
    else:
        outcome = _value_text(change.get("verdict"))
        why = _value_text(change.get("reason") or change.get("reasons"))
    release = change.get("release_id") or change.get("after")
    details: list[str] = []
    paired: set[str] = set()
    for before, after in _PARAM_PAIRS:
        if before in change or after in change:
            details.append(_params_delta(change.get(before), change.get(after)))
            paired |= {before, after}
    rest = {k: v for k, v in change.items() if k not in _SHOWN | paired | {"after", "reasons"}}
    details.extend(f"{k.replace('_', ' ')}: {_value_text(v)}" for k, v in rest.items())
    if "reasons" in change and change.get("reason"):
        details.append(_value_text(change["reasons"]))
    return (
        name,
        outcome,
        "-" if release is None else str(release),
        why,
        _metrics_text(change.get("challenger")),
        _metrics_text(change.get("incumbent")),
        "; ".join(details) or "-",
    )


def change_rows(changes: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """Return :func:`change_row` of each change."""
    return [change_row(change) for change in changes]
