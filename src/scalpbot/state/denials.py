"""The entries a bot's ledger says were denied, counted by why: the operator's view of what its limits cost."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from scalpbot.state.ledger import Ledger

__all__ = ["DenialCounts", "count_denials"]


@dataclass(frozen=True, slots=True)
class DenialCounts:
    """Denials in ``[since, until)`` (UTC bar times): ``portfolio`` and ``risk`` map a reason code to how many
    denials gave it (a portfolio denial counts once under each limit it broke), ``by_symbol`` a symbol to its
    denials (``-`` for a bot of one symbol, whose events name none)."""

    since: pd.Timestamp
    until: pd.Timestamp
    portfolio: dict[str, int] = field(default_factory=dict)
    risk: dict[str, int] = field(default_factory=dict)
    by_symbol: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Return how many entries were denied."""
        return sum(self.by_symbol.values())

    def describe(self) -> str:
        """Return one line: ``portfolio max_positions 3; risk checks cooldown 2`` (``none`` without any)."""
        parts = [
            f"{name} " + ", ".join(f"{code} {n}" for code, n in counts.items())
            for name, counts in (("portfolio", self.portfolio), ("risk checks", self.risk))
            if counts
        ]
        return "; ".join(parts) or "none"


def count_denials(ledger: Ledger, since: pd.Timestamp, until: pd.Timestamp) -> DenialCounts:
    """Return the ledger's ``denial`` events in ``[since, until)`` counted by scope, reason and symbol."""
    portfolio: Counter[str] = Counter()
    risk: Counter[str] = Counter()
    by_symbol: Counter[str] = Counter()
    for event in ledger.events(since, until, kinds=("denial",)):
        payload = event.payload
        reasons = payload.get("reasons")
        if payload.get("scope") == "portfolio" and isinstance(reasons, list):
            portfolio.update({str(reason.get("code")) for reason in reasons if isinstance(reason, dict)})
        else:
            risk[str(payload.get("code"))] += 1
        by_symbol[str(payload.get("symbol") or "-")] += 1
    return DenialCounts(
        since,
        until,
        dict(sorted(portfolio.items())),
        dict(sorted(risk.items())),
        dict(sorted(by_symbol.items())),
    )
