"""Several train invocations tune one symbol's studies together on a real PostgreSQL server, as the daily state
machine runs them: prepare, then tune workers at once, then finish.

Every invocation runs the train function's handler under the real Lambda runtime client, each in its own process
(Lambda gives concurrent invocations separate execution environments), on S3 and SNS on the moto server; the
studies live in a fresh PostgreSQL database per test (``train.study_storage``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import optuna
import pandas as pd
import pytest

from scalpbot.adapters.marketdata.files import FileMarketData
from scalpbot.config import load_settings
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.train import train
from scalpbot.ml.shared_study import WORKER_ATTR
from scalpbot.ports import Store
from scalpbot.state.releases import ONNX_ARTIFACT, ReleaseStore
from scalpbot.state.tuning_handover import handover_prefix
from scalpbot.wiring import Services, build_services

from support.files import write_csv
from support.lambda_runtime import Invocation, LocalLambda, LocalLambdaError
from support.moto_server import MotoServer
from support.postgres import PostgresServer
from support.sam_template import fan_out_module, load_template
from support.sns_inbox import SnsInbox
from support.step_functions import LambdaPool, executing_state_machines

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]

HANDLER = "scalpbot.aws.training_and_deployment_lambda_handler"
KILLING_HANDLER = "support.killing_train_handler.handler"
BUCKET = "scalpbot-tune"
SYMBOL = "BTC/USDT"
BUDGET = 40
TRAIN = {"days": 21, "trials": BUDGET, "max_epochs": 2, "min_trades": 5}
State = optuna.trial.TrialState


@dataclass(frozen=True)
class Deployment:
    """The train function's environment (without its study storage), the store, the bars as a CSV file."""

    env: dict[str, str]
    store: Store
    inbox: SnsInbox
    bars_csv: Path


@pytest.fixture
def deployment(
    moto_server: MotoServer, sample_bars: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Deployment:
    moto_server.reset()
    boto3.client("s3", endpoint_url=moto_server.endpoint_url, region_name="us-east-1").create_bucket(
        Bucket=BUCKET
    )
    inbox = SnsInbox(moto_server.endpoint_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    env = {
        "SCALPBOT_STORE": f"s3://{BUCKET}/bot",
        "SCALPBOT_STORE__ENDPOINT_URL": moto_server.endpoint_url,
        "SCALPBOT_NOTIFY__SNS_TOPIC_ARN": inbox.topic_arn,
        "SCALPBOT_NOTIFY__SNS_ENDPOINT_URL": moto_server.endpoint_url,
        "SCALPBOT_NOTIFY__RETRY_BASE_DELAY": "0",
        "SCALPBOT_BOT__NAME": "tune",
        **{f"SCALPBOT_TRAIN__{name.upper()}": str(value) for name, value in TRAIN.items()},
    }
    csv = write_csv(sample_bars, tmp_path / "sample.csv")
    services = _services(env["SCALPBOT_STORE"], moto_server.endpoint_url)
    retrieve(services.dataset, FileMarketData(csv), services.series())
    return Deployment(env, services.store, inbox, csv)


def _services(url: str, endpoint: str | None = None, **train_settings: Any) -> Services:
    store: dict[str, Any] = {"url": url} if endpoint is None else {"url": url, "endpoint_url": endpoint}
    return build_services(load_settings(None, {"store": store, "train": {**TRAIN, **train_settings}}))


def _event(at: str, phase: str, **more: Any) -> dict[str, Any]:
    return {"symbol": SYMBOL, "time": at, "phase": phase, **more}


def _function(env: dict[str, str], handler: str = HANDLER, **extra: str) -> LocalLambda:
    return LocalLambda(
        handler, env={**env, **extra}, function_name="scalpbot-train", memory_mb=10240, timeout_s=900
    )


def _invoke(env: dict[str, str], event: dict[str, Any]) -> Invocation:
    with _function(env) as function:
        return function.invoke(event, timeout=600)


def _tune_together(env: dict[str, str], at: str, workers: int) -> list[Invocation]:
    """Start ``workers`` warm environments, then invoke them all at once with the tune phase."""
    with ExitStack() as stack:
        functions = [stack.enter_context(_function(env)) for _ in range(workers)]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda k: functions[k].invoke(_event(at, "tune", worker=k)), range(workers)))


def _trials(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return sorted(optuna.load_study(study_name=study, storage=url).get_trials(), key=lambda t: t.number)


def _tuned_by(url: str, studies: list[str]) -> dict[str, list[tuple[int, str, str]]]:
    """Each study's trials: number, state and the worker that ran it."""
    return {
        study: [(t.number, t.state.name, t.user_attrs[WORKER_ATTR]) for t in _trials(url, study)]
        for study in studies
    }


def test_two_tune_workers_share_the_budget_and_finish_publishes_what_train_picks(
    deployment: Deployment, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    at = "2024-12-31T12:00:00Z"
    url = postgres_server.create_database()
    env = {**deployment.env, "SCALPBOT_TRAIN__STUDY_STORAGE": url}
    prepared = _invoke(env, _event(at, "prepare"))
    assert prepared.ok and prepared.payload["status"] == "prepared", prepared.payload
    studies = prepared.payload["studies"]
    assert len(studies) == 3  # one study per candidate label

    tuned = _tune_together(env, at, workers=2)
    assert all(t.ok and t.payload["status"] == "tuned" for t in tuned), [t.payload for t in tuned]
    for study in studies:
        trials = _trials(url, study)
        assert Counter(t.state for t in trials) == {State.COMPLETE: BUDGET}  # exactly the budget, no more
        assert sum(t.payload["trials"][study] for t in tuned) == BUDGET
        workers = {t.user_attrs[WORKER_ATTR].rsplit(":", 1)[0] for t in trials}
        assert len(workers) == 2, Counter(t.user_attrs[WORKER_ATTR] for t in trials)  # both contributed
    tuned_by = _tuned_by(url, studies)

    finished = _invoke(env, _event(at, "finish"))
    assert finished.ok, finished.payload
    release_id = finished.payload["release_id"]
    assert finished.payload["tuning"]["n_trials"] == BUDGET
    assert _tuned_by(url, studies) == tuned_by  # the workers completed the budget: finish ran no trial
    assert ReleaseStore(deployment.store).list(SYMBOL) == [release_id]
    subjects = [n["Subject"] for n in deployment.inbox.read()]
    assert subjects == [f"train binance {SYMBOL} 1m: release {release_id} " + (
        "promoted" if finished.payload["promoted"] else "not promoted"
    )]  # fmt: skip
    again = _invoke(env, _event(at, "finish"))  # a retried finish publishes nothing new
    assert again.ok and again.payload["release_id"] == release_id
    assert ReleaseStore(deployment.store).list(SYMBOL) == [release_id]

    # One process running ``train`` on the same bars and the same (complete) studies picks the same release.
    until = pd.Timestamp(at).to_pydatetime()
    folder = _services(str(tmp_path / "one"), study_storage=url)
    retrieve(folder.dataset, FileMarketData(deployment.bars_csv), folder.series())
    one = train(folder, folder.series(), until=until)  # its fits give the studies' fingerprint, or it refuses
    assert _tuned_by(url, studies) == tuned_by
    ours = ReleaseStore(deployment.store).load(SYMBOL, release_id).manifest
    theirs = ReleaseStore(folder.store).load(SYMBOL, one.release_id).manifest
    assert release_id.split("-")[1] == one.release_id.split("-")[1]  # the ONNX bytes' hash
    for field in ("params", "labels", "gate", "metrics", "baselines", "folds", "feature_importance", "model"):
        assert ours[field] == theirs[field], field
    assert ours["artifacts"][ONNX_ARTIFACT] == theirs["artifacts"][ONNX_ARTIFACT]
    assert {k: v for k, v in ours["tuning"].items() if k != "elapsed_s"} == {
        k: v for k, v in theirs["tuning"].items() if k != "elapsed_s"
    }

    # One process tuning a fresh study alone: the same windows (the studies' fingerprints are equal) and the same
    # budget; its proposals follow one worker's history, so its trials (and best params) are its own.
    fresh = postgres_server.create_database()
    alone = _services(str(tmp_path / "alone"), study_storage=fresh)
    retrieve(alone.dataset, FileMarketData(deployment.bars_csv), alone.series())
    single = train(alone, alone.series(), until=until)
    assert single.tuning["n_trials"] == BUDGET
    for study in studies:
        shared = optuna.load_study(study_name=study, storage=url).user_attrs
        solo = optuna.load_study(study_name=study, storage=fresh).user_attrs
        assert shared["scalpbot_fingerprint"] == solo["scalpbot_fingerprint"]
    assert single.model["label_candidates"] == finished.payload["model"]["label_candidates"]


def test_a_tune_worker_killed_mid_trial_costs_time_only_and_a_rerun_completes_the_budget(
    deployment: Deployment, postgres_server: PostgresServer
) -> None:
    at = "2024-12-30T12:00:00Z"
    url = postgres_server.create_database()
    env = {**deployment.env, "SCALPBOT_TRAIN__STUDY_STORAGE": url}
    prepared = _invoke(env, _event(at, "prepare"))
    assert prepared.ok, prepared.payload
    first = prepared.payload["studies"][0]
    doomed = _function(env, KILLING_HANDLER, TUNING_WORKER_KILL_AT=str(3 * 10 + 2))
    with doomed, pytest.raises(LocalLambdaError, match="exit code -9"):
        doomed.invoke(_event(at, "tune", worker=0), timeout=600)  # three folds per trial: mid trial 11
    before = _trials(url, first)
    assert [t.state for t in before] == [State.COMPLETE] * 10 + [State.RUNNING]
    lost = before[-1]

    rerun = _invoke(env, _event(at, "tune", worker=1))
    assert rerun.ok and rerun.payload["status"] == "tuned", rerun.payload
    trials = _trials(url, first)
    assert Counter(t.state for t in trials) == {State.COMPLETE: BUDGET, State.FAIL: 1}
    assert trials[lost.number].state == State.FAIL  # its heartbeat went stale
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == lost.number]
    assert len(retries) == 1 and retries[0].state == State.COMPLETE and retries[0].params == lost.params
    for study in prepared.payload["studies"][1:]:
        assert Counter(t.state for t in _trials(url, study)) == {State.COMPLETE: BUDGET}
    again = _invoke(env, _event(at, "prepare"))  # prepare again: found, nothing fitted
    assert again.ok and again.payload["status"] == "found" and "fit" not in again.payload["timings"]


@pytest.mark.parametrize("damage", ["missing", "altered"])
def test_finish_without_an_intact_hand_over_names_its_key_and_publishes_nothing(
    deployment: Deployment, postgres_server: PostgresServer, damage: str
) -> None:
    at = "2024-12-29T12:00:00Z"
    env = {**deployment.env, "SCALPBOT_TRAIN__STUDY_STORAGE": postgres_server.create_database()}
    prefix = handover_prefix(SYMBOL, pd.Timestamp(at).to_pydatetime())
    key = f"{prefix}manifest.json"
    if damage == "altered":
        assert _invoke(env, _event(at, "prepare")).ok
        key = f"{prefix}windows.npz"
        deployment.store.put(key, deployment.store.get(key).data[:-64] + bytes(64))
    deployment.inbox.read()
    for phase in ("tune", "finish"):
        failed = _invoke(env, _event(at, phase, worker=0))
        assert not failed.ok and failed.payload["errorType"] == "DataError", failed.payload
        assert key in failed.payload["errorMessage"]
    assert ReleaseStore(deployment.store).list(SYMBOL) == []
    notices = deployment.inbox.read()
    assert len(notices) == 2 and all(key in n["Message"] for n in notices), [json.dumps(n) for n in notices]


def test_the_templates_daily_state_machine_runs_prepare_the_workers_at_once_and_finish(
    deployment: Deployment, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daily fan-out as written in the template, with TuningWorkers=2, on moto's Step Functions
    interpreter: the train function's real handler gets prepare, then both workers together, then finish, and
    the symbol's release is published once."""
    fan_out = fan_out_module()
    template = load_template()
    machine = template["Resources"]["DailyStateMachine"]["Properties"]
    (schedule,) = fan_out.schedules_of(template, "DailyStateMachine")
    url = postgres_server.create_database()
    env = {**deployment.env, "SCALPBOT_TRAIN__STUDY_STORAGE": url}
    at = "2024-12-28T12:00:00Z"
    with ExitStack() as stack:
        pool = LambdaPool(stack, HANDLER, 2, env=env, timeout_s=900, memory_mb=10240)
        endpoint = stack.enter_context(executing_state_machines(monkeypatch, {"scalpbot-train": pool}))
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
        role = iam.create_role(RoleName="scalpbot-daily", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        aws_lambda = boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1")
        arn = aws_lambda.create_function(
            FunctionName="scalpbot-train",
            Role=role,
            Runtime="python3.12",
            Handler="image",
            Code={"ZipFile": b"PK"},
        )["FunctionArn"]
        definition = fan_out.resolve(
            {"Fn::Sub": json.dumps(machine["Definition"])},
            {"Partition": "aws", "TrainFunctionArn": arn, "TopicArn": deployment.inbox.topic_arn},
        )
        sfn = boto3.client("stepfunctions", endpoint_url=endpoint, region_name="us-east-1")
        state_machine = sfn.create_state_machine(name="daily", definition=definition, roleArn=role)
        given = fan_out.resolve(
            schedule["input"], {"Symbols": [SYMBOL], "SymbolConcurrency": 1, "TuningWorkers": 2}
        )
        started = sfn.start_execution(
            stateMachineArn=state_machine["stateMachineArn"],
            input=given.replace("<aws.scheduler.scheduled-time>", at),
        )
        deadline = time.monotonic() + 600
        while (run := sfn.describe_execution(executionArn=started["executionArn"]))["status"] == "RUNNING":
            assert time.monotonic() < deadline, "the daily run did not finish in 600 s"
            time.sleep(1)
    assert run["status"] == "SUCCEEDED", run
    events = [event for event, _ in pool.invocations]
    assert [e.get("phase") for e in events] == ["prepare", "tune", "tune", "finish"], events
    assert sorted(e["worker"] for e in events[1:3]) == [1, 2]
    assert all((e["symbol"], e["time"]) == (SYMBOL, at) for e in events)
    assert all(result.ok for _, result in pool.invocations), [r.payload for _, r in pool.invocations]
    (output,) = json.loads(run["output"])
    assert output["phase"] == "finish" and ReleaseStore(deployment.store).list(SYMBOL) == [
        output["release_id"]
    ]
    for study in pool.invocations[0][1].payload["studies"]:
        assert Counter(t.state for t in _trials(url, study)) == {State.COMPLETE: BUDGET}
