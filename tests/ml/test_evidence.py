"""The gate's statistics against independent computations and published figures."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from scalpbot.core.costs import TradingCosts
from scalpbot.core.overfitting import ReturnMoments, probability_of_backtest_overfitting
from scalpbot.ml.evidence import (
    TrialSelection,
    distinct_trials,
    edge_p_value,
    effective_trials,
    gate_statistics,
    period_returns,
    tuning_overfitting,
    window_days,
)


def _reference_stationary_p(x: np.ndarray, mean_block: float, resamples: int, seed: int) -> float:
    """Politis & Romano (1994) written out: blocks start anywhere, lengths geometric with mean ``mean_block``,
    wrapping around the end; the null is imposed by centring."""
    rng = np.random.default_rng(seed)
    n, centred, observed = x.size, x - x.mean(), x.mean()
    hits = 0
    for _ in range(resamples):
        index = np.empty(n, dtype=np.int64)
        index[0] = rng.integers(n)
        for t in range(1, n):
            index[t] = rng.integers(n) if rng.random() < 1.0 / mean_block else (index[t - 1] + 1) % n
        hits += centred[index].mean() >= observed
    return (1 + hits) / (resamples + 1)


def test_the_bootstrap_p_value_matches_a_stationary_bootstrap_written_out() -> None:
    rng = np.random.default_rng(3)
    noise = rng.normal(0.0, 0.01, 300)
    x = 0.0012 + noise + 0.5 * np.concatenate(([0.0], noise[:-1]))  # MA(1): autocorrelated, small edge
    ours = edge_p_value(x, resamples=4000, seed=1)
    assert ours.mean_block > 1.0  # the dependence is seen
    reference = _reference_stationary_p(x, ours.mean_block, 4000, seed=2)
    assert ours.p_value is not None and 0.005 < reference < 0.5
    assert ours.p_value == pytest.approx(reference, abs=0.02)  # two Monte Carlo estimates of the same p


def test_the_bootstrap_p_value_is_about_uniform_without_an_edge() -> None:
    rng = np.random.default_rng(11)
    p_values = [edge_p_value(rng.normal(0.0, 0.01, 200), resamples=400, seed=i).p_value for i in range(200)]
    rejected = np.mean([p is not None and p < 0.05 for p in p_values])
    assert 0.01 <= rejected <= 0.10


def test_a_clear_edge_has_a_small_p_value_and_a_clear_loss_a_large_one() -> None:
    rng = np.random.default_rng(5)
    gain = edge_p_value(rng.normal(0.002, 0.01, 400), seed=0)
    loss = edge_p_value(rng.normal(-0.002, 0.01, 400), seed=0)
    assert gain.p_value is not None and gain.p_value < 0.01
    assert loss.p_value is not None and loss.p_value > 0.99


def test_the_bootstrap_is_deterministic_for_a_seed() -> None:
    x = np.random.default_rng(1).normal(0.0005, 0.01, 100)
    assert edge_p_value(x, seed=9) == edge_p_value(x, seed=9)


def test_too_few_or_constant_returns_give_no_or_an_extreme_p_value() -> None:
    assert edge_p_value(np.full(5, 0.01)).p_value is None
    assert edge_p_value(np.zeros(50)).p_value == 1.0  # not trading against not trading
    assert edge_p_value(np.full(50, 0.001), resamples=999).p_value == pytest.approx(1e-3)


def test_period_returns_compound_to_the_window_return() -> None:
    index = pd.date_range("2024-05-01T00:00:00Z", periods=3 * 60 + 17, freq="1min")
    equity = pd.Series(
        10_000.0 * np.exp(np.cumsum(np.random.default_rng(2).normal(0, 1e-4, len(index)))), index
    )
    equity.iloc[0] = 10_000.0
    returns = period_returns(equity)
    assert returns.shape == (4,)  # three full hours and a partial one
    assert np.prod(1.0 + returns) == pytest.approx(equity.iloc[-1] / 10_000.0, rel=1e-12)
    day = pd.date_range("2024-05-01T00:00:00Z", periods=1440, freq="1min")
    assert window_days(day) == pytest.approx(1.0)


def test_the_deflated_sharpe_reproduces_the_papers_numerical_example_through_the_selection() -> None:
    """Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", section 5: the best of N = 100 trials has an
    annualized Sharpe of 2.5 over T = 1,250 daily returns with skewness -3 and kurtosis 10, the trials'
    annualized Sharpes have variance 1/2; the paper finds SR0 = 0.1132 (per day) and DSR = 0.9004."""
    per_day = 2.5 / math.sqrt(250)
    moments = ReturnMoments(n=1250, mean=per_day, std=1.0, sharpe=per_day, skew=-3.0, kurtosis=10.0)
    selection = TrialSelection(100, 0.5 / 250, moments, "day", None)
    dsr = selection.deflated_sharpe()
    assert dsr is not None and dsr == pytest.approx(0.9004, abs=5e-4)


def test_the_selection_counts_policy_times_model_trials_and_their_sharpe_variance() -> None:
    returns = np.random.default_rng(4).normal(0.0, 0.01, (12, 30))
    returns[5] += 0.004
    selection = TrialSelection.from_returns(returns, 5, "validation day", trials_run=12 * 3)
    sharpes = returns.mean(axis=1) / returns.std(axis=1, ddof=1)
    assert selection.n_trials == 36
    assert selection.sharpe_variance == pytest.approx(np.var(sharpes, ddof=1), rel=1e-12)
    assert selection.moments is not None and selection.moments.sharpe == pytest.approx(sharpes[5])
    assert (selection.pbo, selection.pbo_loss) == tuning_overfitting(returns)
    single = TrialSelection.single(returns[5], "hour")
    assert (single.n_trials, single.sharpe_variance, single.pbo) == (1, 0.0, None)
    assert single.deflated_sharpe() == pytest.approx(
        stats.norm.cdf(
            sharpes[5]
            * math.sqrt(29)
            / math.sqrt(
                1
                - stats.skew(returns[5]) * sharpes[5]
                + (stats.kurtosis(returns[5], fisher=False) - 1) / 4 * sharpes[5] ** 2
            )
        ),
        rel=1e-9,
    )


def _reference_pbo(matrix: np.ndarray, n_splits: int) -> float:
    """CSCV of Bailey, Borwein, López de Prado & Zhu (2017) written out, one split at a time."""
    rows = matrix.shape[0] // n_splits * n_splits
    blocks = np.split(matrix[matrix.shape[0] - rows :], n_splits)
    logits = []
    for chosen in combinations(range(n_splits), n_splits // 2):
        inside = np.concatenate([blocks[i] for i in chosen])
        outside = np.concatenate([blocks[i] for i in range(n_splits) if i not in chosen])
        sharpe_in = inside.mean(axis=0) / inside.std(axis=0, ddof=1)
        sharpe_out = outside.mean(axis=0) / outside.std(axis=0, ddof=1)
        best = int(np.argmax(sharpe_in))
        rank = stats.rankdata(sharpe_out)[best]  # 1 = worst; ties share the average rank
        w = rank / (matrix.shape[1] + 1)
        logits.append(math.log(w / (1 - w)))
    return float(np.mean(np.array(logits) <= 0))


@pytest.mark.parametrize("edge", [0.0, 0.006])
def test_pbo_matches_a_reference_cscv_on_a_fixed_matrix_of_trial_returns(edge: float) -> None:
    rng = np.random.default_rng(21)
    matrix = rng.normal(0.0, 0.01, (123, 9))  # 123 rows: the earliest 3 are dropped for 8 equal blocks
    matrix[:, 4] += edge
    expected = _reference_pbo(matrix, 8)
    assert probability_of_backtest_overfitting(matrix, n_splits=8).probability == pytest.approx(
        expected, abs=1e-12
    )
    assert expected < 0.2 if edge else expected > 0.2  # one trial truly better / all alike


def test_gate_statistics_weigh_the_excess_over_the_rival_at_the_given_costs() -> None:
    rng = np.random.default_rng(8)
    rival = rng.normal(0.001, 0.002, 400)  # a profitable rival
    challenger = rival + rng.normal(0.0, 0.001, 400)  # as profitable, no better
    selection = TrialSelection.single(challenger, "hour")
    costs = TradingCosts(fee=0.001, slippage=0.0002)
    kwargs = dict(window="most recent window", rival="parent release x", total_return=0.3, rival_return=0.0)
    paired = gate_statistics(
        challenger_returns=challenger, rival_returns=rival, trades=50, days=16.7, selection=selection,
        costs=costs, **kwargs,
    )  # fmt: skip
    alone = gate_statistics(
        challenger_returns=challenger, rival_returns=None, trades=50, days=16.7, selection=selection,
        costs=costs, **kwargs,
    )  # fmt: skip
    assert paired.p_value is not None and alone.p_value is not None
    assert alone.p_value < 0.01 and paired.p_value > 0.05  # beats not trading, not its rival
    assert (paired.fee, paired.slippage, paired.bootstrap_obs, paired.n_trials) == (0.001, 0.0002, 400, 1)


def test_effective_trials_count_independent_trials_once_and_copies_not_at_all() -> None:
    rng = np.random.default_rng(4)
    independent = rng.normal(0.0, 0.01, (12, 2000))
    assert 10.5 < effective_trials(independent) <= 12.0
    copies = np.repeat(independent[:3], 4, axis=0) * rng.uniform(0.5, 2.0, (12, 1))  # scaled copies of 3
    assert 2.5 < effective_trials(copies) <= 3.0
    never_traded = np.vstack([independent[:1], np.zeros((5, 2000))])
    assert effective_trials(never_traded) == 1.0


def test_a_fold_selection_deflates_by_effective_trials_against_the_nulls_sampling_spread() -> None:
    rng = np.random.default_rng(5)
    noise = rng.normal(0.0, 0.01, (40, 500))
    chosen = int(np.argmax(noise.mean(axis=1) / noise.std(axis=1, ddof=1)))
    selection = TrialSelection.from_folds(noise, chosen, "validation hour", multiplier=2)
    assert selection.sharpe_variance == pytest.approx(1.0 / 499)
    assert 60 <= selection.n_trials <= 80  # about 40 independent trials, times 2 model trials
    dsr = selection.deflated_sharpe()
    assert dsr is not None and dsr < 0.95  # the best of 80 noise trials is not evidence
    edge = noise.copy()
    edge[chosen] += 0.004  # a real edge: 0.4 standard deviations per period
    assert (TrialSelection.from_folds(edge, chosen, "validation hour").deflated_sharpe() or 0.0) > 0.99


def test_copies_of_one_strategy_count_once_for_the_pbo() -> None:
    rng = np.random.default_rng(6)
    strategies = rng.normal(0.0, 0.01, (3, 400))
    copies = np.repeat(strategies, 5, axis=0) + rng.normal(0.0, 1e-4, (15, 400))  # 5 near-copies of each
    never = np.zeros((4, 400))
    distinct = distinct_trials(np.vstack([copies, never]))
    assert distinct.shape == (4, 400)  # one of each strategy and one trial that never traded
    np.testing.assert_array_equal(distinct[:3], copies[[0, 5, 10]])
    # Near-copies of one good strategy: picking the in-sample best among them is no overfitting.
    edge = np.repeat(strategies[:1] + 0.003, 20, axis=0) + rng.normal(0.0, 1e-4, (20, 400))
    noisy = np.vstack([edge, rng.normal(0.0, 0.01, (5, 400))])
    chosen = int(np.argmax(noisy.mean(axis=1)))
    assert (TrialSelection.from_folds(noisy, chosen, "validation hour").pbo or 0.0) < 0.2
