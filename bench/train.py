"""Time split of a full train run (not a test): a year of 1m bars, end to end, as `scalpbot train` runs it.

Imports the year into a temporary folder store, then runs the train job with the embedded defaults over the
whole year (``train.days = 366``, walk-forward folds) and prints the time of each stage (load, features, labels, fit, export,
predict, tuning, evaluation, gate, release) and the total. Target (issue 13): within 5 minutes on 2 cores.

Usage: python bench/train.py [--file PATH] [--trials N]   (default: the shared 2024 BTC/USDT 1m year when present,
else the bundled six-week sample, so that ``make bench`` runs on a fresh clone)
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

from _data import year_or_sample
from scalpbot.adapters.marketdata.files import FileMarketData
from scalpbot.config import load_settings
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.train import train
from scalpbot.wiring import build_services


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=year_or_sample())
    parser.add_argument("--trials", type=int, default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(None, {"store": {"url": tmp}, "train": {"days": 366}})
        services = build_services(settings)
        started = time.perf_counter()
        imported = retrieve(services.dataset, FileMarketData(args.file), services.series(), resume=False)
        import_s = time.perf_counter() - started
        print(f"imported {imported.added:,} bars from {args.file} in {import_s:.1f} s")
        started = time.perf_counter()
        report = train(services, services.series(), trials=args.trials, log=print)
        total = time.perf_counter() - started
    for stage, seconds in report.timings.items():
        print(f"  {stage:<11} {seconds:7.1f} s  {seconds / total:6.1%}")
    print(f"train total {total:.1f} s (target <= 300 s on 2 cores); release {report.release_id}")
    print(f"model: {report.model}; tuning: {report.tuning.get('n_trials')} trials")
    print(f"test window {report.windows['test']}: {report.test}")
    print(f"promoted: {report.promoted} ({report.reason})")


if __name__ == "__main__":
    main()
