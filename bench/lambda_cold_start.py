"""Cold start and warm latency of the execution Lambda handler (not a test).

The handler runs through the real Lambda runtime client (awslambdaric, with the local Runtime API of the
tests) against S3 on a moto server and the Binance look-alike, as in tests/aws. Measured twice from a new
execution environment: with an empty kernel cache (numba compiles on the first cycle) and seeded with the
kernels ``python -m scalpbot.warmup`` compiled, as the container images are. Prints init, first invocation,
warm p50/p95 over 60 cycles, and the first-cycle ratio.

Usage: python bench/lambda_cold_start.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
os.environ.update(
    AWS_ACCESS_KEY_ID="bench",
    AWS_SECRET_ACCESS_KEY="bench-secret",
    AWS_DEFAULT_REGION="us-east-1",
    NO_PROXY="127.0.0.1",
    NUMBA_CPU_NAME="generic",
)

from scalpbot.adapters.clock import FixedClock
from scalpbot.adapters.marketdata.files import FileMarketData, sample_path
from scalpbot.config import load_settings
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.train import train
from scalpbot.state.releases import ReleaseStore
from scalpbot.wiring import build_services

from support.binance_server import BinanceServer
from support.lambda_runtime import LocalLambda
from support.moto_server import running_moto_server

START = pd.Timestamp("2024-12-29T00:00:00Z")
BUCKET = "bench-cold-start"


def _event(minutes: int) -> dict[str, str]:
    return {"time": (START + pd.Timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")}


def measure(env: dict[str, str], label: str) -> float:
    """Run one new environment: 1 cold and 60 warm cycles; print and return the first cycle's seconds."""
    with LocalLambda("scalpbot.aws.execution_lambda_handler", env=env) as function:
        first = function.invoke(_event(1))
        if not first.ok:
            raise SystemExit(f"the handler failed: {first.payload}")
        warm = sorted(function.invoke(_event(m)).duration_s for m in range(2, 62))
        print(
            f"{label:<28} init {function.init_duration_s:.2f} s, first cycle {first.duration_s:.2f} s, "
            f"warm p50 {statistics.median(warm) * 1e3:.0f} ms / p95 {warm[56] * 1e3:.0f} ms"
        )
    return first.duration_s


def main() -> None:
    warnings.filterwarnings("ignore")
    scratch = Path(tempfile.mkdtemp(prefix="scalpbot-bench-"))
    seed = scratch / "seed"
    subprocess.run(
        [sys.executable, "-m", "scalpbot.warmup"],
        env={**os.environ, "NUMBA_CACHE_DIR": str(seed)},
        check=True,
    )
    with (
        running_moto_server() as moto,
        BinanceServer(FixedClock(datetime(2024, 12, 31, 23, tzinfo=UTC))) as exchange,
    ):
        boto3.client("s3", endpoint_url=moto.endpoint_url).create_bucket(Bucket=BUCKET)
        overrides = {
            "store": {"url": f"s3://{BUCKET}/bot", "endpoint_url": moto.endpoint_url},
            "train": {"days": 14, "trials": 5, "max_epochs": 2, "min_trades": 1},
        }
        services = build_services(load_settings(None, overrides))
        retrieve(
            services.dataset, FileMarketData(sample_path()), services.series(), until=START.to_pydatetime()
        )
        trained = train(services, services.series(), until=START.to_pydatetime())
        releases = ReleaseStore(services.store)
        if not trained.promoted:
            releases.promote(
                "BTC/USDT",
                trained.release_id,
                expected=releases.pointer("BTC/USDT"),
                reason="bench",
                now=START,
            )
        env = {
            "SCALPBOT_STORE": f"s3://{BUCKET}/bot",
            "SCALPBOT_STORE__ENDPOINT_URL": moto.endpoint_url,
            "SCALPBOT_EXCHANGE__API_URL": exchange.url,
            "SCALPBOT_NOTIFY__CONSOLE": "false",
        }
        # Two bots, so that the second environment trades the same bars afresh.
        compiling = measure(
            {**env, "SCALPBOT_BOT__NAME": "compiling", "NUMBA_CACHE_DIR": str(scratch / "empty")},
            "empty kernel cache:",
        )
        seeded = measure(
            {
                **env,
                "SCALPBOT_BOT__NAME": "seeded",
                "NUMBA_CACHE_DIR": str(scratch / "seeded"),
                "SCALPBOT_NUMBA_CACHE_SEED": str(seed),
            },
            "kernels from the image seed:",
        )
    print(f"first cycle: {compiling / seeded:.1f}x faster with the prebuilt kernels")


if __name__ == "__main__":
    main()
