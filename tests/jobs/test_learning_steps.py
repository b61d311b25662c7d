"""The steps the train job shares with the weekly improvements: cost-aware labels and promotion through the gate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalpbot.core.features import build_features
from scalpbot.core.gate import GateStatistics, GateVerdict
from scalpbot.core.holding_labels import holding_labels
from scalpbot.core.labels import LABEL_LONG, barrier_volatility, triple_barrier_labels
from scalpbot.errors import ConfigError
from scalpbot.jobs.learning import LabelConfig, labelled_rows
from scalpbot.jobs.train_evaluation import promotion_reason


def test_a_label_take_profit_is_never_closer_than_the_round_trips_it_must_clear(
    sample_bars: pd.DataFrame,
) -> None:
    bars = sample_bars.iloc[:6000]
    config = LabelConfig(horizon=30, k_sl=1.0, k_tp=0.5, fee=0.0004, slippage=0.0001, min_tp_round_trips=2.0)
    assert config.round_trip == pytest.approx(0.001)
    sigma = config.barrier_vol(bars)
    raw = barrier_volatility(bars, horizon=30)
    finite = np.isfinite(raw)
    assert np.all(0.5 * sigma[finite] >= 2.0 * 0.001 - 1e-15)
    assert np.array_equal(sigma[finite & (0.5 * raw >= 0.002)], raw[finite & (0.5 * raw >= 0.002)])
    # Rows whose own barrier is wide enough keep their label; a TP inside one round trip hardly ever wins unfloored
    label, _, usable = labelled_rows(bars, build_features(bars).to_numpy(), config)
    plain = triple_barrier_labels(bars, horizon=30, k_sl=1.0, k_tp=0.5, fee=0.0004, slippage=0.0001)
    plain_label = plain["label"].to_numpy()
    wide = usable & (0.5 * raw >= 0.002)
    assert wide.any() and np.array_equal(label[wide], plain_label[wide])
    inside_costs = usable & (0.5 * raw < 0.0008)  # TP below the fees alone
    # (only a bar that opens beyond such a TP pays enough: rare)
    plain_wins = int((plain_label[inside_costs] == LABEL_LONG).sum())
    assert inside_costs.sum() > 200 and plain_wins < 0.02 * inside_costs.sum()
    assert (label[inside_costs] == LABEL_LONG).sum() > 5 * plain_wins


def test_a_label_config_round_trips_through_the_manifest_and_reads_old_manifests() -> None:
    config = LabelConfig(60, 2.0, 1.5, 0.001, 0.0001, False, 1.0)
    assert LabelConfig.from_manifest(config.to_dict()) == config
    old = LabelConfig.from_manifest({"horizon": 30, "k_sl": 1.0, "k_tp": 1.0, "fee": 0.0004})
    assert (old.slippage, old.shorts, old.min_tp_round_trips) == (0.0, True, 0.0)


def test_a_holding_label_round_trips_through_the_manifest_and_wins_only_past_its_round_trips(
    sample_bars: pd.DataFrame,
) -> None:
    config = LabelConfig.holding(30, 0.0004, 0.0001, True, 2.0)
    record = config.to_dict()
    assert record["kind"] == "holding" and "k_tp" not in record
    assert LabelConfig.from_manifest(record) == config
    assert config.describe() == "holding 30 bars"
    assert LabelConfig(30, 1.0, 1.5, 0.0004).describe() == "horizon 30 bars, SL/TP 1/1.5 sigma"
    assert "kind" not in LabelConfig(30, 1.0, 1.5, 0.0004).to_dict()  # barrier manifests read as before
    bars = sample_bars.iloc[:4000]
    label, _, usable = labelled_rows(bars, build_features(bars).to_numpy(), config)
    plain = holding_labels(bars, horizon=30, fee=0.0004, slippage=0.0001)
    move = (bars["close"].shift(-30) / bars["open"].shift(-1) - 1.0).to_numpy()
    wins = usable & (label == LABEL_LONG)
    assert wins.sum() > 100 and (move[wins] >= 2.0 * 0.001).all()
    far = usable & (np.abs(move) >= 0.002)
    assert np.array_equal(label[far], plain["label"].to_numpy()[far])
    with pytest.raises(ConfigError, match="label kind"):
        LabelConfig(30, 1.0, 1.0, 0.0004, kind="fixed")


def _verdict(promote: bool) -> GateVerdict:
    statistics = GateStatistics(
        "test window", "not trading", 0.3, 0.0, 40, 9.0, 0.001, 200, "hour", 3.0, 2000, 0.99, 3, 0.01, 0.4,
        "validation hour", 0.05, 0.001, 0.0,
    )  # fmt: skip
    reason = "promoted: every criterion" if promote else "refused: PBO 0.27 >= 0.2 (test +30.00 %)"
    return GateVerdict(promote, reason, (), statistics)


def test_a_promotion_names_the_folds_the_test_and_the_baselines_and_a_refusal_stays_one_line() -> None:
    folds = [{"total_return": 0.25}, {"total_return": -0.01}, {"total_return": 0.125}]
    test = {"total_return": 0.3, "trades": 40}
    rivals = {
        "not_trading": {"total_return": 0.0},
        "sma_cross": {"total_return": -0.5},
        "random": {"total_return": 0.02},
    }
    line = promotion_reason(_verdict(True), folds, test, rivals)
    assert line == (
        "promoted: every criterion; validation folds +25.00 %, -1.00 %, +12.50 %; test +30.00 % in 40 trades "
        "beside not-trading +0.00 %, sma-cross -50.00 %, random +2.00 %"
    )
    refused = _verdict(False)
    assert promotion_reason(refused, folds, test, rivals) == refused.reason and "\n" not in refused.reason
