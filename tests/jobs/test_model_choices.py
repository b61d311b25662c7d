"""The train job's model choices: a kind chosen on the folds' validation, a calibrated ensemble of temporal
convolutions that trains, publishes, trades bar by bar and fine-tunes through the model seam."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from scalpbot.adapters.marketdata.files import FileMarketData
from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.config import load_settings
from scalpbot.core.folds import label_rows
from scalpbot.core.window_features import model_input_count, model_inputs
from scalpbot.errors import ConfigError, CorruptArtifactError
from scalpbot.inference.onnx import OnnxModel
from scalpbot.inference.signals import ReleaseCache
from scalpbot.jobs.improve import online_learning
from scalpbot.jobs.learning import label_frame, labelled_rows
from scalpbot.jobs.monitor import monitor
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.trading import replay
from scalpbot.jobs.train import train
from scalpbot.jobs.train_models import choose_kind, validation_rows
from scalpbot.jobs.train_steps import fit_labels, prepare
from scalpbot.ml.calibration import Calibration
from scalpbot.ml.ensemble import ENSEMBLE_ARTIFACT, release_kind
from scalpbot.ml.registry import MODEL_KINDS, LabelledRows, TrainedModel
from scalpbot.state.releases import ONNX_ARTIFACT, ReleaseStore, new_release_id
from scalpbot.wiring import Services, build_services

from support.files import write_csv
from support.trained import LOOSE_RISK


def test_train_model_takes_auto_a_list_or_one_kind_and_names_the_closest_kind_when_one_is_wrong() -> None:
    assert load_settings(None, {}).train.model_kinds() == ("mlp",)
    assert load_settings(None, {"train": {"model": "auto"}}).train.model_kinds() == ("conv1d", "mlp")
    assert load_settings(None, {"train": {"model": ["mlp", "conv1d"]}}).train.model_kinds() == (
        "mlp",
        "conv1d",
    )
    assert load_settings(None, {"train": {"model": ["conv1d"]}}).train.model == "conv1d"
    with pytest.raises(ConfigError, match=r"unknown model kind 'cnov1d' \(did you mean 'conv1d'\?\)"):
        load_settings(None, {"train": {"model": ["mlp", "cnov1d"]}})
    with pytest.raises(ConfigError, match="named more than once"):
        load_settings(None, {"train": {"model": ["mlp", "mlp"]}})
    with pytest.raises(ConfigError, match=r"train\.ensemble"):
        load_settings(None, {"train": {"ensemble": 0}})
    with pytest.raises(ConfigError, match=r"train\.calibration"):
        load_settings(None, {"train": {"calibration": "platt"}})


class ConstantKind:
    """A kind that predicts the same probabilities for every row: the class frequencies it was fitted on
    (``prior``), or a fixed, confidently wrong guess (``confident``)."""

    artifact = "constant.npy"
    cannot_fine_tune: str | None = "it is a constant"

    def __init__(self, name: str) -> None:
        self.name = name
        self.predicted_rows = 0

    def hyper_parameters(self, train: Mapping[str, Any]) -> None:
        return None

    def describe(self, hp: Any) -> dict[str, Any]:
        return {}

    def threads(self, n: int) -> None:
        return None

    def fit(
        self, train: LabelledRows, validation: LabelledRows, hp: Any, *, show_progress: bool = False
    ) -> TrainedModel:
        prior = np.bincount(train.y_class, minlength=3) / train.y_class.size
        probs = prior if self.name == "prior" else np.array([0.9, 0.05, 0.05])
        return TrainedModel(probs, 1, 1, 0.0, 0.0, 0.0)

    def predict(self, model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.predicted_rows += x.shape[0]
        return np.tile(model, (x.shape[0], 1)), np.full(x.shape[0], 1e-3)

    def fine_tune(
        self, model: Any, rows: LabelledRows, *, learning_rate: float, epochs: int, seed: int | None = None
    ) -> TrainedModel:
        raise NotImplementedError

    def save(self, model: Any) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, model)
        return buffer.getvalue()

    def load(self, data: bytes) -> Any:
        raise CorruptArtifactError("not needed here")

    def export_onnx(self, model: Any) -> bytes:
        raise NotImplementedError

    def suggest(self, trial: Any, base: Any, budget: int | None) -> None:
        return None


def test_the_kind_with_the_lowest_validation_log_loss_over_the_folds_is_chosen(
    tmp_path: Path, sample_bars: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds = {name: ConstantKind(name) for name in ("confident", "prior")}
    monkeypatch.delitem(MODEL_KINDS, "mlp")
    monkeypatch.delitem(MODEL_KINDS, "conv1d")
    for name, kind in kinds.items():  # "auto": every registered kind, these two
        monkeypatch.setitem(MODEL_KINDS, name, lambda kind=kind: kind)
    overrides = {"store": {"url": str(tmp_path / "store")}, "train": {"model": "auto", "days": 21}}
    services = build_services(load_settings(None, overrides))
    source = FileMarketData(write_csv(sample_bars, tmp_path / "s.csv"))
    retrieve(services.dataset, source, services.series(), resume=False)
    prepared = prepare(services, services.series(), None, 1, {})
    logged: list[str] = []
    choice = choose_kind(prepared, services.settings.train, {}, logged.append)
    assert choice.kind is kinds["prior"]
    rows, y = validation_rows(prepared, prepared.candidates[0])
    losses = choice.record["kind_search"]["validation_log_loss"]
    assert set(losses) == {"confident", "prior"} and losses["prior"] < losses["confident"]
    picked = np.array([0.9, 0.05, 0.05])[y[rows]]
    assert losses["confident"] == pytest.approx(-np.mean(np.log(picked)))
    assert choice.record["kind_search"]["validation_rows"] == int(rows.sum())
    # Only the validation folds were predicted: the test window is never seen by the choice. The kind not
    # chosen predicted them for the first candidate label; the chosen one for every candidate label.
    folds = sum(b - a for a, b in (f.validation for f in prepared.folds.folds))
    assert kinds["confident"].predicted_rows == folds
    assert kinds["prior"].predicted_rows == len(prepared.candidates) * folds
    assert len(choice.fits) == len(prepared.candidates) == 3
    assert "chosen prior" in logged[-1]


DISCOUNTED = {"taker_fee": 0.0002}
START, END = pd.Timestamp("2024-12-29T00:00:00Z"), pd.Timestamp("2024-12-29T12:00:00Z")


def _services(store: Path) -> Services:
    overrides = {
        "store": {"url": str(store)},
        "train": {
            "model": "conv1d",
            "ensemble": 2,
            "calibration": "isotonic",
            "trials": 8,
            "max_epochs": 3,
            "min_trades": 5,
            "days": 21,
        },
        "risk": LOOSE_RISK,
        "venue": DISCOUNTED,
    }
    return build_services(load_settings(None, overrides))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")
def test_a_calibrated_conv1d_ensemble_trains_publishes_trades_and_fine_tunes_through_the_seam(
    tmp_path: Path, sample_bars: pd.DataFrame
) -> None:
    services = _services(tmp_path / "store")
    series = services.series()
    retrieve(
        services.dataset, FileMarketData(write_csv(sample_bars, tmp_path / "s.csv")), series, resume=False
    )
    report = train(services, series)
    releases = ReleaseStore(services.store)
    release = releases.load("BTC/USDT", report.release_id, (ONNX_ARTIFACT, ENSEMBLE_ARTIFACT))
    manifest = release.manifest
    assert (manifest.model_kind, manifest["ensemble"], manifest["window_bars"]) == ("conv1d", 2, 32)
    assert set(manifest.artifacts) == {ONNX_ARTIFACT, ENSEMBLE_ARTIFACT}

    # One graph: the members' mean, calibrated, equal to the in-process models and the recorded map.
    kind = release_kind("conv1d", 2)
    x = model_inputs(sample_bars.tail(2_000), 32)[-64:]
    onnx = OnnxModel.from_bytes(release.artifacts[ONNX_ARTIFACT])
    assert onnx.n_features == model_input_count(32)
    calibration = Calibration.from_dict(manifest["calibration"])
    probs, vol = kind.predict(kind.load(release.artifacts[ENSEMBLE_ARTIFACT]), x)
    onnx_probs, onnx_vol = onnx.predict(x)
    np.testing.assert_allclose(onnx_probs, calibration.apply(probs), atol=1e-5)
    np.testing.assert_allclose(onnx_vol, vol, rtol=1e-5)

    # The calibration was fitted on the validation folds' rows only, all before the test window.
    record, window = manifest["calibration"], manifest["data_window"]
    assert record["rows"] > 1_000 and len(record["fitted_on"]) == 3
    first, last = (pd.Timestamp(t) for t in window["validation"])
    spans = [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in record["fitted_on"]]
    assert all(first <= a < b <= last for a, b in spans)
    assert pd.Timestamp(record["fitted_on"][-1][1]) < pd.Timestamp(window["test"][0])
    assert record["validation_log_loss"]["calibrated"] <= record["validation_log_loss"]["raw"] + 1e-9

    # It trades bar by bar: an eager copy is made current and replayed with the paper broker.
    eager = new_release_id(pd.Timestamp("2025-01-01T00:00:00Z").to_pydatetime(), b"eager conv1d")
    params = {
        **manifest["params"],
        "entry_threshold": 0.0,
        "min_confidence": 0.0,
        "max_hold": 12,
        "tp_mult": 0.5,
    }
    copied = {k: v for k, v in manifest.items() if k not in ("release_id", "symbol", "artifacts")}
    releases.write("BTC/USDT", eager, {**copied, "params": params}, dict(release.artifacts))
    releases.promote(
        "BTC/USDT", eager, expected=releases.pointer("BTC/USDT"), reason="test", now=services.clock.now()
    )
    assert ReleaseCache(releases, "BTC/USDT").current().window == 32
    replayed = replay(services, series, START, END, bot="conv", notifier=ConsoleNotifier())
    assert replayed.cycles.get("ok", 0) > 0 and replayed.trades > 0

    # The weekly online learning fine-tunes every member and keeps the window, the size and the calibration.
    weekly = monitor(
        services, series, bot="conv", days=0.5, notifier=ConsoleNotifier(), write_report=False,
        steps=(online_learning(services, "BTC/USDT", "1m", recent_days=0.25),),
    )  # fmt: skip
    change = weekly.changes[-1]
    assert change["kind"] == "online_learning" and "skipped" not in change, change
    child = releases.load("BTC/USDT", change["release_id"], (ONNX_ARTIFACT, ENSEMBLE_ARTIFACT))
    assert (child.manifest["ensemble"], child.manifest["window_bars"]) == (2, 32)
    assert child.manifest["calibration"] == manifest["calibration"]
    assert child.artifacts[ENSEMBLE_ARTIFACT] != release.artifacts[ENSEMBLE_ARTIFACT]
    tuned = kind.predict(kind.load(child.artifacts[ENSEMBLE_ARTIFACT]), x)[0]
    np.testing.assert_allclose(
        OnnxModel.from_bytes(child.artifacts[ONNX_ARTIFACT]).predict(x)[0],
        calibration.apply(tuned),
        atol=1e-5,
    )


class RecordingModel:
    """A predictor that records the rows it is asked about and answers a confident long."""

    def __init__(self, n_features: int) -> None:
        self.n_features = n_features
        self.rows: list[np.ndarray] = []

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.rows.append(features.copy())
        return np.tile([0.1, 0.2, 0.7], (features.shape[0], 1)), np.full(features.shape[0], 2e-3)


@pytest.mark.parametrize("order_flow", [False, True], ids=["ohlcv", "order_flow"])
@pytest.mark.parametrize("window", [0, 32])
def test_the_execute_path_feeds_a_model_the_row_training_built_bit_for_bit(
    sample_bars: pd.DataFrame, window: int, order_flow: bool
) -> None:
    from scalpbot.core.feature_set import FeatureSet
    from scalpbot.core.features import FEATURE_WINDOW
    from scalpbot.core.policy_params import StrategyParams
    from scalpbot.inference.signals import TradingModel
    from scalpbot.jobs.cycle import decide_on_bar

    from support.order_flow import with_order_flow

    bars = with_order_flow(sample_bars.iloc[:6_000]) if order_flow else sample_bars.iloc[:6_000]
    feature_set = FeatureSet(order_flow=order_flow)
    full = model_inputs(bars, window, feature_set)
    model = RecordingModel(model_input_count(window, feature_set))
    trading = TradingModel("rows", model, StrategyParams(), feature_set=feature_set, window=window)
    for t in (2_000, 4_321, 5_999):
        assert decide_on_bar(bars.iloc[t + 1 - FEATURE_WINDOW : t + 1], trading) is not None
        assert model.rows[-1].dtype == np.float32
        np.testing.assert_array_equal(model.rows[-1][0], full[t].astype(np.float32))


class RecordingKind(ConstantKind):
    """A constant kind that keeps the rows of each fit."""

    def __init__(self) -> None:
        super().__init__("prior")
        self.fits: list[tuple[LabelledRows, LabelledRows]] = []

    def fit(
        self, train: LabelledRows, validation: LabelledRows, hp: Any, *, show_progress: bool = False
    ) -> TrainedModel:
        self.fits.append((train, validation))
        return super().fit(train, validation, hp)


@pytest.mark.parametrize(("weighting", "candidate"), [("none", 0), ("return", 0), ("return", -1)])
def test_train_sample_weights_weigh_each_folds_rows_by_the_move_their_label_spans(
    tmp_path: Path, sample_bars: pd.DataFrame, weighting: str, candidate: int
) -> None:
    """Each row by the move from its entry to the bar that decided its label: the barrier its winning side
    touched (the first candidate, a barrier label), the horizon for a barrier that timed out and for a holding
    label (the last candidate)."""
    overrides = {
        "store": {"url": str(tmp_path / "store")},
        "train": {"days": 21, "sample_weights": weighting},
    }
    services = build_services(load_settings(None, overrides))
    source = FileMarketData(write_csv(sample_bars, tmp_path / "s.csv"))
    retrieve(services.dataset, source, services.series(), resume=False)
    prepared = prepare(services, services.series(), None, 1, {})
    kind = RecordingKind()
    label = prepared.candidates[candidate]
    assert label.kind == ("barrier" if candidate == 0 else "holding")
    fit_labels(prepared, kind, [label], None, {}, weighting=weighting)
    assert len(kind.fits) == len(prepared.folds.folds)
    frame = label_frame(prepared.bars, label)
    y = frame["label"].to_numpy()
    exit_bars = np.full(len(y), label.horizon)
    if label.kind == "barrier":
        exit_bars = np.where(y == 2, frame["long_bars"], np.where(y == 0, frame["short_bars"], label.horizon))
        assert (exit_bars[y == 2] < label.horizon).any()  # some wins touched their barrier early
    o, c = prepared.bars["open"].to_numpy(), prepared.bars["close"].to_numpy()
    moves = np.full(len(y), np.nan)
    for t in range(len(y) - label.horizon):
        moves[t] = abs(np.log(c[t + exit_bars[t]] / o[t + 1]))
    _, _, usable = labelled_rows(prepared.bars, prepared.features, label)
    n = len(prepared.bars)
    for fold, (train_rows, validation_rows_) in zip(prepared.folds.folds, kind.fits, strict=True):
        for rows, span in ((train_rows, fold.train), (validation_rows_, fold.validation)):
            if weighting == "none":
                assert rows.weight is None
                continue
            assert rows.weight is not None and rows.weight.shape == rows.y_class.shape
            assert rows.weight.mean() == pytest.approx(1.0, rel=1e-5)
            taken = moves[usable & label_rows(span, label.horizon, n)]
            np.testing.assert_allclose(rows.weight, taken / taken.mean(), rtol=1e-5)
