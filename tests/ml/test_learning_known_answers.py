"""Known answers for the learning on real bars: a planted edge well above costs is found and captured, on the
long side and, where the venue can short, on the short side; block-shuffled returns, and a short edge on spot,
are not promoted (cases in ``support.learning_cases``; the full table: bench/learning.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from support.learning_cases import FIXTURE, Case, Effect, load_bars, run_case, short_cases

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]
SMALL = {"days": 40, "trials": 40, "max_epochs": 10, "label_search": []}


@pytest.fixture(scope="module")
def month() -> pd.DataFrame:
    bars = load_bars(FIXTURE)
    return bars.loc[: bars.index[0] + pd.Timedelta(days=40) - pd.Timedelta(minutes=1)]


def test_a_planted_shock_reversion_above_costs_is_found_and_most_of_its_edge_captured(
    month: pd.DataFrame, tmp_path: Path
) -> None:
    case = Case("shock reversion, strong", Effect("shock reversion", 0.010), above_costs=True)
    outcome = run_case(case, 0, month, tmp_path / "store", SMALL)
    assert outcome.oracle_net is not None and outcome.oracle_net > 0.1 and outcome.oracle_trades >= 20
    assert outcome.capture is not None and outcome.capture >= 0.6, outcome
    assert outcome.hindsight_capture is not None and outcome.hindsight_capture >= outcome.capture, outcome
    assert outcome.test_return > 0.1 and "bootstrap p = 5.0e-04" in outcome.reason
    assert outcome.promoted, outcome.reason
    assert outcome.reason.startswith("promoted: ") and "\n" not in outcome.reason
    assert "; validation folds " in outcome.reason and "beside not-trading" in outcome.reason


def test_block_shuffled_real_returns_are_not_promoted(month: pd.DataFrame, tmp_path: Path) -> None:
    outcome = run_case(Case("null: shuffled", null="shuffled"), 0, month, tmp_path / "store", SMALL)
    assert not outcome.promoted and outcome.hindsight_capture is None  # no oracle, no capture to sweep
    assert outcome.reason.startswith("refused: ") and "\n" not in outcome.reason


def test_momentum_after_planted_volume_bursts_is_found_though_its_drifts_lift_the_whole_window(
    month: pd.DataFrame, tmp_path: Path
) -> None:
    """Six planted bursts a day each lift the price 1.3 %, so merely holding the window earns too: the tuning
    scores what a policy earns beyond the same exposure at random bars, the gate's random-entry test asks the
    same of the release, and the release that times the bursts passes both."""
    case = Case("volume momentum, strong", Effect("volume momentum", 0.010), above_costs=True)
    outcome = run_case(case, 0, month, tmp_path / "store", SMALL)
    assert outcome.oracle_net is not None and outcome.oracle_net > 0.1 and outcome.oracle_trades >= 20
    assert outcome.promoted, outcome.reason
    assert "random-entry p = 5.0e-04" in outcome.reason
    assert outcome.capture is not None and outcome.capture >= 0.6, outcome


def test_a_drift_at_fixed_times_of_day_is_found_by_the_hour_and_minute_it_starts(
    month: pd.DataFrame, tmp_path: Path
) -> None:
    """Four drifts a day start at 01:30, 07:30, 13:30 and 19:30 UTC: the release trades them, and the clock's
    one-hot columns (shuffled as a whole group each) lead its feature importance."""
    case = Case("time of day, strong", Effect("time of day", 0.010, per_day=4.0), above_costs=True)
    outcome = run_case(case, 0, month, tmp_path / "store", SMALL)
    assert outcome.oracle_net is not None and outcome.oracle_net > 0.1 and outcome.oracle_trades >= 20
    assert outcome.promoted, outcome.reason
    assert outcome.capture is not None and outcome.capture >= 0.6, outcome
    assert outcome.top_features[0] in {"hour", "minute"}, outcome.top_features


def test_momentum_down_after_selling_bursts_is_found_and_shorted_on_a_perpetual_swap(
    month: pd.DataFrame, tmp_path: Path
) -> None:
    """The mirror image of the volume bursts: each burst closes lower and the price drifts 1 % down. On Binance
    USD-M the labels and the policy may short, and the release sells the bursts."""
    swap = short_cases()[0]
    assert swap.market == "swap" and swap.effect is not None and swap.effect.side == -1
    outcome = run_case(swap, 0, month, tmp_path / "store", SMALL)
    assert outcome.oracle_net is not None and outcome.oracle_net > 0.1 and outcome.oracle_trades >= 20
    assert outcome.promoted, outcome.reason
    assert outcome.capture is not None and outcome.capture >= 0.6, outcome
    assert outcome.events_taken is not None and outcome.events_taken >= outcome.oracle_trades // 2, outcome


def test_a_short_edge_on_spot_is_refused_for_no_rule_there_can_earn_it(
    month: pd.DataFrame, tmp_path: Path
) -> None:
    """The same selling bursts on Binance spot, which cannot short: there is no oracle (a sell only closes a
    long), and the release that tries the long side is refused in one line."""
    spot = short_cases()[1]
    assert spot.market == "spot" and not spot.above_costs
    outcome = run_case(spot, 0, month, tmp_path / "store", SMALL)
    assert outcome.oracle_net is None and outcome.capture is None and outcome.hindsight_capture is None
    assert not outcome.promoted, outcome.reason
    assert outcome.reason.startswith("refused: ") and "\n" not in outcome.reason
