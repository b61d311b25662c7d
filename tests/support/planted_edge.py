"""Known-answer cases for the promotion gate: strategies on real bars with a planted, known edge (or none).

Bars: real Binance BTC/USDT 1m bars of 2024-05-01 .. 2024-06-29 (``tests/fixtures``), split into a validation
window (the first 30 days) and a test window (the rest). A strategy enters every ``HOLD`` bars (decided on a
bar's close, filled at the next open) and leaves ``HOLD`` bars later at the open, through the project's one
fill kernel at the case's costs. Its side is the sign of the bars' true forward return over the trade with
probability ``q`` (the planted skill), else the opposite: its gross edge per trade is about
``(2q - 1) * E|forward return|``.

"Tuning" tries ``TRIALS`` strategies whose skills ``q`` are spread evenly over the case's range, with
independent seeded noise, picks the best daily Sharpe on validation (as Optuna's objective does), and the
gate weighs the pick on the test window with the statistics the train job uses (its trades' timing too).

* ``no edge``: the sides are planted against the original bars but traded on bars whose one-hour blocks
  were shuffled (``shuffle_blocks``): the real returns are kept, every link between side and future is
  broken. At zero cost, so the test window's return is as often positive as negative (the old gate would
  promote about half of them).
* ``edge above costs``: real skill, far more than the round trip costs.
* ``edge below costs``: real skill, less than the round trip costs: a loser once the venue is paid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scalpbot.adapters.marketdata.files import read_bar_file
from scalpbot.core.backtest.enums import NO_FUNDING, NO_ORDER_RULES
from scalpbot.core.backtest.frame import backtest
from scalpbot.core.backtest.nb import simulate_nb
from scalpbot.core.bars import validate_bars
from scalpbot.core.costs import TradingCosts
from scalpbot.core.evaluation import daily_returns_nb, day_end_positions
from scalpbot.core.gate import GateRules, GateVerdict, judge
from scalpbot.ml.evidence import TrialSelection, gate_statistics, period_returns, window_days
from scalpbot.ml.timing import timing_test

REAL_BARS = Path(__file__).resolve().parents[1] / "fixtures" / "BTC_USDT-1m-2024-05-01_2024-06-29.csv.gz"
HOLD = 30
TRIALS = 20
VALIDATION_DAYS = 30
SHUFFLE_BLOCK = 60
COSTS = TradingCosts(fee=0.0004, slippage=0.0)
"""The default ``backtest.fee``: a round trip costs 0.08 % of notional."""


@dataclass(frozen=True)
class Case:
    """A known answer: skills of the trials, whether returns are block-shuffled, and the costs paid."""

    name: str
    skill: tuple[float, float]
    shuffled: bool
    costs: TradingCosts


CASES = (
    Case("no edge (block-shuffled returns, no costs)", (0.70, 0.85), True, TradingCosts(0.0, 0.0)),
    Case("edge above costs", (0.70, 0.85), False, COSTS),
    Case("edge below costs", (0.51, 0.59), False, COSTS),
)


@dataclass(frozen=True)
class Outcome:
    """One seed of one case: the verdict and the chosen trial's skill."""

    verdict: GateVerdict
    skill: float


def load_real_bars() -> pd.DataFrame:
    """Return the fixture's validated real bars."""
    return validate_bars(read_bar_file(REAL_BARS), "1m", source=REAL_BARS.name)


def shuffle_blocks(bars: pd.DataFrame, rng: np.random.Generator, block: int = SHUFFLE_BLOCK) -> pd.DataFrame:
    """Return bars on the same index whose ``block``-bar pieces are reordered; prices are chained by ratio so
    each piece keeps its own bar-to-bar returns and ranges."""
    n = len(bars) // block * block
    prices = bars[["open", "high", "low", "close"]].to_numpy()[:n].reshape(-1, block, 4)
    order = rng.permutation(prices.shape[0])
    pieces = prices[order]
    # Rebase each piece so that it opens where the previous one closed.
    scale = np.ones(len(order))
    for i in range(1, len(order)):
        scale[i] = pieces[i - 1, -1, 3] * scale[i - 1] / pieces[i, 0, 0]
    rebased = (pieces * scale[:, None, None]).reshape(n, 4)
    return pd.DataFrame(rebased, index=bars.index[:n], columns=["open", "high", "low", "close"])


def planted_sides(bars: pd.DataFrame, skill: float, rng: np.random.Generator) -> np.ndarray:
    """Return sides decided every ``HOLD`` bars: the sign of the next trade's true return with probability
    ``skill``, else the opposite (0 elsewhere, and where the trade would not fit in the window)."""
    open_ = bars["open"].to_numpy()
    side = np.zeros(len(bars), dtype=np.int8)
    decisions = np.arange(0, len(bars) - HOLD - 2, HOLD)
    forward = open_[decisions + 1 + HOLD] / open_[decisions + 1] - 1.0
    right = rng.random(decisions.size) < skill
    truth = np.where(forward >= 0.0, 1, -1)
    side[decisions] = np.where(right, truth, -truth)
    return side


def _daily_returns(bars: pd.DataFrame, side: np.ndarray, costs: TradingCosts) -> np.ndarray:
    prices = [np.ascontiguousarray(bars[c].to_numpy(np.float64)) for c in ("open", "high", "low", "close")]
    n = len(bars)
    _, equity, _, _ = simulate_nb(
        *prices, side, np.ones(n), np.full(n, np.inf), np.full(n, np.inf), np.full(n, HOLD, np.int64),
        costs.fee, costs.slippage, 1.0, False, NO_ORDER_RULES, NO_FUNDING, np.zeros(1),
    )  # fmt: skip
    ends = day_end_positions(pd.DatetimeIndex(bars.index))
    out = np.empty(ends.shape[0])
    daily_returns_nb(equity, ends, out)
    return out


def run_case(case: Case, seed: int, bars: pd.DataFrame, rules: GateRules | None = None) -> Outcome:
    """Tune ``TRIALS`` planted strategies on validation, weigh the best on the test window with the gate."""
    rng = np.random.default_rng(seed)
    traded = shuffle_blocks(bars, rng) if case.shuffled else bars[["open", "high", "low", "close"]]
    split = traded.index[0] + pd.Timedelta(days=VALIDATION_DAYS)
    skills = np.linspace(case.skill[0], case.skill[1], TRIALS)
    sides = [planted_sides(bars.loc[traded.index], q, rng) for q in skills]
    validation = traded.index < split
    returns = np.stack([_daily_returns(traded.loc[validation], s[validation], case.costs) for s in sides])
    sharpes = returns.mean(axis=1) / returns.std(axis=1, ddof=1)
    best = int(np.argmax(sharpes))
    selection = TrialSelection.from_returns(returns, best, "validation day")
    test = traded.loc[~validation]
    signals = pd.DataFrame(
        {"side": sides[best][~validation], "size": 1.0, "sl": np.inf, "tp": np.inf, "max_hold": HOLD},
        index=test.index,
    )
    result = backtest(test, signals, fee=case.costs.fee, slippage=case.costs.slippage, initial_equity=1.0)
    statistics = gate_statistics(
        window="test window",
        rival="not trading",
        challenger_returns=period_returns(result.equity),
        rival_returns=None,
        total_return=result.metrics["total_return"],
        rival_return=0.0,
        trades=result.metrics["trades"],
        days=window_days(pd.DatetimeIndex(test.index)),
        selection=selection,
        costs=case.costs,
        seed=seed,
        timing=timing_test(test, result.trades, case.costs, seed=seed),
    )
    return Outcome(judge(statistics, rules or GateRules()), float(skills[best]))
