"""Tune ``StrategyParams`` within ``ParamBounds`` on validation windows with Optuna (Bayesian optimization).

**Walk-forward folds.** Given several consecutive validation windows (the folds of
:func:`scalpbot.core.folds.walk_forward`, each scored with the predictions of the model that did not see it), a
trial is scored on all of them: its period returns are pooled in time order and the objective is
``(mean - dispersion * std of the folds' mean returns) / pooled std * sqrt(periods_per_year)``, the Sharpe
ratio with a penalty for results that hold in some folds only. With one window it is the plain Sharpe ratio.
The trade count of ``min_trades`` is the folds' total.

**Objectives.** ``"sharpe"`` as above; ``"return"``: the mean (less the folds' spread) without dividing by the
std; ``"timing"`` (the train job's default): ``"return"`` of what the trial earns beyond the same exposure at
random bars, ``r - E * mu`` per period, with ``E`` the period's bar-weighted exposure (the sum over its bars of
the signed notional held as a share of equity, :func:`scalpbot.core.evaluation.exposure_nb`) and ``mu`` the
fold's mean return per bar - the expected earnings of those bars in position placed at random bars of the fold,
which is what the gate's random-entry test compares the release's trades with. A policy that only holds a
trending market earns ``E * mu`` and scores nothing; one that times its entries keeps what the timing earns,
however much of the fold's move that timing makes. ``"alpha"``: ``"return"`` of the trial's period returns
hedged of the market's, ``r - beta * m`` with ``m`` the windows' own close-to-close returns over the same
periods and ``beta`` the trial's regression slope on them (pooled over the folds); it also removes an edge
that moves the market itself (a drift after an event is most of the period's market return, so the timing
that earns it regresses on the market and is hedged away).

**The confidence floor** (``floor="return"``, the train job's default). The objective chooses the policy's
shape - which edge enters, its stops, its time stop - and, with it, a floor on the win probability
(``min_confidence``). Under ``"timing"`` a trade must beat what the same bars in position earn at random, so
where a planted or real edge makes most of the folds' own move the floor rises until only the surest signals
pass, and trades that earned their costs are left. After the study the floor is chosen again: the best
trial's other parameters are kept and ``min_confidence`` is swept over its bounds in steps of
:data:`FLOOR_STEP` (and the tuned value), each scored by the ``"return"`` objective on the same folds (the mean
period return less the folds' spread, so that a floor that pays in one fold only still loses), and the best
floor is kept (on a tie the tuned one, then the highest) among those that keep at least :data:`FLOOR_KEEPS` of
the study's objective: a floor whose extra trades earn mostly what the same time in the market earns at
random bars - a release that holds a trending market long - is not taken, for the gate's random-entry test
would refuse it. The policy with that floor is one more row of the trials' returns, so the deflated Sharpe
ratio and the PBO judge the policy that ships; ``TuningResult.floor`` records the sweep. ``floor="tuned"``
keeps the tuned floor.

Objective: the **annualized Sharpe ratio of daily returns** of the equity curve, net of fees and slippage
(``mean / std(ddof=1) * sqrt(periods_per_year)`` of each UTC day's last equity over the previous day's, exactly
:func:`scalpbot.core.metrics.sharpe_ratio` of :func:`scalpbot.core.metrics.daily_returns`), maximized. A trial
with fewer than ``min_trades`` closed trades scores ``penalty - (min_trades - trades) / min_trades`` (in
``[penalty - 1, penalty)``: worse than any trading trial whose Sharpe is above ``penalty``, and still ordered so
the sampler moves toward more trades); an undefined Sharpe scores ``penalty - 1``. Penalties are values, not
exceptions.

Each trial runs the numba kernels on precomputed predictions through a :class:`PolicyEvaluator` (no pandas, no
copies). Studies resume from an Optuna RDB ``storage`` (e.g. ``sqlite:///study.db``): trial numbers continue, and
resuming on another window, other bounds or other settings raises ``ConfigError``. On a PostgreSQL ``storage``
several workers (processes, machines) tune one study together: ``n_trials`` is then the study's total budget of
complete trials, and a killed worker's running trial is retried (see :mod:`scalpbot.ml.shared_study`;
:func:`join_policy_study` runs a worker's trials without collecting the result). A sqlite study can travel in
the project's ``Store`` with :func:`save_study_db` / :func:`load_study_db`. The result keeps every trial's
daily returns for the overfitting measures of :mod:`scalpbot.core.overfitting`.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from scalpbot.core.backtest.enums import NO_FUNDING, NO_ORDER_RULES, OrderRules
from scalpbot.core.evaluation import (
    Evaluation,
    PolicyEvaluator,
    PolicyWindow,
    daily_returns_nb,
    mean_bar_return,
)
from scalpbot.core.metrics import PERIODS_PER_YEAR_24_7
from scalpbot.core.overfitting import (
    BacktestOverfitting,
    ReturnMoments,
    deflated_sharpe_ratio,
    probability_of_backtest_overfitting,
    return_moments,
)
from scalpbot.core.policy_params import ParamBounds, StrategyParams
from scalpbot.errors import ConfigError, ObjectNotFound
from scalpbot.ml.shared_study import join_study, shared_url
from scalpbot.ports import Store

__all__ = ["SAMPLERS", "TuningResult", "join_policy_study", "load_study_db", "save_study_db", "tune_policy"]

SAMPLERS = ("tpe", "gp", "random")
_LOG_SCALE = frozenset({"sl_mult", "tp_mult", "risk_per_trade", "max_position"})
_FINGERPRINT_ATTR = "scalpbot_fingerprint"
_WORKER_SEED_STRIDE = 1_000_003
FLOOR_STEP = 0.01
"""The step of the confidence floor's sweep after a study (``floor="return"``), a probability."""
FLOOR_KEEPS = 0.5
"""The share of the study's objective a confidence floor chosen again must keep (of the tuned floor's)."""
FLOOR_REFINED = -1
"""``TuningResult.trial_numbers`` of the row that is the best trial with its floor chosen again."""
Floor = Literal["tuned", "return"]
"""How the confidence floor is set after a study (see the module docstring)."""


@dataclass(frozen=True)
class TuningResult:
    """Outcome of a study: the best params and every complete trial's value, trade count and daily returns.

    Per-trial arrays are in trial-number order and cover the whole study, earlier sessions included; row
    ``best_index`` is trial number ``best_trial``. ``trial_params``: each trial's params; ``values``: objective
    per trial (annualized Sharpe, or a penalty below ``penalty``); ``trial_returns``: ``(n_trials, n_days)``
    daily returns; ``trial_seconds``: wall time of each trial from its creation (sampling included) to its
    completion. ``new_trials``, ``elapsed_s`` (wall seconds) and ``objective_s`` (seconds in the kernels) are
    this session's. ``fold_slices``: each fold's columns of ``trial_returns``; ``best_folds``: the best trial's
    result per fold (total return, trades, annualized Sharpe or ``None``).

    ``floor``: the confidence floor chosen again after the study (module docstring): the tuned and the chosen
    ``min_confidence``, the swept range and step, and both floors' ``"return"`` objective; empty when it was
    not (``floor="tuned"``, or no valid trial). When it moved the floor, ``best_params`` and ``best_folds`` are
    the policy with the new floor, and its returns are the last row of the per-trial arrays (trial number
    :data:`FLOOR_REFINED`, its value the study's objective), which ``best_index`` names; ``best_value`` and
    ``best_trial`` stay the study's best trial's.
    """

    study_name: str
    best_params: StrategyParams
    best_value: float
    best_trial: int
    best_index: int
    trial_numbers: np.ndarray
    trial_params: tuple[StrategyParams, ...]
    values: np.ndarray
    trial_trades: np.ndarray
    trial_returns: np.ndarray
    trial_seconds: np.ndarray
    min_trades: int
    penalty: float
    periods_per_year: float
    new_trials: int
    elapsed_s: float
    objective_s: float
    fold_slices: tuple[tuple[int, int], ...] = ()
    best_folds: tuple[dict[str, Any], ...] = ()
    floor: dict[str, Any] = field(default_factory=dict)

    @property
    def n_trials(self) -> int:
        """Return the number of complete trials in the study (the row of a floor chosen again aside)."""
        return int(np.count_nonzero(self.trial_numbers != FLOOR_REFINED))

    @property
    def n_rows(self) -> int:
        """Return the number of rows of the per-trial arrays: the trials, and the policy with a floor chosen
        again after them when it moved."""
        return int(self.values.shape[0])

    @property
    def best_is_valid(self) -> bool:
        """Return whether the best trial met ``min_trades`` and had a defined Sharpe (it was not penalized)."""
        return self.best_value >= self.penalty

    @property
    def trial_sharpes(self) -> np.ndarray:
        """Return each trial's per-day (not annualized) Sharpe of its daily returns; NaN where undefined."""
        r = self.trial_returns
        mean, std = r.mean(axis=1), r.std(axis=1, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            sharpes: np.ndarray = np.where(std > 0.0, mean / std, np.nan)
        return sharpes

    @property
    def sharpe_variance(self) -> float:
        """Return the variance (ddof 1) across trials of the per-day Sharpe, over trials where it is defined."""
        sharpes = self.trial_sharpes
        sharpes = sharpes[np.isfinite(sharpes)]
        return float(np.var(sharpes, ddof=1)) if sharpes.size >= 2 else 0.0

    @property
    def best_moments(self) -> ReturnMoments:
        """Return the moments of the best trial's daily returns (per-day Sharpe, skewness, kurtosis)."""
        return return_moments(self.trial_returns[self.best_index])

    def deflated_sharpe(self, n_trials: int | None = None, sharpe_variance: float | None = None) -> float:
        """Return the deflated Sharpe ratio of the best trial (NaN if its Sharpe is undefined).

        By default ``N`` is the study's trial count and ``V`` the variance of all trials' per-day Sharpes, as in
        the paper. Trials that differ by construction (fee-heavy settings) inflate ``V``: pass an effective
        number of independent trials and their per-day Sharpe variance (e.g. from clustering) to refine it.
        """
        m = self.best_moments
        if not math.isfinite(m.sharpe):
            return math.nan
        n = self.n_rows if n_trials is None else n_trials
        variance = self.sharpe_variance if sharpe_variance is None else sharpe_variance
        return deflated_sharpe_ratio(m.sharpe, m.n, n, variance, skew=m.skew, kurtosis=m.kurtosis)

    def backtest_overfitting(self, n_splits: int = 16) -> BacktestOverfitting:
        """Return the probability of backtest overfitting of picking the best trial (CSCV over daily returns)."""
        return probability_of_backtest_overfitting(self.trial_returns.T, n_splits)

    def summary(self) -> dict[str, Any]:
        """Return the headline numbers as a JSON-serializable dict."""
        m = self.best_moments
        return {
            "study_name": self.study_name,
            "best_params": self.best_params.to_dict(),
            "best_value": self.best_value,
            "best_trial": self.best_trial,
            "best_is_valid": self.best_is_valid,
            "best_trades": int(self.trial_trades[self.best_index]),
            "n_trials": self.n_trials,
            "n_days": int(self.trial_returns.shape[1]),
            "n_periods": int(self.trial_returns.shape[1]),
            "periods_per_year": self.periods_per_year,
            "sharpe_per_period": m.sharpe if math.isfinite(m.sharpe) else None,
            "trial_sharpe_variance_per_period": self.sharpe_variance,
            "deflated_sharpe": _none_if_nan(self.deflated_sharpe()),
            "folds": list(self.best_folds),
            "floor": dict(self.floor),
            "elapsed_s": self.elapsed_s,
        }


Objective = Literal["sharpe", "return", "alpha", "timing"]
"""What a tuning study maximizes (see the module docstring)."""


def _none_if_nan(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _score(
    trades: int,
    returns: np.ndarray,
    slices: tuple[tuple[int, int], ...],
    *,
    min_trades: int,
    penalty: float,
    dispersion: float,
    periods_per_year: float,
    objective: str = "sharpe",
    market: np.ndarray | None = None,
    at_random: np.ndarray | None = None,
) -> float:
    """Return the objective of pooled fold returns (see the module docstring); penalties below ``penalty``.

    ``market``: the windows' own returns over the same periods (the ``"alpha"`` objective hedges them out);
    ``at_random``: what the trial's exposure earns at random bars in each period (``"timing"`` subtracts it).
    """
    if trades < min_trades:
        return penalty - (min_trades - trades) / min_trades
    if returns.size < 2:
        return penalty - 1.0
    if objective == "alpha" and market is not None:
        returns = hedged_returns(returns, market)
    if objective == "timing" and at_random is not None:
        returns = returns - at_random
    std = float(np.std(returns, ddof=1))
    if not std > 0.0:
        return penalty - 1.0
    mean = float(np.mean(returns))
    if len(slices) > 1 and dispersion > 0.0:
        mean -= dispersion * float(np.std([returns[a:b].mean() for a, b in slices if b > a]))
    if objective in ("return", "alpha", "timing"):
        return mean * periods_per_year
    value = mean / std * math.sqrt(periods_per_year)
    return value if math.isfinite(value) else penalty - 1.0


def hedged_returns(returns: np.ndarray, market: np.ndarray) -> np.ndarray:
    """Return ``returns - beta * market``, ``beta`` the least-squares slope of ``returns`` on ``market`` (0 when
    the market does not move); both are simple returns over the same periods."""
    centred = market - market.mean()
    variance = float(centred @ centred)
    if not variance > 0.0:
        return returns
    beta = float(centred @ (returns - returns.mean())) / variance
    return returns - beta * market


def market_returns(window: PolicyWindow) -> np.ndarray:
    """Return the window's close-to-close return over each of its periods (the first: over the first close),
    aligned with an evaluation's period returns."""
    out = np.empty(window.day_ends.shape[0])
    daily_returns_nb(window.close, window.day_ends, out)
    return out


def _fold_record(evaluation: Evaluation) -> dict[str, Any]:
    return {
        "total_return": evaluation.total_return,
        "trades": evaluation.trades,
        "sharpe": evaluation.sharpe,
    }


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Silence Optuna's per-trial log lines and experimental-feature warnings, restoring them after."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _make_sampler(
    kind: str, seed: int, n_startup_trials: int, shared: bool = False
) -> optuna.samplers.BaseSampler:
    if kind == "tpe":  # shared: running trials of other workers count as bad, so workers spread out
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, n_startup_trials=n_startup_trials, constant_liar=shared
        )
    if kind == "gp":
        return optuna.samplers.GPSampler(
            seed=seed, n_startup_trials=n_startup_trials, deterministic_objective=True
        )
    return optuna.samplers.RandomSampler(seed=seed)


def _fingerprint(
    windows: Sequence[PolicyWindow],
    bounds: ParamBounds,
    settings: dict[str, float],
    funding: Sequence[np.ndarray] = (),
) -> str:
    text = json.dumps({"bounds": bounds.to_dict(), "settings": settings}, sort_keys=True)
    prints = "".join(w.fingerprint() for w in windows)
    for rates in funding:  # none charged: the fingerprint of a study tuned before funding existed
        if rates.any():
            prints += hashlib.blake2b(np.ascontiguousarray(rates).tobytes(), digest_size=16).hexdigest()
    return hashlib.blake2b((prints + text).encode(), digest_size=16).hexdigest()


def _suggest(trial: optuna.Trial, bounds: ParamBounds) -> StrategyParams:
    values: dict[str, float] = {}
    for name, (low, high) in bounds.ranges.items():
        if low == high:
            values[name] = low
        elif name == "max_hold":  # log scale: 5-30 bars as likely as 30-180 (linear bounds from 0)
            values[name] = trial.suggest_int(name, int(low), int(high), log=low >= 1)
        else:
            values[name] = trial.suggest_float(name, low, high, log=name in _LOG_SCALE)
    return bounds.with_values(values)


def _check(
    n_trials: int,
    timeout_s: float | None,
    sampler: str,
    min_trades: int,
    penalty: float,
    windows: Sequence[PolicyWindow],
) -> None:
    if n_trials < 1:
        raise ConfigError(f"n_trials must be >= 1 (trials to run in this session); got {n_trials}")
    if timeout_s is not None and not timeout_s > 0.0:
        raise ConfigError(f"timeout_s must be > 0 seconds, or None for no time limit; got {timeout_s}")
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler '{sampler}' is not supported; use one of {', '.join(SAMPLERS)}")
    if min_trades < 1:
        raise ConfigError(f"min_trades must be >= 1 closed trade; got {min_trades}")
    if not math.isfinite(penalty):
        raise ConfigError(f"penalty must be a finite objective value, e.g. -100.0; got {penalty}")
    if not windows:
        raise ConfigError("tuning needs at least one validation window")
    if sum(w.day_ends.shape[0] for w in windows) < 2:
        raise ConfigError(
            "tuning needs windows spanning at least 2 periods (the Sharpe uses daily, or per-period, returns)"
        )


def tune_policy(
    window: PolicyWindow | Sequence[PolicyWindow],
    bounds: ParamBounds | None = None,
    *,
    n_trials: int = 100,
    timeout_s: float | None = None,
    seed: int = 0,
    sampler: Literal["tpe", "gp", "random"] = "tpe",
    n_startup_trials: int = 20,
    fee: float = 0.0004,
    slippage: float = 0.0,
    min_trades: int = 30,
    penalty: float = -100.0,
    periods_per_year: float = PERIODS_PER_YEAR_24_7,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    show_progress: bool = True,
    top_up: bool = False,
    rules: OrderRules = NO_ORDER_RULES,
    initial_equity: float = 1.0,
    dispersion: float = 1.0,
    objective: Objective = "sharpe",
    heartbeat_s: int = 10,
    funding: Sequence[np.ndarray] | None = None,
    floor: Floor = "tuned",
) -> TuningResult:
    """Run ``n_trials`` more trials (or until ``timeout_s``) maximizing the objective; return the whole study.

    ``top_up``: ``n_trials`` is the number of complete trials the study should hold; only the missing ones run
    (a stored study that already holds them runs none, so a repeated run reproduces its result).

    ``sampler``: "tpe" (multivariate TPE, the default), "gp" (Gaussian process; needs torch and scipy, costs
    far more per trial) or "random"; seeded with ``seed`` plus the number of trials already in the study, so a
    resumed study does not replay its first proposals. ``fee`` is a fraction of notional per fill, ``slippage``
    a fraction of price; ``rules`` the venue's amount step, minimums and shorts, applied at ``initial_equity``
    (quote currency; see :class:`PolicyEvaluator`). ``storage``: an Optuna RDB URL such as ``sqlite:///study.db`` (in memory when ``None``);
    ``study_name`` defaults to ``"policy"``. The progress bar shows only when ``show_progress`` and stderr is a
    terminal.

    ``storage`` on PostgreSQL (``postgresql://`` or ``postgresql+psycopg://``): a study several workers tune
    together (see :mod:`scalpbot.ml.shared_study`). It needs ``top_up``: ``n_trials`` is the study's total
    budget, whoever runs the trials; each trial records a heartbeat every ``heartbeat_s`` seconds, and one
    that stops beating for three intervals is marked failed and retried with its parameters. This worker
    returns once the study holds ``n_trials`` complete trials (waiting for other workers' running trials),
    and its result covers every worker's trials. Unlike one worker's study, the trial order (so the proposals)
    depends on the workers' timing.

    ``window``: one validation window, or the walk-forward folds in time order (see the module docstring);
    ``dispersion``: the weight of the folds' spread in the objective (0: the pooled Sharpe ratio).
    ``funding``: on a perpetual swap, one array per window of the funding rate due at each bar's open
    (:func:`scalpbot.core.funding.funding_at_bars`; empty: none), charged in every trial; a study's fingerprint
    holds the rates, so a stored study tuned without them is not resumed with them.
    ``floor``: ``"return"`` chooses the confidence floor again after the study (see the module docstring).
    """
    result = _tune(
        window,
        bounds,
        collect=True,
        n_trials=n_trials,
        timeout_s=timeout_s,
        seed=seed,
        sampler=sampler,
        n_startup_trials=n_startup_trials,
        fee=fee,
        slippage=slippage,
        min_trades=min_trades,
        penalty=penalty,
        periods_per_year=periods_per_year,
        storage=storage,
        study_name=study_name,
        show_progress=show_progress,
        top_up=top_up,
        rules=rules,
        initial_equity=initial_equity,
        dispersion=dispersion,
        objective=objective,
        heartbeat_s=heartbeat_s,
        funding=funding,
        floor=floor,
    )
    assert isinstance(result, TuningResult)
    return result


def join_policy_study(
    window: PolicyWindow | Sequence[PolicyWindow], bounds: ParamBounds | None = None, **options: Any
) -> int:
    """Run this worker's share of the trials of a shared (PostgreSQL) study; return how many it completed.

    The options are :func:`tune_policy`'s (``storage``, ``study_name`` and ``n_trials``, the total budget,
    at least). Unlike :func:`tune_policy` it returns without evaluating the other workers' trials again: the
    extra processes of :func:`scalpbot.ml.tuning_workers.tune_with_workers` use it.
    """
    if shared_url(options.get("storage")) is None:
        raise ConfigError(
            "join_policy_study needs a PostgreSQL storage URL (postgresql://user@host/database)"
        )
    ran = _tune(window, bounds, collect=False, **{"top_up": True, "show_progress": False, **options})
    assert isinstance(ran, int)
    return ran


def _tune(
    window: PolicyWindow | Sequence[PolicyWindow],
    bounds: ParamBounds | None,
    *,
    collect: bool,
    n_trials: int = 100,
    timeout_s: float | None = None,
    seed: int = 0,
    sampler: Literal["tpe", "gp", "random"] = "tpe",
    n_startup_trials: int = 20,
    fee: float = 0.0004,
    slippage: float = 0.0,
    min_trades: int = 30,
    penalty: float = -100.0,
    periods_per_year: float = PERIODS_PER_YEAR_24_7,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    show_progress: bool = True,
    top_up: bool = False,
    rules: OrderRules = NO_ORDER_RULES,
    initial_equity: float = 1.0,
    dispersion: float = 1.0,
    objective: Objective = "sharpe",
    heartbeat_s: int = 10,
    funding: Sequence[np.ndarray] | None = None,
    floor: Floor = "tuned",
) -> TuningResult | int:
    """Run the study as :func:`tune_policy` says; return its result, or (``collect`` off) the trials run here."""
    bounds = ParamBounds.default() if bounds is None else bounds
    windows = (window,) if isinstance(window, PolicyWindow) else tuple(window)
    _check(n_trials, timeout_s, sampler, min_trades, penalty, windows)
    if not (math.isfinite(dispersion) and dispersion >= 0.0):
        raise ConfigError(f"dispersion must be a weight >= 0, e.g. 1.0; got {dispersion}")
    if floor not in ("tuned", "return"):
        raise ConfigError(f"floor must be 'tuned' or 'return'; got {floor!r}")
    rates = tuple(funding) if funding is not None else (NO_FUNDING,) * len(windows)
    if len(rates) != len(windows):
        raise ConfigError(f"funding must hold one array per window ({len(windows)}); got {len(rates)}")
    evaluators = [
        PolicyEvaluator(
            w,
            fee=fee,
            slippage=slippage,
            periods_per_year=periods_per_year,
            rules=rules,
            initial_equity=initial_equity,
            funding=r,
            track_exposure=objective == "timing",
        )
        for w, r in zip(windows, rates, strict=True)
    ]
    bounds_of = np.cumsum([0] + [w.day_ends.shape[0] for w in windows])
    slices = tuple((int(a), int(b)) for a, b in itertools.pairwise(bounds_of))
    name = study_name or "policy"
    settings = {"fee": fee, "slippage": slippage, "min_trades": min_trades, "penalty": penalty}
    if rules != NO_ORDER_RULES or initial_equity != 1.0:  # studies tuned before venues keep their fingerprint
        settings.update(rules._asdict(), initial_equity=initial_equity)
    if len(windows) > 1:
        settings["dispersion"] = dispersion
    if objective != "sharpe":
        settings["objective_return"] = 1.0
    if objective == "alpha":
        settings["objective_alpha"] = 1.0
    if objective == "timing":
        settings["objective_timing"] = 1.0
    # the time stop is sampled on a log scale (see _suggest): a study sampled linearly is not resumed
    if bounds.ranges.get("max_hold", (0.0, 0.0))[0] >= 1:
        settings["max_hold_log"] = 1.0
    market = np.concatenate([market_returns(w) for w in windows]) if objective == "alpha" else None
    drift = (
        np.concatenate([np.full(w.day_ends.shape[0], mean_bar_return(w)) for w in windows])
        if objective == "timing"
        else None
    )
    fingerprint = _fingerprint(
        windows, bounds, {**settings, "periods_per_year": periods_per_year}, [e.funding for e in evaluators]
    )
    started = time.perf_counter()
    cache: dict[int, tuple[int, np.ndarray]] = {}
    kernel_seconds = 0.0
    progress = _TrialProgress(n_trials, show_progress)

    def evaluate(params: StrategyParams) -> tuple[int, np.ndarray, list[Evaluation]]:
        evaluations = [evaluator(params) for evaluator in evaluators]
        returns = np.concatenate([e.daily_returns for e in evaluations])
        return sum(e.trades for e in evaluations), returns, evaluations

    def score(
        trades: int, returns: np.ndarray, evaluations: list[Evaluation], scored: str = objective
    ) -> float:
        at_random = None
        if drift is not None:
            at_random = np.concatenate([e.exposure for e in evaluations if e.exposure is not None]) * drift
        return _score(
            trades,
            returns,
            slices,
            min_trades=min_trades,
            penalty=penalty,
            dispersion=dispersion,
            periods_per_year=periods_per_year,
            objective=scored,
            market=market,
            at_random=at_random,
        )

    def trial_value(trial: optuna.Trial) -> float:
        nonlocal kernel_seconds
        params = _suggest(trial, bounds)
        tick = time.perf_counter()
        trades, returns, evaluations = evaluate(params)
        kernel_seconds += time.perf_counter() - tick
        cache[trial.number] = (trades, returns)
        value = score(trades, returns, evaluations)
        progress.advance(value)
        return value

    shared = shared_url(storage)
    if shared is not None and not top_up:
        raise ConfigError(
            "a study on PostgreSQL is shared by its workers and n_trials is its total budget: pass top_up=True"
        )
    ran_here: set[int] = set()

    def run_trial(trial: optuna.Trial) -> float:
        value = trial_value(trial)
        ran_here.add(trial.number)
        return value

    with _quiet_optuna():
        if shared is not None:
            member = join_study(
                shared,
                name,
                heartbeat_s=heartbeat_s,
                check=lambda study: _check_fingerprint(study, name, fingerprint, strict=True),
            )
            study = member.study
            existing = len(study.get_trials(deepcopy=False))
            offset = _WORKER_SEED_STRIDE * member.worker_index
            study.sampler = _make_sampler(sampler, seed + existing + offset, n_startup_trials, shared=True)
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            with progress:
                member.run_to_budget(run_trial, n_trials, deadline)
        else:
            study = optuna.create_study(
                storage=storage, study_name=name, direction="maximize", load_if_exists=True
            )
            existing = len(study.get_trials(deepcopy=False))
            _check_fingerprint(study, name, fingerprint, strict=False)
            study.sampler = _make_sampler(sampler, seed + existing, n_startup_trials)
            complete = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
            to_run = max(n_trials - complete, 0) if top_up else n_trials
            if to_run:
                with progress:
                    study.optimize(run_trial, n_trials=to_run, timeout=timeout_s)
        trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not collect:
        return sum(1 for t in trials if t.number in ran_here)
    if not trials:
        raise ConfigError(f"no trial completed within timeout_s={timeout_s}; raise timeout_s")
    trial_params = tuple(bounds.with_values({**_fixed(bounds), **t.params}) for t in trials)
    for trial, params in zip(trials, trial_params, strict=True):
        if trial.number not in cache:  # an earlier session's trial: the kernel is deterministic, re-run it
            trades, returns, _ = evaluate(params)
            cache[trial.number] = (trades, returns)
    values = np.array([float(t.value) if t.value is not None else math.nan for t in trials])
    best = int(np.nanargmax(values))
    numbers = [t.number for t in trials]
    rows = [cache[n] for n in numbers]
    seconds = [t.duration.total_seconds() if t.duration else math.nan for t in trials]
    chosen = trial_params[best]
    record: dict[str, Any] = {}
    if floor == "return" and values[best] >= penalty and "min_confidence" in bounds.ranges:
        chosen, (trades, returns, evaluations), record = _choose_floor(
            trial_params[best], bounds.ranges["min_confidence"], evaluate, score
        )
        if chosen != trial_params[best]:  # one more row: the policy that ships, for the DSR and the PBO
            trial_params = (*trial_params, chosen)
            values = np.append(values, score(trades, returns, evaluations))
            numbers.append(FLOOR_REFINED)
            rows.append((trades, returns))
            seconds.append(math.nan)
    else:
        evaluations = evaluate(chosen)[2]
    best_value, best_trial = float(values[best]), trials[best].number
    return TuningResult(
        study_name=name,
        best_params=chosen,
        best_value=best_value,
        best_trial=best_trial,
        best_index=len(numbers) - 1 if numbers[-1] == FLOOR_REFINED else best,
        trial_numbers=np.array(numbers, dtype=np.int64),
        trial_params=trial_params,
        values=values,
        trial_trades=np.array([r[0] for r in rows], dtype=np.int64),
        trial_returns=np.stack([r[1] for r in rows]),
        trial_seconds=np.array(seconds),
        min_trades=min_trades,
        penalty=penalty,
        periods_per_year=periods_per_year,
        new_trials=sum(1 for t in trials if t.number in ran_here),
        elapsed_s=time.perf_counter() - started,
        objective_s=kernel_seconds,
        fold_slices=slices,
        best_folds=tuple(_fold_record(e) for e in evaluations),
        floor=record,
    )


def _choose_floor(
    tuned: StrategyParams,
    bounds: tuple[float, float],
    evaluate: Callable[[StrategyParams], tuple[int, np.ndarray, list[Evaluation]]],
    score: Callable[..., float],
) -> tuple[StrategyParams, tuple[int, np.ndarray, list[Evaluation]], dict[str, Any]]:
    """Return ``tuned`` with the confidence floor that scores best on the ``"return"`` objective among those
    that keep :data:`FLOOR_KEEPS` of the study's objective (swept over ``bounds`` in :data:`FLOOR_STEP` steps
    and the tuned value; on a tie the tuned floor, then the highest), its evaluation, and the record of the
    sweep (see the module docstring)."""
    low, high = bounds
    grid = np.round(np.arange(low, high + FLOOR_STEP / 2, FLOOR_STEP), 6)
    floors = [tuned.min_confidence, *sorted((float(f) for f in grid if low <= f <= high), reverse=True)]
    best_floor, best_value, tuned_value, kept, least = tuned.min_confidence, -math.inf, -math.inf, 0.0, 0.0
    best_evaluation = None
    for i, floor in enumerate(floors):
        evaluated = evaluate(replace(tuned, min_confidence=floor))
        study_value, value = score(*evaluated), score(*evaluated, "return")
        if i == 0:
            tuned_value, least = value, study_value - (1.0 - FLOOR_KEEPS) * abs(study_value)
        if value > best_value and study_value >= least:
            best_floor, best_value, kept, best_evaluation = floor, value, study_value, evaluated
    assert best_evaluation is not None  # the tuned floor keeps its own objective
    record = {
        "objective": "return",
        "tuned": tuned.min_confidence,
        "chosen": best_floor,
        "swept": [low, high],
        "step": FLOOR_STEP,
        "tuned_value": tuned_value,
        "chosen_value": best_value,
        "study_objective_least": least,
        "study_objective_chosen": kept,
    }
    return replace(tuned, min_confidence=best_floor), best_evaluation, record


def _check_fingerprint(study: optuna.Study, name: str, fingerprint: str, *, strict: bool) -> None:
    """Refuse a study tuned on something else, then record ``fingerprint`` in it.

    ``strict``: refuse even a study with no trial yet (a shared study another worker has just created).
    """
    stored = study.user_attrs.get(_FINGERPRINT_ATTR)
    if stored is not None and stored != fingerprint and (strict or study.get_trials(deepcopy=False)):
        raise ConfigError(
            f"study '{name}' in this storage was tuned on another window, other bounds or other settings; "
            "use a new study_name (or the same window, bounds, fee, slippage, min_trades and penalty)"
        )
    if stored != fingerprint:
        study.set_user_attr(_FINGERPRINT_ATTR, fingerprint)


def _fixed(bounds: ParamBounds) -> dict[str, float]:
    return {name: low for name, (low, high) in bounds.ranges.items() if low == high}


class _TrialProgress:
    """A rich progress bar over trials, advanced from the objective (an Optuna callback would cost a deep copy
    of the trial each time); shown only when asked and stderr is a terminal."""

    def __init__(self, n_trials: int, show: bool) -> None:
        console = Console(stderr=True)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        self._progress = Progress(*columns, console=console, disable=not (show and console.is_terminal))
        self._task = self._progress.add_task("tuning", total=n_trials)
        self._best = -math.inf

    def __enter__(self) -> _TrialProgress:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def advance(self, value: float) -> None:
        """Count one finished trial with objective ``value``."""
        self._best = max(self._best, value)
        self._progress.update(self._task, advance=1, description=f"tuning, best {self._best:.3g}")


def load_study_db(store: Store, key: str, path: Path) -> bool:
    """Copy the sqlite study file at ``key`` in ``store`` to ``path``; return False (and write nothing) if absent.

    Use ``f"sqlite:///{path}"`` as ``storage`` afterwards; the file is replaced atomically.
    """
    try:
        data = store.get(key).data
    except ObjectNotFound:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)
    return True


def save_study_db(store: Store, key: str, path: Path) -> str:
    """Put the sqlite study file at ``path`` into ``store`` under ``key`` (call after tuning); return the ETag."""
    if not path.is_file():
        raise ConfigError(f"study file {path} does not exist; tune with storage='sqlite:///{path}' first")
    return store.put(key, path.read_bytes())
