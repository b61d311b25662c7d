"""A kept meta filter end to end: fitted on the folds' trades, applied by the release's ONNX graph exactly as
recorded in the manifest, on top of the very primary model the release ships (real bars, a planted edge)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import scalpbot.jobs.train_meta as train_meta
from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.config import load_settings
from scalpbot.core.bars import validate_bars
from scalpbot.core.features import FEATURE_WARMUP
from scalpbot.core.window_features import model_inputs
from scalpbot.inference.onnx import OnnxModel
from scalpbot.inference.signals import TradingModel, predict_bars
from scalpbot.jobs.improve import online_learning
from scalpbot.jobs.monitor import monitor
from scalpbot.jobs.train import train
from scalpbot.ml.calibration import Calibration
from scalpbot.ml.ensemble import release_kind
from scalpbot.ml.meta_label import MetaFilter
from scalpbot.state.releases import ONNX_ARTIFACT, ReleaseStore
from scalpbot.wiring import build_services

from support.learning_cases import FIXTURE, Case, Effect, case_bars, load_bars

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]
SMALL = {"days": 40, "trials": 40, "max_epochs": 10, "label_search": [], "meta_label": "logistic"}


def test_a_kept_meta_filter_is_what_the_release_applies_over_its_own_primary_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bars = load_bars(FIXTURE)
    month = bars.loc[: bars.index[0] + pd.Timedelta(days=40) - pd.Timedelta(minutes=1)]
    planted = case_bars(Case("volume momentum", Effect("volume momentum", 0.010)), month, 0)
    # A fold score that prefers the filtered predictions (more rows dropped), so that the kept path runs
    # whatever this window's folds would say; the record must still tell both scores.
    monkeypatch.setattr(train_meta, "_fold_return", lambda *args: float((args[3][:, 1] == 1.0).sum()))
    services = build_services(
        load_settings(None, {"store": {"url": str(tmp_path / "store")}, "train": {"seed": 0, **SMALL}})
    )
    series = services.series()
    services.dataset.append(series, validate_bars(planted.bars, "1m", source="planted"))
    report = train(services, series)
    manifest: Any = ReleaseStore(services.store).load(series.symbol, report.release_id).manifest
    record = manifest["meta_label"]
    assert record["adopted"], record
    judged = record["folds"]
    assert judged and {f["fold"] for f in judged} <= {2, 3} and all(f["fitted_on"] >= 100 for f in judged)
    assert sum(f["filtered"] for f in judged) > sum(f["return"] for f in judged)
    meta = MetaFilter.from_dict(record["filter"])
    assert meta.threshold == 0.5
    assert meta.rows >= max(f["fitted_on"] for f in judged)

    release = ReleaseStore(services.store).load(
        series.symbol, report.release_id, (ONNX_ARTIFACT, release_kind(manifest["model_kind"]).artifact)
    )
    trading = TradingModel.from_release(release)
    stored = services.dataset.read(series)
    shipped, _ = predict_bars(stored, trading.model, feature_set=trading.feature_set, window=trading.window)
    kind = release_kind(manifest["model_kind"], int(manifest.get("ensemble", 1)))
    x = model_inputs(stored, trading.window, trading.feature_set)
    rows = slice(FEATURE_WARMUP + 1, None)
    raw, _ = kind.predict(kind.load(release.artifacts[kind.artifact]), x[rows].astype(np.float32))
    primary = Calibration.from_dict(manifest["calibration"]).apply(raw)
    scores = meta.scores(x[rows], primary)
    clear = np.abs(scores) > 1e-3  # threshold 0.5: the cut is z = 0; float32 decides rows on it
    assert clear.mean() > 0.99
    dropped = (shipped[rows] == (0.0, 1.0, 0.0)).all(axis=1)
    np.testing.assert_array_equal(dropped[clear], (scores < 0.0)[clear])
    assert 0 < dropped.sum() < dropped.size
    np.testing.assert_allclose(shipped[rows][~dropped & clear], primary[~dropped & clear], atol=1e-5)

    # The weekly online learning fine-tunes the primary and keeps the filter over it.
    releases = ReleaseStore(services.store)
    if not report.promoted:
        releases.promote(
            series.symbol,
            report.release_id,
            expected=releases.pointer(series.symbol),
            reason="test",
            now=services.clock.now(),
        )
    weekly = monitor(
        services, series, bot="meta", days=0.5, until=stored.index[-1] + pd.Timedelta(minutes=1),
        notifier=ConsoleNotifier(), write_report=False,
        steps=(online_learning(services, series.symbol, "1m", recent_days=0.25),),
    )  # fmt: skip
    change = weekly.changes[-1]
    assert change["kind"] == "online_learning" and "skipped" not in change, change
    child = releases.load(series.symbol, change["release_id"], (ONNX_ARTIFACT, kind.artifact))
    assert child.manifest["meta_label"] == record
    tail = slice(-2_000, None)
    tuned, _ = kind.predict(kind.load(child.artifacts[kind.artifact]), x[tail].astype(np.float32))
    child_probs, _ = OnnxModel.from_bytes(child.artifacts[ONNX_ARTIFACT]).predict(x[tail].astype(np.float32))
    tuned = Calibration.from_dict(manifest["calibration"]).apply(tuned)
    clear = np.abs(meta.scores(x[tail], tuned)) > 1e-3
    np.testing.assert_allclose(child_probs[clear], meta.apply(x[tail], tuned)[clear], atol=1e-5)
