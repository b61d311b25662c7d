"""The promotion gate (pure): does a challenger release deserve to replace the one trading now?

Both are scored on the same out-of-sample test window, which neither training nor tuning saw, with the same
fill model and costs. The score is the window's total return net of fees. The challenger must trade at least
``min_trades`` times (fewer trades prove nothing) and then beat the incumbent's score, or, when no release is
current yet, beat not trading (a score of 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """Whether to promote, and why, with the two scores compared (fractions of starting equity)."""

    promote: bool
    reason: str
    challenger_score: float
    incumbent_score: float | None


def judge(
    challenger: Mapping[str, float | int | None],
    incumbent: Mapping[str, float | int | None] | None,
    *,
    min_trades: int,
    min_improvement: float = 0.0,
    window: str = "test window",
) -> GateVerdict:
    """Return the verdict for ``challenger`` against ``incumbent`` metrics (``None``: nothing trades now).

    Metrics are those of :func:`scalpbot.core.metrics.compute_metrics` on the test window.
    """
    score = float(challenger.get("total_return") or 0.0)
    trades = int(challenger.get("trades") or 0)
    if trades < min_trades:
        return GateVerdict(
            False,
            f"challenger made {trades} trades on the {window}, fewer than the minimum {min_trades}",
            score,
            None if incumbent is None else float(incumbent.get("total_return") or 0.0),
        )
    if incumbent is None:
        if score > min_improvement:
            return GateVerdict(
                True, f"no current release; challenger returns {score:+.4%} > not trading", score, None
            )
        return GateVerdict(
            False, f"challenger returns {score:+.4%}, not better than not trading", score, None
        )
    rival = float(incumbent.get("total_return") or 0.0)
    if score > rival + min_improvement:
        return GateVerdict(
            True, f"challenger returns {score:+.4%} > current release {rival:+.4%}", score, rival
        )
    return GateVerdict(
        False, f"challenger returns {score:+.4%}, not better than current release {rival:+.4%}", score, rival
    )
