"""The AWS template runs the four jobs on their cadences, with the right handlers and images.

The template is read as YAML (CloudFormation short tags such as ``!Ref`` become plain mappings); the full
translation and lint is ``make template``, in its own virtual environment. Each job is started per symbol by
its cadence's state machine (tests/deploy/test_template_fan_out.py checks the fan-out itself).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from scalpbot.config import SECTIONS, STORE_URL_ENV

from support.sam_template import fan_out_module, function_properties, load_template
from support.schedules import ScheduleError, schedule_period

# logical id -> (handler, schedule period, image build target)
JOBS = {
    "RetrieveFunction": ("scalpbot.aws.data_retrieval_lambda_handler", timedelta(minutes=1), "light"),
    "ExecuteFunction": ("scalpbot.aws.execution_lambda_handler", timedelta(minutes=1), "light"),
    "TrainFunction": ("scalpbot.aws.training_and_deployment_lambda_handler", timedelta(days=1), "full"),
    "MonitorFunction": ("scalpbot.aws.monitoring_and_optimization_lambda_handler", timedelta(days=7), "full"),
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded = load_template()
    assert loaded["Transform"] == "AWS::Serverless-2016-10-31"
    return loaded


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"]
    return found


@pytest.mark.parametrize(
    ("expression", "period"),
    [
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(1 hour)", timedelta(hours=1)),
        ("rate(12 hours)", timedelta(hours=12)),
        ("rate(1 day)", timedelta(days=1)),
        ("rate(7 days)", timedelta(days=7)),
        ("cron(* * * * ? *)", timedelta(minutes=1)),
        ("cron(0/15 * * * ? *)", timedelta(minutes=15)),
        ("cron(*/5 * ? * * *)", timedelta(minutes=5)),
        ("cron(5 * * * ? *)", timedelta(hours=1)),
        ("cron(0 */6 * * ? *)", timedelta(hours=6)),
        ("cron(15 0 * * ? *)", timedelta(days=1)),
        ("cron(0 8 ? * MON *)", timedelta(days=7)),
        ("cron(30 2 ? * 1 *)", timedelta(days=7)),
        # Valid, but not evenly spaced: no single period.
        ("cron(0 18 ? * MON-FRI *)", None),
        ("cron(0 10 ? * 6L 2019-2022)", None),
        ("cron(0 12 L * ? *)", None),
        ("cron(0 9 15W JAN,JUL ? *)", None),
        ("cron(0 9 ? * 2#1 *)", None),
    ],
)
def test_valid_expressions_give_their_period(expression: str, period: timedelta | None) -> None:
    assert schedule_period(expression) == period


@pytest.mark.parametrize(
    "expression",
    [
        "rate(1 minutes)",  # plural for 1
        "rate(5 minute)",  # singular for 5
        "rate(0 minutes)",
        "rate(-1 minutes)",
        "rate(1.5 hours)",
        "rate(01 minute)",
        "rate(1 week)",
        "rate(2 weeks)",
        "rate(1  minute)",
        "rate(1minute)",
        "rate 1 minute",
        "rate(1 Minute)",
        "rate()",
        "",
        "every minute",
        "at(2025-01-01T00:00:00)",
        "cron(0 12 * * ?)",  # five fields
        "cron(0 12 * * ? * *)",  # seven fields
        "cron(0 12 * * * *)",  # neither day field is '?'
        "cron(0 12 ? * ? *)",  # both are
        "cron(0 12 * * MON *)",
        "cron(60 * * * ? *)",
        "cron(0 24 * * ? *)",
        "cron(0 12 0 * ? *)",
        "cron(0 12 32 * ? *)",
        "cron(0 12 * 13 ? *)",
        "cron(0 12 * FOO ? *)",
        "cron(0 12 ? * 8 *)",
        "cron(0 12 ? * 2#6 *)",
        "cron(0 12 * * ? 1969)",
        "cron(*/0 * * * ? *)",
        "cron(? * * * ? *)",
        "cron(a b c d e f)",
        "cron(0 12 * * ? *",
    ],
)
def test_invalid_expressions_are_rejected(expression: str) -> None:
    with pytest.raises(ScheduleError):
        schedule_period(expression)


def test_exactly_the_four_jobs_are_functions(resources: dict[str, Any]) -> None:
    functions = {name for name, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    assert functions == set(JOBS)


def _starting_schedules(template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    """The schedules of the state machines that invoke ``function`` per symbol."""
    fan_out = fan_out_module()
    machines = [name for name, f in fan_out.FAN_OUTS.items() if function in f.tasks.values()]
    return [schedule for machine in machines for schedule in fan_out.schedules_of(template, machine)]


@pytest.mark.parametrize("name", list(JOBS))
def test_each_job_runs_on_its_cadence(template: dict[str, Any], name: str) -> None:
    schedules = _starting_schedules(template, name)
    assert len(schedules) == 1, f"{name} is started by {len(schedules)} schedules"
    assert schedule_period(schedules[0]["expression"]) == JOBS[name][1]
    assert not template["Resources"][name]["Properties"].get("Events")  # never without a symbol


@pytest.mark.parametrize("name", list(JOBS))
def test_each_job_runs_its_handler_in_its_image(resources: dict[str, Any], name: str) -> None:
    handler, _, target = JOBS[name]
    function = resources[name]
    assert function["Properties"]["PackageType"] == "Image"
    assert function["Properties"]["ImageConfig"]["Command"] == [handler]
    # The minute jobs run the image without ML libraries; train and monitor need them.
    assert function["Metadata"]["DockerBuildTarget"] == target
    assert function["Metadata"]["Dockerfile"] == "deploy/aws/Dockerfile"


@pytest.mark.parametrize("name", [n for n, job in JOBS.items() if job[1] == timedelta(minutes=1)])
def test_minute_jobs_end_within_their_minute_one_run_per_symbol_and_are_not_retried(
    template: dict[str, Any], name: str
) -> None:
    properties = function_properties(template, name)
    assert properties["Timeout"] < 60
    # As many runs at once as the fan-out starts: SymbolConcurrency (its Map reads it from the input).
    assert properties["ReservedConcurrentExecutions"] == {"Ref": "SymbolConcurrency"}
    assert properties["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    (schedule,) = fan_out_module().schedules_of(template, "MinuteStateMachine")
    assert "${SymbolConcurrency}" in schedule["input"]["Fn::Sub"][0]


def test_scalpbot_variables_name_known_settings(template: dict[str, Any]) -> None:
    # The settings reject an unknown SCALPBOT_* variable, so a typo here would stop every run.
    names: set[str] = set()
    for name in JOBS:
        names |= set(function_properties(template, name)["Environment"]["Variables"])
    scalpbot = {n for n in names if n.startswith("SCALPBOT_")}
    assert STORE_URL_ENV in scalpbot
    assert "SCALPBOT_EXCHANGE__SECRET_ID" in scalpbot
    for variable in scalpbot - {STORE_URL_ENV}:
        section, _, key = variable.removeprefix("SCALPBOT_").lower().partition("__")
        assert section in SECTIONS, variable
        assert key in SECTIONS[section].model_fields, variable


def test_minute_jobs_start_at_the_bar_close_not_at_any_second_of_the_minute(
    resources: dict[str, Any],
) -> None:
    # A rule's rate(1 minute) fires at whatever second the rule was created; EventBridge Scheduler's cron
    # without a flexible window fires at second 0, when the bar has just closed.
    (event,) = resources["MinuteStateMachine"]["Properties"]["Events"].values()
    assert event["Type"] == "ScheduleV2"
    assert event["Properties"]["ScheduleExpression"] == "cron(* * * * ? *)"
    assert event["Properties"]["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert event["Properties"]["RetryPolicy"]["MaximumRetryAttempts"] == 0
    given = fan_out_module().resolve(
        event["Properties"]["Input"], {"Symbols": ["BTC/USDT"], "SymbolConcurrency": 1}
    )
    assert json.loads(given) == {
        "time": "<aws.scheduler.scheduled-time>",
        "symbols": ["BTC/USDT"],
        "concurrency": 1,
    }
