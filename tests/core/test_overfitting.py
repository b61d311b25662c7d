"""Overfitting measures against hand computations of the papers' formulas and their known properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from scalpbot.core.overfitting import (
    EULER_GAMMA,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    return_moments,
)


def test_psr_matches_the_formula_computed_with_scipy() -> None:
    sharpe, n, skew, kurt, bench = 0.08, 500, -0.7, 6.0, 0.02
    z = (sharpe - bench) * math.sqrt(n - 1) / math.sqrt(1 - skew * sharpe + (kurt - 1) / 4 * sharpe**2)
    expected = stats.norm.cdf(z)
    got = probabilistic_sharpe_ratio(sharpe, n, skew=skew, kurtosis=kurt, benchmark=bench)
    assert got == pytest.approx(expected, rel=1e-12)


def test_expected_max_sharpe_matches_the_formula_computed_with_scipy() -> None:
    n, variance = 250, 0.004
    expected = math.sqrt(variance) * (
        (1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / n) + EULER_GAMMA * stats.norm.ppf(1 - 1 / (n * math.e))
    )
    assert expected_max_sharpe(n, variance) == pytest.approx(expected, rel=1e-9)
    assert expected_max_sharpe(1, variance) == 0.0


def test_dsr_reproduces_the_papers_numerical_example() -> None:
    """Bailey & López de Prado (2014), section 5: annualized SR 2.5 on 1,250 daily returns, skew -3, kurtosis 10,
    100 trials whose annualized Sharpes have variance 0.5; SR0 = 0.1132 per day and DSR = 0.9004."""
    days = 250
    sharpe = 2.5 / math.sqrt(days)
    variance = 0.5 / days  # a variance of annualized Sharpes, de-annualized
    assert expected_max_sharpe(100, variance) == pytest.approx(0.1132, abs=5e-5)
    dsr = deflated_sharpe_ratio(sharpe, 1250, 100, variance, skew=-3.0, kurtosis=10.0)
    assert dsr == pytest.approx(0.9004, abs=5e-4)


def test_dsr_with_one_trial_is_the_psr_against_zero() -> None:
    assert deflated_sharpe_ratio(0.1, 300, 1, 0.01) == probabilistic_sharpe_ratio(0.1, 300)


@settings(max_examples=100, deadline=None)
@given(
    sharpe=st.floats(-0.5, 0.5),
    n_obs=st.integers(2, 5000),
    trials=st.integers(1, 10_000),
    variance=st.floats(0.0, 0.05),
    skew=st.floats(-2.0, 2.0),
    excess=st.floats(0.0, 20.0),
)
def test_dsr_is_a_probability_that_falls_with_more_trials(
    sharpe: float, n_obs: int, trials: int, variance: float, skew: float, excess: float
) -> None:
    kurtosis = 1.0 + skew**2 + excess  # every real distribution has kurtosis >= 1 + skew^2
    fewer = deflated_sharpe_ratio(sharpe, n_obs, trials, variance, skew=skew, kurtosis=kurtosis)
    more = deflated_sharpe_ratio(sharpe, n_obs, trials * 10, variance, skew=skew, kurtosis=kurtosis)
    assert 0.0 <= more <= fewer <= 1.0


def test_more_observations_make_a_positive_sharpe_more_certain() -> None:
    values = [probabilistic_sharpe_ratio(0.05, n) for n in (50, 200, 1000, 5000)]
    assert values == sorted(values)
    assert values[-1] > 0.99


def test_return_moments_match_scipy_population_moments() -> None:
    returns = np.random.default_rng(1).standard_t(4, 400) * 0.01 + 0.001
    m = return_moments(returns)
    assert m.n == 400
    assert m.sharpe == pytest.approx(np.mean(returns) / np.std(returns, ddof=1))
    assert m.skew == pytest.approx(stats.skew(returns, bias=True))
    assert m.kurtosis == pytest.approx(stats.kurtosis(returns, fisher=False, bias=True))
    flat = return_moments(np.zeros(5))
    assert math.isnan(flat.sharpe) and flat.std == 0.0


def test_inputs_in_the_wrong_units_or_shape_are_rejected() -> None:
    with pytest.raises(ValueError, match="n_obs"):
        probabilistic_sharpe_ratio(0.1, 1)
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(0, 0.1)
    with pytest.raises(ValueError, match="sharpe_variance"):
        expected_max_sharpe(10, -1.0)
    with pytest.raises(ValueError, match="1-d"):
        return_moments(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="even"):
        probability_of_backtest_overfitting(np.zeros((64, 3)), n_splits=5)
    with pytest.raises(ValueError, match="fewer splits"):
        probability_of_backtest_overfitting(np.zeros((20, 3)), n_splits=16)


def test_pbo_is_low_when_one_trial_truly_dominates() -> None:
    rng = np.random.default_rng(5)
    returns = rng.normal(0.0, 0.01, (320, 40))
    returns[:, 7] += 0.004
    assert probability_of_backtest_overfitting(returns).probability < 0.05


def test_pbo_is_high_when_in_sample_winners_lose_out_of_sample() -> None:
    """Each trial's block means sum to zero: a good in-sample half forces a bad out-of-sample half."""
    rng = np.random.default_rng(6)
    n_splits, block, n_trials = 8, 20, 30
    means = rng.normal(0.0, 0.01, (n_splits, n_trials))
    means -= means.mean(axis=0)
    returns = np.repeat(means, block, axis=0) + rng.normal(0.0, 0.002, (n_splits * block, n_trials))
    assert probability_of_backtest_overfitting(returns, n_splits=n_splits).probability > 0.9


def test_pbo_of_pure_noise_is_near_one_half() -> None:
    rng = np.random.default_rng(8)
    result = probability_of_backtest_overfitting(rng.normal(0.0, 0.01, (240, 50)), n_splits=8)
    assert result.logits.shape == (70,)  # C(8, 4)
    assert 0.2 < result.probability < 0.8


def test_trials_sharing_one_real_edge_have_a_coin_toss_pbo_but_their_winner_does_not_lose() -> None:
    """Five trials of one edge (the same mean, independent noise): which wins in sample says nothing about out of
    sample (a PBO of 1/2 or more: ties at the median count), yet the winner earns out of sample in every split;
    noise's winner loses in about half."""
    rng = np.random.default_rng(11)
    shared = rng.normal(0.0, 0.01, (320, 5)) + 0.006
    edge = probability_of_backtest_overfitting(shared)
    assert edge.probability > 0.3
    assert edge.loss_probability < 0.01
    noise = probability_of_backtest_overfitting(rng.normal(0.0, 0.01, (320, 5)))
    assert 0.3 < noise.loss_probability < 0.7


def test_the_probability_of_loss_counts_a_winner_that_earns_nothing_out_of_sample() -> None:
    """Two trials that trade only in the first half of the rows: every split whose out-of-sample half is the
    second half (flat) is a loss, the others are not."""
    returns = np.zeros((64, 2))
    returns[:32, 0] = np.tile([0.02, -0.01], 16)
    returns[:32, 1] = np.tile([0.01, -0.005], 16) + 0.001
    result = probability_of_backtest_overfitting(returns, n_splits=4)
    # C(4, 2) = 6 splits; out of sample = the two blocks not in sample; blocks 2 and 3 are flat.
    assert result.loss_probability == pytest.approx(1 / 6)
