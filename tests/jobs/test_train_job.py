"""The train job on real bars: a verified release, an honest gate, and a pointer that moves only when earned."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import optuna
import pandas as pd
import pytest

from scalpbot.adapters.marketdata.files import FileMarketData
from scalpbot.cli.app import main
from scalpbot.config import load_settings
from scalpbot.core.features import (
    FEATURE_NAMES,
    FEATURE_SPEC_VERSION,
    FEATURE_WARMUP,
    ONE_HOT_GROUPS,
)
from scalpbot.core.policy_params import ParamBounds, StrategyParams
from scalpbot.core.venue import Venue
from scalpbot.errors import ConfigError, DataError
from scalpbot.inference.signals import TradingModel, predict_bars
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.train import TrainReport, split_folds, train
from scalpbot.jobs.train_steps import (
    HOLDING_STOP,
    exit_ranges,
    hold_range,
    label_exits,
    longest_horizon,
    policy_bounds,
    tuning_options,
)
from scalpbot.state.releases import KERAS_ARTIFACT, ONNX_ARTIFACT, ReleaseStore
from scalpbot.wiring import Services, build_services, venue_profile

from support.files import write_csv

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]

FAST = {"trials": 8, "max_epochs": 2, "min_trades": 5}


def _services(store: Path, **train: Any) -> Services:
    return build_services(load_settings(None, {"store": {"url": str(store)}, "train": {**FAST, **train}}))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, sample_bars: pd.DataFrame) -> tuple[Path, TrainReport]:
    root = tmp_path_factory.mktemp("train")
    services = _services(root / "store")
    source = write_csv(sample_bars, root / "sample.csv")
    retrieve(services.dataset, FileMarketData(source), services.series(), resume=False)
    return root / "store", train(services, services.series())


def _cli(capsys: pytest.CaptureFixture[str], store: Path, *args: str) -> Any:
    code = _cli_code(capsys, store, *args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_the_folds_are_purged_by_the_longest_candidate_label_and_embargoed() -> None:
    cfg = load_settings(None, {}).train
    horizon = max(cfg.horizon, *(h for h, _, _ in cfg.label_search), *cfg.holding_horizons)
    assert longest_horizon(cfg) == horizon == 60
    folds = split_folds(60_000, cfg, horizon)
    assert len(folds.folds) == cfg.folds and folds.folds[0].train[0] == FEATURE_WARMUP
    for fold in folds.folds:
        assert fold.train[1] + horizon + cfg.embargo == fold.validation[0]
    assert folds.folds[-1].validation[1] + horizon + cfg.embargo == folds.test[0]
    assert folds.test[1] == 60_000
    with pytest.raises(DataError, match="too few for 3 validation fold"):
        split_folds(5_000, cfg, horizon)


def test_the_time_stop_is_tuned_from_half_to_twice_the_labels_horizon_when_asked_and_the_rest_as_by_default(
    tmp_path: Path,
) -> None:
    assert [hold_range(h) for h in (2, 8, 15, 30, 60)] == [(5, 5), (5, 16), (7, 30), (15, 60), (30, 120)]
    spot, swap = (cast(Venue, SimpleNamespace(shorts=shorts)) for shorts in (False, True))
    around = policy_bounds(spot, 60, "label")
    assert around.ranges == {**ParamBounds.default().ranges, "max_hold": (30, 120)}
    assert not around.base.allow_short
    assert (
        policy_bounds(swap, 60).ranges == ParamBounds.default().ranges
        and policy_bounds(swap, 60).base.allow_short
    )
    services = build_services(
        load_settings(None, {"store": {"url": str(tmp_path)}, "train": {"time_stop": "label"}})
    )
    venue = venue_profile(services.store, services.settings, services.series())
    options = tuning_options(services.settings, venue, 5, [], "study", label={"horizon": 15})
    assert options["bounds"].ranges["max_hold"] == (7, 30)


def test_label_exits_fix_the_stop_target_and_time_stop_to_the_labels_and_tune_only_the_entries(
    tmp_path: Path,
) -> None:
    """``train.exits = "label"``: each study's policy exits as its label does - a barrier label's k_sl/k_tp
    sigmas and horizon, a holding label's horizon behind a protective stop - and the entries alone are tuned;
    ``"label stop"`` fixes the label's stop only."""
    barrier = {"horizon": 60, "k_sl": 2.0, "k_tp": 1.5, "fee": 0.001}
    holding = {"horizon": 30, "kind": "holding", "fee": 0.001}
    assert label_exits(barrier) == {"sl_mult": (2.0, 2.0), "tp_mult": (1.5, 1.5), "max_hold": (60, 60)}
    top = ParamBounds.default().ranges["tp_mult"][1]
    assert label_exits(holding) == {
        "sl_mult": (HOLDING_STOP, HOLDING_STOP),
        "tp_mult": (top, top),
        "max_hold": (30, 30),
    }
    assert load_settings(None, {}).train.exits == "tuned"
    for exits, fixed_names in (
        ("tuned", set()),
        ("label", {"sl_mult", "tp_mult", "max_hold"}),
        ("label stop", {"sl_mult"}),
    ):
        settings = load_settings(None, {"store": {"url": str(tmp_path)}, "train": {"exits": exits}})
        services = build_services(settings)
        venue = venue_profile(services.store, services.settings, services.series())
        for label in (barrier, holding):
            bounds = tuning_options(services.settings, venue, 5, [], "study", label=label)["bounds"]
            assert bounds.ranges == {**ParamBounds.default().ranges, **exit_ranges(exits, label)}
            fixed = {name for name, (low, high) in bounds.ranges.items() if low == high}
            assert fixed == fixed_names
            # Every trial of the study trades the label's fixed exits, whatever the sampler proposes.
            params = bounds.with_values({"sl_mult": 0.5, "tp_mult": 6.0, "max_hold": 240})
            wanted = {"sl_mult": 0.5, "tp_mult": 6.0, "max_hold": 240}
            wanted |= {name: low for name, (low, _) in label_exits(label).items() if name in fixed_names}
            assert {name: getattr(params, name) for name in wanted} == wanted
    with pytest.raises(ConfigError, match=r"train\.exits"):
        load_settings(None, {"train": {"exits": "labels"}})
    with pytest.raises(ConfigError, match=r"train\.exits"):
        exit_ranges("labels", barrier)
    # A label whose barriers the policy cannot take is refused before any model is fitted.
    with pytest.raises(ConfigError, match=r"k_sl and k_tp .* \(0, 100\]; got label \(60, 200.0, 2.0\)"):
        load_settings(None, {"train": {"exits": "label stop", "label_search": [[60, 200.0, 2.0]]}})
    assert load_settings(None, {"train": {"label_search": [[60, 200.0, 2.0]]}}).train.exits == "tuned"


def test_the_risk_per_trade_sizes_every_tuned_policy_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    """``train.risk_per_trade`` is the base of every trial (not tuned): the stops are tuned for the size it
    gives, and a release carries it in its params."""
    assert load_settings(None, {}).train.risk_per_trade == StrategyParams().risk_per_trade == 0.005
    settings = load_settings(None, {"store": {"url": str(tmp_path)}, "train": {"risk_per_trade": 0.02}})
    services = build_services(settings)
    venue = venue_profile(services.store, services.settings, services.series())
    bounds = tuning_options(services.settings, venue, 5, [], "study", label={"horizon": 30})["bounds"]
    assert bounds.base.risk_per_trade == 0.02 and "risk_per_trade" not in bounds.ranges
    assert bounds.ranges == policy_bounds(venue, 30).ranges
    for bad in (0.0, 0.5):
        with pytest.raises(ConfigError, match=r"train\.risk_per_trade"):
            load_settings(None, {"train": {"risk_per_trade": bad}})


def test_a_release_is_written_with_verified_artifacts_and_a_complete_manifest(
    trained: tuple[Path, TrainReport],
) -> None:
    store, report = trained
    release = ReleaseStore(_services(store).store).load(
        "BTC/USDT", report.release_id, (ONNX_ARTIFACT, KERAS_ARTIFACT)
    )
    manifest = release.manifest
    assert manifest["feature_spec_version"] == FEATURE_SPEC_VERSION
    assert manifest["feature_names"] == list(FEATURE_NAMES)
    assert manifest["feature_set"] == {"name": "ohlcv", "bar_columns": []}  # the sample has no order flow
    assert set(manifest["data_window"]) == {"train", "validation", "test"}
    assert manifest["data_window"]["test"][1] == "2024-12-31T23:59:00Z"
    assert set(manifest["metrics"]) == {"validation", "test"}
    assert set(manifest["baselines"]) == {"not_trading", "sma_cross", "random"}
    assert manifest["baselines"]["not_trading"]["trades"] == 0
    assert {"keras", "torch", "onnxruntime", "optuna"} <= set(manifest["libraries"])
    assert manifest["tuning"]["n_trials"] == FAST["trials"]
    assert len(manifest["folds"]) == 3 and [f["fold"] for f in manifest["folds"]] == [1, 2, 3]
    assert [name for name, _ in manifest["feature_importance"]] == list(report.importance)
    one_hot = {column for columns in ONE_HOT_GROUPS.values() for column in columns}
    assert sorted(report.importance) == sorted({*FEATURE_NAMES} - one_hot | {*ONE_HOT_GROUPS})
    assert manifest["labels"] in manifest["model"]["label_candidates"]
    assert manifest["meta_label"] is None  # train.meta_label is off by default
    assert set(report.timings) >= {"features", "labels", "fit", "tuning", "export", "gate"}
    gate = manifest["gate"]
    assert report.promoted == gate["promote"] and report.gate == {
        k: v for k, v in gate.items() if k != "incumbent"
    }
    assert [c["name"] for c in gate["criteria"]] == [
        "trades",
        "days",
        "deflated_sharpe",
        "bootstrap",
        "timing",
        "pbo",
    ]
    statistics = gate["statistics"]
    # The test window's closed trades are weighed against the same trades entered at random bars.
    assert statistics["timing_p"] is None or 0.0 < statistics["timing_p"] <= 1.0
    assert statistics["timing_trades"] <= statistics["trades"]
    assert (statistics["fee"], statistics["slippage"]) == (0.001, 0.0)  # the venue's (Binance spot) costs
    # The candidate labels (two barrier, one holding) of FAST["trials"] trials each, and one policy more for
    # each whose confidence floor was chosen again after its study; the deflation counts the effective
    # independent ones.
    cfg = load_settings(None, {}).train
    labels = 1 + len(cfg.label_search) + len(cfg.holding_horizons)
    assert labels == manifest["tuning"]["label_candidates"] == 3
    floor = manifest["tuning"]["floor"]
    assert floor["objective"] == "return" and floor["chosen"] == manifest["params"]["min_confidence"]
    assert labels * FAST["trials"] <= manifest["tuning"]["trials_run"] <= labels * FAST["trials"] + labels
    if floor["chosen"] != floor["tuned"]:
        assert manifest["tuning"]["trials_run"] > labels * FAST["trials"]
    # The time stop was tuned over the default range (train.time_stop "any").
    low, high = ParamBounds.default().ranges["max_hold"]
    assert low <= manifest["params"]["max_hold"] <= high
    run = manifest["tuning"]["trials_run"]
    assert 1 <= statistics["n_trials"] == manifest["tuning"]["effective_trials"] <= run
    assert statistics["trades"] == report.test["trades"] and statistics["rival"] == "not trading"
    assert statistics["total_return"] == report.test["total_return"]
    assert statistics["pbo"] == manifest["tuning"]["probability_of_backtest_overfitting"]


def test_the_model_search_chooses_the_hyper_parameters_the_release_is_fitted_with(
    tmp_path: Path, sample_bars: pd.DataFrame
) -> None:
    services = _services(tmp_path / "store", model_trials=2, trials=2, days=21)
    retrieve(
        services.dataset,
        FileMarketData(write_csv(sample_bars, tmp_path / "s.csv")),
        services.series(),
        resume=False,
    )
    report = train(services, services.series())
    search = report.model["search"]
    assert search["trials"] == 2 and len(search["history"]) == 2
    best = min(search["history"], key=lambda t: t["val_loss"])
    assert search["best"] == {k: best[k] for k in ("widths", "dropout", "learning_rate")}
    manifest = ReleaseStore(services.store).load("BTC/USDT", report.release_id).manifest
    assert {k: manifest["hyperparams"][k] for k in ("widths", "dropout", "learning_rate")} == search["best"]
    assert manifest["model"] == report.model
    assert "model_search" in report.timings


def _release_probs(store: Path, release_id: str) -> tuple[pd.DataFrame, np.ndarray, Any]:
    """Return the stored bars, the release's probabilities on them (as the execute path computes them) and
    its manifest."""
    services = _services(store)
    release = ReleaseStore(services.store).load("BTC/USDT", release_id, (ONNX_ARTIFACT,))
    trading = TradingModel.from_release(release)
    bars = services.dataset.read(services.series())
    probs, _ = predict_bars(bars, trading.model, feature_set=trading.feature_set, window=trading.window)
    return bars, probs, release.manifest


def test_the_meta_filter_is_judged_on_later_folds_and_a_release_without_it_is_the_primary_model(
    trained: tuple[Path, TrainReport], tmp_path: Path, sample_bars: pd.DataFrame
) -> None:
    """With train.meta_label on, each fold from the second on is judged by a filter fitted on the trades
    before it (when there are enough); where the folds do not keep it the release is the same primary model
    (same bars, same seeds) as without it, and the manifest says why."""
    services = _services(tmp_path / "store", meta_label="logistic")
    source = write_csv(sample_bars, tmp_path / "sample.csv")
    retrieve(services.dataset, FileMarketData(source), services.series(), resume=False)
    report = train(services, services.series())
    _, probs, manifest = _release_probs(tmp_path / "store", report.release_id)
    _, primary, _ = _release_probs(trained[0], trained[1].release_id)
    record = manifest["meta_label"]
    assert report.meta_label == record and trained[1].meta_label is None
    assert record["method"] == "logistic" and {f["fold"] for f in record["folds"]} <= {2, 3}
    assert all(f["fitted_on"] >= 100 for f in record["folds"])
    if record["folds"]:
        before, after = (sum(f[key] for f in record["folds"]) for key in ("return", "filtered"))
        assert record["adopted"] == (after > before)
        assert f"{before:+.2%} unfiltered, {after:+.2%} filtered" in record["reason"]
    else:  # the sample's weak primary trades too little for a filter: said in one line
        assert not record["adopted"] and "not judged: a meta filter needs at least 100" in record["reason"]
    if not record["adopted"]:
        first = FEATURE_WARMUP + 1
        np.testing.assert_array_equal(probs[first:], primary[first:])
        assert report.test == trained[1].test


def test_models_list_shows_the_release_its_metrics_and_the_gates_refusal_with_its_statistics(
    trained: tuple[Path, TrainReport], capsys: pytest.CaptureFixture[str]
) -> None:
    store, report = trained
    listed = _cli(capsys, store, "models", "list", "--json")
    assert [r["release_id"] for r in listed["releases"]] == [report.release_id]
    row = listed["releases"][0]
    assert row["metrics"]["test"] == report.test
    assert not report.promoted  # noise on six weeks of real bars, tuned over 8 trials: refused
    assert row["gate"]["reason"] == report.reason
    assert report.reason.startswith("refused: ")
    effective, run = report.tuning["effective_trials"], report.tuning["trials_run"]
    assert run > effective  # the trials of a study are far from independent
    assert (
        f"over {run} trials ({effective} independent)" in report.reason
        and f"{report.test['trades']} trades" in report.reason
    )
    assert "\n" not in report.reason  # a refusal is one line
    statistics = row["gate"]["statistics"]
    for name in (
        "p_value",
        "deflated_sharpe",
        "n_trials",
        "sharpe_variance",
        "pbo",
        "fee",
        "slippage",
        "days",
    ):
        assert name in statistics
    assert _cli_code(capsys, store, "models", "list") == 0
    table = " ".join(capsys.readouterr().out.split())  # the verdict folds to the terminal's width
    assert f"{report.release_id}: {report.reason}" in table


def test_the_train_summary_prints_the_fold_results_and_the_feature_importance(
    trained: tuple[Path, TrainReport], capsys: pytest.CaptureFixture[str]
) -> None:
    store, report = trained
    Path("scalpbot.toml").write_text("[train]\ntrials = 8\nmax_epochs = 2\nmin_trades = 5\n")
    assert _cli_code(capsys, store, "train") == 0  # the same run again: its report, from the manifest
    printed = " ".join(capsys.readouterr().out.split())
    assert "walk-forward validation folds" in printed
    for fold in report.folds:
        first, last = (stamp[:16].replace("T", " ") for stamp in fold["validation"])
        assert (
            f"fold {fold['fold']} {first} .. {last}: {fold['total_return']:+.2%}, {fold['trades']} trades"
            in printed
        )
    top = list(report.importance.items())[:3]
    assert (
        "feature importance (validation folds, log-loss rise): "
        + ", ".join(f"{name} {value:+.4f}" for name, value in top)
        in printed
    )
    assert report.reason in printed
    floor = report.tuning["floor"]  # chosen again on the folds' return after the study
    expected = (
        f"{floor['tuned']:.2f} -> {floor['chosen']:.2f} on the folds' return"
        if floor["chosen"] != floor["tuned"]
        else f"{floor['chosen']:.2f} as tuned"
    )
    assert f"confidence floor {expected}" in printed


def test_a_release_backtested_on_its_test_window_reproduces_its_test_metrics(
    trained: tuple[Path, TrainReport], capsys: pytest.CaptureFixture[str]
) -> None:
    store, report = trained
    first, _ = report.windows["test"]
    result = _cli(
        capsys,
        store,
        "backtest",
        "--strategy",
        "release",
        "--release",
        report.release_id,
        "--from",
        first,
        "--json",
    )
    assert result["metrics"] == report.test


def test_a_challenger_no_better_than_the_current_release_is_refused_on_its_bootstrap_p_value(
    trained: tuple[Path, TrainReport], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store, report = trained
    # A fresh study with the same data and seed gives an identical challenger. The deflated Sharpe and PBO are
    # switched off here so that the comparison with the current release decides: zero excess return, p = 1.
    Path("scalpbot.toml").write_text(
        "[train]\ntrials = 8\nmax_epochs = 2\nmin_trades = 5\n"
        f"study_storage = 'sqlite:///{tmp_path / 'fresh.db'}'\n"
        "[gate]\nmin_deflated_sharpe = 0.0\nmax_pbo = 1.0\n"
    )
    services = _services(store)
    releases = ReleaseStore(services.store)
    _cli_ok(capsys, store, "models", "promote", report.release_id)
    before = releases.pointer("BTC/USDT")
    assert _cli_code(capsys, store, "train", "--trials", str(FAST["trials"] + 1)) == 0  # a new run
    printed = capsys.readouterr().out
    expected = f"refused: bootstrap p = 1.00 >= 0.05 against current release {report.release_id} (test "
    assert f"\n{expected}" in printed
    after = releases.pointer("BTC/USDT")
    assert after == before
    listed = _cli(capsys, store, "models", "list", "--json")
    again = listed["releases"][-1]
    assert again["gate"]["reason"].startswith(expected)
    assert again["gate"]["incumbent"]["metrics"] == report.test == again["metrics"]["test"]
    assert again["gate"]["statistics"]["rival_return"] == report.test["total_return"]


def test_the_gate_scores_at_the_configured_venue_fee(
    trained: tuple[Path, TrainReport], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(trained[0], store)
    # Binance spot's 0.1 % per side, not the default 0.04 %: the test window, the gate and a later backtest of
    # the release all pay it.
    Path("scalpbot.toml").write_text(
        "[venue]\ntaker_fee = 0.001\n[backtest]\nslippage = 0.0001\n[train]\ntrials = 8\nmax_epochs = 2\nmin_trades = 5\n"
    )
    report = _cli(capsys, store, "train", "--json")
    statistics = report["gate"]["statistics"]
    assert (statistics["fee"], statistics["slippage"]) == (0.001, 0.0001)
    assert statistics["total_return"] == report["test"]["total_return"]
    first, _ = report["windows"]["test"]
    args = ("backtest", "--strategy", "release", "--release", report["release_id"], "--from", first, "--json")
    assert _cli(capsys, store, *args)["metrics"] == report["test"]


def test_training_the_same_data_again_finds_its_release_or_tops_up_the_stored_study(
    trained: tuple[Path, TrainReport],
) -> None:
    store, report = trained
    services = _services(store)
    assert services.store.list("models/BTC_USDT/studies/") == [
        "models/BTC_USDT/studies/binance-BTC_USDT-1m-20241231T2359-l1.db",
        "models/BTC_USDT/studies/binance-BTC_USDT-1m-20241231T2359-l2.db",
        "models/BTC_USDT/studies/binance-BTC_USDT-1m-20241231T2359.db",
    ]
    same = train(services, services.series())
    assert same.release_id == report.release_id  # the same run again: its release, not a second one
    assert same.tuning["n_trials"] == FAST["trials"]
    again = train(services, services.series(), trials=2 * FAST["trials"])
    assert (report.tuning["n_trials"], again.tuning["n_trials"]) == (FAST["trials"], 2 * FAST["trials"])


def test_a_corrupted_current_release_is_reported_and_never_loaded(
    trained: tuple[Path, TrainReport], capsys: pytest.CaptureFixture[str]
) -> None:
    store, report = trained
    services = _services(store)
    _cli_ok(capsys, store, "models", "promote", report.release_id)  # current, whichever test ran before
    pointer = ReleaseStore(services.store).pointer("BTC/USDT")
    assert pointer is not None
    key = f"models/BTC_USDT/releases/{pointer.release_id}/model.onnx"
    original = services.store.get(key).data
    services.store.put(key, original[:-10])
    try:
        again = train(services, services.series(), trials=FAST["trials"] + 2)  # a run of its own
        assert again.incumbent is not None and "checksum" in again.incumbent["error"]
        code = _cli_code(capsys, store, "backtest", "--strategy", "release")
        assert code == 1
        assert "does not match its sha256 checksum" in capsys.readouterr().err
    finally:
        services.store.put(key, original)


def _cli_ok(capsys: pytest.CaptureFixture[str], store: Path, *args: str) -> None:
    assert _cli_code(capsys, store, *args) == 0, capsys.readouterr().err
    capsys.readouterr()


def _cli_code(capsys: pytest.CaptureFixture[str], store: Path, *args: str) -> int:
    try:
        main(["--store", str(store), *args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_several_tuning_workers_need_a_postgresql_study_storage(tmp_path: Path) -> None:
    services = _services(tmp_path / "store", study_storage=f"sqlite:///{tmp_path / 's.db'}")
    with pytest.raises(ConfigError, match="postgresql://"):
        train(services, services.series(), workers=2)  # refused before any bar is read


def test_two_tuning_workers_fill_each_candidate_study_on_postgresql(
    trained: tuple[Path, TrainReport], postgres_url: str, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(trained[0], store)
    services = _services(store, study_storage=postgres_url, trials=FAST["trials"] + 2)
    lines: list[str] = []
    report = train(services, services.series(), workers=2, log=lines.append)
    assert report.tuning["n_trials"] == FAST["trials"] + 2
    assert any("tuning with 2 worker processes" in line for line in lines)
    summaries = optuna.get_all_study_summaries(postgres_url)
    assert len(summaries) == 3  # one study per candidate label, each holding exactly the budget
    for summary in summaries:
        trials = optuna.load_study(study_name=summary.study_name, storage=postgres_url).trials
        assert [t.number for t in trials] == list(range(FAST["trials"] + 2))
        assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
