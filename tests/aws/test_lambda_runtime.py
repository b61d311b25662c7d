"""The local Lambda harness: real awslambdaric, local Runtime API, one warm process per ``LocalLambda``."""

from __future__ import annotations

import threading

import pytest

from support.lambda_runtime import LocalLambda, LocalLambdaError

pytestmark = pytest.mark.slow

_HANDLERS = "support.lambda_handlers_for_tests"


def test_one_warm_process_serves_consecutive_invocations_with_a_lambda_context() -> None:
    threads_before = set(threading.enumerate())
    with LocalLambda(f"{_HANDLERS}.echo", function_name="fn-under-test", memory_mb=512, timeout_s=30) as fn:
        first = fn.invoke({"n": 1})
        second = fn.invoke({"n": 2})
        assert fn.cold_start_s is not None and fn.init_duration_s is not None
        assert 0 < fn.init_duration_s <= fn.cold_start_s < 10

    assert first.ok and second.ok
    assert first.request_id != second.request_id
    assert (first.payload["event"], first.payload["calls"]) == ({"n": 1}, 1)
    assert (second.payload["event"], second.payload["calls"]) == ({"n": 2}, 2)
    assert first.payload["pid"] == second.payload["pid"]
    assert first.payload["request_id"] == first.request_id
    assert 0 < first.payload["remaining_ms"] <= 30_000
    assert first.payload["function_name"] == "fn-under-test"
    assert first.payload["memory_limit_in_mb"] == "512"
    assert (
        first.payload["invoked_function_arn"]
        == "arn:aws:lambda:us-east-1:123456789012:function:fn-under-test"
    )
    assert first.payload["log_group_name"] == "/aws/lambda/fn-under-test"
    assert first.payload["region"] == "us-east-1"
    assert first.payload["cwd"] == first.payload["task_root"]
    assert first.duration_s > 0
    assert fn.returncode is not None  # stopped on exit
    # server, request and reaper threads joined (a thread an earlier test left may have ended meanwhile)
    assert set(threading.enumerate()) - threads_before == set()


def test_a_raising_handler_posts_an_error_and_logs_it_as_json() -> None:
    with LocalLambda(f"{_HANDLERS}.fail") as fn:
        result = fn.invoke({"message": "bad input"})
        still_warm = fn.invoke({"message": "again"})
        records = fn.log_records(result.request_id)

    assert not result.ok
    assert result.payload["errorType"] == "ValueError"
    assert result.payload["errorMessage"] == "bad input"
    assert result.payload["requestId"] == result.request_id
    assert any("lambda_handlers_for_tests.py" in frame for frame in result.payload["stackTrace"])
    assert [(r["level"], r["errorType"], r["errorMessage"]) for r in records] == [
        ("ERROR", "ValueError", "bad input")
    ]
    assert not still_warm.ok and still_warm.payload["errorMessage"] == "again"


@pytest.mark.parametrize(
    ("handler", "env", "error_type", "message"),
    [
        (f"{_HANDLERS}.echo", {"LAMBDA_TEST_FAIL_AT_IMPORT": "1"}, "RuntimeError", "boom at import"),
        (
            "support.no_such_module.handler",
            {},
            "Runtime.ImportModuleError",
            "No module named 'support.no_such_module'",
        ),
        (
            f"{_HANDLERS}.no_such_function",
            {},
            "Runtime.HandlerNotFound",
            "Handler 'no_such_function' missing",
        ),
    ],
)
def test_an_init_failure_is_reported_and_invoke_raises_instead_of_hanging(
    handler: str, env: dict[str, str], error_type: str, message: str
) -> None:
    with LocalLambda(handler, env=env) as fn:
        with pytest.raises(LocalLambdaError, match="failed to initialise") as raised:
            fn.invoke({}, timeout=20)
        init_error = fn.init_error
        with pytest.raises(LocalLambdaError, match="not running"):
            fn.invoke({}, timeout=20)

    assert init_error is not None
    assert init_error["errorType"] == error_type
    assert message in init_error["errorMessage"]
    assert message in str(raised.value)
    assert fn.returncode == 1


def test_logging_extra_fields_become_top_level_keys_of_the_json_record() -> None:
    with LocalLambda(f"{_HANDLERS}.log") as fn:
        result = fn.invoke({"name": "world"})
        records = fn.log_records(result.request_id)
        logs = fn.logs()

    assert result.ok and result.payload == "logged"
    assert len(records) == 1  # the DEBUG line is below the default INFO level, the print is not JSON
    record = records[0]
    assert record["level"] == "INFO"
    assert record["message"] == "hello world"
    assert record["logger"] == "support.lambda_handlers_for_tests"
    assert record["requestId"] == result.request_id
    assert (record["bot"], record["n"], record["obj"]) == ("demo", 3, "{1}")
    assert {"timestamp", "level", "message", "logger", "requestId"} <= record.keys()
    assert "a plain line, not JSON" in logs
    assert fn.logs() == logs  # still readable after close


def test_text_log_format_and_log_level() -> None:
    with LocalLambda(f"{_HANDLERS}.log", log_format="TEXT", log_level="DEBUG") as fn:
        result = fn.invoke({"name": "text"})

    assert result.ok
    assert fn.log_records() == []
    assert "[INFO]\t" in fn.logs() and f"\t{result.request_id}\thello text" in fn.logs()
    assert "[DEBUG]" in fn.logs()


def test_a_process_that_dies_mid_invocation_raises_with_its_exit_code() -> None:
    with LocalLambda(f"{_HANDLERS}.exit_now") as fn, pytest.raises(LocalLambdaError, match="exit code 3"):
        fn.invoke({}, timeout=20)


def test_no_answer_in_time_raises_and_kills_the_process() -> None:
    with LocalLambda(f"{_HANDLERS}.sleep") as fn:
        with pytest.raises(LocalLambdaError, match=r"within 0\.5 s"):
            fn.invoke({"seconds": 60}, timeout=0.5)
        assert fn.returncode is not None
