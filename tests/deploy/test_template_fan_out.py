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
    assert set(payloads) == {"MinuteStateMachine", "DailyStateMachine", "WeeklyStateMachine"}
    for items in payloads.values():
        assert items == [{"symbol": s, "time": "<aws.scheduler.scheduled-time>"} for s in symbols]


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
    ],
)
def test_the_check_refuses_a_miswired_fan_out(
    template: dict[str, Any], miswire: Callable[[dict[str, Any]], None]
) -> None:
    broken = copy.deepcopy(template)
    miswire(broken)
    with pytest.raises(fan_out.WiringError):
        fan_out.check_fan_out(broken, BASKET, 3)
