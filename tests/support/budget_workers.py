"""One symbol's entries and exits against a bot's risk budget, for the concurrency tests (threads and processes).

A worker trades one symbol: each ``("enter", notional)`` reserves (long) under a fresh client id, each
``("exit", pnl)`` settles the symbol flat with that realized PnL. It returns every book it committed, with the
operation that produced it, so that the test can replay the committed history in version order. Importable by
spawned processes: the arguments and results are plain data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from scalpbot.core.portfolio_risk import Approved, PortfolioLimits
from scalpbot.ports import Store
from scalpbot.state.risk_budget import RiskBudget, book_to_dict

T0 = pd.Timestamp("2025-03-03T00:00:00Z")
EQUITY = 10_000.0

Op = tuple[str, float]
Commit = dict[str, Any]
"""``{"version": int, "op": {...}, "book": book_to_dict(...)}`` of one write a worker made."""


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """Where a worker's store is: a folder (``root``) or an S3 bucket on an endpoint (the moto server)."""

    kind: str
    root: str = ""
    endpoint_url: str = ""
    bucket: str = ""
    prefix: str = ""

    def open(self) -> Store:
        """Return the store (a new S3 client per call: one per process or thread)."""
        if self.kind == "folder":
            from scalpbot.adapters.store.folder import FolderStore

            return FolderStore(Path(self.root))
        import boto3

        from scalpbot.adapters.store.s3 import S3Store

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing-secret",
        )
        return S3Store(self.bucket, self.prefix, client)


def bar(k: int) -> pd.Timestamp:
    """Return the open time of the ``k``-th bar of the test day (1-minute bars)."""
    return T0 + pd.Timedelta(minutes=k)


def run_symbol(
    spec: StoreSpec,
    bot: str,
    limits: dict[str, Any],
    symbol: str,
    ops: list[Op],
    start_at: float = 0.0,
) -> list[Commit]:
    """Run ``ops`` for ``symbol`` on ``bot``'s budget from wall-clock ``start_at`` on; return the commits made."""
    budget = RiskBudget(spec.open(), bot, PortfolioLimits(**limits))
    while time.time() < start_at:  # every worker starts together
        time.sleep(0.001)
    commits: list[Commit] = []
    for k, (kind, amount) in enumerate(ops, start=1):
        if kind == "enter":
            op: dict[str, Any] = {
                "kind": kind,
                "symbol": symbol,
                "notional": amount,
                "client_id": f"{symbol}-{k}",
                "bar": k,
            }
            verdict, commit = budget.reserve(
                symbol, side=1, notional=amount, client_id=f"{symbol}-{k}", bar=bar(k), equity=EQUITY
            )
            op["approved"] = isinstance(verdict, Approved)
        else:
            op = {"kind": kind, "symbol": symbol, "pnl": amount, "key": f"{symbol}-exit-{k}", "bar": k}
            commit = budget.settle(
                symbol, exits=[(f"{symbol}-exit-{k}", amount)], held=None, at=bar(k), equity=EQUITY
            )
        if commit.written:
            assert commit.book is not None
            commits.append({"version": commit.book.version, "op": op, "book": book_to_dict(commit.book)})
    return commits
