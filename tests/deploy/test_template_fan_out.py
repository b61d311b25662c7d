"""The template fans every job out to one invocation per symbol, and the handlers run each payload it makes.

``deploy/aws/fan_out.py`` is the check ``make template`` runs on the translated template; here it reads the
SAM template as written, and each per-symbol payload is handed to the handlers' own event parsing with the
settings the functions' environment gives, for a bot of one symbol and a basket.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from scalpbot.aws import event_symbol, event_time
from scalpbot.config import load_settings
from scalpbot.jobs.services import state_symbol
from scalpbot.state.scope import state_key

from support.sam_template import fan_out_module, function_properties, load_template

fan_out = fan_out_module()

ONE = ["BTC/USDT"]
BASKET = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
FIRED_AT = "2024-12-30T06:01:00Z"  # what the scheduler puts for <aws.scheduler.scheduled-time>


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.mark.parametrize("symbols", [ONE, BASKET], ids=["one symbol", "basket"])
def test_each_cadence_invokes_its_jobs_once_per_symbol_with_the_scheduled_time(
    template: dict[str, Any], symbols: list[str]
) -> None:
    payloads = fan_out.check_fan_out(template, symbols, len(symbols))
    tuned = payloads.pop("DailyStateMachine (tuned)")
    # once every symbol's week is reviewed, one invocation reviews the whole account
    assert payloads.pop("WeeklyStateMachine (then)") == {
        "scope": "portfolio",
        "time": "<aws.scheduler.scheduled-time>",
    }
    assert set(payloads) == {"MinuteStateMachine", "DailyStateMachine", "WeeklyStateMachine"}
    for items in payloads.values():
        assert items == [{"symbol": s, "time": "<aws.scheduler.scheduled-time>"} for s in symbols]
    at = "<aws.scheduler.scheduled-time>"
    assert tuned == [  # one worker never takes the tuned branch, yet it is wired for any number
        [{"symbol": s, "time": at, "phase": "prepare"}, {"symbol": s, "time": at, "phase": "tune", "worker": 1},
         {"symbol": s, "time": at, "phase": "finish"}]
        for s in symbols
    ]  # fmt: skip


def test_several_tuning_workers_run_prepare_then_every_worker_then_finish_per_symbol(
    template: dict[str, Any],
) -> None:
    runs = fan_out.check_fan_out(template, BASKET, 3, tuning_workers=4)["DailyStateMachine (tuned)"]
    assert [[(r["symbol"], r["phase"], r.get("worker")) for r in symbol_runs] for symbol_runs in runs] == [
        [(s, "prepare", None), *((s, "tune", k) for k in range(1, 5)), (s, "finish", None)] for s in BASKET
    ]
    states = template["Resources"]["DailyStateMachine"]["Properties"]["Definition"]["States"]
    assert states["Plan"]["Default"] == "EachSymbol"  # one worker: the one train invocation of before
    assert _map(template, "DailyStateMachine")["ItemProcessor"]["StartAt"] == "Train"


def test_the_train_function_reads_the_study_storage_from_its_secret_and_only_it_may(
    template: dict[str, Any],
) -> None:
    variables = function_properties(template, "TrainFunction")["Environment"]["Variables"]
    assert variables["SCALPBOT_TRAIN__STUDY_STORAGE_SECRET_ID"] == {
        "Fn::If": ["HasStudyStorage", {"Ref": "StudyStorageSecretArn"}, {"Ref": "AWS::NoValue"}]
    }
    assert "SCALPBOT_TRAIN__STUDY_STORAGE" not in variables  # never the URL (and its password) itself
    for name in ("RetrieveFunction", "ExecuteFunction", "MonitorFunction"):
        assert "SCALPBOT_TRAIN__STUDY_STORAGE_SECRET_ID" not in str(function_properties(template, name))
    policy = template["Resources"]["TrainSecretPolicy"]
    assert policy["Condition"] == "HasStudyStorage" and policy["Properties"]["Roles"] == [
        {"Ref": "TrainRole"}
    ]
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": {"Ref": "StudyStorageSecretArn"},
        }
    ]
    parameter = template["Parameters"]["StudyStorageSecretArn"]
    assert parameter["Default"] == "" and parameter["Type"] == "String"
    rule = template["Rules"]["TuningWorkersShareAStudy"]
    assert rule["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "StudyStorageSecretArn"}, ""]}]
    }
    # The studies keep the windows' fingerprint whether the URL came from the secret or the setting.
    settings = load_settings(None, {"train": {"study_storage_secret_id": "arn:aws:secretsmanager:x"}})
    assert "study_storage_secret_id" in settings.train.model_dump()


@pytest.mark.parametrize(
    ("symbols", "symbol", "lease"),
    [
        (ONE, "BTC/USDT", "state/fan/lease.json"),
        (BASKET, "ETH/USDT", "state/fan/symbols/ETH_USDT/lease.json"),
    ],
    ids=["one symbol keeps the bot's keys", "basket: each symbol its own"],
)
def test_the_handlers_accept_every_payload_for_the_symbol_it_names(
    template: dict[str, Any],
    symbols: list[str],
    symbol: str,
    lease: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parameters = {"Symbols": symbols, "SymbolConcurrency": len(symbols)}
    variables = function_properties(template, "ExecuteFunction")["Environment"]["Variables"]
    for name in ("SCALPBOT_BOT__SYMBOLS", "SCALPBOT_DATA__SYMBOL"):
        monkeypatch.setenv(name, fan_out.resolve(variables[name], parameters))
    monkeypatch.setenv("SCALPBOT_BOT__NAME", "fan")
    settings = load_settings(None, {})
    assert settings.symbols == tuple(symbols) and settings.data.symbol == symbols[0]

    payloads = fan_out.check_fan_out(template, symbols, len(symbols))["MinuteStateMachine"]
    for payload in payloads:
        event = {**payload, "time": payload["time"].replace("<aws.scheduler.scheduled-time>", FIRED_AT)}
        assert event_symbol(event, "fan", settings.symbols) == payload["symbol"]
        assert event_time(event, lambda: pd.Timestamp("2030-01-01T00:00:00Z")) == pd.Timestamp(FIRED_AT)
    assert state_key("fan", "lease.json", state_symbol(settings, symbol)) == lease


def _map(template: dict[str, Any], machine: str = "MinuteStateMachine") -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"][machine]["Properties"]["Definition"]["States"]["EachSymbol"]
    return found


def _execute_branch(template: dict[str, Any]) -> dict[str, Any]:
    branches = _map(template)["ItemProcessor"]["States"]["RetrieveAndExecute"]["Branches"]
    found: dict[str, Any] = next(b for b in branches if b["StartAt"] == "Execute")["States"]
    return found


def _no_time(t: dict[str, Any]) -> None:
    del _map(t)["ItemSelector"]["time.$"]


def _wrong_function(t: dict[str, Any]) -> None:
    _execute_branch(t)["Execute"]["Parameters"]["FunctionName"] = "${RetrieveFunctionArn}"


def _retries_job_errors(t: dict[str, Any]) -> None:
    _execute_branch(t)["Execute"]["Retry"][0]["ErrorEquals"].append("States.ALL")


def _uncaught(t: dict[str, Any]) -> None:
    del _execute_branch(t)["Execute"]["Catch"]


def _notice_can_fail(t: dict[str, Any]) -> None:
    del _execute_branch(t)["ExecuteFailed"]["Catch"]


def _fixed_concurrency(t: dict[str, Any]) -> None:
    _map(t, "DailyStateMachine")["MaxConcurrency"] = 1


def _own_schedule(t: dict[str, Any]) -> None:
    t["Resources"]["TrainFunction"]["Properties"]["Events"] = {
        "Daily": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 day)"}}
    }


def _tuned(t: dict[str, Any]) -> dict[str, Any]:
    states = t["Resources"]["DailyStateMachine"]["Properties"]["Definition"]["States"]
    found: dict[str, Any] = states["EachSymbolTuned"]["ItemProcessor"]["States"]
    return found


def _workers_one_at_a_time(t: dict[str, Any]) -> None:
    _tuned(t)["Tune"]["MaxConcurrency"] = 1


def _finish_before_the_workers(t: dict[str, Any]) -> None:
    _tuned(t)["Prepare"]["Next"] = "Finish"


def _prepare_replaces_the_item(t: dict[str, Any]) -> None:
    del _tuned(t)["Prepare"]["ResultPath"]


def _lost_worker_fails_the_symbol(t: dict[str, Any]) -> None:
    _tuned(t)["Tune"]["ItemProcessor"]["States"]["TuneWorker"]["Catch"][0]["Next"] = "Nowhere"
    _tuned(t)["Tune"]["ItemProcessor"]["States"]["Nowhere"] = {"Type": "Fail"}


def _finish_named_as_tune(t: dict[str, Any]) -> None:
    _tuned(t)["Finish"]["Parameters"]["Payload"]["phase"] = "tune"


def _no_workers_in_input(t: dict[str, Any]) -> None:
    event = t["Resources"]["DailyStateMachine"]["Properties"]["Events"]["Daily"]
    event["Properties"]["Input"]["Fn::Sub"][0] = event["Properties"]["Input"]["Fn::Sub"][0].replace(
        ', "tuning_workers": ${TuningWorkers}', ""
    )


def _weekly_map_result_replaces_the_input(t: dict[str, Any]) -> None:
    del _map(t, "WeeklyStateMachine")["ResultPath"]


def _portfolio_review_of_one_symbol(t: dict[str, Any]) -> None:
    states = t["Resources"]["WeeklyStateMachine"]["Properties"]["Definition"]["States"]
    states["Portfolio"]["Parameters"]["Payload"]["symbol"] = "BTC/USDT"


def _portfolio_review_uncaught(t: dict[str, Any]) -> None:
    del t["Resources"]["WeeklyStateMachine"]["Properties"]["Definition"]["States"]["Portfolio"]["Catch"]


def _no_symbols_in_input(t: dict[str, Any]) -> None:
    event = t["Resources"]["WeeklyStateMachine"]["Properties"]["Events"]["Weekly"]
    event["Properties"]["Input"] = json.dumps({"time": "<aws.scheduler.scheduled-time>"})


@pytest.mark.parametrize(
    "miswire",
    [
        _no_time,
        _wrong_function,
        _retries_job_errors,
        _uncaught,
        _notice_can_fail,
        _fixed_concurrency,
        _own_schedule,
        _no_symbols_in_input,
        _workers_one_at_a_time,
        _finish_before_the_workers,
        _prepare_replaces_the_item,
        _lost_worker_fails_the_symbol,
        _finish_named_as_tune,
        _no_workers_in_input,
        _weekly_map_result_replaces_the_input,
        _portfolio_review_of_one_symbol,
        _portfolio_review_uncaught,
    ],
)
def test_the_check_refuses_a_miswired_fan_out(
    template: dict[str, Any], miswire: Callable[[dict[str, Any]], None]
) -> None:
    broken = copy.deepcopy(template)
    miswire(broken)
    with pytest.raises(fan_out.WiringError):
        fan_out.check_fan_out(broken, BASKET, 3, tuning_workers=2)
