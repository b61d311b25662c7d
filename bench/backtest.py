"""Backtest speed (not a test): scalpbot's ``backtest()`` and bare kernel against vectorbt and backtesting.py.

One run, one machine, same strategy (SMA(50) cross, long and short, reversal on the opposite cross, SL 0.3 % /
TP 0.6 % of the fill price, a fixed 0.1 BTC per trade so that no engine runs out of equity, fee 0.04 % per side):

* scalpbot ``backtest()`` end to end (validation, kernel, trades frame, equity series, metrics) on 1M bars;
* the bare kernel ``simulate_nb`` on the same arrays;
* vectorbt ``Portfolio.from_signals`` with its closest settings (signals shifted one bar and ``price=open`` so
  orders fill at the next open, ``stop_entry_price="fillprice"``, ``upon_opposite_entry="reverse"``, size 0.1
  as an amount) plus ``Portfolio.stats()``, on its rust engine when ``vectorbt-rust`` is importable, else numba.
  It gets the same bars with a tz-naive (UTC) index: with a tz-aware index on pandas 3, vectorbt's wrapping turns
  the index into Python ``Timestamp`` objects and ``stats()`` becomes ~10x slower, which is not the engine's
  cost. It still differs on two rules (no stop check on the entry bar; stops before a same-bar signal), so its
  trades are comparable in number and work, not identical;
* backtesting.py on the first 100k bars (an exclusive-orders replay of the same signals, 1 whole unit per trade
  as it trades whole units), extrapolated per bar.

Targets: kernel >= 100M bars/s; ``backtest()`` >= 20x vectorbt and >= 1000x backtesting.py. JIT: the kernels use
``numba cache=True``; the first call in a fresh interpreter is timed twice in subprocesses, once with an empty
cache directory (compile) and once with the cache it wrote (load).

Data: the real Binance BTC/USDT 1m year 2024 (527,040 bars) followed by its own first 472,960 bars again, prices
rescaled so the copy opens at the year's last close and timestamps continuing from 2025-01-01 (1,000,000 bars).
Without the shared file (``--file``), a synthetic geometric random walk of 1M bars is used instead.

Usage: python bench/backtest.py [--file PATH] [--bars N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from scalpbot.core.backtest.enums import NO_ORDER_RULES
from scalpbot.core.backtest.frame import BacktestResult, backtest
from scalpbot.core.backtest.nb import simulate_nb
from scalpbot.core.strategies import sma_cross_signals

SHARED_YEAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "BTC_USDT-1m-2024.csv.gz"
FEE, SL, TP, QTY, CASH = 0.0004, 0.003, 0.006, 0.1, 10_000_000.0
BACKTESTING_PY_BARS = 100_000


def timed(runs: int, work: Callable[[], object]) -> tuple[float, float]:
    """Return (best, median) seconds of ``runs`` calls."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def load_bars(path: Path, n_bars: int) -> tuple[pd.DataFrame, str]:
    if not path.exists():
        rng = np.random.default_rng(7)
        close = 40_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.0008, n_bars)))
        open_ = np.append(close[0], close[:-1])
        high = np.maximum(open_, close) * (1 + rng.exponential(0.0004, n_bars))
        low = np.minimum(open_, close) * (1 - rng.exponential(0.0004, n_bars))
        index = pd.date_range("2024-01-01", periods=n_bars, freq="1min", tz="UTC", name="timestamp")
        frame = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close}, index=index)
        return frame, "synthetic geometric random walk"
    year = pd.read_csv(path, index_col="timestamp", parse_dates=True)[["open", "high", "low", "close"]]
    parts = [year]
    while sum(len(p) for p in parts) < n_bars:
        last = parts[-1]
        copy = year.iloc[: n_bars - sum(len(p) for p in parts)] * (
            last["close"].iloc[-1] / year["open"].iloc[0]
        )
        copy.index = last.index[-1] + pd.Timedelta("1min") + (copy.index - year.index[0])
        parts.append(copy)
    return pd.concat(parts), f"real {path.name} ({len(year):,} bars) + rescaled wrap"


def jit_first_call_seconds(cache_dir: str) -> float:
    """Return the first backtest() call's time in a fresh interpreter using ``cache_dir`` as numba's cache."""
    code = (
        "import time, numpy as np, pandas as pd\n"
        "from scalpbot.core.backtest.frame import BacktestResult, backtest\n"
        "from scalpbot.core.strategies import sma_cross_signals\n"
        "i = pd.date_range('2024-01-01', periods=500, freq='1min', tz='UTC')\n"
        "c = 100 + np.sin(np.arange(500) / 7)\n"
        "b = pd.DataFrame({'open': c, 'high': c + 1, 'low': c - 1, 'close': c}, index=i)\n"
        "s = sma_cross_signals(b, length=10)\n"
        "t = time.perf_counter(); backtest(b, s); print(time.perf_counter() - t)\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def vectorbt_engine() -> str:
    try:
        import vectorbt_rust  # noqa: F401
    except ImportError:
        return "numba"
    return "rust"


def run_vectorbt(bars: pd.DataFrame, side: np.ndarray, engine: str) -> pd.Series:
    import vectorbt as vbt

    entries = np.append(False, side[:-1] == 1)
    short_entries = np.append(False, side[:-1] == -1)
    portfolio = vbt.Portfolio.from_signals(
        close=bars["close"],
        entries=entries,
        short_entries=short_entries,
        price=bars["open"],
        open=bars["open"],
        high=bars["high"],
        low=bars["low"],
        sl_stop=SL,
        tp_stop=TP,
        stop_entry_price="fillprice",
        upon_opposite_entry="reverse",
        size=QTY,
        size_type="amount",
        fees=FEE,
        init_cash=CASH,
        freq="1min",
        engine=engine,
    )
    stats: pd.Series = portfolio.stats()
    return stats


def run_backtesting_py(bars: pd.DataFrame, side: np.ndarray) -> object:
    from backtesting import Backtest, Strategy

    next_open = np.append(bars["open"].to_numpy()[1:], np.nan)

    class Replay(Strategy):
        def init(self) -> None:
            pass

        def next(self) -> None:
            i = len(self.data) - 1
            signal = side[i]
            if (
                signal == 0
                or i + 1 >= len(side)
                or (self.position and (self.position.size > 0) == (signal > 0))
            ):
                return
            fill = next_open[i]
            place = self.buy if signal > 0 else self.sell
            order = place(size=1)  # whole units only
            order._replace(sl_price=fill * (1 - signal * SL), tp_price=fill * (1 + signal * TP))

    data = bars.rename(columns=str.capitalize)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Backtest(data, Replay, cash=1e9, commission=FEE, exclusive_orders=True).run()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--file", type=Path, default=SHARED_YEAR)
    parser.add_argument("--bars", type=int, default=1_000_000)
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")

    bars, source = load_bars(args.file, args.bars)
    n = len(bars)
    signals = sma_cross_signals(bars, length=50, sl=SL, tp=TP, size=QTY)
    side = signals["side"].to_numpy()
    print(
        f"data: {source}: {n:,} bars {bars.index[0]} .. {bars.index[-1]}; {np.count_nonzero(side):,} signals"
    )

    with tempfile.TemporaryDirectory() as cache_dir:
        compile_s = jit_first_call_seconds(cache_dir)
        cached_s = jit_first_call_seconds(cache_dir)
    print(f"JIT: first backtest() call in a fresh interpreter: {compile_s:.2f} s compiling (empty numba cache), "
          f"{cached_s:.2f} s loading the on-disk cache")  # fmt: skip

    def run_scalpbot() -> BacktestResult:
        return backtest(bars, signals, fee=FEE, initial_equity=CASH, size_in="qty")

    first_start = time.perf_counter()
    result = run_scalpbot()
    first_s = time.perf_counter() - first_start
    e2e_best, e2e_median = timed(21, run_scalpbot)
    reasons = {str(k): int(v) for k, v in result.trades["exit_reason"].value_counts().items()}
    print(f"scalpbot backtest(): first call in this process {first_s * 1e3:.1f} ms, warm {e2e_best * 1e3:.1f} ms; "
          f"{len(result.trades):,} trades {reasons}")  # fmt: skip

    arrays = [bars[c].to_numpy() for c in ("open", "high", "low", "close")]
    columns = [signals[c].to_numpy() for c in ("side", "size", "sl", "tp", "max_hold")]
    kernel_args = (*arrays, *columns, FEE, 0.0, CASH, True, NO_ORDER_RULES)
    kernel_best, kernel_median = timed(40, lambda: simulate_nb(*kernel_args))

    engine = vectorbt_engine()
    naive = bars.tz_localize(None)
    vbt_first_start = time.perf_counter()
    vbt_stats = run_vectorbt(naive, side, engine)
    vbt_first_s = time.perf_counter() - vbt_first_start
    vbt_best, vbt_median = timed(5, lambda: run_vectorbt(naive, side, engine))

    subset = bars.iloc[:BACKTESTING_PY_BARS]
    bt_s, _ = timed(1, lambda: run_backtesting_py(subset, side[:BACKTESTING_PY_BARS]))
    bt_per_bar = bt_s / len(subset)

    rows = [
        ("scalpbot kernel simulate_nb", kernel_best, kernel_median, n),
        ("scalpbot backtest() end to end", e2e_best, e2e_median, n),
        (f"vectorbt from_signals + stats [{engine}]", vbt_best, vbt_median, n),
        (f"backtesting.py (on {len(subset):,} bars, per bar x {n:,})", bt_per_bar * n, bt_per_bar * n, n),
    ]
    print(f"\n{'engine':58} {'best':>10} {'median':>10} {'bars/s':>14} {'vs backtest()':>14}")
    for name, best, median, count in rows:
        print(
            f"{name:58} {best * 1e3:8.1f}ms {median * 1e3:8.1f}ms {count / best:14,.0f} {best / e2e_best:13.1f}x"
        )
    print(
        f"(vectorbt first call incl. its JIT: {vbt_first_s:.2f} s; its trades: {vbt_stats['Total Trades']:,})"
    )

    checks = [
        ("kernel >= 100M bars/s", n / kernel_best >= 100e6),
        ("backtest() >= 20x faster than vectorbt", vbt_best / e2e_best >= 20),
        ("backtest() >= 1000x faster than backtesting.py", bt_per_bar * n / e2e_best >= 1000),
    ]
    print("\n" + "\n".join(f"[{'ok' if passed else 'MISSED'}] {label}" for label, passed in checks))


if __name__ == "__main__":
    main()
