"""The four Lambda handlers end to end: the real runtime client, S3 and SNS on a moto server, a Binance look-alike.

Each function runs in its own warm runtime process (``support.lambda_runtime``), configured only through its
environment, as ``deploy/aws/template.yaml`` configures it. Notifications are read from an SQS queue
subscribed to the topic.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import boto3
import pandas as pd
import pytest

from scalpbot.adapters.clock import FixedClock
from scalpbot.adapters.store.factory import open_store
from scalpbot.state.dataset import BarDataset, SeriesId
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore
from scalpbot.state.releases import ReleaseStore

from support.binance_server import BinanceServer
from support.lambda_runtime import LocalLambda
from support.moto_server import MotoServer
from support.sns_inbox import SnsInbox

pytestmark = pytest.mark.slow

HANDLERS = {
    "retrieve": "scalpbot.aws.data_retrieval_lambda_handler",
    "train": "scalpbot.aws.training_and_deployment_lambda_handler",
    "execute": "scalpbot.aws.execution_lambda_handler",
    "monitor": "scalpbot.aws.monitoring_and_optimization_lambda_handler",
}
SERIES = SeriesId("binance", "BTC/USDT", "1m")
START = pd.Timestamp("2024-12-29T00:00:00Z")  # the first scheduled event; the sample ends 2024-12-31


def scheduled(at: pd.Timestamp) -> dict[str, object]:
    """An EventBridge scheduled event for ``at``, as Lambda receives it."""
    return {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/scalpbot-execute"],
        "detail": {},
    }


@dataclass(frozen=True)
class Deployment:
    """What the template would create: the functions' environment, and an inbox subscribed to the topic."""

    env: dict[str, str]
    inbox: SnsInbox


@pytest.fixture
def deployment(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    """The functions' environment: a bucket, a topic with an inbox, an exchange; small training for speed."""
    moto_server.reset()
    boto3.client("s3", endpoint_url=moto_server.endpoint_url, region_name="us-east-1").create_bucket(
        Bucket="scalpbot-e2e"
    )
    inbox = SnsInbox(moto_server.endpoint_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with BinanceServer(FixedClock(datetime(2024, 12, 31, 23, tzinfo=UTC))) as exchange:
        env = {
            "SCALPBOT_STORE": "s3://scalpbot-e2e/bot",
            "SCALPBOT_STORE__ENDPOINT_URL": moto_server.endpoint_url,
            "SCALPBOT_NOTIFY__SNS_TOPIC_ARN": inbox.topic_arn,
            "SCALPBOT_NOTIFY__SNS_ENDPOINT_URL": moto_server.endpoint_url,
            "SCALPBOT_NOTIFY__RETRY_BASE_DELAY": "0",
            "SCALPBOT_EXCHANGE__API_URL": exchange.url,
            "SCALPBOT_BOT__NAME": "e2e",
            "SCALPBOT_DATA__LOOKBACK_DAYS": "14",
            "SCALPBOT_TRAIN__DAYS": "14",
            "SCALPBOT_TRAIN__TRIALS": "5",
            "SCALPBOT_TRAIN__MAX_EPOCHS": "2",
            "SCALPBOT_TRAIN__MIN_TRADES": "40",
            "SCALPBOT_TRAIN__FIT_WORKERS": "2",  # the folds' fits in worker processes, as on six vCPUs
            "SCALPBOT_RISK__COOLDOWN_AFTER_LOSSES": "0",
            "SCALPBOT_RISK__MAX_DAILY_LOSS": "1.0",
            "SCALPBOT_RISK__MAX_DRAWDOWN": "1.0",
        }
        yield Deployment(env, inbox)


def _store(env: dict[str, str]) -> tuple[BarDataset, ReleaseStore, Ledger, PortfolioStore]:
    store = open_store(env["SCALPBOT_STORE"], env["SCALPBOT_STORE__ENDPOINT_URL"], "us-east-1")
    return BarDataset(store), ReleaseStore(store), Ledger(store, "e2e"), PortfolioStore(store, "e2e")


def _function(name: str, env: dict[str, str]) -> LocalLambda:
    return LocalLambda(
        HANDLERS[name],
        env=env,
        function_name=f"scalpbot-{name}",
        memory_mb=10240 if name in ("train", "monitor") else 1024,
        timeout_s=900 if name in ("train", "monitor") else 50,
    )


def test_the_four_handlers_in_order_through_the_lambda_runtime_client(
    deployment: Deployment,
) -> None:
    env = deployment.env
    dataset, releases, ledger, portfolio = _store(env)

    # 1. Retrieve: a first run stores data.lookback_days of closed bars; the next minute adds one bar.
    with _function("retrieve", env) as retrieve:
        first = retrieve.invoke(scheduled(START))
        assert first.ok, first.payload
        assert first.payload["added"] == 14 * 1440
        assert retrieve.invoke(scheduled(START + pd.Timedelta(minutes=1))).payload["added"] == 1
        records = retrieve.log_records()
    assert dataset.last_open_time(SERIES) == START
    assert len(dataset.read(SERIES)) == 14 * 1440 + 1
    finished = [r for r in records if r.get("message") == "retrieve finished"]
    assert len(finished) == 2 and {r["job"] for r in finished} == {"retrieve"}
    assert all(r["requestId"] for r in finished)

    # 2. Train: a release is written (and promoted only if it beats the baselines) and announced.
    with _function("train", env) as train:
        trained = train.invoke(scheduled(START + pd.Timedelta(minutes=1)), timeout=600)
        fits = [r for r in train.log_records() if "worker processes" in str(r.get("message"))]
    assert trained.ok, trained.payload
    assert len(fits) == 1 and fits[0]["job"] == "train", fits
    assert fits[0]["message"].startswith("9 model fits in 2 worker processes (0 in this one): "), fits
    release_id = trained.payload["release_id"]
    assert release_id in releases.list("BTC/USDT")
    assert pd.Timestamp(trained.payload["windows"]["test"][1]) <= START

    with _function("execute", env) as execute:
        # 3. Execute: without a current release the function idles; once one is promoted it trades each bar.
        if not trained.payload["promoted"]:
            idle = execute.invoke(scheduled(START + pd.Timedelta(minutes=2)))
            assert idle.ok and idle.payload["status"] == "idle", idle.payload
            releases.promote(
                "BTC/USDT", release_id, expected=releases.pointer("BTC/USDT"), reason="operator", now=START
            )
        minutes = range(2, 92)
        cycles = [execute.invoke(scheduled(START + pd.Timedelta(minutes=m))) for m in minutes]
        assert all(c.ok for c in cycles), [c.payload for c in cycles if not c.ok]
        assert [c.payload["bar"] for c in cycles] == [
            (START + pd.Timedelta(minutes=m - 1)).isoformat() for m in minutes
        ]
        assert {c.payload["status"] for c in cycles} == {"ok"}
        # A malformed event fails the invocation (Lambda counts the error) and is notified; nothing is traded.
        bad = execute.invoke({"time": "next tuesday"})
        assert not bad.ok and bad.payload["errorType"] == "ConfigError"
    # The ledger holds a decision for exactly the cycles that reported a signal, on the promoted release (how
    # many depends on the model; tests/aws/test_lambda_live_trading.py trades a release that always enters).
    decisions = ledger.events(START, START + pd.Timedelta(hours=2), kinds=("decision",))
    signalled = [c.payload for c in cycles if c.payload["signal"] is not None]
    assert [d.time.isoformat() for d in decisions] == [c["bar"] for c in signalled]
    assert [d.payload["side"] for d in decisions] == [c["signal"]["side"] for c in signalled]
    assert {d.payload["release_id"] for d in decisions} <= {release_id}
    stored = portfolio.load()
    assert stored is not None and stored.snapshot.last_bar_time == START + pd.Timedelta(minutes=90)
    assert dataset.last_open_time(SERIES) == START + pd.Timedelta(minutes=90)  # execute fetched its own bars

    # 4. Monitor: the week's metrics, the improvement steps through the gate, a report in S3.
    with _function("monitor", env) as monitor:
        reviewed = monitor.invoke(scheduled(START + pd.Timedelta(minutes=92)), timeout=600)
    assert reviewed.ok, reviewed.payload
    assert reviewed.payload["bot"] == "e2e"
    assert {c["kind"] for c in reviewed.payload["changes"]} == {"online_learning", "reinforcement_learning"}
    report_key = reviewed.payload["report"]
    store = open_store(env["SCALPBOT_STORE"], env["SCALPBOT_STORE__ENDPOINT_URL"], "us-east-1")
    assert report_key.startswith("reports/e2e/") and report_key.endswith("/report.html")
    assert store.get(report_key).data.startswith(b"<")
    metrics = json.loads(store.get(report_key.replace("report.html", "metrics.json")).data)
    assert metrics["metrics"]["trades"] == reviewed.payload["metrics"]["trades"]

    # Notifications reached the topic: the train verdict, the execute error, the weekly report.
    subjects = [str(m.get("Subject", "")) for m in deployment.inbox.read()]
    assert any(s.startswith("train binance BTC/USDT 1m: release") for s in subjects), subjects
    assert any(s.startswith("scalpbot execute failed for BTC/USDT: ConfigError") for s in subjects), subjects
    assert any(s == "e2e: weekly report" for s in subjects), subjects
    assert os.environ.get("SCALPBOT_STORE") is None  # the functions' settings never leaked into this process
