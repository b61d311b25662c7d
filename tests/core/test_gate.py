"""The gate's verdicts: every criterion in order, a refusal naming the first failing one with its numbers."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from scalpbot.core.gate import GateRules, GateStatistics, judge
from scalpbot.errors import ConfigError

NOISE = GateStatistics(
    window="test window",
    rival="not trading",
    total_return=0.0059,
    rival_return=0.0,
    trades=34,
    days=18.0,
    p_value=0.31,
    bootstrap_obs=432,
    bootstrap_period="hour",
    mean_block=2.4,
    resamples=2000,
    deflated_sharpe=0.02,
    n_trials=100,
    sharpe_variance=0.04,
    selected_sharpe=0.21,
    selection_period="validation day",
    pbo=0.4,
    fee=0.0004,
    slippage=0.0,
)
EVIDENCE = replace(
    NOISE,
    total_return=0.0512,
    trades=412,
    p_value=0.001,
    deflated_sharpe=0.99,
    pbo=0.05,
    timing_p=0.002,
    timing_trades=412,
    timing_observed=0.61,
    timing_random=-0.74,
)


def test_a_lucky_positive_return_is_refused_on_its_deflated_sharpe_with_the_numbers_behind_it() -> None:
    verdict = judge(NOISE, GateRules())
    assert not verdict.promote
    assert verdict.reason == (
        "refused: deflated Sharpe 0.02 < 0.95 over 100 trials (test +0.59 %, 34 trades, bootstrap p = 0.31)"
    )
    assert [c.name for c in verdict.criteria] == [
        "trades",
        "days",
        "deflated_sharpe",
        "bootstrap",
        "timing",
        "pbo",
    ]
    assert [c.passed for c in verdict.criteria] == [True, True, False, False, None, False]


def test_a_deflation_over_fewer_independent_trials_than_ran_names_both_counts() -> None:
    """The tuner's trials are far from independent: the deflated Sharpe counts the independent ones, and the
    line says how many ran, so 600 trials deflated as 2 does not read as a two-trial search."""
    searched = replace(NOISE, n_trials=2, trials_run=600)
    refused = judge(searched, GateRules())
    assert refused.reason.startswith("refused: deflated Sharpe 0.02 < 0.95 over 600 trials (2 independent) (")
    assert (
        "over 600 trials (2 independent), bootstrap"
        in judge(replace(EVIDENCE, n_trials=2, trials_run=600), GateRules()).reason
    )
    assert (
        judge(replace(searched, trials_run=2), GateRules()).reason
        == judge(replace(NOISE, n_trials=2), GateRules()).reason
    )
    assert refused.summary()["trials_run"] == 600 and refused.summary()["n_trials"] == 2
    assert "trials_run" not in judge(NOISE, GateRules()).summary()  # 100 trials ran, 100 counted


def test_a_promotion_lists_every_criterion() -> None:
    verdict = judge(EVIDENCE, GateRules())
    assert verdict.promote
    assert verdict.reason == (
        "promoted: 412 trades >= 20 on the test window, 18.0 days >= 7 on the test window, "
        "deflated Sharpe 0.99 > 0.95 over 100 trials, bootstrap p = 1.0e-03 < 0.05 against not trading, "
        "random-entry p = 2.0e-03 < 0.05 (its trades earned +61.00 % of notional, at random bars -74.00 %), "
        "PBO 0.05 < 0.2 (test +5.12 % vs not trading +0.00 %)"
    )
    assert all(c.passed for c in verdict.criteria)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {"trades": 3},
            "refused: 3 trades < 20 on the test window (test +5.12 %, bootstrap p = 1.0e-03, "
            "deflated Sharpe 0.99 over 100 trials)",
        ),
        ({"days": 0.9}, "refused: 0.9 days < 7 on the test window ("),
        (
            {"p_value": 0.2},
            "refused: bootstrap p = 0.20 >= 0.05 against not trading (test +5.12 %, 412 trades, ",
        ),
        (
            {"p_value": None, "bootstrap_obs": 5},
            "refused: bootstrap p = n/a (5 hour returns) against not trading",
        ),
        ({"deflated_sharpe": None}, "refused: deflated Sharpe n/a < 0.95 over 100 trials"),
        ({"pbo": 0.5}, "refused: PBO 0.50 >= 0.2 (test +5.12 %, 412 trades, bootstrap p = 1.0e-03, "),
        (
            {"timing_p": 0.4, "timing_observed": 0.2, "timing_random": 0.19},
            "refused: random-entry p = 0.40 >= 0.05 (its trades earned +20.00 % of notional, at random bars "
            "+19.00 %) (test +5.12 %, 412 trades, bootstrap p = 1.0e-03, ",
        ),
    ],
)
def test_each_criterion_alone_refuses_and_is_named_first(change: dict[str, object], reason: str) -> None:
    verdict = judge(replace(EVIDENCE, **change), GateRules())  # type: ignore[arg-type]
    assert not verdict.promote
    assert verdict.reason.startswith(reason)


def test_without_validation_folds_the_pbo_does_not_apply_and_the_rest_decides() -> None:
    verdict = judge(replace(EVIDENCE, pbo=None, n_trials=1), GateRules())
    assert verdict.promote
    assert verdict.criteria[-1].passed is None
    assert "PBO n/a (no validation folds)" in verdict.reason and "over 1 trial," in verdict.reason


def test_thresholds_come_from_the_rules() -> None:
    lenient = GateRules(min_trades=5, min_days=1.0, max_p_value=0.5, min_deflated_sharpe=0.01, max_pbo=0.5)
    assert judge(NOISE, lenient).promote
    assert not judge(NOISE, replace(lenient, max_pbo=0.3)).promote


def test_the_verdict_is_plain_json_with_every_statistic() -> None:
    data = json.loads(json.dumps(judge(NOISE, GateRules()).to_dict()))
    assert data["promote"] is False
    assert data["statistics"]["deflated_sharpe"] == 0.02 and data["statistics"]["fee"] == 0.0004
    assert data["criteria"][2] == {
        "name": "deflated_sharpe",
        "passed": False,
        "value": 0.02,
        "threshold": 0.95,
        "text": "deflated Sharpe 0.02 < 0.95 over 100 trials",
    }


@pytest.mark.parametrize(
    "bad",
    [
        {"min_trades": 0},
        {"min_days": 0.0},
        {"max_p_value": 0.0},
        {"min_deflated_sharpe": 1.5},
        {"min_deflated_sharpe": -0.1},
        {"max_pbo": -1},
        {"max_timing_p": 0.0},
        {"max_pbo_loss": 1.5},
        {"max_pbo_loss": -0.1},
    ],
)
def test_rules_out_of_range_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        GateRules(**bad)  # type: ignore[arg-type]


def test_a_zero_deflated_sharpe_threshold_and_a_pbo_threshold_of_one_switch_those_criteria_off() -> None:
    rules = GateRules(min_deflated_sharpe=0.0, max_pbo=1.0)
    verdict = judge(replace(NOISE, p_value=0.01, deflated_sharpe=0.0, pbo=1.0), rules)
    assert verdict.promote
    assert [c.passed for c in verdict.criteria] == [True, True, None, True, None, None]
    assert "deflated Sharpe 0.00 over 100 trials (not required)" in verdict.reason
    assert "PBO 1.00 (not required)" in verdict.reason


def test_a_timing_threshold_of_one_switches_the_random_entry_test_off() -> None:
    verdict = judge(replace(EVIDENCE, timing_p=0.6), GateRules(max_timing_p=1.0))
    assert verdict.promote
    assert "random-entry p = 0.60 (not required)" in verdict.reason


def test_a_challenger_whose_timing_was_not_tested_is_judged_on_the_rest() -> None:
    verdict = judge(replace(EVIDENCE, timing_p=None, timing_observed=None, timing_random=None), GateRules())
    assert verdict.promote
    assert "random-entry p n/a (not computed)" in verdict.reason


def test_a_high_pbo_passes_when_its_winner_does_not_lose_out_of_sample_and_says_so() -> None:
    """Several trials sharing one real edge: a coin-toss PBO, but the in-sample winner earns out of sample."""
    shared = replace(EVIDENCE, pbo=0.45, pbo_loss=0.02)
    verdict = judge(shared, GateRules())
    assert verdict.promote
    assert "PBO 0.45 >= 0.2 but its winner's probability of loss 0.02 < 0.1" in verdict.reason
    assert verdict.criteria[-1].passed is True


def test_a_high_pbo_whose_winner_loses_is_refused_in_one_line_with_both_numbers() -> None:
    verdict = judge(replace(EVIDENCE, pbo=0.45, pbo_loss=0.3), GateRules())
    assert not verdict.promote
    assert verdict.reason.startswith(
        "refused: PBO 0.45 >= 0.2 and its winner's probability of loss 0.30 >= 0.1 (test +5.12 %"
    )
    assert "\n" not in verdict.reason
    unknown = judge(replace(EVIDENCE, pbo=0.45, pbo_loss=None), GateRules())
    assert not unknown.promote and unknown.reason.startswith("refused: PBO 0.45 >= 0.2 (test")


def test_a_zero_loss_threshold_judges_the_pbo_alone() -> None:
    verdict = judge(replace(EVIDENCE, pbo=0.45, pbo_loss=0.0), GateRules(max_pbo_loss=0.0))
    assert not verdict.promote
    assert verdict.reason.startswith("refused: PBO 0.45 >= 0.2 (test")
