"""Which features a release reads, and so which bar columns it needs: OHLCV only, or with order flow (pure).

A release records its feature set in its manifest (``feature_set``: name, bar columns, the order-flow spec
version); a release written before the field existed reads OHLCV features. Training chooses the set from the
bars it trains on (``train.order_flow``); everything that runs a release computes the features with the
release's own set and refuses bars that lack a column it needs, naming what to do, rather than trading on
missing inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from scalpbot.core.bars import ORDER_FLOW_COLUMNS
from scalpbot.core.features import FEATURE_NAMES, build_features
from scalpbot.core.order_flow import (
    ORDER_FLOW_FEATURE_NAMES,
    ORDER_FLOW_SPEC_VERSION,
    build_order_flow_features,
)
from scalpbot.errors import ConfigError, DataError, ModelError

__all__ = ["OHLCV_FEATURES", "ORDER_FLOW_FEATURES", "FeatureSet", "OrderFlowChoice", "choose_feature_set"]

OrderFlowChoice = Literal["auto", "on", "off"]
_OHLCV = "ohlcv"
_ORDER_FLOW = "ohlcv+order_flow"


@dataclass(frozen=True, slots=True)
class FeatureSet:
    """The feature columns a model reads: :data:`~scalpbot.core.features.FEATURE_NAMES`, then the order-flow
    features (:mod:`scalpbot.core.order_flow`) when ``order_flow``."""

    order_flow: bool = False

    @property
    def name(self) -> str:
        """Return ``ohlcv`` or ``ohlcv+order_flow``."""
        return _ORDER_FLOW if self.order_flow else _OHLCV

    @property
    def names(self) -> tuple[str, ...]:
        """Return the feature column names, in the order the model reads them."""
        return (*FEATURE_NAMES, *ORDER_FLOW_FEATURE_NAMES) if self.order_flow else FEATURE_NAMES

    @property
    def bar_columns(self) -> tuple[str, ...]:
        """Return the optional bar columns the features need beyond OHLCV."""
        return ORDER_FLOW_COLUMNS if self.order_flow else ()

    def build(self, bars: pd.DataFrame) -> pd.DataFrame:
        """Return the feature matrix of ``bars`` (columns :attr:`names`); the OHLCV set is ``build_features``'s.

        Raise :class:`~scalpbot.errors.DataError` when ``bars`` lack a column the set needs.
        """
        features = build_features(bars)
        if not self.order_flow:
            return features
        flow = build_order_flow_features(bars)
        values = np.concatenate([features.to_numpy(), flow.to_numpy()], axis=1)
        return pd.DataFrame(values, index=bars.index, columns=list(self.names), copy=False)

    def absent_columns(self, bars: pd.DataFrame) -> tuple[str, ...]:
        """Return the bar columns this set needs that ``bars`` do not have at all."""
        return tuple(c for c in self.bar_columns if c not in bars.columns)

    def missing_inputs(self, bars: pd.DataFrame) -> str | None:
        """Return what ``bars`` lack for this set (a missing column, or the first bar without order flow), or
        ``None`` when every bar has every input."""
        absent = self.absent_columns(bars)
        if absent:
            return f"the bars have no {', '.join(absent)}"
        for column in self.bar_columns:
            empty = np.flatnonzero(bars[column].isna().to_numpy())
            if empty.size:
                return f"the bar of {pd.Timestamp(bars.index[int(empty[0])]).isoformat()} has no {column}"
        return None

    def require(self, bars: pd.DataFrame, *, release: str, series: str | None = None) -> None:
        """Raise :class:`~scalpbot.errors.ModelError` when ``bars`` (of ``series``) lack an input of ``release``."""
        missing = self.missing_inputs(bars)
        if missing is None:
            return
        where = "" if series is None else f" in {series}"
        raise ModelError(
            f"release {release} reads order flow ({', '.join(self.bar_columns)}) but {missing}{where}: "
            "its source does not report order flow. Fetch the bars from a source that does (Binance spot or "
            'USD-M, or Binance\'s kline files), or train a release without it (train.order_flow = "off")'
        )

    def to_manifest(self) -> dict[str, Any]:
        """Return the manifest's ``feature_set`` section."""
        section: dict[str, Any] = {"name": self.name, "bar_columns": list(self.bar_columns)}
        if self.order_flow:
            section["order_flow_spec_version"] = ORDER_FLOW_SPEC_VERSION
        return section

    @classmethod
    def from_manifest(cls, document: Mapping[str, Any], release: str) -> FeatureSet:
        """Return the set a release's manifest records (OHLCV when it records none); ``ModelError`` when this
        code computes it differently."""
        section = document.get("feature_set")
        if section is None:
            return OHLCV_FEATURES
        name = section.get("name") if isinstance(section, Mapping) else None
        if name == _OHLCV:
            return OHLCV_FEATURES
        if name != _ORDER_FLOW:
            raise ModelError(
                f"release {release} reads feature set {name!r}, which this scalpbot does not know"
            )
        spec = section.get("order_flow_spec_version")
        if spec != ORDER_FLOW_SPEC_VERSION:
            raise ModelError(
                f"release {release} uses order-flow feature spec {spec!r}, this scalpbot computes "
                f"{ORDER_FLOW_SPEC_VERSION!r}; train a new release"
            )
        return ORDER_FLOW_FEATURES


OHLCV_FEATURES = FeatureSet(order_flow=False)
ORDER_FLOW_FEATURES = FeatureSet(order_flow=True)


def choose_feature_set(bars: pd.DataFrame, choice: OrderFlowChoice, *, series: str) -> FeatureSet:
    """Return the feature set to train on ``bars``: with order flow when every bar has it (``auto``), always
    (``on``: ``DataError`` when a bar lacks it) or never (``off``)."""
    if choice == "off":
        return OHLCV_FEATURES
    missing = ORDER_FLOW_FEATURES.missing_inputs(bars)
    if missing is None and len(bars):
        return ORDER_FLOW_FEATURES
    if choice == "on":
        raise DataError(
            f"train.order_flow is 'on' but {missing or 'there are no bars'} in {series}; fetch the bars from a "
            'source that reports order flow (Binance) or set train.order_flow = "auto"'
        )
    if choice != "auto":
        raise ConfigError(f"train.order_flow '{choice}' is not one of auto, on, off")
    return OHLCV_FEATURES
