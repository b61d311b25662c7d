"""Check how the template fans each job out to one Lambda invocation per symbol (standard library only).

Used by ``check_template.py`` on the translated CloudFormation template and by ``tests/deploy`` on the SAM
template as written (short tags read as ``{"Ref": ...}``, ``{"Fn::Sub": ...}`` mappings): both forms carry the
same state machine definitions and substitutions; the schedules are ``Events`` of the state machine in the SAM
form and ``AWS::Scheduler::Schedule`` resources once translated.

What is checked, for each state machine of :data:`FAN_OUTS`:

* a schedule at the job's cadence starts it with ``{"time": <the scheduled time>, "symbols": [the Symbols
  parameter], "concurrency": SymbolConcurrency}``;
* its first state is a Map over ``$.symbols``, ``SymbolConcurrency`` at once, whose items are
  ``{"symbol": <the item>, "time": <the scheduled time>}``;
* each Lambda task in it invokes, by ``DefinitionSubstitutions``, the function of that job, with the item as
  its payload; it retries Lambda service errors only, and catches every error into an SNS publish to the
  stack's topic (which itself cannot fail the other symbols);
* every function is invoked by a fan-out and has no schedule of its own (a basket refuses a symbol-less run);
* a machine with a ``then`` step (the weekly review) keeps its input past the Map (``ResultPath: null``) and
  goes on to one invocation of that function with its fixed payload and the scheduled time (the whole
  account's review, once every symbol's is done), caught into the SNS notice like the symbols' tasks.

The daily machine also carries ``"tuning_workers": TuningWorkers`` in its input and starts with a Choice: at
most one worker, the Map above (one train invocation per symbol); more, a Pass that lists the worker numbers
``1..TuningWorkers`` (``States.ArrayRange``) and a second Map over the symbols whose iteration runs
``Prepare`` (``{"symbol", "time", "phase": "prepare"}``), then a Map over the workers, all at once, each
invoking ``{"symbol", "time", "phase": "tune", "worker": k}`` (a lost worker goes to a Pass: the others and
finish run its trials), then ``Finish`` (``"phase": "finish"``). Each of the three is caught into the SNS
notice, and every one of these invocations is of the train function and retries Lambda service errors only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
ITEM_SELECTOR = {"symbol.$": "$$.Map.Item.Value", "time.$": "$.time"}
LAMBDA_SERVICE_ERRORS = frozenset(
    {
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
    }
)


@dataclass(frozen=True)
class FanOut:
    """A state machine that runs ``tasks`` (state name -> function logical id) per symbol on ``schedule``.

    ``tuned``: the function whose run is split into phases when several workers tune (the daily train).
    ``then``: a step after the Map, ``(state name, function, payload)``, the payload with the scheduled time
    added as ``time``.
    """

    schedule: str
    tasks: Mapping[str, str]
    tuned: str | None = None
    then: tuple[str, str, Mapping[str, str]] | None = None


FAN_OUTS = {
    "MinuteStateMachine": FanOut(
        "cron(* * * * ? *)", {"Retrieve": "RetrieveFunction", "Execute": "ExecuteFunction"}
    ),
    "DailyStateMachine": FanOut("rate(1 day)", {"Train": "TrainFunction"}, tuned="TrainFunction"),
    "WeeklyStateMachine": FanOut(
        "rate(7 days)",
        {"Monitor": "MonitorFunction"},
        then=("Portfolio", "MonitorFunction", {"scope": "portfolio"}),
    ),
}
THEN = "(then)"
"""Suffix of a machine's name in :func:`check_fan_out`'s payloads for its step after the Map."""
TUNED = "(tuned)"
"""Suffix of the daily machine's name in :func:`check_fan_out`'s payloads for its phased branch."""
WORKER_NUMBERS = "States.ArrayRange(1, $.tuning_workers, 1)"
PHASES = ("Prepare", "Tune", "Finish")


class WiringError(Exception):
    """The fan-out is not wired as described in the module docstring; the message says where."""


def resolve(value: Any, parameters: Mapping[str, Any]) -> Any:
    """Return ``value`` with ``Ref`` (to ``parameters``), ``Fn::Sub``, ``Fn::Join`` and ``Fn::Select`` applied."""
    if isinstance(value, list):
        return [resolve(each, parameters) for each in value]
    if not isinstance(value, dict) or len(value) != 1:
        return value
    ((name, argument),) = value.items()
    if name == "Ref":
        if argument not in parameters:
            raise WiringError(f"Ref {argument} is not a parameter given to the check")
        return parameters[argument]
    if name == "Fn::Join":
        separator, items = argument
        return str(separator).join(str(item) for item in resolve(items, parameters))
    if name == "Fn::Select":
        index, items = argument
        return resolve(items, parameters)[int(index)]
    if name == "Fn::Sub":
        text, names = (argument, {}) if isinstance(argument, str) else argument
        known = {**parameters, **{k: resolve(v, parameters) for k, v in names.items()}}

        def substitute(match: re.Match[str]) -> str:
            if match.group(1) not in known:
                raise WiringError(f"Fn::Sub names ${{{match.group(1)}}}, which the check was not given")
            return str(known[match.group(1)])

        return re.sub(r"\$\{([A-Za-z0-9_:.]+)\}", substitute, text)
    return value


def definition_of(machine: Mapping[str, Any]) -> dict[str, Any]:
    """Return the state machine's definition: the SAM ``Definition``, or the translated ``DefinitionString``."""
    properties = machine.get("Properties", {})
    if "Definition" in properties:
        found: dict[str, Any] = properties["Definition"]
        return found
    text = properties.get("DefinitionString")
    if isinstance(text, dict) and "Fn::Join" in text:
        separator, lines = text["Fn::Join"]
        if all(isinstance(line, str) for line in lines):
            text = separator.join(lines)
    if not isinstance(text, str):
        raise WiringError(
            "the state machine's definition is neither Definition nor a literal DefinitionString"
        )
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def schedules_of(template: Mapping[str, Any], machine: str) -> list[dict[str, Any]]:
    """Return ``{"expression", "input"}`` of each schedule that starts ``machine`` (SAM or translated form)."""
    resources = template["Resources"]
    found = []
    for event in resources[machine].get("Properties", {}).get("Events", {}).values():
        if event.get("Type") == "ScheduleV2":
            properties = event["Properties"]
            found.append({"expression": properties["ScheduleExpression"], "input": properties.get("Input")})
    for resource in resources.values():
        if resource.get("Type") == "AWS::Scheduler::Schedule":
            properties = resource["Properties"]
            if properties["Target"]["Arn"] == {"Ref": machine}:
                found.append(
                    {
                        "expression": properties["ScheduleExpression"],
                        "input": properties["Target"].get("Input"),
                    }
                )
    return found


def _states(states: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any], Mapping[str, Any]]]:
    """Yield ``(name, state, its siblings)`` for every state, inside Parallel branches too."""
    for name, state in states.items():
        yield name, state, states
        for branch in state.get("Branches", []):
            yield from _states(branch["States"])


def map_items(map_state: Mapping[str, Any], machine_input: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the inputs the Map state gives its iterations for ``machine_input`` (its ItemSelector applied)."""
    items_path = map_state.get("ItemsPath", "$")
    if not items_path.startswith("$."):
        raise WiringError(f"the Map iterates {items_path!r}, not a field of the machine's input")
    items = machine_input[items_path[2:]]
    payloads = []
    for index, item in enumerate(items):
        payload = {}
        for key, path in map_state["ItemSelector"].items():
            if not key.endswith(".$"):
                payload[key] = path
            elif path == "$$.Map.Item.Value":
                payload[key[:-2]] = item
            elif path == "$$.Map.Item.Index":
                payload[key[:-2]] = index
            elif path.startswith("$."):
                payload[key[:-2]] = machine_input[path[2:]]
            else:
                raise WiringError(f"ItemSelector {key}: {path!r} is not understood by this check")
        payloads.append(payload)
    return payloads


def check_machine(
    template: Mapping[str, Any], name: str, fan_out: FanOut, parameters: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Check one fan-out (see the module docstring); return the payloads its Map gives each symbol."""
    resources = template["Resources"]
    machine = resources.get(name)
    if machine is None or machine["Type"] not in (
        "AWS::Serverless::StateMachine",
        "AWS::StepFunctions::StateMachine",
    ):
        raise WiringError(f"{name} is not a state machine of the template")
    schedules = schedules_of(template, name)
    if [s["expression"] for s in schedules] != [fan_out.schedule]:
        raise WiringError(f"{name} is started by {schedules}, not once by {fan_out.schedule}")
    raw_input = resolve(schedules[0]["input"], parameters)
    machine_input = json.loads(raw_input)
    expected_input = {
        "time": SCHEDULED_TIME,
        "symbols": list(parameters["Symbols"]),
        "concurrency": int(parameters["SymbolConcurrency"]),
    }
    if fan_out.tuned is not None:
        expected_input["tuning_workers"] = int(parameters["TuningWorkers"])
    if machine_input != expected_input:
        raise WiringError(f"{name} is started with {machine_input}, not {expected_input}")
    definition = definition_of(machine)
    substitutions = machine["Properties"].get("DefinitionSubstitutions", {})
    first = definition["States"][definition["StartAt"]]
    if fan_out.tuned is not None:
        first = definition["States"][_tuning_choice(name, first)[1]]
    if first.get("Type") != "Map" or first.get("ItemSelector") != ITEM_SELECTOR:
        raise WiringError(f"{name} does not start with a Map whose items are {ITEM_SELECTOR}")
    if first.get("MaxConcurrencyPath") != "$.concurrency" or "MaxConcurrency" in first:
        raise WiringError(f"{name}: the Map's concurrency is not the input's SymbolConcurrency")
    processor = first.get("ItemProcessor") or first.get("Iterator") or {}
    invoked: dict[str, str] = {}
    for state_name, state, siblings in _states(processor.get("States", {})):
        if not str(state.get("Resource", "")).endswith(":states:::lambda:invoke"):
            continue
        invoked[state_name] = _check_task(name, state_name, state, siblings, substitutions)
    if invoked != dict(fan_out.tasks):
        raise WiringError(f"{name} invokes {invoked} per symbol, not {dict(fan_out.tasks)}")
    return map_items(first, machine_input)


def check_then(
    template: Mapping[str, Any], name: str, fan_out: FanOut, parameters: Mapping[str, Any]
) -> dict[str, Any]:
    """Check the step a machine runs after its Map (see the module docstring); return its payload."""
    assert fan_out.then is not None
    state_name, function, payload = fan_out.then
    machine = template["Resources"][name]
    definition = definition_of(machine)
    substitutions = machine["Properties"].get("DefinitionSubstitutions", {})
    states = definition["States"]
    first = states[definition["StartAt"]]
    if "ResultPath" not in first or first["ResultPath"] is not None or first.get("Next") != state_name:
        raise WiringError(
            f"{name}: the Map does not keep its input (ResultPath null) and go on to {state_name}"
        )
    state = states.get(state_name, {})
    if not str(state.get("Resource", "")).endswith(":states:::lambda:invoke") or not state.get("End"):
        raise WiringError(f"{name}.{state_name} is not the machine's last step, a Lambda invocation")
    expected = {**payload, "time.$": "$.time"}
    if state.get("Parameters", {}).get("Payload") != expected:
        raise WiringError(f"{name}.{state_name}: the payload is not {expected}")
    invoked = _check_invocation(name, state_name, state, states, substitutions)
    if invoked != function:
        raise WiringError(f"{name}.{state_name} invokes {invoked}, not {function}")
    return {**payload, "time": SCHEDULED_TIME}


def _tuning_choice(machine: str, first: Mapping[str, Any]) -> tuple[str, str]:
    """Return the states the daily machine's first Choice goes to: (several workers, one worker)."""
    choices = first.get("Choices", [])
    if first.get("Type") != "Choice" or len(choices) != 1:
        raise WiringError(f"{machine} does not start with a Choice between one and several tuning workers")
    rule = choices[0]
    if (rule.get("Variable"), rule.get("NumericGreaterThan")) != ("$.tuning_workers", 1):
        raise WiringError(f"{machine}: the Choice is not on $.tuning_workers > 1")
    return str(rule["Next"]), str(first["Default"])


def check_tuned(
    template: Mapping[str, Any], name: str, fan_out: FanOut, parameters: Mapping[str, Any]
) -> list[list[dict[str, Any]]]:
    """Check the daily machine's branch of several tuning workers; return each symbol's invocation payloads.

    The payloads of one symbol, in order: prepare, one tune per worker, finish (``TuningWorkers`` workers).
    """
    machine = template["Resources"][name]
    definition = definition_of(machine)
    substitutions = machine["Properties"].get("DefinitionSubstitutions", {})
    states = definition["States"]
    workers_state = states[_tuning_choice(name, states[definition["StartAt"]])[0]]
    expected_pass = {
        "time.$": "$.time",
        "symbols.$": "$.symbols",
        "concurrency.$": "$.concurrency",
        "workers.$": WORKER_NUMBERS,
    }
    if workers_state.get("Type") != "Pass" or workers_state.get("Parameters") != expected_pass:
        raise WiringError(f"{name}: several workers start with a Pass other than {expected_pass}")
    each = states[workers_state["Next"]]
    selector = {**ITEM_SELECTOR, "workers.$": "$.workers"}
    if (
        each.get("Type") != "Map"
        or each.get("ItemsPath") != "$.symbols"
        or each.get("ItemSelector") != selector
    ):
        raise WiringError(f"{name}: several workers do not run a Map over $.symbols with items {selector}")
    if each.get("MaxConcurrencyPath") != "$.concurrency" or "MaxConcurrency" in each:
        raise WiringError(f"{name}: the tuned Map's concurrency is not the input's SymbolConcurrency")
    iteration = (each.get("ItemProcessor") or {}).get("States", {})
    processor = each.get("ItemProcessor") or {}
    order, at = [], processor.get("StartAt")
    while at is not None and len(order) < 10:
        order.append(at)
        at = iteration[at].get("Next")
    if order != list(PHASES):
        raise WiringError(f"{name}: a symbol's tuned run goes {order}, not {list(PHASES)}")
    for phase in ("Prepare", "Finish"):
        payload = iteration[phase].get("Parameters", {}).get("Payload")
        expected = {"symbol.$": "$.symbol", "time.$": "$.time", "phase": phase.lower()}
        if payload != expected:
            raise WiringError(f"{name}.{phase}: the payload is {payload}, not {expected}")
        function = _check_invocation(name, phase, iteration[phase], iteration, substitutions)
        if function != fan_out.tuned:
            raise WiringError(f"{name}.{phase} invokes {function}, not {fan_out.tuned}")
    if iteration["Prepare"].get("ResultPath", "$") is not None:
        raise WiringError(
            f"{name}.Prepare replaces the symbol's item with its result; ResultPath must be null"
        )
    tune = iteration["Tune"]
    tune_selector = {
        "symbol.$": "$.symbol",
        "time.$": "$.time",
        "phase": "tune",
        "worker.$": "$$.Map.Item.Value",
    }
    if (
        tune.get("Type") != "Map"
        or tune.get("ItemsPath") != "$.workers"
        or tune.get("ItemSelector") != tune_selector
    ):
        raise WiringError(f"{name}.Tune is not a Map over $.workers with items {tune_selector}")
    if "MaxConcurrency" in tune or "MaxConcurrencyPath" in tune or tune.get("ResultPath", "$") is not None:
        raise WiringError(
            f"{name}.Tune must run every worker at once and keep the symbol's item (ResultPath null)"
        )
    _check_notice(f"{name}.Tune", tune, iteration, substitutions)
    workers = (tune.get("ItemProcessor") or {}).get("States", {})
    tasks = [n for n, s in workers.items() if str(s.get("Resource", "")).endswith(":states:::lambda:invoke")]
    if len(tasks) != 1:
        raise WiringError(f"{name}.Tune: a worker's iteration invokes {tasks}, not one task")
    worker = workers[tasks[0]]
    if worker.get("Parameters", {}).get("Payload.$") != "$":
        raise WiringError(f"{name}.Tune.{tasks[0]}: the payload is not the worker's item")
    function = _function_of(f"{name}.Tune.{tasks[0]}", worker, substitutions)
    if function != fan_out.tuned:
        raise WiringError(f"{name}.Tune.{tasks[0]} invokes {function}, not {fan_out.tuned}")
    catches = worker.get("Catch", [])
    if [c["ErrorEquals"] for c in catches] != [["States.ALL"]] or workers[catches[0]["Next"]].get(
        "Type"
    ) != "Pass":
        raise WiringError(f"{name}.Tune.{tasks[0]}: a lost worker must go to a Pass (the others carry on)")
    symbols_items = map_items(
        each,
        {
            **json.loads(resolve(schedules_of(template, name)[0]["input"], parameters)),
            "workers": list(range(1, int(parameters["TuningWorkers"]) + 1)),
        },
    )
    runs = []
    for item in symbols_items:
        base = {"symbol": item["symbol"], "time": item["time"]}
        tuned = [{**base, "phase": "tune", "worker": k} for k in item["workers"]]
        runs.append([{**base, "phase": "prepare"}, *tuned, {**base, "phase": "finish"}])
    return runs


def _check_task(
    machine: str,
    name: str,
    state: Mapping[str, Any],
    siblings: Mapping[str, Any],
    substitutions: Mapping[str, Any],
) -> str:
    """Check one Lambda task of a symbol's iteration; return the logical id of the function it invokes."""
    where = f"{machine}.{name}"
    parameters = state.get("Parameters", {})
    if parameters.get("Payload.$") != "$":
        raise WiringError(f"{where}: the payload is not the symbol's item")
    return _check_invocation(machine, name, state, siblings, substitutions)


def _check_invocation(
    machine: str,
    name: str,
    state: Mapping[str, Any],
    siblings: Mapping[str, Any],
    substitutions: Mapping[str, Any],
) -> str:
    """Check a Lambda task's function, retries and failure notice; return the function's logical id."""
    where = f"{machine}.{name}"
    function = _function_of(where, state, substitutions)
    _check_notice(where, state, siblings, substitutions)
    return function


def _function_of(where: str, state: Mapping[str, Any], substitutions: Mapping[str, Any]) -> str:
    """Return the function a Lambda task invokes (by its Arn) after checking it retries service errors only."""
    parameters = state.get("Parameters", {})
    function_arn = _substituted(where, parameters.get("FunctionName"), substitutions)
    if not (isinstance(function_arn, dict) and list(function_arn) == ["Fn::GetAtt"]):
        raise WiringError(f"{where}: FunctionName resolves to {function_arn}, not a function's Arn")
    function, attribute = function_arn["Fn::GetAtt"]
    if attribute != "Arn":
        raise WiringError(f"{where}: FunctionName is {function}.{attribute}, not its Arn")
    for retry in state.get("Retry", []):
        unexpected = set(retry["ErrorEquals"]) - LAMBDA_SERVICE_ERRORS
        if unexpected:
            raise WiringError(f"{where} retries {sorted(unexpected)}: only Lambda service errors are retried")
    return str(function)


def _check_notice(
    where: str, state: Mapping[str, Any], siblings: Mapping[str, Any], substitutions: Mapping[str, Any]
) -> None:
    """Check that every error of ``state`` goes to an SNS notice to the stack's topic that cannot fail."""
    catches = state.get("Catch", [])
    if [c["ErrorEquals"] for c in catches] != [["States.ALL"]]:
        raise WiringError(f"{where} does not catch every error once")
    notify = siblings[catches[0]["Next"]]
    if not str(notify.get("Resource", "")).endswith(":states:::sns:publish"):
        raise WiringError(f"{where}: a failure goes to {catches[0]['Next']}, not an SNS publish")
    if _substituted(where, notify["Parameters"].get("TopicArn"), substitutions) != {"Ref": "Topic"}:
        raise WiringError(f"{where}: the failure notice is not published to the stack's topic")
    if [c["ErrorEquals"] for c in notify.get("Catch", [])] != [["States.ALL"]]:
        raise WiringError(f"{where}: a refused notice would fail the other symbols")


def _substituted(where: str, value: Any, substitutions: Mapping[str, Any]) -> Any:
    match = re.fullmatch(r"\$\{([A-Za-z0-9_]+)\}", str(value))
    if match is None or match.group(1) not in substitutions:
        raise WiringError(f"{where}: {value!r} is not one of the machine's DefinitionSubstitutions")
    return substitutions[match.group(1)]


def check_fan_out(
    template: Mapping[str, Any], symbols: Sequence[str], concurrency: int, tuning_workers: int = 1
) -> dict[str, Any]:
    """Check every fan-out for the parameters ``Symbols``/``SymbolConcurrency``/``TuningWorkers``; return each
    machine's payloads per symbol, and under ``"DailyStateMachine (tuned)"`` each symbol's invocations when
    several workers tune (prepare, the workers, finish).

    Raise :class:`WiringError` when a machine, a schedule or a function is wired otherwise.
    """
    parameters = {"Symbols": list(symbols), "SymbolConcurrency": concurrency, "TuningWorkers": tuning_workers}
    payloads: dict[str, Any] = {
        name: check_machine(template, name, fan_out, parameters) for name, fan_out in FAN_OUTS.items()
    }
    for name, fan_out in FAN_OUTS.items():
        if fan_out.tuned is not None:
            payloads[f"{name} {TUNED}"] = check_tuned(template, name, fan_out, parameters)
        if fan_out.then is not None:
            payloads[f"{name} {THEN}"] = check_then(template, name, fan_out, parameters)
    functions = {
        name
        for name, resource in template["Resources"].items()
        if resource["Type"] in ("AWS::Serverless::Function", "AWS::Lambda::Function")
    }
    fanned = {function for fan_out in FAN_OUTS.values() for function in fan_out.tasks.values()}
    if functions != fanned:
        raise WiringError(f"functions {sorted(functions ^ fanned)} are not (or not only) run by a fan-out")
    for function in functions:
        events = template["Resources"][function].get("Properties", {}).get("Events", {})
        if any(event.get("Type") in ("Schedule", "ScheduleV2") for event in events.values()):
            raise WiringError(f"{function} has a schedule of its own: it would run without a symbol")
    for resource in template["Resources"].values():
        target = resource.get("Properties", {}).get("Target", {}).get("Arn")
        if resource["Type"] == "AWS::Scheduler::Schedule" and target not in [{"Ref": m} for m in FAN_OUTS]:
            raise WiringError(f"a schedule targets {target}, not a fan-out")
    return payloads
