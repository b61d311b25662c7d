"""Build the notifier the jobs use from the ``[notify]`` settings: console, SNS topic, apprise URLs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.adapters.notify.fanout import Channel, Notifications, NotifierChannel
from scalpbot.errors import ConfigError
from scalpbot.ports import Clock
from scalpbot.state.ledger import Ledger

__all__ = ["build_notifier"]

_log = logging.getLogger(__name__)


def build_notifier(
    console: bool,
    sns_topic_arn: str | None,
    apprise_urls: Sequence[str],
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    ledger: Ledger | None = None,
    clock: Clock,
    attempts: int = 3,
    base_delay: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Notifications:
    """Return a fan-out over the configured channels, in order: console, SNS, then each apprise URL.

    Channels are named ``console``, ``sns:{topic}`` and ``apprise:{scheme}`` (``apprise:{scheme}#N`` for the
    N-th URL of a scheme used twice): the names that logs and ``notify_error`` events carry. An empty
    ``sns_topic_arn`` means no SNS; ``endpoint_url`` points SNS at moto or LocalStack and ``region`` defaults
    to the topic's. Each apprise URL is its own channel, so only a failing service is retried. Raise
    ``ConfigError`` for a malformed ARN or apprise URL (secrets never quoted); nothing is contacted here.
    boto3 and apprise are imported only when used (each adds a fraction of a second to a cold start).
    """
    channels: list[Channel] = []
    if console:
        channels.append(NotifierChannel(ConsoleNotifier(), "console"))
    if sns_topic_arn and sns_topic_arn.strip():
        from scalpbot.adapters.notify.sns import SnsNotifier, sns_client, topic_region

        client = sns_client(endpoint_url, region or topic_region(sns_topic_arn))
        channels.append(SnsNotifier(sns_topic_arn, client))
    if apprise_urls:
        channels += _apprise_channels(apprise_urls)
    if not channels:
        _log.warning("no notification channel is configured: job errors will only be logged")
    return Notifications(
        channels, ledger=ledger, clock=clock, attempts=attempts, base_delay=base_delay, sleep=sleep
    )


def _apprise_channels(urls: Sequence[str]) -> list[Channel]:
    from scalpbot.adapters.notify.apprise_channel import AppriseNotifier, url_scheme

    if isinstance(urls, str):
        raise ConfigError('apprise urls must be a list of URLs, e.g. ["tgram://BOT_TOKEN/CHAT_ID"]')
    schemes = [url_scheme(url) if isinstance(url, str) else None for url in urls]
    channels: list[Channel] = []
    for number, (url, scheme) in enumerate(zip(urls, schemes, strict=True), start=1):
        name = f"apprise:{scheme}"
        if schemes.count(scheme) > 1:
            name += f"#{schemes[:number].count(scheme)}"
        channels.append(AppriseNotifier([url], name=name, first_number=number))
    return channels
