"""Decision latency and cold start of the execute path (not a test).

1. Decision latency: from a closed bar in memory to the order request - features on the trailing window,
   ONNX inference, the policy, order planning - p50/p99 over 10,000 consecutive real bars (target p99 <= 2 ms),
   beside Keras ``predict()`` and a direct Keras call on the same model.
2. Cold start: a fresh interpreter that imports the execute path, loads the current release from the store and
   makes its first decision (target <= 1.5 s), timed from process start.

A model is trained on the bundled sample first (a few trials and epochs: the timing does not depend on it).
Usage: python bench/execute.py [--model mlp|conv1d] [--ensemble K] [--calibration none|isotonic]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

from scalpbot.adapters.marketdata.files import FileMarketData, sample_path
from scalpbot.config import load_settings
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.core.orders import plan_orders
from scalpbot.core.window_features import model_inputs
from scalpbot.inference.signals import ReleaseCache
from scalpbot.jobs.cycle import decide_on_bar
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.train import train
from scalpbot.state.releases import ReleaseStore
from scalpbot.wiring import build_services

COLD = """
import time, sys
start = time.perf_counter()
import pandas as pd
from scalpbot.config import load_settings
from scalpbot.jobs.cycle import decide_on_bar
from scalpbot.inference.signals import ReleaseCache
from scalpbot.state.releases import ReleaseStore
from scalpbot.wiring import build_services
imported = time.perf_counter()
services = build_services(load_settings(None, {"store": {"url": sys.argv[1]}}))
trading = ReleaseCache(ReleaseStore(services.store), "BTC/USDT", sys.argv[2]).current()
bars = services.dataset.read(services.series(), pd.Timestamp("2024-12-30T00:00Z"), pd.Timestamp("2024-12-31T00:00Z"))
decide_on_bar(bars, trading)
print(imported - start, time.perf_counter() - start)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", help="train.model: the model kind (default mlp)")
    parser.add_argument("--ensemble", type=int, default=1, help="train.ensemble: members per model")
    parser.add_argument("--calibration", default="isotonic", help="train.calibration: isotonic or none")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        train_settings = {
            "trials": 5,
            "max_epochs": 2,
            "model": args.model,
            "ensemble": args.ensemble,
            "calibration": args.calibration,
        }
        services = build_services(load_settings(None, {"store": {"url": tmp}, "train": train_settings}))
        print(f"model {args.model}, ensemble {args.ensemble}, calibration {args.calibration}")
        retrieve(services.dataset, FileMarketData(sample_path()), services.series(), resume=False)
        release_id = train(services, services.series()).release_id
        trading = ReleaseCache(ReleaseStore(services.store), "BTC/USDT", release_id).current()
        bars = services.dataset.read(services.series())
        start = len(bars) - 10_000
        latencies = np.empty(10_000)
        for k, t in enumerate(range(start, len(bars))):
            window = bars.iloc[t - FEATURE_WINDOW + 1 : t + 1]
            began = time.perf_counter()
            decided = decide_on_bar(window, trading)
            if decided is not None:
                plan_orders(decided[0], None, bot="bench", symbol="BTC/USDT", bar_seconds=60)
            latencies[k] = time.perf_counter() - began
        p50, p99 = np.percentile(latencies, [50, 99]) * 1000
        print(f"decision latency over 10,000 bars: p50 {p50:.3f} ms, p99 {p99:.3f} ms (target p99 <= 2 ms)")

        from scalpbot.ml.ensemble import release_kind
        from scalpbot.ml.model import configure_threads

        configure_threads(1)
        kind = release_kind(args.model, args.ensemble)
        release = ReleaseStore(services.store).load("BTC/USDT", release_id, (kind.artifact,))
        keras_model = kind.load(release.artifacts[kind.artifact])
        members = keras_model if isinstance(keras_model, tuple) else (keras_model,)
        row = model_inputs(bars.iloc[-FEATURE_WINDOW:], trading.window, trading.feature_set).astype(
            np.float32
        )[-1:]
        for name, call in (
            ("keras predict()", lambda: [m.predict(row, verbose=0) for m in members]),
            ("keras model(x)", lambda: [m(row) for m in members]),
        ):
            call()
            samples = []
            for _ in range(300):
                began = time.perf_counter()
                call()
                samples.append(time.perf_counter() - began)
            q50, q99 = np.percentile(samples, [50, 99]) * 1000
            print(f"{name:<16} batch of 1: p50 {q50:.3f} ms, p99 {q99:.3f} ms (inference only)")
        onnx = []
        for _ in range(300):
            began = time.perf_counter()
            trading.model.predict(row)
            onnx.append(time.perf_counter() - began)
        o50, o99 = np.percentile(onnx, [50, 99]) * 1000
        print(f"onnxruntime      batch of 1: p50 {o50:.3f} ms, p99 {o99:.3f} ms (inference only)")

        runs = []
        for _ in range(3):
            began = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", COLD, tmp, release_id], capture_output=True, text=True, check=True
            )
            total = time.perf_counter() - began
            imported, decided_at = (float(x) for x in done.stdout.split())
            runs.append((total, imported, decided_at))
        best = min(runs)
        print(
            f"cold start (fresh interpreter to first decision): {best[0]:.2f} s wall "
            f"(imports {best[1]:.2f} s, first decision at {best[2]:.2f} s after start; target <= 1.5 s)"
        )


if __name__ == "__main__":
    main()
