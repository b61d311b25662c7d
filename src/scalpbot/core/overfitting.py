"""Overfitting measures for a tuned strategy: probabilistic and deflated Sharpe ratios, and the PBO. Pure (numpy).

Units. Every Sharpe ratio here is **per period** and not annualized: ``mean / std`` of the returns the
statistics are computed on (daily returns in tuning). An annualized Sharpe ``SR_a`` over ``P`` periods a year is
``SR_a / sqrt(P)`` per period, and a variance of annualized Sharpes divides by ``P``. ``n_obs`` counts those
periods (days), never years. Skewness and kurtosis are the population moments of the same returns, kurtosis
**not** in excess (3 for a normal distribution).

Formulas (Bailey & López de Prado, "The Deflated Sharpe Ratio", 2014), with ``Z`` the standard normal CDF:

* PSR(SR*) = Z( (SR - SR*) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2) ): the probability that the true
  Sharpe exceeds the benchmark ``SR*`` given ``T`` observations with skewness ``g3`` and kurtosis ``g4``.
* E[max SR] = sqrt(V) ((1 - e) Z^-1(1 - 1/N) + e Z^-1(1 - 1/(N exp(1)))): the expected maximum of ``N``
  independent trial Sharpes whose true value is 0 and whose estimates have variance ``V`` (``e`` is the
  Euler-Mascheroni constant).
* DSR = PSR(E[max SR]): the chosen trial's PSR against what luck alone would have produced among ``N`` trials.

PBO (Bailey, Borwein, López de Prado & Zhu, "The Probability of Backtest Overfitting", 2017), by combinatorially
symmetric cross-validation: split the return matrix's rows into ``S`` blocks; for every half of the blocks taken
as in-sample, pick the trial with the best in-sample Sharpe and find its relative rank ``w`` among all trials
out of sample; PBO is the share of splits whose logit ``log(w / (1 - w))`` is <= 0 (the in-sample winner is at
or below the out-of-sample median). The same splits give the **probability of loss** (ibid.): the
share of splits in which the in-sample winner's out-of-sample return is <= 0. A high PBO among candidates that
all earn out of sample (a real edge that several trials share) is a coin toss between winners; a high PBO whose
winner also loses out of sample is overfitting that costs money.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from statistics import NormalDist

import numpy as np

__all__ = [
    "EULER_GAMMA",
    "BacktestOverfitting",
    "ReturnMoments",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "probabilistic_sharpe_ratio",
    "probability_of_backtest_overfitting",
    "return_moments",
]

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class ReturnMoments:
    """Moments of a return series: count, mean, std (ddof 1), per-period Sharpe, skewness, kurtosis (normal 3)."""

    n: int
    mean: float
    std: float
    sharpe: float
    skew: float
    kurtosis: float


def return_moments(returns: np.ndarray) -> ReturnMoments:
    """Return the moments PSR/DSR need; ``sharpe``, ``skew`` and ``kurtosis`` are NaN when ``std`` is 0."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or r.size < 2 or not np.all(np.isfinite(r)):
        raise ValueError(f"returns must be a 1-d array of at least 2 finite values; got shape {r.shape}")
    mean = float(np.mean(r))
    centered = r - mean
    m2 = float(np.mean(centered**2))
    std = float(np.std(r, ddof=1))
    if not m2 > 0.0:
        return ReturnMoments(int(r.size), mean, std, math.nan, math.nan, math.nan)
    skew = float(np.mean(centered**3)) / m2**1.5
    kurtosis = float(np.mean(centered**4)) / m2**2
    return ReturnMoments(int(r.size), mean, std, mean / std, skew, kurtosis)


def probabilistic_sharpe_ratio(
    sharpe: float, n_obs: int, *, skew: float = 0.0, kurtosis: float = 3.0, benchmark: float = 0.0
) -> float:
    """Return P(true Sharpe > ``benchmark``) in [0, 1], from a per-period ``sharpe`` over ``n_obs`` periods."""
    if n_obs < 2:
        raise ValueError(f"n_obs must be >= 2 periods; got {n_obs}")
    if not all(math.isfinite(x) for x in (sharpe, skew, kurtosis, benchmark)):
        raise ValueError("sharpe, skew, kurtosis and benchmark must be finite")
    # >= (1 - skew * sharpe / 2)^2 >= 0 for real moments, since kurtosis >= 1 + skew^2
    radicand = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    numerator = (sharpe - benchmark) * math.sqrt(n_obs - 1)
    if not radicand > 0.0:
        return 1.0 if numerator > 0.0 else 0.0 if numerator < 0.0 else 0.5
    return _NORMAL.cdf(numerator / math.sqrt(radicand))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Return the expected maximum per-period Sharpe of ``n_trials`` skill-less trials (0.0 for one trial).

    ``sharpe_variance``: the variance of the trials' per-period Sharpe estimates.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1; got {n_trials}")
    if not (math.isfinite(sharpe_variance) and sharpe_variance >= 0.0):
        raise ValueError(f"sharpe_variance must be finite and >= 0; got {sharpe_variance}")
    if n_trials == 1:
        return 0.0
    quantiles = (1.0 - EULER_GAMMA) * _NORMAL.inv_cdf(1.0 - 1.0 / n_trials) + EULER_GAMMA * _NORMAL.inv_cdf(
        1.0 - 1.0 / (n_trials * math.e)
    )
    return math.sqrt(sharpe_variance) * quantiles


def deflated_sharpe_ratio(
    sharpe: float,
    n_obs: int,
    n_trials: int,
    sharpe_variance: float,
    *,
    skew: float = 0.0,
    kurtosis: float = 3.0,
) -> float:
    """Return the DSR in [0, 1]: the PSR of the chosen per-period ``sharpe`` against ``expected_max_sharpe``."""
    benchmark = expected_max_sharpe(n_trials, sharpe_variance)
    return probabilistic_sharpe_ratio(sharpe, n_obs, skew=skew, kurtosis=kurtosis, benchmark=benchmark)


@dataclass(frozen=True)
class BacktestOverfitting:
    """PBO in [0, 1], the logit of the in-sample winner's out-of-sample relative rank for each split, and
    ``loss_probability``: the share of splits whose in-sample winner returned <= 0 out of sample."""

    probability: float
    logits: np.ndarray
    loss_probability: float = math.nan


def _sharpes_from_sums(total: np.ndarray, squares: np.ndarray, count: float) -> np.ndarray:
    """Return per-period Sharpe (std ddof 1) from sums of returns and of squares over ``count`` periods.

    Where the variance is 0 up to rounding (a constant series), the Sharpe is -inf: ranked last.
    """
    mean = total / count
    variance = (squares - total * mean) / (count - 1.0)
    valid = variance > 1e-12 * mean**2
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe: np.ndarray = np.where(valid, mean / np.sqrt(np.where(valid, variance, 1.0)), -np.inf)
    return sharpe


def probability_of_backtest_overfitting(
    returns: np.ndarray, n_splits: int = 16, *, chunk: int = 512
) -> BacktestOverfitting:
    """Return the PBO of choosing the best-Sharpe trial, by CSCV over ``n_splits`` blocks of rows.

    ``returns``: ``(n_obs, n_trials)`` per-period returns, one column per trial, rows in time order (the
    earliest ``n_obs % n_splits`` rows are dropped so blocks are equal). Splits: C(n_splits, n_splits / 2),
    12,870 for 16. Out-of-sample ties share the average rank.
    """
    m = np.asarray(returns, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError(f"returns must be (n_obs, n_trials) with at least 2 trials; got shape {m.shape}")
    if n_splits < 2 or n_splits % 2:
        raise ValueError(f"n_splits must be an even number >= 2; got {n_splits}")
    block = m.shape[0] // n_splits
    if block < 2:
        raise ValueError(f"{m.shape[0]} rows cannot make {n_splits} blocks of >= 2; use fewer splits")
    if not np.all(np.isfinite(m)):
        raise ValueError("returns must be finite")
    blocks = m[m.shape[0] - block * n_splits :].reshape(n_splits, block, m.shape[1])
    sums, squares = blocks.sum(axis=1), (blocks**2).sum(axis=1)  # (n_splits, n_trials)
    masks = np.array(
        [np.isin(np.arange(n_splits), c) for c in combinations(range(n_splits), n_splits // 2)],
        dtype=np.float64,
    )
    n_trials = m.shape[1]
    half = float(block * n_splits // 2)
    logits = np.empty(masks.shape[0])
    losses = np.empty(masks.shape[0], dtype=bool)
    for start in range(0, masks.shape[0], chunk):
        mk = masks[start : start + chunk]
        in_sums, in_squares = mk @ sums, mk @ squares
        out_sums = sums.sum(0) - in_sums
        in_sharpe = _sharpes_from_sums(in_sums, in_squares, half)
        out_sharpe = _sharpes_from_sums(out_sums, squares.sum(0) - in_squares, half)
        winner = np.argmax(in_sharpe, axis=1)
        losses[start : start + mk.shape[0]] = out_sums[np.arange(mk.shape[0]), winner] <= 0.0
        chosen = out_sharpe[np.arange(mk.shape[0]), winner][:, None]
        rank = np.sum(out_sharpe < chosen, axis=1) + (np.sum(out_sharpe == chosen, axis=1) + 1) / 2.0
        relative = rank / (n_trials + 1.0)
        logits[start : start + mk.shape[0]] = np.log(relative / (1.0 - relative))
    return BacktestOverfitting(
        probability=float(np.mean(logits <= 0.0)), logits=logits, loss_probability=float(np.mean(losses))
    )
