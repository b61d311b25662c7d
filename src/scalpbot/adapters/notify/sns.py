"""The SNS channel: publish each notification to one standard topic (AWS, or moto/LocalStack by endpoint URL).

SNS takes a subject of at most 100 printable ASCII characters without line breaks (moto accepts more, AWS does
not), so :func:`sns_subject` folds accents, drops what is left outside ASCII and shortens. The message is sent
as is, cut to SNS's 256 KiB. The level travels as the message attribute ``level`` so that a subscription can
filter on it (e.g. ``{"level": ["error"]}`` for a pager). Retries are the fan-out's: the client makes one
attempt per send.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from scalpbot.adapters.notify.fanout import short_cause
from scalpbot.errors import ChannelError, ConfigError

__all__ = [
    "MESSAGE_MAX_BYTES",
    "SUBJECT_MAX_CHARS",
    "SnsNotifier",
    "SnsPublisher",
    "sns_client",
    "sns_subject",
]

_log = logging.getLogger(__name__)

SUBJECT_MAX_CHARS = 100
MESSAGE_MAX_BYTES = 256 * 1024 - 4 * 1024
"""SNS's 256 KiB limit less room for the subject and the ``level`` attribute."""

_ARN = re.compile(
    r"arn:aws[a-z-]*:sns:(?P<region>[a-z0-9-]+):\d{12}:(?P<name>[A-Za-z0-9_-]{1,256})(?P<fifo>\.fifo)?"
)
_ARN_EXAMPLE = "arn:aws:sns:eu-west-1:123456789012:scalpbot-alerts"
_NOT_ASCII_PRINTABLE = re.compile(r"[^\x20-\x7e]+")
_TRUNCATED = "\n[truncated]"
# Errors that a retry cannot fix: recorded at once instead of retried.
_PERMANENT_CODES = frozenset(
    {
        "NotFound",
        "NotFoundException",
        "AuthorizationError",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidParameter",
        "InvalidParameterValue",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "EndpointDisabled",
        "KMSDisabled",
        "KMSNotFound",
        "KMSAccessDenied",
    }
)


class SnsPublisher(Protocol):
    """The part of a boto3 SNS client this channel uses."""

    def publish(self, **kwargs: Any) -> Mapping[str, Any]:
        """Publish one message (boto3 keyword arguments) and return the response."""
        ...


def topic_region(topic_arn: str) -> str:
    """Return the AWS region in an SNS topic ARN; raise ``ConfigError`` when it is not one."""
    return _parse_arn(topic_arn)[0]


def sns_client(endpoint_url: str | None = None, region: str | None = None) -> SnsPublisher:
    """Return a boto3 SNS client: bounded timeouts, one attempt per call (boto3 is imported here: slow).

    ``endpoint_url`` points it at moto or LocalStack; ``None`` lets boto3 use AWS (or ``AWS_ENDPOINT_URL``).
    """
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 1})
    client: SnsPublisher = boto3.session.Session().client(
        "sns", endpoint_url=endpoint_url or None, region_name=region or None, config=config
    )
    return client


def sns_subject(subject: str) -> str:
    """Return ``subject`` as SNS accepts it: printable ASCII on one line, at most 100 characters, not empty."""
    folded = unicodedata.normalize("NFKD", subject).encode("ascii", "ignore").decode("ascii")
    text = " ".join(_NOT_ASCII_PRINTABLE.sub(" ", folded).split()) or "scalpbot notification"
    return text if len(text) <= SUBJECT_MAX_CHARS else text[: SUBJECT_MAX_CHARS - 3].rstrip() + "..."


def _sns_message(message: str, subject: str) -> str:
    """Return a non-empty message that fits SNS's size limit (cut at a character boundary)."""
    text = message if message.strip() else subject
    data = text.encode()
    if len(data) <= MESSAGE_MAX_BYTES:
        return text
    room = MESSAGE_MAX_BYTES - len(_TRUNCATED.encode())
    return data[:room].decode("utf-8", "ignore") + _TRUNCATED


def _parse_arn(topic_arn: str) -> tuple[str, str]:
    match = _ARN.fullmatch(topic_arn.strip()) if isinstance(topic_arn, str) else None
    if match is None:
        raise ConfigError(f"SNS topic ARN {topic_arn!r} is not a topic ARN; use one like {_ARN_EXAMPLE}")
    if match["fifo"]:
        raise ConfigError(
            f"SNS topic {match['name']}.fifo is a FIFO topic, which needs message groups; use a standard topic "
            f"such as {_ARN_EXAMPLE}"
        )
    return match["region"], match["name"]


class SnsNotifier:
    """Publish notifications to the SNS topic ``topic_arn`` with a boto3 SNS ``client``.

    :meth:`send` raises :class:`ChannelError` when SNS refuses or cannot be reached (for the fan-out);
    :meth:`notify` is the ``Notifier`` method, which logs that instead.
    """

    def __init__(self, topic_arn: str, client: SnsPublisher, *, name: str | None = None) -> None:
        self.region, topic = _parse_arn(topic_arn)
        self.topic_arn = topic_arn.strip()
        self.name = name or f"sns:{topic}"
        self._client = client

    def send(self, subject: str, message: str, *, level: str = "info") -> None:
        """Publish one message; raise ``ChannelError`` (``temporary=False`` when a retry cannot help)."""
        try:
            self._client.publish(
                TopicArn=self.topic_arn,
                Subject=sns_subject(subject),
                Message=_sns_message(message, subject),
                MessageAttributes={"level": {"DataType": "String", "StringValue": level}},
            )
        except ClientError as e:
            error = e.response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            detail = " ".join(str(error.get("Message", "")).split())[:200]
            raise ChannelError(
                f"SNS publish failed: {code}: {detail}", temporary=code not in _PERMANENT_CODES
            ) from e
        except (NoCredentialsError, NoRegionError) as e:
            raise ChannelError(f"SNS publish failed: {short_cause(e)}", temporary=False) from e
        except BotoCoreError as e:
            raise ChannelError(f"SNS publish failed: {short_cause(e)}") from e

    def notify(self, subject: str, message: str, *, level: str = "info") -> None:
        """Publish one message; log a failure instead of raising (``Notifier``)."""
        try:
            self.send(subject, message, level=level)
        except ChannelError as e:
            _log.warning("%s: %s", self.name, e)
