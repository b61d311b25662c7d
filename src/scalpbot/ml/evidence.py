"""The statistics behind a gate verdict: bootstrap p-value, deflated Sharpe ratio and PBO of a challenger.

:func:`gate_statistics` turns a challenger's returns on its scored window (and its rival's on the same
periods), the way it was selected (:class:`TrialSelection`) and the costs it was scored at into the
:class:`~scalpbot.core.gate.GateStatistics` that :func:`scalpbot.core.gate.judge` weighs.

* **Bootstrap** (:func:`edge_p_value`): the one-sided p-value of H0 "mean excess return <= 0" by the stationary
  bootstrap of Politis & Romano (1994), arch's ``StationaryBootstrap``, with the expected block length of
  Politis & White (2004, corrected by Patton, Politis & White 2009), arch's ``optimal_block_length``, so that
  autocorrelated returns are resampled in blocks. The null is imposed by centring the series; ``p = (1 +
  #{b: mean*_b >= mean}) / (B + 1)``. The excess returns are per UTC hour (:func:`period_returns`): the
  challenger's equity return minus its rival's (zero for not trading) on the same hours.
* **Deflated Sharpe ratio**: of the selected trial's returns on the window where it was selected (the
  validation window for tuning), with ``n_trials`` the trials actually run and the variance of their Sharpes
  (:mod:`scalpbot.core.overfitting`). A challenger that was not chosen among many (online learning, RL) is one
  trial: its DSR is its probabilistic Sharpe ratio against zero on the scored window.
* **Timing** (:mod:`scalpbot.ml.timing`): the random-entry p-value of the challenger's trades, passed in.
* **PBO**: CSCV over the trials' validation daily returns (:func:`tuning_overfitting`, with its probability of loss), when there are enough days.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd
from arch.bootstrap import StationaryBootstrap, optimal_block_length

from scalpbot.core.costs import TradingCosts
from scalpbot.core.gate import GateStatistics
from scalpbot.core.overfitting import (
    ReturnMoments,
    deflated_sharpe_ratio,
    probability_of_backtest_overfitting,
    return_moments,
)
from scalpbot.errors import DataError
from scalpbot.ml.timing import TimingTest

if TYPE_CHECKING:
    from scalpbot.ml.tuning import TuningResult

__all__ = [
    "BOOTSTRAP_PERIOD",
    "MIN_BOOTSTRAP_OBS",
    "EdgeTest",
    "TrialSelection",
    "distinct_trials",
    "edge_p_value",
    "effective_trials",
    "gate_statistics",
    "period_returns",
    "tuning_overfitting",
    "window_days",
]

BOOTSTRAP_PERIOD = "1h"
MIN_BOOTSTRAP_OBS = 8
"""Fewer excess returns than this give no p-value (the gate refuses)."""
_DAY = pd.Timedelta(days=1)


@dataclass(frozen=True, slots=True)
class EdgeTest:
    """Outcome of :func:`edge_p_value`: ``p_value`` (``None`` below ``MIN_BOOTSTRAP_OBS``), the mean excess per
    period, the expected block length in periods, the number of observations and of resamples."""

    p_value: float | None
    mean: float
    mean_block: float
    n_obs: int
    resamples: int


def edge_p_value(excess: np.ndarray, *, resamples: int = 2000, seed: int = 0) -> EdgeTest:
    """Return the stationary-bootstrap p-value of H0 "mean of ``excess`` <= 0" (one-sided, against an edge).

    ``excess``: per-period returns in excess of the rival, in time order. Deterministic for a given ``seed``.
    """
    x = np.asarray(excess, dtype=np.float64)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise DataError(f"excess returns must be a 1-d array of finite values; got shape {x.shape}")
    if resamples < 1:
        raise DataError(f"resamples must be >= 1; got {resamples}")
    mean = float(x.mean()) if x.size else 0.0
    if x.size < MIN_BOOTSTRAP_OBS:
        return EdgeTest(None, mean, math.nan, int(x.size), resamples)
    centred = x - mean
    if not np.ptp(centred) > 0.0:  # a constant series: no variation to resample
        p_value = 1.0 if mean <= 0.0 else 1.0 / (resamples + 1)
        return EdgeTest(p_value, mean, 1.0, int(x.size), resamples)
    block = float(optimal_block_length(centred)["stationary"].iloc[0])
    block = min(max(block, 1.0), float(x.size))
    # arch annotates the block size as int but takes the stationary bootstrap's mean block length as a float.
    bootstrap = StationaryBootstrap(cast(int, block), centred, seed=np.random.default_rng(seed))
    means = bootstrap.apply(np.mean, resamples)[:, 0]
    p_value = (1.0 + float(np.sum(means >= mean))) / (resamples + 1.0)
    return EdgeTest(p_value, mean, block, int(x.size), resamples)


def period_returns(equity: pd.Series, period: str = BOOTSTRAP_PERIOD) -> np.ndarray:
    """Return the simple return of each UTC ``period``'s last equity over the previous period's.

    ``equity``: account value at each bar close on a UTC index of bar open times. The first period's return is
    over ``equity.iloc[0]``, the value before any fill (a decision on a bar's close fills at the next open).
    Periods without bars are skipped.
    """
    if len(equity) == 0:
        return np.empty(0)
    index = pd.DatetimeIndex(equity.index)
    last = equity.groupby(index.floor(period)).last().to_numpy(dtype=np.float64)
    values = np.concatenate(([float(equity.iloc[0])], last))
    returns: np.ndarray = values[1:] / values[:-1] - 1.0
    return returns


def window_days(index: pd.DatetimeIndex) -> float:
    """Return the days a window of bars spans: from the first bar's open to the last bar's close."""
    if len(index) < 2:
        return 0.0
    step = pd.Series(index[1:] - index[:-1]).median()
    return float((index[-1] - index[0] + step) / _DAY)


@dataclass(frozen=True, slots=True)
class TrialSelection:
    """How the challenger was chosen: among ``n_trials`` trials whose per-period Sharpes have variance
    ``sharpe_variance``; ``moments`` are the selected trial's returns per ``period`` where it was selected;
    ``pbo`` the selection's probability of backtest overfitting and ``pbo_loss`` its probability of loss (the
    in-sample winner earning <= 0 out of sample) over the same splits (``None``: no validation folds);
    ``trials_run`` the trials actually run when ``n_trials`` counts the independent ones (``None``: the same)."""

    n_trials: int
    sharpe_variance: float
    moments: ReturnMoments | None
    period: str
    pbo: float | None
    pbo_loss: float | None = None
    trials_run: int | None = None

    @classmethod
    def single(cls, returns: np.ndarray, period: str) -> TrialSelection:
        """Return the selection of a challenger that was the only candidate (DSR = PSR against zero)."""
        r = np.asarray(returns, dtype=np.float64)
        moments = return_moments(r) if r.size >= 2 else None
        return cls(1, 0.0, moments, period, None)

    @classmethod
    def from_returns(
        cls, trial_returns: np.ndarray, chosen: int, period: str, *, trials_run: int | None = None
    ) -> TrialSelection:
        """Return the selection of row ``chosen`` of ``(n_trials, n_periods)`` trial returns.

        ``trials_run``: the trials actually run when more were tried than have returns here (e.g. policy trials
        times model trials); the Sharpe variance is over the rows whose Sharpe is defined (ddof 1).
        """
        r = np.asarray(trial_returns, dtype=np.float64)
        if r.ndim != 2 or not 0 <= chosen < r.shape[0]:
            raise DataError(f"trial returns must be (n_trials, n_periods) with row {chosen}; got {r.shape}")
        std = r.std(axis=1, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            sharpes = np.where(std > 0.0, r.mean(axis=1) / std, np.nan)
        finite = sharpes[np.isfinite(sharpes)]
        variance = float(np.var(finite, ddof=1)) if finite.size >= 2 else 0.0
        n = r.shape[0] if trials_run is None else max(trials_run, r.shape[0])
        return cls(n, variance, return_moments(r[chosen]), period, *tuning_overfitting(r))

    @classmethod
    def from_folds(
        cls, trial_returns: np.ndarray, chosen: int, period: str, *, multiplier: int = 1
    ) -> TrialSelection:
        """Return the selection of row ``chosen`` of ``(n_trials, n_periods)`` walk-forward fold returns.

        The trials of one study are far from independent (the sampler searches near its best trials) and, once
        an edge exists, their Sharpe ratios differ by skill as much as by luck. So the deflation counts the
        **effective** number of independent trials - the participation ratio ``(sum l)^2 / sum l^2`` of the
        eigenvalues ``l`` of the trials' return correlations, times ``multiplier`` (trials not in the matrix,
        e.g. model trials) - and takes the spread the null hypothesis gives a per-period Sharpe estimate, its
        sampling variance ``1 / (n_periods - 1)`` at a true Sharpe of zero. The PBO is CSCV over the distinct
        trials (:func:`distinct_trials`): among copies of one strategy the in-sample best is a coin toss out of
        sample, which says nothing about overfitting.
        """
        r = np.asarray(trial_returns, dtype=np.float64)
        if r.ndim != 2 or not 0 <= chosen < r.shape[0] or r.shape[1] < 3:
            raise DataError(
                f"trial returns must be (n_trials, n_periods >= 3) with row {chosen}; got {r.shape}"
            )
        n = max(1, round(effective_trials(r) * max(1, multiplier)))
        pbo, pbo_loss = tuning_overfitting(distinct_trials(r))
        return cls(
            n,
            1.0 / (r.shape[1] - 1),
            return_moments(r[chosen]),
            period,
            pbo,
            pbo_loss,
            trials_run=r.shape[0] * max(1, multiplier),
        )

    @classmethod
    def from_tuning(cls, tuned: TuningResult, model_trials: int = 0) -> TrialSelection:
        """Return the selection of a tuned policy: policy trials times model trials, validation daily returns."""
        return cls.from_returns(
            tuned.trial_returns,
            tuned.best_index,
            "validation day",
            trials_run=tuned.n_trials * max(1, model_trials),
        )

    def deflated_sharpe(self) -> float | None:
        """Return the deflated Sharpe ratio of the selected trial, ``None`` when its Sharpe is undefined."""
        m = self.moments
        if m is None or not math.isfinite(m.sharpe):
            return None
        return deflated_sharpe_ratio(
            m.sharpe, m.n, self.n_trials, self.sharpe_variance, skew=m.skew, kurtosis=m.kurtosis
        )


def effective_trials(trial_returns: np.ndarray) -> float:
    """Return the effective number of independent trials among ``(n_trials, n_periods)`` returns, >= 1.

    The participation ratio of the eigenvalues of the correlation matrix of the trials that vary (a trial that
    never trades adds nothing): ``n`` for uncorrelated trials, 1 for identical ones.
    """
    r = np.asarray(trial_returns, dtype=np.float64)
    varied = r[r.std(axis=1) > 0.0]
    if varied.shape[0] < 2:
        return 1.0
    eigen = np.clip(np.linalg.eigvalsh(np.corrcoef(varied)), 0.0, None)
    return max(1.0, float(eigen.sum() ** 2 / np.sum(eigen**2)))


DISTINCT_CORRELATION = 0.95
"""Trials whose returns correlate above this are copies of one strategy for the PBO."""


def distinct_trials(trial_returns: np.ndarray, threshold: float = DISTINCT_CORRELATION) -> np.ndarray:
    """Return the rows of ``(n_trials, n_periods)`` returns that are not copies of an earlier row.

    A row is a copy when its returns correlate above ``threshold`` with a row kept before it, or when it never
    varies like a kept row that never varies either (trials that never traded).
    """
    r = np.asarray(trial_returns, dtype=np.float64)
    std = r.std(axis=1)
    varied = std > 0.0
    centred = np.where(
        varied[:, None], (r - r.mean(axis=1, keepdims=True)) / np.where(varied, std, 1.0)[:, None], 0.0
    )
    kept: list[int] = []
    flat_kept = False
    for i in range(r.shape[0]):
        if not varied[i]:
            if not flat_kept:
                kept.append(i)
                flat_kept = True
            continue
        others = [j for j in kept if varied[j]]
        if others and float(np.max(centred[others] @ centred[i]) / r.shape[1]) > threshold:
            continue
        kept.append(i)
    distinct: np.ndarray = r[kept]
    return distinct


def tuning_overfitting(trial_returns: np.ndarray) -> tuple[float | None, float | None]:
    """Return the PBO and the probability of loss of picking the best of ``(n_trials, n_periods)`` returns,
    both ``None`` if too few.

    CSCV with an even number of blocks of at least 2 periods, at most 16, and at least 4.
    """
    n_trials, days = trial_returns.shape
    splits = min(16, days // 2) // 2 * 2
    if splits < 4 or n_trials < 2:
        return None, None
    cscv = probability_of_backtest_overfitting(trial_returns.T, n_splits=splits)
    if not math.isfinite(cscv.probability):
        return None, None
    return cscv.probability, cscv.loss_probability if math.isfinite(cscv.loss_probability) else None


def gate_statistics(
    *,
    window: str,
    rival: str,
    challenger_returns: np.ndarray,
    rival_returns: np.ndarray | None,
    total_return: float,
    rival_return: float,
    trades: int,
    days: float,
    selection: TrialSelection,
    costs: TradingCosts,
    period: str = "hour",
    resamples: int = 2000,
    seed: int = 0,
    timing: TimingTest | None = None,
) -> GateStatistics:
    """Return the statistics the gate weighs for a challenger scored at ``costs`` on ``window``.

    ``challenger_returns``/``rival_returns``: per-``period`` returns on the same periods (``None``: the rival is
    not trading); ``total_return``/``rival_return``: over the window, fractions of equity; ``timing``: the
    random-entry test of the challenger's trades (:mod:`scalpbot.ml.timing`), where computed.
    """
    challenger = np.asarray(challenger_returns, dtype=np.float64)
    excess = challenger if rival_returns is None else challenger - np.asarray(rival_returns, np.float64)
    edge = edge_p_value(excess, resamples=resamples, seed=seed)
    dsr = selection.deflated_sharpe()
    sharpe = None if selection.moments is None else selection.moments.sharpe
    return GateStatistics(
        window=window,
        rival=rival,
        total_return=float(total_return),
        rival_return=float(rival_return),
        trades=int(trades),
        days=float(days),
        p_value=edge.p_value,
        bootstrap_obs=edge.n_obs,
        bootstrap_period=period,
        mean_block=edge.mean_block if math.isfinite(edge.mean_block) else 0.0,
        resamples=resamples,
        deflated_sharpe=dsr,
        n_trials=selection.n_trials,
        trials_run=selection.trials_run,
        sharpe_variance=selection.sharpe_variance,
        selected_sharpe=sharpe if sharpe is not None and math.isfinite(sharpe) else None,
        selection_period=selection.period,
        pbo=selection.pbo,
        pbo_loss=selection.pbo_loss,
        fee=costs.fee,
        slippage=costs.slippage,
        timing_p=None if timing is None else timing.p_value,
        timing_trades=0 if timing is None else timing.trades,
        timing_observed=None if timing is None or timing.p_value is None else timing.observed,
        timing_random=None if timing is None or timing.p_value is None else timing.random_mean,
    )
