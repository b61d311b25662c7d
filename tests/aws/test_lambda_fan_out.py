"""A basket bot on Lambda: one execute invocation per symbol, all at once, as the template's Map state runs them.

Each symbol's invocation runs in its own warm runtime process (Lambda gives concurrent invocations separate
execution environments) under the real runtime client, on S3 and SNS on the moto server, against the Binance
look-alike: BTC/USDT and ETH/USDT trade, SOL/USDT is listed but has no bars. Every minute the three are invoked
together with the payload the Map gives them (``{"symbol", "time"}``). The bucket is versioned, so every lease
and every risk budget ever written can be read back.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest

from scalpbot.adapters.clock import FixedClock
from scalpbot.adapters.store.factory import open_store
from scalpbot.ports import Store
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore
from scalpbot.state.releases import KERAS_ARTIFACT, ONNX_ARTIFACT, ReleaseStore

from support.binance_server import BinanceServer, Series, sample_series
from support.lambda_runtime import Invocation, LocalLambda
from support.moto_server import MotoServer
from support.sam_template import fan_out_module, load_template
from support.sns_inbox import SnsInbox
from support.step_functions import LambdaPool, executing_state_machines

pytestmark = pytest.mark.slow

BUCKET = "scalpbot-fan"
BOT = "fan"
TRADED = ("BTC/USDT", "ETH/USDT")
EMPTY = "SOL/USDT"  # listed on the exchange, no bars at all
SYMBOLS = (*TRADED, EMPTY)
START = pd.Timestamp("2024-12-30T12:00:00Z")
MINUTES = 12


@pytest.fixture
def exchange(monkeypatch: pytest.MonkeyPatch) -> Iterator[BinanceServer]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    empty = Series(np.empty(0, dtype=np.int64), np.empty((0, 5)))
    with BinanceServer(
        FixedClock(datetime(2024, 12, 31, 23, tzinfo=UTC)), {**sample_series(), "SOLUSDT": empty}
    ) as server:
        yield server


def _deploy(active_release: tuple[Path, str], endpoint: str) -> None:
    """A versioned bucket with the sample's BTC/USDT bars and the eager release current for every symbol."""
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    folder, eager = active_release
    for path in sorted(folder.rglob("*")):
        key = path.relative_to(folder).as_posix()
        if path.is_file() and key.startswith(("data/", "models/")):
            s3.put_object(Bucket=BUCKET, Key=f"bot/{key}", Body=path.read_bytes())
    releases = ReleaseStore(open_store(f"s3://{BUCKET}/bot", endpoint, "us-east-1"))
    source = releases.load("BTC/USDT", eager, (ONNX_ARTIFACT, KERAS_ARTIFACT))
    manifest = {k: v for k, v in source.manifest.items() if k not in ("release_id", "symbol", "artifacts")}
    for symbol in SYMBOLS[1:]:
        releases.write(symbol, eager, manifest, dict(source.artifacts))
        releases.promote(symbol, eager, expected=None, reason="test", now=START.to_pydatetime())


def _versions(endpoint: str, prefix: str) -> list[dict[str, Any]]:
    """Every version written under ``prefix`` (delete markers left out), with its key and JSON body."""
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    found = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=prefix):
        for version in page.get("Versions", []):
            body = s3.get_object(Bucket=BUCKET, Key=version["Key"], VersionId=version["VersionId"])["Body"]
            found.append({"key": version["Key"].removeprefix("bot/"), "document": json.loads(body.read())})
    return found


@dataclass(frozen=True)
class Basket:
    """The functions' environment for Symbols=BTC/USDT,ETH/USDT,SOL/USDT, its store and the topic's inbox."""

    endpoint: str
    env: dict[str, str]
    store: Store
    inbox: SnsInbox


@pytest.fixture
def basket(active_release: tuple[Path, str], moto_server: MotoServer, exchange: BinanceServer) -> Basket:
    moto_server.reset()
    endpoint = moto_server.endpoint_url
    _deploy(active_release, endpoint)
    inbox = SnsInbox(endpoint)
    env = {
        "SCALPBOT_STORE": f"s3://{BUCKET}/bot",
        "SCALPBOT_STORE__ENDPOINT_URL": endpoint,
        "SCALPBOT_NOTIFY__SNS_TOPIC_ARN": inbox.topic_arn,
        "SCALPBOT_NOTIFY__SNS_ENDPOINT_URL": endpoint,
        "SCALPBOT_NOTIFY__RETRY_BASE_DELAY": "0",
        "SCALPBOT_EXCHANGE__API_URL": exchange.url,
        "SCALPBOT_EXCHANGE__MAX_RETRIES": "1",
        "SCALPBOT_BOT__NAME": BOT,
        # As the template sets them for Symbols=BTC/USDT,ETH/USDT,SOL/USDT.
        "SCALPBOT_BOT__SYMBOLS": json.dumps(list(SYMBOLS)),
        "SCALPBOT_DATA__SYMBOL": SYMBOLS[0],
        "SCALPBOT_DATA__LOOKBACK_DAYS": "1",
        "SCALPBOT_PORTFOLIO__MAX_POSITIONS": "1",  # one open position across the basket
        "SCALPBOT_RISK__COOLDOWN_AFTER_LOSSES": "0",
        "SCALPBOT_RISK__MAX_DAILY_LOSS": "1.0",
        "SCALPBOT_RISK__MAX_DRAWDOWN": "1.0",
    }
    return Basket(endpoint, env, open_store(env["SCALPBOT_STORE"], endpoint, "us-east-1"), inbox)


def test_concurrent_symbol_invocations_trade_each_under_its_own_lease_within_the_shared_budget(
    basket: Basket,
) -> None:
    endpoint, env, store, inbox = basket.endpoint, basket.env, basket.store, basket.inbox
    results: dict[str, list[Invocation]] = {symbol: [] for symbol in SYMBOLS}
    spans: list[dict[str, tuple[float, float]]] = []
    open_positions: list[int] = []
    with ExitStack() as stack:
        functions = {
            symbol: stack.enter_context(
                LocalLambda(
                    "scalpbot.aws.execution_lambda_handler", env=env, function_name="scalpbot-execute"
                )
            )
            for symbol in SYMBOLS
        }
        # Refused before anything is written: a basket invoked without a symbol, a symbol it does not trade.
        unnamed = functions["BTC/USDT"].invoke({"time": START.strftime("%Y-%m-%dT%H:%M:%SZ")})
        foreign = functions["BTC/USDT"].invoke(
            {"time": START.strftime("%Y-%m-%dT%H:%M:%SZ"), "symbol": "DOGE/USDT"}
        )
        assert not unnamed.ok and unnamed.payload["errorType"] == "ConfigError"
        assert "invoke once per symbol" in unnamed.payload["errorMessage"]
        assert not foreign.ok and "'DOGE/USDT' is not traded by bot fan" in foreign.payload["errorMessage"]
        assert store.list("state/") == []
        assert [m["Subject"] for m in inbox.read()] == [
            "scalpbot execute failed: ConfigError",
            "scalpbot execute failed for DOGE/USDT: ConfigError",
        ]

        with ThreadPoolExecutor(len(SYMBOLS)) as pool:
            for minute in range(MINUTES):
                at = (START + pd.Timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")
                together = threading.Barrier(len(SYMBOLS))

                def invoke(
                    symbol: str, at: str = at, together: threading.Barrier = together
                ) -> tuple[Invocation, float, float]:
                    together.wait()
                    started = time.monotonic()
                    result = functions[symbol].invoke({"symbol": symbol, "time": at})
                    return result, started, time.monotonic()

                round_ = {symbol: pool.submit(invoke, symbol) for symbol in SYMBOLS}
                span = {}
                for symbol, future in round_.items():
                    result, started, ended = future.result()
                    results[symbol].append(result)
                    span[symbol] = (started, ended)
                spans.append(span)
                snapshots = [PortfolioStore(store, BOT, symbol).load() for symbol in TRADED]
                open_positions.append(
                    sum(s is not None and s.snapshot.position is not None for s in snapshots)
                )

    # The traded symbols traded every minute; the symbol without bars failed every minute, alone.
    for symbol in TRADED:
        assert all(r.ok for r in results[symbol]), [r.payload for r in results[symbol] if not r.ok]
        assert [r.payload["symbol"] for r in results[symbol]] == [symbol] * MINUTES
        assert {r.payload["status"] for r in results[symbol]} == {"ok"}
    assert not any(r.ok for r in results[EMPTY])
    assert {r.payload["errorType"] for r in results[EMPTY]} == {"CycleFailed"}
    # The invocations of one minute ran at the same time (each took longer than the others took to start).
    assert any(
        max(start for start, _ in span.values()) < min(end for _, end in span.values()) for span in spans
    )

    # One ledger: both traded symbols' decisions and the empty symbol's fault, each event naming its symbol.
    ledger = Ledger(store, BOT).events(START - pd.Timedelta(hours=1), START + pd.Timedelta(hours=1))
    assert {e.payload.get("symbol") for e in ledger if e.kind == "decision"} == set(TRADED)
    errors = [e for e in ledger if e.kind == "error"]
    assert {(e.payload["symbol"], e.payload["where"]) for e in errors} == {(EMPTY, "data")}
    assert 1 <= len(errors) < MINUTES  # recorded when it shows, not on every failing minute
    failed = [m for m in inbox.read() if "failed" in str(m.get("Subject", ""))]
    assert len(failed) == len(errors)  # each recorded fault notified on the topic; no other symbol's
    assert {m["Subject"] for m in failed} == {f"{BOT}: execute failed closed"}
    assert all(f"no bars of binance {EMPTY} 1m" in m["Message"] for m in failed)

    # Each symbol under its own lease, taken by that symbol's invocations only; never the bot's single lease.
    request_ids = {symbol: {r.request_id for r in results[symbol]} for symbol in SYMBOLS}
    leases = [v for v in _versions(endpoint, f"bot/state/{BOT}/") if v["key"].endswith("lease.json")]
    assert {v["key"] for v in leases} == {
        f"state/{BOT}/symbols/{symbol.replace('/', '_')}/lease.json" for symbol in SYMBOLS
    }
    for symbol in SYMBOLS:
        key = f"state/{BOT}/symbols/{symbol.replace('/', '_')}/lease.json"
        owners = [v["document"]["owner"].removeprefix("lambda:") for v in leases if v["key"] == key]
        # Each invocation of the symbol took its lease and gave it back (a release writes it expired, then
        # deletes it); no other symbol's invocation ever wrote it.
        assert sorted(owners) == sorted([*request_ids[symbol]] * 2)

    # The shared budget held in every book any invocation wrote, and it did bind: entries were denied.
    books = [v["document"] for v in _versions(endpoint, f"bot/state/{BOT}/portfolio_risk.json")]
    assert books and max(len(book["reservations"]) for book in books) <= 1
    assert max(open_positions) <= 1
    denied = [e for e in ledger if e.kind == "denial" and e.payload.get("scope") == "portfolio"]
    assert denied and {e.payload["code"] for e in denied} == {"max_positions"}


def test_the_templates_minute_state_machine_fans_out_to_the_handlers_and_contains_a_failed_symbol(
    basket: Basket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The minute fan-out as written in the template, on moto's Step Functions interpreter: each symbol's
    retrieve and execute run on the real handlers with the symbol and the scheduled time; the symbol without
    bars fails, is caught and notified by the state machine, and the others trade that minute."""
    fan_out = fan_out_module()
    template = load_template()
    machine = template["Resources"]["MinuteStateMachine"]["Properties"]
    (schedule,) = fan_out.schedules_of(template, "MinuteStateMachine")
    options: dict[str, Any] = {"env": basket.env, "timeout_s": 50}
    with ExitStack() as stack:
        pools = {
            "scalpbot-retrieve": LambdaPool(
                stack, "scalpbot.aws.data_retrieval_lambda_handler", 3, **options
            ),
            "scalpbot-execute": LambdaPool(stack, "scalpbot.aws.execution_lambda_handler", 3, **options),
        }
        endpoint = stack.enter_context(executing_state_machines(monkeypatch, pools))
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
        role = iam.create_role(RoleName="scalpbot-fan-out", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        aws_lambda = boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1")
        arns = {
            name: aws_lambda.create_function(
                FunctionName=name, Role=role, Runtime="python3.12", Handler="image", Code={"ZipFile": b"PK"}
            )["FunctionArn"]
            for name in pools
        }
        definition = fan_out.resolve(
            {"Fn::Sub": json.dumps(machine["Definition"])},
            {
                "Partition": "aws",
                "RetrieveFunctionArn": arns["scalpbot-retrieve"],
                "ExecuteFunctionArn": arns["scalpbot-execute"],
                "TopicArn": basket.inbox.topic_arn,
            },
        )
        sfn = boto3.client("stepfunctions", endpoint_url=endpoint, region_name="us-east-1")
        # STANDARD here: moto describes the executions of standard machines only (the template's is EXPRESS).
        state_machine = sfn.create_state_machine(name="minute", definition=definition, roleArn=role)
        given = fan_out.resolve(
            schedule["input"], {"Symbols": list(SYMBOLS), "SymbolConcurrency": len(SYMBOLS)}
        )
        outputs = []
        for minute in range(2):
            fired = (START + pd.Timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")
            started = sfn.start_execution(
                stateMachineArn=state_machine["stateMachineArn"],
                name=f"minute-{minute}",
                input=given.replace("<aws.scheduler.scheduled-time>", fired),
            )
            deadline = time.monotonic() + 240
            while (run := sfn.describe_execution(executionArn=started["executionArn"]))[
                "status"
            ] == "RUNNING":
                assert time.monotonic() < deadline, "the fan-out did not finish in 240 s"
                time.sleep(0.5)
            assert run["status"] == "SUCCEEDED", run
            outputs.append(json.loads(run["output"]))

    # Every symbol's retrieve and execute got its own payload: the symbol and the scheduled time.
    for name, pool in pools.items():
        assert sorted((event["symbol"], event["time"]) for event, _ in pool.invocations) == sorted(
            (symbol, (START + pd.Timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ"))
            for symbol in SYMBOLS
            for m in range(2)
        ), name
    # The Map's output, one entry per symbol in order: [retrieve, execute].
    for output in outputs:
        assert len(output) == len(SYMBOLS)
        for symbol, (retrieved, executed) in zip(TRADED, output, strict=False):
            assert "added" in retrieved
            assert (executed["symbol"], executed["status"]) == (symbol, "ok")
        assert "MessageId" in output[-1][1]  # SOL/USDT's execute failed: caught and published
    executed = [result for _, result in pools["scalpbot-execute"].invocations]
    assert sorted(r.payload["errorType"] for r in executed if not r.ok) == ["CycleFailed", "CycleFailed"]
    subjects = [m["Subject"] for m in basket.inbox.read()]
    assert subjects.count(f"scalpbot execute failed for {EMPTY}") == 2  # the state machine's notice
    assert f"{BOT}: execute failed closed" in subjects  # the handler's own, with the cause
    decisions = Ledger(basket.store, BOT).events(kinds=("decision",))
    assert {e.payload["symbol"] for e in decisions} == set(TRADED)
