"""The model seam: a second model kind, written here and registered by one dict entry, trains, trades and learns.

The kind is a NumPy multinomial logistic regression (full-batch gradient descent, early stopping on the
validation log-loss) with a ridge regression of log volatility, exported to ONNX by hand with ``onnx.helper``
(Sub, Div, MatMul, Add, Softmax, Exp). Nothing in ``src`` knows it: the test registers it in
``MODEL_KINDS`` and sets ``train.model``, which is all a new model type needs besides its module.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

from scalpbot.adapters.marketdata.files import FileMarketData
from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.config import load_settings
from scalpbot.core.features import build_features
from scalpbot.errors import CorruptArtifactError, DataError, ModelError
from scalpbot.inference.onnx import OnnxModel
from scalpbot.jobs.improve import online_learning
from scalpbot.jobs.monitor import WeekData, monitor
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.trading import replay
from scalpbot.jobs.train import train
from scalpbot.ml.registry import MODEL_KINDS, LabelledRows, ModelKind, TrainedModel, model_kind
from scalpbot.state.dataset import SeriesId
from scalpbot.state.releases import ONNX_ARTIFACT, ReleaseStore, new_release_id
from scalpbot.wiring import Services, build_services

from support.files import write_csv
from support.model_data import synthetic
from support.trained import LOOSE_RISK

_VOL_FLOOR = 1e-6


@dataclass(frozen=True, slots=True)
class LogRegParams:
    """Gradient descent on the class log-loss: step size, at most ``epochs`` full-batch steps, L2 penalty."""

    learning_rate: float = 0.5
    epochs: int = 30
    l2: float = 1e-4
    patience: int = 3
    seed: int = 0


@dataclass(frozen=True, slots=True)
class LogRegModel:
    """Standardization, class weights [f, 3] and biases [3], log-volatility weights [f] and intercept."""

    mean: np.ndarray
    scale: np.ndarray
    w: np.ndarray
    b: np.ndarray
    v: np.ndarray
    c: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self._z(x) @ self.w + self.b

    def _z(self, x: np.ndarray) -> np.ndarray:
        return _standardized(x, self.mean, self.scale)


def _standardized(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Return ``(x - mean) / scale`` computed in float32, as the ONNX graph computes it, widened to float64."""
    f32 = np.float32
    z: np.ndarray = (np.asarray(x, f32) - mean.astype(f32)) / scale.astype(f32)
    return z.astype(np.float64)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def _log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(y.size), y], 1e-12, 1.0))))


def _checked(rows: LabelledRows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y, vol = np.asarray(rows.x, np.float64), np.asarray(rows.y_class), np.asarray(rows.y_vol, np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or not np.isfinite(x).all() or not np.isin(y, (0, 1, 2)).all():
        raise DataError("logistic regression needs finite features [n, f] and classes in {0, 1, 2}")
    return x, y.astype(np.int64), vol


class LogRegKind:
    """The ``logreg`` kind: everything a model type implements, and nothing more."""

    name = "logreg"
    artifact = "model.npz"
    cannot_fine_tune: str | None = None

    def hyper_parameters(self, train: Mapping[str, Any]) -> LogRegParams:
        return LogRegParams(epochs=int(train["max_epochs"]), seed=int(train["seed"]))

    def describe(self, hp: LogRegParams) -> dict[str, Any]:
        return dataclasses.asdict(hp)

    def threads(self, n: int) -> None:
        return None  # NumPy's BLAS keeps its own threads; the data here is small

    def fit(
        self, train: LabelledRows, validation: LabelledRows, hp: LogRegParams, *, show_progress: bool = False
    ) -> TrainedModel:
        x, y, vol = _checked(train)
        x_val, y_val, _ = _checked(validation)
        std = x.std(axis=0)
        mean, scale = x.mean(axis=0), np.where(std > 0, std, 1.0)
        z = _standardized(x, mean, scale)
        target = np.log(np.maximum(vol, _VOL_FLOOR))
        c = float(target.mean())
        v = np.linalg.solve(z.T @ z + 1e-3 * len(z) * np.eye(z.shape[1]), z.T @ (target - c))
        model = LogRegModel(mean, scale, np.zeros((z.shape[1], 3)), np.zeros(3), v, c)
        best, best_loss, best_epoch, since = model, np.inf, 0, 0
        for epoch in range(1, hp.epochs + 1):
            model = self._step(model, z, y, hp.learning_rate, hp.l2)
            loss = _log_loss(_softmax(model.logits(x_val)), y_val)
            if not np.isfinite(loss):
                raise ModelError("logistic regression diverged; lower the learning rate")
            if loss < best_loss:
                best, best_loss, best_epoch, since = model, loss, epoch, 0
            else:
                since += 1
                if since >= hp.patience:
                    break
        train_loss = _log_loss(_softmax(best.logits(x)), y)
        return TrainedModel(best, epoch, best_epoch, float(best_loss), train_loss, 0.0)

    @staticmethod
    def _step(model: LogRegModel, z: np.ndarray, y: np.ndarray, lr: float, l2: float) -> LogRegModel:
        residual = _softmax(z @ model.w + model.b)
        residual[np.arange(y.size), y] -= 1.0
        grad_w = z.T @ residual / y.size + l2 * model.w
        return dataclasses.replace(model, w=model.w - lr * grad_w, b=model.b - lr * residual.mean(axis=0))

    def predict(self, model: LogRegModel, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = model._z(x)
        return _softmax(z @ model.w + model.b), np.exp(z @ model.v + model.c)

    def fine_tune(
        self,
        model: LogRegModel,
        rows: LabelledRows,
        *,
        learning_rate: float,
        epochs: int,
        seed: int | None = None,
    ) -> TrainedModel:
        x, y, _ = _checked(rows)
        z = model._z(x)
        for _ in range(epochs):
            model = self._step(model, z, y, learning_rate, 0.0)
        return TrainedModel(model, epochs, epochs, None, _log_loss(_softmax(model.logits(x)), y), 0.0)

    def save(self, model: LogRegModel) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **{f.name: np.asarray(getattr(model, f.name)) for f in dataclasses.fields(model)})
        return buffer.getvalue()

    def load(self, data: bytes) -> LogRegModel:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as saved:
                arrays = {name: saved[name] for name in ("mean", "scale", "w", "b", "v", "c")}
        except (OSError, ValueError, KeyError) as e:
            raise CorruptArtifactError(f"model.npz cannot be loaded: {e}") from e
        return LogRegModel(**{**arrays, "c": float(arrays["c"])})

    def export_onnx(self, model: LogRegModel) -> bytes:
        def const(name: str, value: np.ndarray) -> onnx.TensorProto:
            return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)

        n = int(model.mean.size)
        nodes = [
            helper.make_node("Sub", ["features", "mean"], ["centred"]),
            helper.make_node("Div", ["centred", "scale"], ["z"]),
            helper.make_node("MatMul", ["z", "w"], ["zw"]),
            helper.make_node("Add", ["zw", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["class_probs"], axis=-1),
            helper.make_node("MatMul", ["z", "v"], ["zv"]),
            helper.make_node("Add", ["zv", "c"], ["log_vol"]),
            helper.make_node("Exp", ["log_vol"], ["vol"]),
        ]
        graph = helper.make_graph(
            nodes,
            "logreg",
            [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n])],
            [
                helper.make_tensor_value_info("class_probs", TensorProto.FLOAT, ["batch", 3]),
                helper.make_tensor_value_info("vol", TensorProto.FLOAT, ["batch", 1]),
            ],
            initializer=[
                const("mean", model.mean),
                const("scale", model.scale),
                const("w", model.w),
                const("b", model.b),
                const("v", model.v.reshape(n, 1)),
                const("c", np.array([model.c])),
            ],
        )
        exported = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
        onnx.checker.check_model(exported)
        data: bytes = exported.SerializeToString()
        return data

    def suggest(self, trial: Any, base: LogRegParams, budget: int | None) -> LogRegParams:
        return dataclasses.replace(
            base,
            learning_rate=float(trial.suggest_float("learning_rate", 0.05, 2.0, log=True)),
            l2=float(trial.suggest_float("l2", 1e-6, 1e-2, log=True)),
            epochs=base.epochs if budget is None else min(budget, base.epochs),
        )


LOGREG = LogRegKind()


class FrozenKind(LogRegKind):
    """A kind that says it cannot be fine-tuned."""

    name = "frozen"
    cannot_fine_tune = "its fit is closed-form"


@pytest.fixture
def logreg(monkeypatch: pytest.MonkeyPatch) -> LogRegKind:
    """Register the kind: the one registry line a new model type adds."""
    monkeypatch.setitem(MODEL_KINDS, "logreg", lambda: LOGREG)
    return LOGREG


def test_the_kind_implements_the_protocol_and_its_onnx_export_predicts_as_it_does(logreg: LogRegKind) -> None:
    kind = model_kind("logreg")
    assert isinstance(kind, ModelKind) and kind is logreg
    fitted = kind.fit(
        LabelledRows(*synthetic(2_000, seed=1)), LabelledRows(*synthetic(500, seed=2)), LogRegParams()
    )
    assert 1 <= fitted.best_epoch <= fitted.epochs_run <= LogRegParams().epochs
    x, y, _ = synthetic(400, seed=3)
    probs, vol = kind.predict(fitted.model, x)
    assert _log_loss(probs, y) < np.log(3) - 0.1  # it learned the planted signal
    onnx_probs, onnx_vol = OnnxModel.from_bytes(kind.export_onnx(fitted.model)).predict(x)
    np.testing.assert_allclose(onnx_probs, probs, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(onnx_vol, vol, rtol=1e-4)
    loaded = kind.load(kind.save(fitted.model))
    np.testing.assert_array_equal(kind.predict(loaded, x)[0], probs)
    with pytest.raises(CorruptArtifactError):
        kind.load(b"not an npz")


def test_a_release_of_a_kind_that_cannot_fine_tune_is_skipped_by_online_learning_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen = FrozenKind()
    monkeypatch.setitem(MODEL_KINDS, "frozen", lambda: frozen)
    services = build_services(load_settings(None, {"store": {"url": str(tmp_path / "store")}}))
    releases = ReleaseStore(services.store)
    release_id = new_release_id(pd.Timestamp("2024-12-01T00:00:00Z").to_pydatetime(), b"frozen")
    releases.write(
        "BTC/USDT", release_id, {"model_kind": "frozen"}, {ONNX_ARTIFACT: b"onnx", frozen.artifact: b"npz"}
    )
    empty = pd.DataFrame()
    week = WeekData(
        "default", SeriesId("binance", "BTC/USDT", "1m"), pd.Timestamp("2024-12-01T00:00:00Z"),
        pd.Timestamp("2024-12-08T00:00:00Z"), empty, empty, pd.Series(dtype=float), {}, None, (release_id,),
    )  # fmt: skip
    change = online_learning(services, "BTC/USDT", "1m")(week)
    assert change == {
        "kind": "online_learning",
        "skipped": f"release {release_id} is a 'frozen' model, which cannot be fine-tuned: its fit is closed-form",
    }
    assert releases.list("BTC/USDT") == [release_id]  # nothing written


DISCOUNTED = {"taker_fee": 0.0002}
START, END = pd.Timestamp("2024-12-29T00:00:00Z"), pd.Timestamp("2024-12-29T12:00:00Z")


def _services(store: Path) -> Services:
    overrides = {
        "store": {"url": str(store)},
        # uncalibrated: the release's ONNX graph is then exactly the kind's export (its predictions compared)
        "train": {
            "model": "logreg",
            "trials": 8,
            "max_epochs": 40,
            "min_trades": 5,
            "days": 21,
            "calibration": "none",
        },
        "risk": LOOSE_RISK,
        "venue": DISCOUNTED,
    }
    return build_services(load_settings(None, overrides))


@pytest.mark.slow
def test_the_train_job_publishes_a_release_of_the_registered_kind_that_trades_and_fine_tunes(
    logreg: LogRegKind, tmp_path: Path, sample_bars: pd.DataFrame
) -> None:
    services = _services(tmp_path / "store")
    series = services.series()
    retrieve(
        services.dataset, FileMarketData(write_csv(sample_bars, tmp_path / "s.csv")), series, resume=False
    )
    report = train(services, series)
    releases = ReleaseStore(services.store)
    release = releases.load("BTC/USDT", report.release_id, (ONNX_ARTIFACT, logreg.artifact))
    manifest = release.manifest
    assert manifest.model_kind == "logreg"
    assert set(manifest.artifacts) == {ONNX_ARTIFACT, "model.npz"}
    assert manifest["hyperparams"] == logreg.describe(
        LogRegParams(epochs=40, seed=services.settings.train.seed)
    )
    assert len(manifest["folds"]) == 3 and all(f["epochs_run"] >= 1 for f in manifest["folds"])
    # The ONNX that execution loads predicts what the kind's own artifact predicts.
    x = build_features(sample_bars.tail(2_000)).dropna().to_numpy(np.float64)[-64:]
    onnx_probs, onnx_vol = OnnxModel.from_bytes(release.artifacts[ONNX_ARTIFACT]).predict(x)
    probs, vol = logreg.predict(logreg.load(release.artifacts["model.npz"]), x)
    np.testing.assert_allclose(onnx_probs, probs, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(onnx_vol, vol, rtol=1e-4)

    # It trades: an eager copy of the release is made current and replayed bar by bar with the paper broker.
    eager = new_release_id(pd.Timestamp("2025-01-01T00:00:00Z").to_pydatetime(), b"eager logreg")
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
    replayed = replay(services, series, START, END, bot="seam", notifier=ConsoleNotifier())
    assert replayed.cycles.get("ok", 0) > 0 and replayed.trades > 0

    # The weekly online learning fine-tunes it with its own kind and writes a release of that kind.
    weekly = monitor(
        services, series, bot="seam", days=0.5, notifier=ConsoleNotifier(), write_report=False,
        steps=(online_learning(services, "BTC/USDT", "1m", recent_days=0.25),),
    )  # fmt: skip
    assert weekly.notes == []
    change = weekly.changes[-1]
    assert change["kind"] == "online_learning" and "skipped" not in change, change
    child = releases.load("BTC/USDT", change["release_id"], (ONNX_ARTIFACT, "model.npz"))
    assert child.manifest.model_kind == "logreg" and child.manifest["parent_release"] == eager
    assert child.artifacts["model.npz"] != release.artifacts["model.npz"]
    assert OnnxModel.from_bytes(child.artifacts[ONNX_ARTIFACT]).n_features == len(manifest["feature_names"])
