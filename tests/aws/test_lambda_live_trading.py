"""The execution Lambda trading live: keys from Secrets Manager, orders on the exchange, each exactly once.

The execute handler runs under the real Lambda runtime client with the ccxt broker, its keys read from a
Secrets Manager secret on the moto server, its store on moto S3, against the Binance trading look-alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest

from scalpbot.adapters.store.factory import open_store
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore

from support.binance_trading import OCO, ORDER
from support.broker_venue import KEY, SECRET, Venue, running_venue
from support.lambda_runtime import LocalLambda
from support.moto_server import MotoServer
from support.sns_inbox import SnsInbox

pytestmark = pytest.mark.slow

BUCKET = "scalpbot-live"


@pytest.fixture
def venue(monkeypatch: pytest.MonkeyPatch) -> Iterator[Venue]:
    with running_venue(monkeypatch) as running:
        yield running


def _upload(folder: Path, endpoint: str) -> None:
    """Copy a folder store's bars and releases into the bucket under ``bot/`` (no bot state: a fresh account)."""
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    for path in sorted(folder.rglob("*")):
        key = path.relative_to(folder).as_posix()
        if path.is_file() and key.startswith(("data/", "models/")):
            s3.put_object(Bucket=BUCKET, Key=f"bot/{key}", Body=path.read_bytes())


def test_live_cycles_on_lambda_place_each_entry_and_its_protection_once(
    active_release: tuple[Path, str], moto_server: MotoServer, venue: Venue
) -> None:
    moto_server.reset()
    _upload(active_release[0], moto_server.endpoint_url)
    inbox = SnsInbox(moto_server.endpoint_url)
    secret = boto3.client("secretsmanager", endpoint_url=moto_server.endpoint_url, region_name="us-east-1")
    arn = secret.create_secret(
        Name="scalpbot/binance", SecretString=json.dumps({"api_key": KEY, "secret": SECRET})
    )["ARN"]
    env = {
        "SCALPBOT_STORE": f"s3://{BUCKET}/bot",
        "SCALPBOT_STORE__ENDPOINT_URL": moto_server.endpoint_url,
        "SCALPBOT_NOTIFY__SNS_TOPIC_ARN": inbox.topic_arn,
        "SCALPBOT_NOTIFY__SNS_ENDPOINT_URL": moto_server.endpoint_url,
        "SCALPBOT_EXECUTE__BROKER": "ccxt",
        "SCALPBOT_EXCHANGE__SECRET_ID": arn,
        "SCALPBOT_EXCHANGE__API_URL": venue.server.url,
        "SCALPBOT_BOT__NAME": "lambda-live",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_server.endpoint_url,
        "SCALPBOT_RISK__COOLDOWN_AFTER_LOSSES": "0",
        "SCALPBOT_RISK__MAX_DAILY_LOSS": "1.0",
        "SCALPBOT_RISK__MAX_DRAWDOWN": "1.0",
    }
    store = open_store(env["SCALPBOT_STORE"], moto_server.endpoint_url, "us-east-1")
    with LocalLambda(
        "scalpbot.aws.execution_lambda_handler", env=env, function_name="scalpbot-execute"
    ) as fn:
        entered = None
        for _ in range(30):
            minute = pd.Timestamp(venue.clock.now()).floor("1min")
            event = {"time": minute.strftime("%Y-%m-%dT%H:%M:%SZ"), "source": "aws.events"}
            cycle = fn.invoke(event)
            assert cycle.ok, cycle.payload
            assert cycle.payload["status"] == "ok", cycle.payload
            assert cycle.payload["bar"] == (minute - pd.Timedelta(minutes=1)).isoformat()
            retry = fn.invoke(event)  # the same scheduled event delivered again: nothing happens twice
            assert retry.ok and retry.payload["status"] == "skipped"
            if any(o["intent"] == "entry" and o["status"] == "accepted" for o in cycle.payload["orders"]):
                entered = minute
                break
            venue.server.advance_bar()
        assert entered is not None, "the eager release never went long in 30 bars"
        assert len([p for p in venue.server.posts(ORDER) if p.get("type") == "MARKET"]) == 1
        assert len(venue.server.posts(OCO)) == 1  # stop loss and take profit on the exchange at once
        venue.server.advance_bar()
        after = fn.invoke({"time": (entered + pd.Timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")})
        assert after.ok and after.payload["status"] == "ok", after.payload
        logs = fn.logs()
    assert KEY not in logs and SECRET not in logs  # the keys never reach the logs
    stored = PortfolioStore(store, "lambda-live").load()
    assert stored is not None and stored.snapshot.position is not None
    position = stored.snapshot.position
    assert position.sl_price < position.entry_price < position.tp_price
    fills = [e for e in Ledger(store, "lambda-live").events() if e.kind == "fill"]
    assert [e.payload["reason"] for e in fills][:1] == ["entry"]
    assert not [m for m in inbox.read() if "failed" in str(m.get("Subject", ""))]
