"""A release's trading signals on bars: features -> ONNX model -> policy (light: no keras or torch).

The same path serves the backtest of a release, the promotion gate and, bar by bar, the execute job, so a
release trades in paper and live exactly as it was scored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalpbot.core.feature_set import OHLCV_FEATURES, FeatureSet
from scalpbot.core.features import FEATURE_SPEC_VERSION
from scalpbot.core.policy import StrategyParams, signals_frame
from scalpbot.core.venue import Venue
from scalpbot.core.window_features import model_input_count, model_inputs
from scalpbot.errors import ModelError
from scalpbot.inference.onnx import OnnxModel
from scalpbot.ports import Predictor
from scalpbot.state.releases import ONNX_ARTIFACT, Release, ReleaseStore


@dataclass(frozen=True, slots=True)
class TradingModel:
    """A release ready to trade: its ONNX model, its tuned params, its identity, the feature set and the trailing
    window it reads.

    ``feature_set``: the feature matrix's columns (:mod:`scalpbot.core.feature_set`). ``window``: bars of the raw
    trailing window (:mod:`scalpbot.core.window_features`) the model reads after the feature matrix's columns; 0
    (every MLP release, and every release whose manifest has no ``window_bars``): the feature matrix alone.
    """

    release_id: str
    model: Predictor
    params: StrategyParams
    feature_set: FeatureSet = OHLCV_FEATURES
    window: int = 0

    @classmethod
    def from_release(cls, release: Release) -> TradingModel:
        """Return the trading model of a loaded release; ``ModelError`` if its features are not this code's."""
        spec = release.manifest.feature_spec_version
        if spec != FEATURE_SPEC_VERSION:
            raise ModelError(
                f"release {release.release_id} uses feature spec {spec!r}, this scalpbot computes "
                f"{FEATURE_SPEC_VERSION!r}; train a new release"
            )
        feature_set = FeatureSet.from_manifest(release.manifest.document, release.release_id)
        model = OnnxModel.from_bytes(release.artifacts[ONNX_ARTIFACT])
        window = int(release.manifest.get("window_bars") or 0)
        inputs = model_input_count(window, feature_set)
        if model.n_features != inputs:
            raise ModelError(
                f"release {release.release_id} expects {model.n_features} input columns, not {inputs} "
                f"({feature_set.name} features and a trailing window of {window} bars)"
            )
        params = StrategyParams.from_dict(release.manifest.params)
        return cls(release.release_id, model, params, feature_set=feature_set, window=window)

    def for_venue(self, venue: Venue) -> TradingModel:
        """Return the model trading on ``venue``: no short decision where the venue cannot short.

        A release tuned for a venue that shorts keeps its other params; its short signals are simply not taken.
        """
        if venue.shorts or not self.params.allow_short:
            return self
        return dataclasses.replace(self, params=self.params.replace(allow_short=False))


def predict_bars(
    bars: pd.DataFrame,
    model: Predictor,
    feature_set: FeatureSet = OHLCV_FEATURES,
    window: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(probs (n, 3), vol (n,))`` for every bar; NaN rows where features are still warming up (or, with
    order flow, where a bar in the window has none). ``DataError`` when the bars lack a column the set needs.

    ``feature_set`` and ``window``: the features and the trailing bars the model reads
    (:attr:`TradingModel.feature_set`, :attr:`TradingModel.window`).
    """
    features = model_inputs(bars, window, feature_set)
    ready = np.isfinite(features).all(axis=1)
    probs = np.full((len(bars), 3), np.nan)
    vol = np.full(len(bars), np.nan)
    if ready.any():
        probs[ready], vol[ready] = model.predict(features[ready].astype(np.float32))
    return probs, vol


def release_signals(
    bars: pd.DataFrame, trading: TradingModel, params: StrategyParams | None = None
) -> pd.DataFrame:
    """Return the signal frame (side/size/sl/tp/max_hold per bar) the release trades on ``bars``.

    ``ModelError`` when the release reads order flow and the bars have none at all.
    """
    if trading.feature_set.absent_columns(bars):
        trading.feature_set.require(bars, release=trading.release_id)
    probs, vol = predict_bars(bars, trading.model, feature_set=trading.feature_set, window=trading.window)
    return signals_frame(bars.index, probs, vol, params or trading.params)


class ReleaseCache:
    """The current release of a symbol, loaded and verified once and re-read only when the pointer changes."""

    def __init__(
        self,
        releases: ReleaseStore,
        symbol: str,
        release_id: str | None = None,
        *,
        fallback_latest: bool = False,
    ) -> None:
        """``release_id``: trade that release instead of the current one; ``"latest"``: the newest written.

        ``fallback_latest``: while no release is current (none has passed the gate yet), trade the newest one -
        for paper trading and replays, never for a live broker.
        """
        self._releases = releases
        self._symbol = symbol
        self._fallback = fallback_latest
        if release_id == "latest":
            written = releases.list(symbol)
            if not written:
                raise ModelError(f"no release of {symbol} exists yet; run `scalpbot train` first")
            release_id = written[-1]
        self._fixed = release_id
        self._etag: str | None = None
        self._model: TradingModel | None = None

    def available(self) -> bool:
        """Return whether there is a release to trade: a fixed one, the current one, or (fallback) any."""
        if self._fixed is not None or self._releases.pointer(self._symbol) is not None:
            return True
        return self._fallback and bool(self._releases.list(self._symbol))

    def current(self) -> TradingModel:
        """Return the trading model of the pointer's release (or the fixed one); ``ModelError`` if none."""
        if self._fixed is not None:
            if self._model is None:
                self._model = TradingModel.from_release(self._releases.load(self._symbol, self._fixed))
            return self._model
        pointer = self._releases.pointer(self._symbol)
        if pointer is None and self._fallback:
            written = self._releases.list(self._symbol)
            if written:
                if self._model is None or self._etag != written[-1]:
                    self._model = TradingModel.from_release(self._releases.load(self._symbol, written[-1]))
                    self._etag = written[-1]
                return self._model
        if pointer is None:
            raise ModelError(
                f"no release of {self._symbol} is current: none has passed the promotion gate yet. Run "
                "`scalpbot train` again, or make the newest candidate current by hand for paper trading: "
                "`scalpbot models promote newest`"
            )
        if self._model is None or pointer.etag != self._etag:
            release = self._releases.load_current(self._symbol)
            if release is None:
                raise ModelError(f"no release of {self._symbol} is current; run `scalpbot train` first")
            self._model = TradingModel.from_release(release)
            self._etag = pointer.etag
        return self._model
