"""The promotion gate's known answers on real bars (not a test): how often each planted case is promoted.

Cases (``tests/support/planted_edge.py``): strategies on real Binance BTC/USDT 1m bars of 2024-05-01 ..
2024-06-29 whose sides carry a planted, known skill, "tuned" over 20 trials on the first 30 days and weighed by
the gate on the rest: block-shuffled returns (no edge, no costs), a planted edge well above the 0.08 % round
trip, and one below it. For each case, over 20 seeds: promotions, those the previous rule (a positive test
return with 20 trades) would have made, and the median [min, max] of the bootstrap p-value, the deflated Sharpe
ratio, the PBO and the test window's return (fraction); then the first seed's verdict line.
The tests in ``tests/ml/test_gate_known_answers.py`` assert the same counts.

Usage: python bench/gate.py [--seeds N]
"""

from __future__ import annotations

# isort: off
import _single_core  # noqa: F401  (first: pins the process to one core before any import)

# isort: on
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.planted_edge import CASES, load_real_bars, run_case


def _spread(values: list[float | None]) -> str:
    known = np.array([v for v in values if v is not None], dtype=np.float64)
    if known.size == 0:
        return "n/a"
    return f"{np.median(known):.3f} [{known.min():.3f}, {known.max():.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    bars = load_real_bars()
    print(
        f"{len(bars):,} real 1m bars {bars.index[0]:%Y-%m-%d} .. {bars.index[-1]:%Y-%m-%d}, {args.seeds} seeds"
    )
    header = ("case", "promoted", "old rule", "bootstrap p", "deflated Sharpe", "PBO", "test return", "s")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    lines = []
    for case in CASES:
        tick = time.perf_counter()
        outcomes = [run_case(case, seed, bars) for seed in range(args.seeds)]
        stats = [o.verdict.statistics for o in outcomes]
        promoted = sum(o.verdict.promote for o in outcomes)
        row = (
            f"{case.name} (fee {case.costs.fee:.2%})",
            f"{promoted}/{args.seeds}",
            f"{sum(s.total_return > 0 and s.trades >= 20 for s in stats)}/{args.seeds}",
            _spread([s.p_value for s in stats]),
            _spread([s.deflated_sharpe for s in stats]),
            _spread([s.pbo for s in stats]),
            _spread([s.total_return for s in stats]),
            f"{time.perf_counter() - tick:.1f}",
        )
        print(" | ".join(row))
        lines.append(f"{case.name}, seed 0: {outcomes[0].verdict.reason}")
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
