"""Steps shared by the train job and the weekly improvements: labelled rows, scoring, promotion through the gate.

* :class:`LabelConfig` and :func:`labelled_rows`: the cost-aware labels of a release and the rows a model may
  learn from. A **barrier** label (:mod:`scalpbot.core.labels`): its take profit is never closer than
  ``min_tp_round_trips`` round trips (taker fee and slippage on both fills), and a TP that fills still counts
  only if the trade made money after those costs. A **holding** label (:mod:`scalpbot.core.holding_labels`): a
  side wins when holding it ``horizon`` bars made money after those costs and moved at least
  ``min_tp_round_trips`` round trips.
* :func:`simulate` / :func:`score_signals`: a backtest on the venue's profile with the configured slippage.
* :func:`promote_through_gate`: move ``current.json`` to a release by compare-and-swap when the gate said so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from scalpbot.core.backtest.frame import BacktestResult, backtest
from scalpbot.core.gate import GateVerdict
from scalpbot.core.holding_labels import holding_labels
from scalpbot.core.labels import barrier_volatility, triple_barrier_labels
from scalpbot.core.metrics import Metrics
from scalpbot.core.venue import Venue
from scalpbot.errors import ConfigError, PreconditionFailed
from scalpbot.state.releases import Pointer, ReleaseStore

__all__ = [
    "LABEL_KINDS",
    "LabelConfig",
    "describe_label",
    "labelled_rows",
    "promote_through_gate",
    "score_signals",
    "simulate",
]


LABEL_KINDS = ("barrier", "holding")
"""``barrier``: triple-barrier labels at multiples of the recent volatility; ``holding``: the sign of the net
return of holding a side for the horizon."""


@dataclass(frozen=True, slots=True)
class LabelConfig:
    """A label of ``kind`` over ``horizon`` bars, made for a venue's costs and shorting.

    ``barrier``: SL/TP at ``k_sl``/``k_tp`` barrier volatilities, the TP at least ``min_tp_round_trips`` round
    trips away. ``holding``: a side wins when holding it ``horizon`` bars made money after the round trip and
    moved at least ``min_tp_round_trips`` round trips (``k_sl``/``k_tp`` unused, 0).
    """

    horizon: int
    k_sl: float
    k_tp: float
    fee: float
    slippage: float = 0.0
    shorts: bool = True
    min_tp_round_trips: float = 0.0
    kind: str = "barrier"

    def __post_init__(self) -> None:
        if not self.min_tp_round_trips >= 0.0:
            raise ConfigError(f"min_tp_round_trips must be >= 0 round trips; got {self.min_tp_round_trips}")
        if self.kind not in LABEL_KINDS:
            raise ConfigError(f"label kind must be one of {', '.join(LABEL_KINDS)}; got {self.kind!r}")

    @classmethod
    def holding(
        cls,
        horizon: int,
        fee: float,
        slippage: float = 0.0,
        shorts: bool = True,
        min_tp_round_trips: float = 0.0,
    ) -> LabelConfig:
        """Return a holding-period label over ``horizon`` bars."""
        return cls(horizon, 0.0, 0.0, fee, slippage, shorts, min_tp_round_trips, "holding")

    @property
    def round_trip(self) -> float:
        """Return the cost of a round trip as a fraction of notional: fee and slippage on both fills."""
        return 2.0 * (self.fee + self.slippage)

    def describe(self) -> str:
        """Return ``horizon 30 bars, SL/TP 1/1 sigma`` or ``holding 30 bars``, for logs and summaries."""
        return describe_label(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest's ``labels`` entry (a barrier label's has no ``kind``, as before holding labels)."""
        shape: dict[str, Any] = (
            {"k_sl": self.k_sl, "k_tp": self.k_tp} if self.kind == "barrier" else {"kind": self.kind}
        )
        return {
            "horizon": self.horizon,
            **shape,
            "fee": self.fee,
            "slippage": self.slippage,
            "shorts": self.shorts,
            "min_tp_round_trips": self.min_tp_round_trips,
        }

    @classmethod
    def from_manifest(cls, labels: Mapping[str, Any]) -> LabelConfig:
        """Return the label a release was trained on (manifests before cost floors have none)."""
        kind = str(labels.get("kind", "barrier"))
        return cls(
            horizon=int(labels["horizon"]),
            k_sl=float(labels["k_sl"]) if kind == "barrier" else 0.0,
            k_tp=float(labels["k_tp"]) if kind == "barrier" else 0.0,
            fee=float(labels["fee"]),
            slippage=float(labels.get("slippage", 0.0)),
            shorts=bool(labels.get("shorts", True)),
            min_tp_round_trips=float(labels.get("min_tp_round_trips", 0.0)),
            kind=kind,
        )

    def barrier_vol(self, bars: pd.DataFrame) -> np.ndarray:
        """Return sigma per bar, floored so that the TP (``k_tp * sigma``) clears the cost floor."""
        sigma = barrier_volatility(bars, horizon=self.horizon)
        floor = self.min_tp_round_trips * self.round_trip / self.k_tp
        floored: np.ndarray = np.where(np.isfinite(sigma), np.maximum(sigma, floor), sigma)
        return floored


def describe_label(labels: Mapping[str, Any]) -> str:
    """Return a manifest ``labels`` entry in words: ``horizon 30 bars, SL/TP 1/1 sigma`` or ``holding 30 bars``."""
    if labels.get("kind", "barrier") == "holding":
        return f"holding {labels.get('horizon')} bars"
    return f"horizon {labels.get('horizon')} bars, SL/TP {labels.get('k_sl'):g}/{labels.get('k_tp'):g} sigma"


def label_frame(bars: pd.DataFrame, config: LabelConfig) -> pd.DataFrame:
    """Return the labels of ``config`` per bar: :func:`~scalpbot.core.holding_labels.holding_labels` or
    :func:`~scalpbot.core.labels.triple_barrier_labels` (their columns)."""
    if config.kind == "holding":
        return holding_labels(
            bars,
            horizon=config.horizon,
            fee=config.fee,
            slippage=config.slippage,
            min_move=config.min_tp_round_trips * config.round_trip,
            shorts=config.shorts,
        )
    return triple_barrier_labels(
        bars,
        horizon=config.horizon,
        k_sl=config.k_sl,
        k_tp=config.k_tp,
        vol=config.barrier_vol(bars),
        fee=config.fee,
        slippage=config.slippage,
        shorts=config.shorts,
    )


def labelled_rows(
    bars: pd.DataFrame, features: np.ndarray, config: LabelConfig, labels: pd.DataFrame | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(label, fwd_vol, usable)`` per bar: the class, the forward volatility and whether the row has
    finite features, a complete label window and a positive forward volatility (``labels``: the
    :func:`label_frame` of ``config``, computed when not given)."""
    labels = label_frame(bars, config) if labels is None else labels
    label = labels["label"].to_numpy()
    fwd_vol = labels["fwd_vol"].to_numpy()
    usable = (label >= 0) & np.isfinite(features).all(axis=1) & np.isfinite(fwd_vol) & (fwd_vol > 0)
    return label, fwd_vol, usable


def simulate(
    bars: pd.DataFrame,
    signals: pd.DataFrame,
    costs: Any,
    venue: Venue,
    funding: pd.Series | None = None,
) -> BacktestResult:
    """Return the backtest of ``signals`` on ``bars`` on ``venue`` (``costs``: ``BacktestSettings``).

    ``funding``: a perpetual swap's rates by funding time (:func:`scalpbot.jobs.services.stored_funding`; times
    outside ``bars`` are ignored), charged as the kernel's rule 8; ``None`` charges none.
    """
    return backtest(
        bars,
        signals,
        fee=venue.taker_fee,
        slippage=costs.slippage,
        initial_equity=costs.initial_equity,
        rules=venue.order_rules(),
        funding=funding,
    )


def score_signals(
    bars: pd.DataFrame,
    signals: pd.DataFrame,
    costs: Any,
    venue: Venue,
    funding: pd.Series | None = None,
) -> Metrics:
    """Return the metrics of ``signals`` on ``bars`` on ``venue`` with the configured slippage and equity (and a
    swap's ``funding``, as :func:`simulate`)."""
    metrics: Metrics = simulate(bars, signals, costs, venue, funding).metrics
    return metrics


def promote_through_gate(
    releases: ReleaseStore,
    symbol: str,
    release_id: str,
    verdict: GateVerdict | None,
    pointer: Pointer | None,
    now: datetime,
    *,
    reason: str | None = None,
) -> tuple[bool, str]:
    """Make ``release_id`` current if ``verdict`` promotes it (``None``: it did already) and no other release
    was promoted since ``pointer`` was read; return ``(promoted, reason)``. ``reason`` overrides the verdict's."""
    why = reason if reason is not None else ("" if verdict is None else verdict.reason)
    if verdict is not None and not verdict.promote:
        return False, why
    try:
        releases.promote(symbol, release_id, expected=pointer, reason=why, now=now)
    except PreconditionFailed:
        return False, "another release was promoted while this one was scored; the pointer was left as it is"
    return True, why
