"""Known answers for the gate on real bars: noise is refused, a real edge above costs is promoted, an edge that
the costs eat is refused (cases in ``support.planted_edge``)."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from scalpbot.core.costs import TradingCosts

from support.planted_edge import CASES, Case, Outcome, load_real_bars, run_case

pytestmark = pytest.mark.slow

SEEDS = range(20)
NO_EDGE, ABOVE_COSTS, BELOW_COSTS = CASES


@pytest.fixture(scope="module")
def real_bars() -> pd.DataFrame:
    return load_real_bars()


def _runs(case: Case, bars: pd.DataFrame) -> list[Outcome]:
    return [run_case(case, seed, bars) for seed in SEEDS]


def test_block_shuffled_returns_are_promoted_at_most_once_in_20_seeds(real_bars: pd.DataFrame) -> None:
    outcomes = _runs(NO_EDGE, real_bars)
    assert sum(o.verdict.promote for o in outcomes) <= 1
    # The old rule (a positive test return) would have promoted many of these: the case is not trivially refused.
    assert sum(o.verdict.statistics.total_return > 0 for o in outcomes) >= 5
    assert all(o.verdict.statistics.fee == 0.0 for o in outcomes)


def test_a_planted_edge_well_above_costs_is_promoted_in_at_least_19_of_20_seeds(
    real_bars: pd.DataFrame,
) -> None:
    outcomes = _runs(ABOVE_COSTS, real_bars)
    assert sum(o.verdict.promote for o in outcomes) >= 19
    promoted = next(o for o in outcomes if o.verdict.promote)
    assert promoted.verdict.reason.startswith("promoted: ")
    assert all(c.passed for c in promoted.verdict.criteria)
    assert promoted.verdict.statistics.fee == ABOVE_COSTS.costs.fee > 0


def test_a_planted_edge_below_costs_is_refused_and_would_pass_without_costs(real_bars: pd.DataFrame) -> None:
    outcomes = _runs(BELOW_COSTS, real_bars)
    assert not any(o.verdict.promote for o in outcomes)
    assert all(o.verdict.statistics.total_return < 0 for o in outcomes)
    # The edge is real before costs: the same strategies, scored for free, earn money.
    free = replace(BELOW_COSTS, costs=TradingCosts(0.0, 0.0))
    gross = [run_case(free, seed, real_bars).verdict.statistics.total_return for seed in range(5)]
    assert all(r > 0 for r in gross)
