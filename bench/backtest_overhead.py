"""What ``backtest()`` costs beyond its kernel (not a test): end to end against the bare ``simulate_nb``.

Same bars, same signals (SMA(50) cross, long and short, SL 0.3 % / TP 0.6 %, a fixed 0.1 BTC per trade, fee
0.04 % per side): ``backtest()`` checks the frames' shape, types and times, runs the kernel (which checks every
bar and signal row and tracks the drawdown in its one pass over the bars), unpacks the trades and computes the
metrics; the bare kernel gets ready arrays. A third line also reads ``.trades`` (the frame is built on first
access). All timed warm (JIT done), best of ``--runs``. Target (issue 17): the ratio is at most 2.

Data: the first ``--bars`` (263,520: half a year of 1m bars) of the shared 2024 BTC/USDT year when present, else
a synthetic geometric random walk of that length.

Usage: python bench/backtest_overhead.py [--file PATH] [--bars N] [--runs N]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
from pathlib import Path

import numpy as np

import _single_core  # noqa: F401  (first: pins the process to one core before any import)
from _data import SHARED_YEAR
from backtest import CASH, FEE, QTY, SL, TP, load_bars, timed
from scalpbot.core.backtest.enums import NO_FUNDING, NO_ORDER_RULES
from scalpbot.core.backtest.frame import backtest
from scalpbot.core.backtest.nb import simulate_nb
from scalpbot.core.strategies import sma_cross_signals

TARGET = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=SHARED_YEAR)
    parser.add_argument("--bars", type=int, default=263_520)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--profile", action="store_true", help="print where backtest()'s own time goes")
    args = parser.parse_args()
    bars, source = load_bars(args.file, args.bars)
    bars = bars.iloc[: args.bars]
    signals = sma_cross_signals(bars, length=50, sl=SL, tp=TP, size=QTY)
    prices = tuple(bars[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close"))
    side = signals["side"].to_numpy(dtype=np.int8)
    size, sl, tp = (signals[c].to_numpy(dtype=np.float64) for c in ("size", "sl", "tp"))
    max_hold = np.zeros(len(bars), dtype=np.int64)

    def kernel() -> object:
        return simulate_nb(
            *prices,
            side,
            size,
            sl,
            tp,
            max_hold,
            FEE,
            0.0,
            CASH,
            True,
            NO_ORDER_RULES,
            NO_FUNDING,
            np.zeros(1),
        )

    def end_to_end() -> object:
        return backtest(bars, signals, fee=FEE, initial_equity=CASH, size_in="qty")

    kernel(), end_to_end()  # JIT compile or cache load
    trades = len(end_to_end().trades)  # type: ignore[attr-defined]
    kernel_best, kernel_median = timed(args.runs, kernel)
    e2e_best, e2e_median = timed(args.runs, end_to_end)
    frame_best, frame_median = timed(args.runs, lambda: end_to_end().trades)  # type: ignore[attr-defined]
    print(f"data: {source}, {len(bars):,} bars, {trades:,} trades")
    print(
        f"bare kernel simulate_nb    best {kernel_best * 1e3:7.2f} ms   median {kernel_median * 1e3:7.2f} ms"
    )
    print(f"backtest() end to end      best {e2e_best * 1e3:7.2f} ms   median {e2e_median * 1e3:7.2f} ms")
    print(f"backtest() and .trades     best {frame_best * 1e3:7.2f} ms   median {frame_median * 1e3:7.2f} ms")
    ratio = e2e_best / kernel_best
    print(f"ratio backtest() / kernel: {ratio:.2f}x (best of {args.runs}; target <= {TARGET:.0f}x)")
    print(f"ratio with the trades frame: {frame_best / kernel_best:.2f}x")
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(lambda: [end_to_end() for _ in range(10)])
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
