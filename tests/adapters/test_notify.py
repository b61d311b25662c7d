"""Notifications reach SNS (moto server) and apprise (a local JSON webhook); a dead channel is retried, recorded
in the ledger and stops nobody; credentials in apprise URLs never leak."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from scalpbot.adapters.clock import FixedClock
from scalpbot.adapters.notify.apprise_channel import AppriseNotifier
from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.adapters.notify.factory import build_notifier
from scalpbot.adapters.notify.fanout import (
    NOTIFY_ERROR,
    ChannelError,
    Notifications,
    NotifierChannel,
    job_error,
)
from scalpbot.adapters.notify.sns import SnsNotifier, sns_client, sns_subject
from scalpbot.adapters.store.memory import MemoryStore
from scalpbot.errors import ConfigError, ExchangeTemporaryError, StoreError
from scalpbot.state.ledger import Ledger

from support.moto_server import MotoServer
from support.sns_inbox import SnsInbox

NOW = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)


class Webhook:
    """A JSON webhook on 127.0.0.1 that records each POST and answers with queued statuses (200 when none)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.statuses: list[int] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.posts.append((self.path, json.loads(body)))
                self.send_response(hook.statuses.pop(0) if hook.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self, path: str = "hook") -> str:
        """Return apprise's URL for a JSON POST to ``path`` on this server."""
        return f"json://127.0.0.1:{self.port}/{path}"

    def bodies(self) -> list[dict[str, Any]]:
        return [body for _, body in self.posts]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def inbox(moto_server: MotoServer) -> SnsInbox:
    moto_server.reset()
    return SnsInbox(moto_server.endpoint_url)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    server = Webhook()
    yield server
    server.close()


@pytest.fixture
def dead_port() -> int:
    """Return a loopback port that nothing listens on (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(MemoryStore(), "test-bot")


def notify_errors(ledger: Ledger) -> list[dict[str, Any]]:
    return [dict(event.payload) for event in ledger.events(kinds=[NOTIFY_ERROR])]


class Sleeps(list[float]):
    """Record the pauses the fan-out asks for instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# --- SNS ---------------------------------------------------------------------------------------------------


def test_sns_delivers_a_result_and_a_job_error_with_their_subjects_messages_and_levels(
    moto_server: MotoServer, inbox: SnsInbox, ledger: Ledger
) -> None:
    notifier = build_notifier(
        False,
        inbox.topic_arn,
        [],
        endpoint_url=moto_server.endpoint_url,
        ledger=ledger,
        clock=FixedClock(NOW),
    )
    error = ExchangeTemporaryError("binance is unreachable: ReadTimeout after 10 s")

    notifier.notify("weekly report BTC/USDT", "trades 41, net PnL +1.8 %, max drawdown 2.1 %")
    notifier.notify(*job_error("execute", "BTC/USDT", error), level="error")

    envelopes = inbox.read()
    assert [(e["Subject"], e["Message"], e["MessageAttributes"]["level"]["Value"]) for e in envelopes] == [
        ("weekly report BTC/USDT", "trades 41, net PnL +1.8 %, max drawdown 2.1 %", "info"),
        (
            "scalpbot execute failed for BTC/USDT: ExchangeTemporaryError",
            "job: execute\nsymbol: BTC/USDT\n"
            "cause: ExchangeTemporaryError: binance is unreachable: ReadTimeout after 10 s",
            "error",
        ),
    ]
    assert notifier.names == ["sns:scalpbot-alerts"]
    assert notify_errors(ledger) == []


def test_sns_subjects_are_one_line_of_ascii_at_most_100_characters_as_aws_requires(inbox: SnsInbox) -> None:
    long_subject = "Stop-loss déclenché € on BTC/USDT\nafter a gap " + "x" * 200

    SnsNotifier(inbox.topic_arn, inbox.sns).send(long_subject, "")

    [envelope] = inbox.read()
    assert envelope["Subject"] == sns_subject(long_subject)
    assert envelope["Subject"].startswith("Stop-loss declenche on BTC/USDT after a gap xxx")
    assert len(envelope["Subject"]) == 100 and envelope["Subject"].endswith("...")
    assert envelope["Subject"].isascii() and envelope["Subject"].isprintable()
    assert envelope["Message"] == long_subject  # an empty message would be refused: the subject stands in
    assert sns_subject(" \n\t") == "scalpbot notification"


@pytest.mark.parametrize(
    "arn",
    [
        "scalpbot-alerts",
        "arn:aws:sqs:us-east-1:123456789012:scalpbot-alerts",
        "arn:aws:sns:us-east-1:1234:scalpbot-alerts",
        "arn:aws:sns:us-east-1:123456789012:alerts.fifo",
    ],
)
def test_a_value_that_is_not_a_standard_sns_topic_arn_is_a_config_error_with_an_example(arn: str) -> None:
    with pytest.raises(ConfigError, match=r"arn:aws:sns:eu-west-1:123456789012:scalpbot-alerts"):
        SnsNotifier(arn, sns_client("http://127.0.0.1:9", "us-east-1"))


def test_the_sns_client_defaults_to_the_topics_region_and_makes_one_attempt_per_send() -> None:
    notifier = build_notifier(
        False,
        "arn:aws:sns:eu-west-2:123456789012:alerts",
        [],
        endpoint_url="http://127.0.0.1:9",
        clock=FixedClock(NOW),
    )

    [channel] = notifier.channels
    assert isinstance(channel, SnsNotifier)
    client: Any = channel._client
    assert client.meta.region_name == "eu-west-2"
    assert vars(client.meta.config)["retries"] == {"mode": "standard", "total_max_attempts": 1}


# --- apprise -----------------------------------------------------------------------------------------------


def test_apprise_posts_title_message_and_type_to_a_json_webhook(webhook: Webhook) -> None:
    notifier = AppriseNotifier([webhook.url("scalpbot/alerts")])

    notifier.send("weekly report", "net PnL +1.8 %")
    notifier.send("drawdown 8 %", "close to the 10 % kill switch", level="warning")
    notifier.notify(*job_error("train", None, ValueError("no bars since 2024-03-01")), level="error")

    assert {path for path, _ in webhook.posts} == {"/scalpbot/alerts"}
    assert [{k: body[k] for k in ("title", "message", "type")} for body in webhook.bodies()] == [
        {"title": "weekly report", "message": "net PnL +1.8 %", "type": "info"},
        {"title": "drawdown 8 %", "message": "close to the 10 % kill switch", "type": "warning"},
        {
            "title": "scalpbot train failed: ValueError",
            "message": "job: train\nsymbol: -\ncause: ValueError: no bars since 2024-03-01",
            "type": "failure",
        },
    ]
    assert notifier.name == "apprise:json"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tgrm://s3cr3tb0t@4242/chat", r"unknown scheme 'tgrm' \(did you mean 'tgram'\?\)"),
        ("tgram://s3cr3tb0t/", r"apprise url #1 \(tgram://\*\*\*\) is not a valid tgram:// URL"),
        ("pushplus://s3cr3t!tok/", r"refused by apprise: The Pushplus token \(\*\*\*\) is invalid; see"),
        ("s3cr3t-b0t-t0k3n@example.org", r"apprise url #1 has no scheme; write it as SCHEME://"),
        ("", r"apprise url #1 is empty"),
    ],
)
def test_a_bad_apprise_url_is_a_config_error_that_names_its_scheme_but_not_its_secrets(
    url: str, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ConfigError, match=expected) as raised:
        AppriseNotifier(url)

    assert "s3cr3t" not in str(raised.value)
    assert "s3cr3t" not in caplog.text  # apprise logs some rejected URLs and tokens whole unless redacted


# --- the fan-out -------------------------------------------------------------------------------------------


def test_a_dead_webhook_is_retried_with_backoff_then_recorded_while_the_other_channels_deliver(
    moto_server: MotoServer,
    inbox: SnsInbox,
    webhook: Webhook,
    dead_port: int,
    ledger: Ledger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sleeps = Sleeps()
    notifier = build_notifier(
        True,
        inbox.topic_arn,
        [f"json://127.0.0.1:{dead_port}/hook", webhook.url()],
        endpoint_url=moto_server.endpoint_url,
        ledger=ledger,
        clock=FixedClock(NOW),
        base_delay=0.5,
        sleep=sleeps,
    )

    notifier.notify("kill switch engaged", "drawdown 10.2 % >= 10 %", level="error")

    assert notifier.names == ["console", "sns:scalpbot-alerts", "apprise:json#1", "apprise:json#2"]
    assert sleeps == [0.5, 1.0]  # three attempts: exponential backoff between them
    [failure] = notify_errors(ledger)
    assert failure == {
        "channel": "apprise:json#1",
        "subject": "kill switch engaged",
        "level": "error",
        "attempts": 3,
        "cause": failure["cause"],
    }
    assert failure["cause"].startswith("apprise url #1 (json://***): A Connection error")
    assert [body["title"] for body in webhook.bodies()] == ["kill switch engaged"]  # sent once, not retried
    assert [envelope["Subject"] for envelope in inbox.read()] == ["kill switch engaged"]
    assert "ERROR kill switch engaged: drawdown 10.2 % >= 10 %" in capsys.readouterr().err


def test_a_deleted_sns_topic_is_recorded_at_once_and_the_webhook_still_delivers(
    moto_server: MotoServer, inbox: SnsInbox, webhook: Webhook, ledger: Ledger
) -> None:
    sleeps = Sleeps()
    notifier = build_notifier(
        False,
        inbox.topic_arn,
        [webhook.url()],
        endpoint_url=moto_server.endpoint_url,
        ledger=ledger,
        clock=FixedClock(NOW),
        sleep=sleeps,
    )
    inbox.sns.delete_topic(TopicArn=inbox.topic_arn)

    notifier.notify("weekly report", "net PnL +1.8 %")

    assert sleeps == []  # NotFound cannot be fixed by waiting
    [failure] = notify_errors(ledger)
    assert (failure["channel"], failure["attempts"]) == ("sns:scalpbot-alerts", 1)
    assert failure["cause"].startswith("SNS publish failed: NotFound")
    assert [body["message"] for body in webhook.bodies()] == ["net PnL +1.8 %"]


def test_a_webhook_that_fails_twice_then_recovers_gets_the_message_and_nothing_is_recorded(
    webhook: Webhook, ledger: Ledger
) -> None:
    webhook.statuses = [500, 503]
    sleeps = Sleeps()
    notifier = build_notifier(
        False, None, [webhook.url()], ledger=ledger, clock=FixedClock(NOW), sleep=sleeps
    )

    notifier.notify("weekly report", "net PnL +1.8 %")

    assert sleeps == [1.0, 2.0]
    assert len(webhook.posts) == 3
    assert notify_errors(ledger) == []


def test_secrets_in_apprise_urls_never_reach_errors_logs_or_the_ledger(
    dead_port: int, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"json://bot:Pa55-w0rd-X@127.0.0.1:{dead_port}/hooks/T0KEN-abc123?token=Qs3cr3tQ"
    notifier = build_notifier(False, None, [url], ledger=ledger, clock=FixedClock(NOW), sleep=Sleeps())
    [channel] = notifier.channels

    with pytest.raises(ChannelError) as raised:
        channel.send("weekly report", "net PnL +1.8 %")
    notifier.notify("weekly report", "net PnL +1.8 %")

    recorded = json.dumps(notify_errors(ledger))
    assert "sending JSON notification to ***" in caplog.text  # apprise's log was captured, and redacted
    assert "apprise url #1 (json://***)" in recorded
    for secret in ("Pa55-w0rd-X", "T0KEN-abc123", "Qs3cr3tQ"):
        assert secret not in str(raised.value)
        assert secret not in caplog.text
        assert secret not in recorded


def test_a_channel_that_raises_unexpectedly_is_recorded_without_its_message_and_stops_no_one(
    webhook: Webhook, ledger: Ledger
) -> None:
    class Broken:
        name = "broken"

        def send(self, subject: str, message: str, *, level: str = "info") -> None:
            raise RuntimeError("token=s3cr3t leaked by a bug")

    notifier = Notifications(
        [Broken(), AppriseNotifier(webhook.url())], ledger=ledger, clock=FixedClock(NOW), sleep=Sleeps()
    )

    notifier.notify("weekly report", "net PnL +1.8 %")

    [failure] = notify_errors(ledger)
    assert failure["channel"] == "broken"
    assert failure["cause"] == "unexpected RuntimeError in the channel (a bug: report it)"
    assert len(webhook.posts) == 1


def test_a_ledger_that_cannot_be_written_does_not_make_notify_raise(dead_port: int) -> None:
    class DownStore(MemoryStore):
        def put_if_absent(self, key: str, data: bytes) -> str:
            raise StoreError("the store is down")

    notifier = build_notifier(
        False,
        None,
        [f"json://127.0.0.1:{dead_port}/hook"],
        ledger=Ledger(DownStore(), "test-bot"),
        clock=FixedClock(NOW),
        sleep=Sleeps(),
    )

    notifier.notify("weekly report", "net PnL +1.8 %")  # logged, not raised


def test_channels_must_have_unique_names_and_retry_settings_must_make_sense() -> None:
    console = NotifierChannel(ConsoleNotifier(), "alerts")
    clock = FixedClock(NOW)

    with pytest.raises(ConfigError, match="repeated: alerts"):
        Notifications([console, console], clock=clock)
    with pytest.raises(ConfigError, match="attempts must be at least 1"):
        Notifications([console], clock=clock, attempts=0)
    with pytest.raises(ConfigError, match="delay must be >= 0"):
        Notifications([console], clock=clock, base_delay=-1.0)


def test_a_job_error_names_the_job_the_symbol_and_a_short_one_line_cause() -> None:
    error = ExchangeTemporaryError("binance is unreachable:\n  ReadTimeout " + "x" * 500)

    subject, message = job_error("retrieve", "ETH/BTC", error)

    assert subject == "scalpbot retrieve failed for ETH/BTC: ExchangeTemporaryError"
    job, symbol, cause = message.split("\n")
    assert (job, symbol) == ("job: retrieve", "symbol: ETH/BTC")
    assert cause.startswith("cause: ExchangeTemporaryError: binance is unreachable: ReadTimeout xxx")
    assert len(cause) <= len("cause: ") + 300 and cause.endswith("…")
    assert job_error("monitor", None, KeyError())[0] == "scalpbot monitor failed: KeyError"
