"""Dataset costs (not a test): a year of 1m bars imported into daily partitions, and one day appended.

Prints:
1. the time to import a gzip CSV year into partitions through the retrieve job, against a plain
   ``pandas.read_csv`` + one ``DataFrame.to_parquet`` of the same file, and their ratio (target <= 3x);
2. the time to append one new day to the stored year, against appending the same day to an empty
   dataset (target: about the same, because only the touched partitions are read and written).

Usage: python bench/dataset.py [--file PATH]   (default: the shared 2024 BTC/USDT 1m year when present,
otherwise a synthetic year written to a temporary gzip CSV).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from scalpbot.adapters.marketdata.files import FileMarketData
from scalpbot.adapters.store.folder import FolderStore
from scalpbot.core.bars import validate_bars
from scalpbot.jobs.retrieve import retrieve
from scalpbot.state.dataset import BarDataset, SeriesId

SHARED_YEAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "BTC_USDT-1m-2024.csv.gz"
SERIES = SeriesId("binance", "BTC/USDT", "1m")


def _best_of(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def _synthetic_year(folder: Path) -> Path:
    from scalpbot.adapters.clock import FixedClock
    from scalpbot.adapters.marketdata.synthetic import SyntheticMarketData

    clock = FixedClock(datetime(2025, 1, 1, tzinfo=UTC))
    source = SyntheticMarketData(seed=1, clock=clock)
    chunks = list(source.fetch_bars("BTC/USDT", "1m", datetime(2024, 1, 1, tzinfo=UTC), None))
    bars = pd.concat(chunks)
    path = folder / "synthetic-year.csv.gz"
    bars.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=SHARED_YEAR if SHARED_YEAR.exists() else None)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path: Path = args.file or _synthetic_year(tmp)
        print(f"input: {path} ({path.stat().st_size / 1e6:.1f} MB)")

        def plain() -> None:
            pd.read_csv(path).to_parquet(tmp / "plain.parquet")

        counter = iter(range(1_000_000))

        def import_year() -> None:
            store = FolderStore(tmp / f"import-{next(counter)}")
            retrieve(BarDataset(store), FileMarketData(path), SERIES, resume=False)

        plain_s = _best_of(args.runs, plain)
        import_s = _best_of(args.runs, import_year)
        print(f"plain read_csv + to_parquet : {plain_s:8.3f} s")
        print(f"scalpbot import (validated, daily partitions): {import_s:8.3f} s")
        print(f"import / plain ratio        : {import_s / plain_s:8.2f}x   (target <= 3x)")

        bars = validate_bars(pd.read_csv(path), "1m", source=str(path))
        history, new_day = bars.iloc[:-1440], bars.iloc[-1440:]
        costs: dict[str, float] = {}
        for label, stored in (
            ("empty", history.iloc[:0]),
            ("a month", history.iloc[-30 * 1440 :]),
            ("a year", history),
        ):
            seed = FolderStore(tmp / f"seed-{label}")
            if len(stored):
                BarDataset(seed).append(SERIES, stored)
            samples = []
            for run in range(args.runs):
                copy = FolderStore(tmp / f"copy-{label}-{run}")
                for key in seed.list("data/"):
                    copy.put(key, seed.get(key).data)
                samples.append(_best_of(1, lambda s=copy: BarDataset(s).append(SERIES, new_day)))
            costs[label] = statistics.median(samples)
            print(
                f"append one new day to {label:>8} of stored bars ({len(stored):>7,} bars): {costs[label] * 1000:6.1f} ms"
            )
        print(
            f"year / empty ratio: {costs['a year'] / costs['empty']:.2f}x, year / month: "
            f"{costs['a year'] / costs['a month']:.2f}x   (target: about 1x; only touched days are read and written)"
        )


if __name__ == "__main__":
    main()
