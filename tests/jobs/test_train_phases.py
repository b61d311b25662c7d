"""The train run split into prepare, tune and finish publishes what one ``train`` publishes, fits once, and
refuses a hand-over that is missing or altered before anything is published."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest

from scalpbot.adapters.clock import FixedClock
from scalpbot.adapters.marketdata.files import FileMarketData
from scalpbot.aws import TUNE_MARGIN_S, tuning_seconds
from scalpbot.config import load_settings
from scalpbot.errors import ConfigError, DataError
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.train import TrainReport, train
from scalpbot.jobs.train_phases import finish_phase, prepare_phase, tune_phase
from scalpbot.ml.registry import model_kind
from scalpbot.state.releases import KERAS_ARTIFACT, ONNX_ARTIFACT, ReleaseStore
from scalpbot.state.tuning_handover import handover_prefix, read_handover
from scalpbot.wiring import Services, build_services

from support.files import write_csv

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]

FAST = {"trials": 6, "max_epochs": 2, "min_trades": 5, "days": 21}
UNTIL = datetime(2024, 12, 31, 12, tzinfo=UTC)
NOW = datetime(2024, 12, 31, 12, 30, tzinfo=UTC)
SAME_RUN = ("created_at", "libraries", "artifacts", "seal")
_DEFAULT = load_settings(None, {}).train
LABELS = 1 + len(_DEFAULT.label_search) + len(_DEFAULT.holding_horizons)
"""Candidate labels of a run with the embedded defaults: one study each."""
"""Manifest fields that name when and with what a run was made, not what it made (the Keras artifact is
saved with its date: compared by its weights; the artifacts' hashes and the seal follow from it)."""


def _services(store: Path, **train: Any) -> Services:
    settings = load_settings(None, {"store": {"url": str(store)}, "train": {**FAST, **train}})
    return build_services(settings, FixedClock(NOW))


@pytest.fixture(scope="module")
def bars_store(tmp_path_factory: pytest.TempPathFactory, sample_bars: pd.DataFrame) -> Path:
    root = tmp_path_factory.mktemp("phases")
    services = _services(root / "store")
    retrieve(services.dataset, FileMarketData(write_csv(sample_bars, root / "sample.csv")), services.series())
    return root / "store"


@pytest.fixture(scope="module")
def prepared_store(bars_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    store = tmp_path_factory.mktemp("prepared") / "store"
    shutil.copytree(bars_store, store)
    services = _services(store)
    return store, prepare_phase(services, services.series(), UNTIL)


@pytest.fixture(scope="module")
def one_run(bars_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainReport]:
    store = tmp_path_factory.mktemp("one") / "store"
    shutil.copytree(bars_store, store)
    services = _services(store)
    return store, train(services, services.series(), until=UNTIL)


def _copy(source: Path, tmp_path: Path) -> Services:
    shutil.copytree(source, tmp_path / "store")
    return _services(tmp_path / "store")


def _release(
    store: Path, release_id: str, names: tuple[str, ...] = (ONNX_ARTIFACT, KERAS_ARTIFACT)
) -> tuple[dict[str, Any], Mapping[str, bytes]]:
    loaded = ReleaseStore(_services(store).store).load("BTC/USDT", release_id, names)
    return dict(loaded.manifest), loaded.artifacts


def _made(manifest: dict[str, Any]) -> dict[str, Any]:
    """Return what a release's manifest records of its run: all but when and with what it was made
    (``SAME_RUN``) and the tuning's wall seconds."""
    tuning = {k: v for k, v in manifest["tuning"].items() if k != "elapsed_s"}
    return {**{k: v for k, v in manifest.items() if k not in SAME_RUN}, "tuning": tuning}


def test_prepare_then_finish_publishes_the_release_one_train_run_publishes(
    prepared_store: tuple[Path, dict[str, Any]], one_run: tuple[Path, TrainReport], tmp_path: Path
) -> None:
    store, prepared = prepared_store
    assert prepared["status"] == "prepared" and len(prepared["studies"]) == LABELS  # one per candidate label
    services = _copy(store, tmp_path)
    report = finish_phase(services, services.series(), UNTIL)
    reference_store, reference = one_run
    assert report.release_id == reference.release_id  # same clock, same ONNX bytes
    manifest, artifacts = _release(tmp_path / "store", report.release_id)
    expected, expected_artifacts = _release(reference_store, reference.release_id)
    assert _made(manifest) == _made(expected)
    assert artifacts[ONNX_ARTIFACT] == expected_artifacts[ONNX_ARTIFACT]
    kind = model_kind("mlp")
    weights = kind.load(artifacts[KERAS_ARTIFACT]).get_weights()
    expected_weights = kind.load(expected_artifacts[KERAS_ARTIFACT]).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(weights, expected_weights, strict=True))
    assert (report.promoted, report.reason) == (reference.promoted, reference.reason)


def test_a_calibrated_run_split_in_phases_publishes_the_release_one_calibrated_train_run_publishes(
    bars_store: Path, tmp_path: Path
) -> None:
    """The calibration is fitted once (prepare), recorded in the hand-over, tuned through and carried into the
    release: the same manifest (its calibration record included) and the same ONNX bytes as ``train``."""
    shutil.copytree(bars_store, tmp_path / "one")
    one = _services(tmp_path / "one", calibration="isotonic")
    reference = train(one, one.series(), until=UNTIL)
    shutil.copytree(bars_store, tmp_path / "split")
    split = _services(tmp_path / "split", calibration="isotonic")
    prepared = prepare_phase(split, split.series(), UNTIL)
    assert prepared["status"] == "prepared" and "calibration" in prepared["timings"]
    handover = read_handover(split.store, handover_prefix("BTC/USDT", UNTIL), models=False)
    assert [handover.calibration(i) is not None for i in range(len(handover.studies))] == [True] * LABELS
    report = finish_phase(split, split.series(), UNTIL)
    assert report.release_id == reference.release_id
    manifest, artifacts = _release(tmp_path / "split", report.release_id)
    expected, expected_artifacts = _release(tmp_path / "one", reference.release_id)
    assert manifest["calibration"] is not None and manifest["calibration"] == expected["calibration"]
    assert _made(manifest) == _made(expected)
    assert artifacts[ONNX_ARTIFACT] == expected_artifacts[ONNX_ARTIFACT]
    assert (report.promoted, report.reason) == (reference.promoted, reference.reason)


def test_prepare_run_again_finds_its_hand_over_and_fits_nothing(
    prepared_store: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    services = _copy(prepared_store[0], tmp_path)
    again = prepare_phase(services, services.series(), UNTIL)
    assert again["status"] == "found" and again["studies"] == prepared_store[1]["studies"]
    assert "fit" not in again["timings"] and "labels" not in again["timings"]


def test_finish_run_twice_publishes_one_release(
    prepared_store: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    services = _copy(prepared_store[0], tmp_path)
    first = finish_phase(services, services.series(), UNTIL)
    second = finish_phase(services, services.series(), UNTIL)
    releases = ReleaseStore(services.store)
    assert releases.list("BTC/USDT") == [first.release_id] == [second.release_id]
    assert "fit" not in second.timings and "tuning" not in second.timings
    pointer = releases.pointer("BTC/USDT")
    assert (pointer is not None and pointer.release_id == first.release_id) == first.promoted
    assert second.promoted == first.promoted


@pytest.mark.parametrize("damage", ["altered", "missing"])
def test_a_damaged_hand_over_is_an_error_naming_its_key_and_nothing_is_published(
    prepared_store: tuple[Path, dict[str, Any]], tmp_path: Path, damage: str
) -> None:
    services = _copy(prepared_store[0], tmp_path)
    key = handover_prefix("BTC/USDT", UNTIL) + "windows.npz"
    data = services.store.get(key).data
    if damage == "altered":
        services.store.put(key, data[:-100] + bytes(100))
    else:
        services.store.delete(key)
    with pytest.raises(DataError, match=f"{key} (is missing|does not match its sha256)"):
        finish_phase(services, services.series(), UNTIL)
    assert ReleaseStore(services.store).list("BTC/USDT") == []
    again = prepare_phase(services, services.series(), UNTIL)  # prepare repairs it by fitting again
    assert again["status"] == "prepared" and services.store.get(key).data == data


def test_finish_without_a_prepared_run_names_the_missing_hand_over(bars_store: Path, tmp_path: Path) -> None:
    services = _copy(bars_store, tmp_path)
    with pytest.raises(DataError, match=f"no tuning hand-over at {handover_prefix('BTC/USDT', UNTIL)}"):
        finish_phase(services, services.series(), UNTIL)
    assert ReleaseStore(services.store).list("BTC/USDT") == []


@pytest.mark.parametrize(
    "choice",
    [{"model": "conv1d", "ensemble": 2}, {"model": "auto"}],
    ids=["conv1d-ensemble", "auto"],
)
def test_a_run_split_in_phases_trains_any_kind_and_ensemble_as_one_train_run_does(
    bars_store: Path, tmp_path: Path, choice: dict[str, Any]
) -> None:
    """The temporal convolution (it reads a trailing window beside the features) as an ensemble of two seeds,
    and the kind chosen on the folds among every registered kind: prepare records the kind, its members and
    its window; finish reads the fold models back as that kind and publishes the release ``train`` publishes
    (the same manifest, kind search and window included, and the same ONNX bytes)."""
    shutil.copytree(bars_store, tmp_path / "one")
    one = _services(tmp_path / "one", **choice)
    reference = train(one, one.series(), until=UNTIL)
    shutil.copytree(bars_store, tmp_path / "split")
    split = _services(tmp_path / "split", **choice)
    assert prepare_phase(split, split.series(), UNTIL)["status"] == "prepared"
    meta = read_handover(split.store, handover_prefix("BTC/USDT", UNTIL), models=False).meta
    manifest, artifacts = _release(tmp_path / "one", reference.release_id, (ONNX_ARTIFACT,))
    assert (meta["model_kind"], meta["ensemble"], meta["window"]) == (
        manifest["model_kind"],
        choice.get("ensemble", 1),
        manifest["window_bars"],
    )
    if choice["model"] == "conv1d":
        assert manifest["window_bars"] > 0 and manifest["model"]["ensemble"] == 2
    else:
        assert set(manifest["model"]["kind_search"]["validation_log_loss"]) == {"conv1d", "mlp"}
    report = finish_phase(split, split.series(), UNTIL)
    assert report.release_id == reference.release_id
    published, published_artifacts = _release(tmp_path / "split", report.release_id, (ONNX_ARTIFACT,))
    assert _made(published) == _made(manifest)
    assert published_artifacts[ONNX_ARTIFACT] == artifacts[ONNX_ARTIFACT]
    assert (report.promoted, report.reason) == (reference.promoted, reference.reason)


def test_a_run_fitting_its_folds_in_worker_processes_publishes_the_release_of_one_process(
    bars_store: Path, tmp_path: Path
) -> None:
    """``train.fit_workers`` changes how long the fits take, not what they make: an ensemble of two fitted in
    two worker processes (each label's 3 folds x 2 members apart) is the release of the fits made one after another,
    bit for bit, under the same training key."""
    runs, said = {}, []
    for workers in (1, 2):
        shutil.copytree(bars_store, tmp_path / str(workers))
        services = _services(tmp_path / str(workers), ensemble=2, fit_workers=workers)
        report = train(services, services.series(), until=UNTIL, log=said.append)
        runs[workers] = (report, *_release(tmp_path / str(workers), report.release_id, (ONNX_ARTIFACT,)))
    pooled = [line for line in said if "worker processes" in line]
    assert len(pooled) == 1 and pooled[0].startswith(
        f"{LABELS * 3 * 2} model fits in 2 worker processes (0 in this one): "
    )
    (one, manifest, artifacts), (two, published, published_artifacts) = runs[1], runs[2]
    assert two.release_id == one.release_id and published["training_key"] == manifest["training_key"]
    assert _made(published) == _made(manifest)
    assert published_artifacts[ONNX_ARTIFACT] == artifacts[ONNX_ARTIFACT]
    assert (two.promoted, two.reason) == (one.promoted, one.reason)


def test_a_tune_phase_needs_a_shared_study_storage(
    prepared_store: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    services = _copy(prepared_store[0], tmp_path)
    with pytest.raises(ConfigError, match="postgresql://"):
        tune_phase(services, services.series(), UNTIL, worker=0, seconds=None)


def test_a_tune_worker_out_of_time_leaves_its_trials_to_finish(
    prepared_store: tuple[Path, dict[str, Any]], tmp_path: Path, postgres_url: str
) -> None:
    shutil.copytree(prepared_store[0], tmp_path / "store")
    services = _services(tmp_path / "store", study_storage=postgres_url)
    late = tune_phase(services, services.series(), UNTIL, worker=1, seconds=1e-6)
    assert late["status"] == "out of time" and sum(late["trials"].values()) == 0
    with pytest.raises(ConfigError, match="needs time to tune"):
        tune_phase(services, services.series(), UNTIL, worker=2, seconds=0.0)
    report = finish_phase(services, services.series(), UNTIL)  # finish tops every study up to its budget
    for study in prepared_store[1]["studies"]:
        trials = optuna.load_study(study_name=study, storage=postgres_url).get_trials()
        assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * FAST["trials"]
    assert report.tuning["n_trials"] == FAST["trials"]


def test_a_tune_invocation_keeps_a_margin_of_its_remaining_time() -> None:
    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 900_000

    assert tuning_seconds(Context()) == 900.0 - TUNE_MARGIN_S
    assert tuning_seconds(object()) is None  # called outside Lambda: no limit
