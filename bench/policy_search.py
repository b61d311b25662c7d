"""Policy search speed (not a test): a 500-trial Optuna study on a year of 1m bars, on one core.

Target: >= 50 trials/s for the whole study (sampling, kernels, bookkeeping) with precomputed predictions.

Data: the real Binance BTC/USDT 1m year 2024 (527,040 bars) from the shared folder, or without it a synthetic year
from ``SyntheticMarketData``. Predictions are fake but plausible: ``vol[t]`` is the realized volatility of the 60
1m log returns up to ``t`` scaled to the 15-bar label horizon, and the probabilities come from a noisy score of
the *future* 15-bar return in volatility units (``score = 0.15 * fwd / vol + N(0, 1)``, ``p_long =
sigmoid(score - 2)``, ``p_short = sigmoid(-score - 2)``): an informative but far from perfect model.

One core: the process pins itself to one CPU and sets ``NUMBA_NUM_THREADS``/``OMP_NUM_THREADS`` to 1 and torch's
threads to 1 before importing anything numeric. Reported: trials/s, the kernel time per trial (signals +
simulation + daily returns) against Optuna's share (sampling and bookkeeping), trial time by blocks of 100
(TPE's cost grows with the number of trials), and the same study with the random sampler as a floor.

Usage: python bench/policy_search.py [--file PATH] [--trials N] [--sampler tpe|random|gp]
"""

from __future__ import annotations

# isort: off
import _single_core  # noqa: F401  (first: pins the process to one core before any import)

# isort: on
import argparse
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from _data import SHARED_YEAR
from scalpbot.adapters.clock import FixedClock
from scalpbot.adapters.marketdata.synthetic import SyntheticMarketData
from scalpbot.core.evaluation import PolicyEvaluator, PolicyWindow
from scalpbot.core.policy_params import ParamBounds, StrategyParams
from scalpbot.ml.tuning import tune_policy

HORIZON = 15


def load_year(path: Path) -> tuple[pd.DataFrame, str]:
    if path.exists():
        bars = pd.read_csv(path, index_col="timestamp", parse_dates=True)[["open", "high", "low", "close"]]
        return bars, f"real {path.name}"
    clock = FixedClock(datetime(2025, 1, 1, tzinfo=UTC))
    source = SyntheticMarketData(clock, seed=7)
    chunks = source.fetch_bars(
        "BTC/USDT", "1m", datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    )
    bars = pd.concat(list(chunks)).set_index("timestamp")[["open", "high", "low", "close"]]
    return bars, "synthetic year (SyntheticMarketData seed 7)"


def fake_predictions(close: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (probs (n, 3), vol (n,)) from a noisy function of future returns and trailing realized vol."""
    log_close = np.log(close)
    returns = np.diff(log_close, prepend=log_close[0])
    vol = pd.Series(returns).rolling(60).std().to_numpy() * np.sqrt(HORIZON)
    forward = np.full(close.shape[0], 0.0)
    forward[:-HORIZON] = log_close[HORIZON:] - log_close[:-HORIZON]
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 0.15 * np.nan_to_num(forward / vol) + np.random.default_rng(seed).normal(
            0.0, 1.0, close.shape[0]
        )
    p_long = 1.0 / (1.0 + np.exp(-(score - 2.0)))
    p_short = 1.0 / (1.0 + np.exp(-(-score - 2.0)))
    probs = np.column_stack([p_short, 1.0 - p_long - p_short, p_long])
    return probs, vol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--file", type=Path, default=SHARED_YEAR)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--sampler", default="tpe", choices=["tpe", "random", "gp"])
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass

    bars, what = load_year(args.file)
    probs, vol = fake_predictions(bars["close"].to_numpy())
    window = PolicyWindow.from_frame(bars, probs, vol)
    print(
        f"data: {what}, {len(window):,} bars, {window.day_ends.shape[0]} days; cpu affinity {os.sched_getaffinity(0)}"
    )

    evaluator = PolicyEvaluator(window)
    tick = time.perf_counter()
    evaluator(StrategyParams())
    print(f"first evaluation (JIT compile or cache load): {time.perf_counter() - tick:.2f} s")
    for label, params in (
        ("few trades", StrategyParams(entry_threshold=0.5)),
        ("typical", StrategyParams(entry_threshold=0.2)),
        ("many trades", StrategyParams(entry_threshold=0.02)),
    ):
        times = []
        for _ in range(15):
            tick = time.perf_counter()
            evaluation = evaluator(params)
            times.append(time.perf_counter() - tick)
        print(
            f"kernel per trial, {label:11s}: median {statistics.median(times) * 1e3:5.2f} ms, best "
            f"{min(times) * 1e3:5.2f} ms ({evaluation.trades:,} trades, Sharpe {evaluation.sharpe or float('nan'):.2f})"
        )

    runs: list[Literal["tpe", "gp", "random"]] = (
        [args.sampler] if args.sampler != "tpe" else ["tpe", "random"]
    )
    for sampler in runs:
        result = tune_policy(
            window, ParamBounds.default(), n_trials=args.trials, seed=0, sampler=sampler, show_progress=False
        )
        n = result.n_trials
        overhead = result.elapsed_s - result.objective_s
        print(
            f"\n{sampler}: {n} trials in {result.elapsed_s:.2f} s = {n / result.elapsed_s:.1f} trials/s "
            f"(target >= 50); kernel {result.objective_s / n * 1e3:.2f} ms/trial, "
            f"optuna + bookkeeping {overhead / n * 1e3:.2f} ms/trial"
        )
        blocks = [result.trial_seconds[i : i + 100] for i in range(0, n, 100)]
        print(
            "  trial wall time by block of 100 (ms, mean): "
            + ", ".join(f"{b.mean() * 1e3:.1f}" for b in blocks)
        )
        print(
            f"  best value (annualized Sharpe) {result.best_value:.2f} at trial {result.best_trial}; "
            f"trades {result.trial_trades[result.best_index]:,}; DSR {result.deflated_sharpe():.3f}; "
            f"trial Sharpe variance (per day) {result.sharpe_variance:.2e}"
        )
        days = result.trial_returns.shape[1]
        print(
            f"  DSR with V = 1/(T-1) = {1 / (days - 1):.2e} (Sharpe estimation noise only, not the spread "
            f"between configurations): {result.deflated_sharpe(sharpe_variance=1 / (days - 1)):.3f}"
        )
        tick = time.perf_counter()
        pbo = result.backtest_overfitting()
        print(f"  PBO (CSCV, 16 splits) {pbo.probability:.3f} in {time.perf_counter() - tick:.2f} s")
        print(f"  best params {result.best_params.to_dict()}")


if __name__ == "__main__":
    main()
