"""Does the learning find an edge when there is one, and only then? (Not a test: known answers on real bars.)

**Planted edges** (``tests/support/learning_cases.py``): for each case and seed, a window of real Binance
BTC/USDT 1m bars of 2024 (``--days`` long, starting 17 days later for each seed) gets an effect planted - shock
reversion, momentum after volume bursts, time-of-day drift - clearly above the Binance spot round trip (0.2 %)
or below it; null data are the real bars, their one-hour blocks shuffled, and a random walk. The train job runs
with the embedded defaults (walk-forward folds, the gate) on a fresh store. Per case: promotions, the median
test-window return, and the capture: the release's net PnL per unit of notional on the test window over the
oracle rule's (which knows the events) on the same window, at the same costs.

**Month by month** (``--months``): on the real 2024 bars, train on the ``--days`` before month m, then trade
month m+1 with whatever is current (nothing, until a release is promoted) and print the out-of-sample return
net of fees beside the newest release traded without the gate, not trading, sma-cross and random entries (as
many as the current release took, at least one, with the sma-cross's SL/TP).

Usage: python bench/learning.py [--seeds N] [--days D] [--trials T] [--cases SUBSTRING] [--months M]
"""

from __future__ import annotations

# isort: off
import _single_core  # noqa: F401  (first: pins the process to one core before any import)

# isort: on
import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.learning_cases import Outcome, load_bars, run_case, standard_cases


def _median(values: list[float]) -> str:
    return "-" if not values else f"{np.median(values):+.2%}"


def _window(bars: pd.DataFrame, seed: int, days: int) -> pd.DataFrame:
    start = bars.index[0] + pd.Timedelta(days=17 * seed)
    return bars.loc[start : start + pd.Timedelta(days=days) - pd.Timedelta(minutes=1)]


def planted(bars: pd.DataFrame, args: argparse.Namespace) -> None:
    """Print the known-answer table."""
    header = (
        "case",
        "promoted",
        "test return (median)",
        "capture (median [min, max])",
        "trades / oracle",
        "s/run",
    )
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    first_lines = []
    for case in standard_cases():
        if args.cases and args.cases not in case.name:
            continue
        outcomes: list[Outcome] = []
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                outcomes.append(
                    run_case(
                        case,
                        seed,
                        _window(bars, seed, args.days),
                        Path(tmp),
                        {"days": args.days, "trials": args.trials},
                    )
                )
        captures = [o.capture for o in outcomes if o.capture is not None]
        capture = (
            "-" if not captures else f"{np.median(captures):.0%} [{min(captures):.0%}, {max(captures):.0%}]"
        )
        trades = ", ".join(f"{o.trades}/{o.oracle_trades}" for o in outcomes[:3]) if case.effect else "-"
        row = (
            case.name,
            f"{sum(o.promoted for o in outcomes)}/{len(outcomes)}",
            _median([o.test_return for o in outcomes]),
            capture,
            trades,
            f"{np.mean([o.seconds for o in outcomes]):.0f}",
        )
        print(" | ".join(row), flush=True)
        first_lines.append(f"{case.name}, seed 0: {outcomes[0].reason}")
    print()
    print("\n".join(first_lines))


def month_by_month(bars: pd.DataFrame, args: argparse.Namespace) -> None:
    """Print the walk-forward month by month on real bars: what trading the current release earned."""
    from scalpbot.config import load_settings
    from scalpbot.core.strategies import sma_cross_signals
    from scalpbot.inference.signals import ReleaseCache, TradingModel, release_signals
    from scalpbot.jobs.train import score_signals, train
    from scalpbot.state.releases import ReleaseStore
    from scalpbot.wiring import build_services, venue_profile

    header = (
        "month traded",
        "current release",
        "promoted",
        "out of sample",
        "trades",
        "newest, ungated",
        "not trading",
        "sma-cross",
        "random",
    )
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    months = pd.date_range(
        bars.index[0].normalize() + pd.Timedelta(days=args.days), bars.index[-1], freq="MS"
    )
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"store": {"url": tmp}, "train": {"days": args.days, "trials": args.trials}}
        services = build_services(load_settings(None, overrides))
        series = services.series()
        services.dataset.append(series, bars)
        costs = services.settings.backtest
        venue = venue_profile(services.store, services.settings, series)
        rng = np.random.default_rng(0)
        for month in months[: args.months]:
            report = train(services, series, until=month.to_pydatetime())
            nxt = month + pd.offsets.MonthBegin(1)
            history = bars.loc[month - pd.Timedelta(days=2) : nxt - pd.Timedelta(minutes=1)]
            window = history.loc[month:]
            cache = ReleaseCache(ReleaseStore(services.store), series.symbol)
            if cache.available():
                trading = cache.current().for_venue(venue)
                signals = release_signals(history, trading).loc[month:]
                release = trading.release_id
            else:
                signals = pd.DataFrame(
                    {"side": 0, "size": 0.0, "sl": 0.0, "tp": 0.0, "max_hold": 0}, index=window.index
                )
                release = "none current"
            ours = score_signals(window, signals, costs, venue)
            newest = TradingModel.from_release(
                ReleaseStore(services.store).load(series.symbol, report.release_id)
            ).for_venue(venue)
            ungated = score_signals(window, release_signals(history, newest).loc[month:], costs, venue)
            flat = score_signals(window, signals.assign(side=0), costs, venue)
            sma = sma_cross_signals(
                window,
                length=costs.sma_length,
                sl=costs.sl,
                tp=costs.tp,
                size=costs.size,
                max_hold=costs.max_hold,
            )
            side = np.zeros(len(window), dtype=np.int8)
            side[rng.choice(len(window) - 1, size=max(int(ours["trades"] or 0), 1), replace=False)] = 1
            random = signals.assign(
                side=side, size=costs.size, sl=costs.sl, tp=costs.tp, max_hold=costs.max_hold
            )
            row = (
                f"{month:%Y-%m}",
                release,
                "yes" if report.promoted else "no",
                f"{ours['total_return']:+.2%}",
                str(ours["trades"]),
                f"{ungated['total_return']:+.2%} ({ungated['trades']})",
                f"{flat['total_return']:+.2%}",
                f"{score_signals(window, sma, costs, venue)['total_return']:+.2%}",
                f"{score_signals(window, random, costs, venue)['total_return']:+.2%}",
            )
            print(" | ".join(row), flush=True)
            print(f"    {report.reason}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--days", type=int, default=45)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--cases", default="", help="run only the cases whose name contains this")
    parser.add_argument("--months", type=int, default=0, help="also run the month-by-month walk-forward")
    parser.add_argument("--no-planted", action="store_true", help="skip the planted cases")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    started = time.perf_counter()
    bars = load_bars()
    print(
        f"{len(bars):,} real 1m bars {bars.index[0]:%Y-%m-%d} .. {bars.index[-1]:%Y-%m-%d}; "
        f"{args.seeds} seeds, {args.days} days a run, {args.trials} trials"
    )
    if not args.no_planted:
        planted(bars, args)
    if args.months:
        print()
        month_by_month(bars, args)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
