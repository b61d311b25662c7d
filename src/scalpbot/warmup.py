"""Compile the execute path's numba kernels ahead of time, into ``NUMBA_CACHE_DIR``.

``python -m scalpbot.warmup`` runs a few paper cycles on seeded synthetic bars in a memory store, with a
stand-in model that always sees an edge, so that every kernel an execute cycle calls (features, policy,
the paper broker's simulator) is compiled for the argument types it gets in production and written to
numba's on-disk cache. The container images run it at build time; a Lambda cold start then loads the
kernels (well under a second) instead of compiling them (several seconds). Set ``NUMBA_CPU_NAME=generic``
both when warming and when running so that a cache built on one machine is valid on another.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from scalpbot.config import load_settings
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.core.policy_params import StrategyParams
from scalpbot.errors import ModelError
from scalpbot.inference.signals import TradingModel
from scalpbot.jobs.trading import BarTrader, raise_if_failed
from scalpbot.state.dataset import SeriesId
from scalpbot.wiring import memory_paper_executor, run_lease, synthetic_bars

_CYCLES = 6
_START = datetime(2024, 1, 1, tzinfo=UTC)


class _EdgeModel:
    """Stands in for the ONNX model: long-biased probabilities and a small forward volatility, float64."""

    n_features = 0

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = len(x)
        return np.tile([0.05, 0.15, 0.80], (rows, 1)), np.full(rows, 0.002)


def compile_execute_kernels() -> int:
    """Run paper execute cycles until a position has been opened and closed; return the cycles run."""
    bars_needed = FEATURE_WINDOW + _CYCLES
    end = _START + pd.Timedelta(minutes=bars_needed).to_pytimedelta()
    series = SeriesId("warmup", "BTC/USDT", "1m")
    bars = synthetic_bars(1, series, _START, end)
    trading = TradingModel("warmup", _EdgeModel(), StrategyParams(max_hold=2))
    settings = load_settings(None, {"bot": {"name": "warmup"}})
    executor, services = memory_paper_executor(settings, series, bars, lambda: trading, bot="warmup")
    trader = BarTrader(
        services, executor, series, source=None, lease=run_lease(services, "warmup"), release_lease=False
    )
    step = pd.Timedelta(minutes=1)
    try:
        for bar in bars.index[-_CYCLES:]:
            raise_if_failed(trader(pd.Timestamp(bar) + step))
    finally:
        trader.close()
    fills = executor.ledger.events(kinds=("fill",))
    if not any(f.payload.get("reason") == "entry" for f in fills) or len(fills) < 2:
        raise ModelError(
            "the warm-up cycles did not enter and exit a position; the kernel cache would be partial"
        )
    return _CYCLES


def main() -> None:
    """Compile and cache the kernels; print how long it took."""
    started = time.perf_counter()
    cycles = compile_execute_kernels()
    print(
        f"compiled the execute path's kernels ({cycles} paper cycles) in {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
