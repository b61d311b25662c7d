"""The apprise channel: the services apprise reaches by URL (Telegram, Slack, Discord, email, ``json://`` ...).

An apprise URL carries its service's credentials (bot tokens, webhook ids, passwords), so nothing from here
repeats what follows ``scheme://``: errors name a URL by its position and scheme (``apprise url #2
(tgram://***)``), failure causes and apprise's own log records (it logs some rejected URLs whole) have every
part of the URLs replaced by ``***`` while this channel runs. The URLs are checked when the notifier is built,
so a typo fails at start-up, not at the first error worth reporting.

Levels map to apprise's types: info -> info, warning -> warning, error -> failure.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import re
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

import apprise

from scalpbot.errors import ChannelError, ConfigError

__all__ = ["AppriseNotifier", "url_scheme"]

_log = logging.getLogger(__name__)

_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.-]*)://")
_URL_PARTS = re.compile(r"[/:@?&#,;\s]+")
_MIN_SECRET_CHARS = 3
_REDACTED = "***"
_WIKI = "https://github.com/caronc/apprise/wiki"
_EXAMPLES = "tgram://BOT_TOKEN/CHAT_ID, slack://..., discord://WEBHOOK_ID/WEBHOOK_TOKEN, mailto://..., json://host/path"
# Loggers that may print a URL while apprise works: apprise's own and urllib3's request line.
_LOGGERS = ("apprise", "urllib3.connectionpool")
_TYPES = {
    "info": apprise.NotifyType.INFO,
    "warning": apprise.NotifyType.WARNING,
    "error": apprise.NotifyType.FAILURE,
}


def url_scheme(url: str) -> str | None:
    """Return the lower-case scheme of ``url`` (``tgram`` for ``tgram://...``), or ``None`` when it has none."""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else None


def _secret_parts(url: str) -> list[str]:
    """Return every piece of ``url`` after its scheme worth hiding, raw and percent-decoded, longest first."""
    match = _SCHEME.match(url)
    rest = url[match.end() :] if match else url
    parts = {rest.strip()}
    for piece in _URL_PARTS.split(rest):
        parts.update((piece, piece.partition("=")[2]))
    parts |= {urllib.parse.unquote(part) for part in parts}
    return sorted((part for part in parts if len(part) >= _MIN_SECRET_CHARS), key=len, reverse=True)


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    return text


class _RedactingFilter(logging.Filter):
    """Rewrite each record's message with the URL parts replaced by ``***``."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _redact(message, self._secrets)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


@contextlib.contextmanager
def _redacted_logs(secrets: Sequence[str]) -> Iterator[None]:
    """Redact ``secrets`` from the records of apprise's and urllib3's loggers while the block runs."""
    guard = _RedactingFilter(secrets)
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    for logger in loggers:
        logger.addFilter(guard)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(guard)


class _Target:
    """One apprise URL: its position, scheme, parts to hide and the apprise object that sends to it."""

    def __init__(self, number: int, url: object) -> None:
        self.number = number
        if not isinstance(url, str) or not url.strip():
            raise ConfigError(f"apprise url #{number} is empty; use a URL such as {_EXAMPLES}")
        self.scheme = url_scheme(url)
        self.secrets = _secret_parts(url)
        if self.scheme is None:
            raise ConfigError(
                f"apprise url #{number} has no scheme; write it as SCHEME://... such as {_EXAMPLES} (see {_WIKI})"
            )
        self.label = f"apprise url #{number} ({self.scheme}://{_REDACTED})"
        self.apprise = apprise.Apprise(asset=apprise.AppriseAsset(async_mode=False))
        with _redacted_logs(self.secrets):
            plugin = self._instantiate(url.strip())
        self.apprise.add(plugin)

    def _instantiate(self, url: str) -> Any:
        manager: Any = apprise.NotificationManager()  # type: ignore[no-untyped-call]  # untyped in apprise 2.2
        try:
            plugin = apprise.Apprise.instantiate(url, asset=self.apprise.asset, suppress_exceptions=False)
        except Exception as e:  # the plugin's constructor refused the URL; its message may quote a token
            cause = _redact(" ".join(str(e).split()), self.secrets)[:200].rstrip(".") or type(e).__name__
            raise ConfigError(f"{self.label} was refused by apprise: {cause}; see {_WIKI}") from None
        if plugin is not None:
            return plugin
        if self.scheme not in manager:
            known = list(manager.schemas())
            match = difflib.get_close_matches(self.scheme or "", known, n=1, cutoff=0.6)
            hint = f" (did you mean '{match[0]}'?)" if match else ""
            raise ConfigError(
                f"apprise url #{self.number} uses unknown scheme '{self.scheme}'{hint}; the services and their "
                f"URL formats are listed at {_WIKI}"
            )
        if not manager[self.scheme].enabled:
            raise ConfigError(
                f"{self.label}: apprise's {self.scheme}:// service is disabled on this system (a package it "
                "needs is missing); install it or use another service"
            )
        raise ConfigError(f"{self.label} is not a valid {self.scheme}:// URL; check its format at {_WIKI}")


class AppriseNotifier:
    """Send notifications to apprise ``urls`` (one URL or several, all checked here; ``ConfigError`` if bad).

    :meth:`send` raises :class:`ChannelError` naming the URLs (by number and scheme) that failed, after trying
    them all; the fan-out retries the whole notifier, so give it one URL per notifier (as
    :func:`~scalpbot.adapters.notify.factory.build_notifier` does) to retry only the failing service.
    :meth:`notify` is the ``Notifier`` method, which logs a failure instead.
    """

    def __init__(self, urls: Sequence[str] | str, *, name: str | None = None, first_number: int = 1) -> None:
        url_list = [urls] if isinstance(urls, str) else list(urls)
        if not url_list:
            raise ConfigError(f"apprise needs at least one URL, such as {_EXAMPLES}")
        self._targets = [_Target(number, url) for number, url in enumerate(url_list, start=first_number)]
        self.name = name or "apprise:" + "+".join(str(target.scheme) for target in self._targets)

    @property
    def labels(self) -> list[str]:
        """Return each URL as ``apprise url #N (scheme://***)``: how errors and logs name it."""
        return [target.label for target in self._targets]

    def send(self, subject: str, message: str, *, level: str = "info") -> None:
        """Deliver to every URL; raise ``ChannelError`` naming those that failed (causes redacted)."""
        failures = []
        for target in self._targets:
            with _redacted_logs(target.secrets):
                result = target.apprise.notify(
                    body=message or subject,
                    title=subject,
                    notify_type=_TYPES.get(level, apprise.NotifyType.INFO),
                )
            if not result:
                logs = [" ".join(str(entry.message).split()) for entry in result.logs()]
                cause = _redact("; ".join(logs), target.secrets)[:200] or f"status {result.status.name}"
                failures.append(f"{target.label}: {cause}")
        if failures:
            raise ChannelError(" | ".join(failures))

    def notify(self, subject: str, message: str, *, level: str = "info") -> None:
        """Deliver to every URL; log a failure instead of raising (``Notifier``)."""
        try:
            self.send(subject, message, level=level)
        except ChannelError as e:
            _log.warning("%s: %s", self.name, e)
