"""What every ccxt adapter shares: the exchange factory, retries with backoff, ccxt errors mapped once,
credentials kept out of text.

:func:`ccxt_exchange` builds a synchronous exchange with rate limiting always on.
:class:`CcxtCalls` is the one place where a ccxt error becomes scalpbot's, always with ``raise ... from e``::

    ccxt.OperationFailed, an HTTP 418/429/5xx reply or a     -> retried, then ExchangeTemporaryError
      2xx reply that is not JSON (network, timeout, rate
      limit, server failure, garbled reply)
    ccxt.AuthenticationError                              -> ConfigError (fix the API keys)
    ccxt.BadSymbol                                        -> ConfigError (fix the symbol)
    when placing an order:
      ccxt.InsufficientFunds                              -> InsufficientFunds
      ccxt.InvalidOrder, BadRequest, OperationRejected    -> OrderRejected
    any other ccxt.BaseError                              -> ExchangeError

Credentials never reach a message or a log line: messages are redacted, and ccxt's own debug log (which
prints request headers, API key included) goes through a redacting logger.
"""

from __future__ import annotations

import difflib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt

from scalpbot.errors import (
    ConfigError,
    ExchangeError,
    ExchangeTemporaryError,
    InsufficientFunds,
    OrderRejected,
    ScalpbotError,
)

__all__ = [
    "SECRET_KEYS",
    "CcxtCalls",
    "ccxt_exchange",
    "connect",
    "is_temporary_status",
    "redact",
    "secret_values",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

SECRET_KEYS = (
    "apiKey",
    "secret",
    "password",
    "uid",
    "privateKey",
    "walletAddress",
    "token",
    "login",
    "twofa",
)
"""ccxt constructor keys whose values are credentials."""


def secret_values(settings: Mapping[str, Any]) -> list[str]:
    """Return the credential values found in a ccxt constructor dict."""
    return [str(settings[k]) for k in SECRET_KEYS if settings.get(k)]


def redact(message: str, secrets: Sequence[str]) -> str:
    """Return ``message`` with every credential value replaced by ``***``."""
    for secret in secrets:
        message = message.replace(secret, "***")
    return message


def is_temporary_status(status: int | None) -> bool:
    """Return whether an HTTP status means "try again later": 418/429 (rate limits) or any 5xx."""
    return status is not None and (status in (418, 429) or status >= 500)


def ccxt_exchange(exchange_id: str, config: Mapping[str, Any] | None = None) -> Any:
    """Return a synchronous ``ccxt.Exchange`` with rate limiting always on; raise ``ConfigError`` if unknown.

    ``config`` is ccxt's constructor dict (``apiKey``, ``secret``, ``timeout`` in ms, ``options``, ``urls``,
    ``rateLimit`` in ms between requests of cost 1, ...), plus ``sandbox: True`` to switch to the venue's
    test network.
    """
    if exchange_id not in ccxt.exchanges:
        hints = difflib.get_close_matches(exchange_id.lower(), ccxt.exchanges, n=3)
        did_you_mean = f" (did you mean {' or '.join(repr(h) for h in hints)}?)" if hints else ""
        raise ConfigError(
            f"exchange '{exchange_id}' is not a ccxt exchange id{did_you_mean}; "
            "use a lower-case id from ccxt.exchanges such as 'binance', 'bybit' or 'kraken'"
        )
    settings = dict(config or {})
    sandbox = bool(settings.pop("sandbox", False))
    settings["enableRateLimit"] = True
    try:
        exchange = getattr(ccxt, exchange_id)(settings)
        if sandbox:
            exchange.set_sandbox_mode(True)
    except ccxt.NotSupported as e:
        raise ConfigError(f"exchange '{exchange_id}' has no sandbox; set sandbox to false") from e
    except ccxt.BaseError as e:
        message = redact(str(e), secret_values(settings))
        raise ConfigError(f"cannot configure exchange '{exchange_id}': {message}") from e
    return exchange


def rebased_api_urls(exchange_id: str, base_url: str) -> dict[str, Any]:
    """Return the exchange's ``urls['api']`` with every endpoint's scheme and host replaced by ``base_url``.

    Paths are kept, so a server speaking the venue's REST format (a proxy, a regional mirror, a local test
    server) answers in its place.
    """
    base = base_url.rstrip("/")

    def rebase(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {name: rebase(entry) for name, entry in value.items()}
        return f"{base}{urlsplit(str(value)).path}"

    api = ccxt_exchange(exchange_id).urls.get("api")
    if not isinstance(api, Mapping):
        raise ConfigError(f"exchange '{exchange_id}' publishes no REST endpoints that api_url could replace")
    return {name: rebase(value) for name, value in api.items()}


class CcxtCalls:
    """Call one ccxt exchange: retry temporary failures with backoff and translate every ccxt error.

    A temporary failure is retried up to ``max_attempts`` calls in all, pausing
    ``min(max_delay, base_delay * 2**(n-1))`` seconds before retry ``n``, less up to half of it at random
    (jitter). ``venue`` names the exchange in messages; ``secrets`` are redacted from them. With
    ``strict_json`` a successful reply whose body is not JSON counts as a garbled, temporary failure (ccxt
    would otherwise hand back an empty structure). ``sleep`` and ``rng`` are injectable for tests.
    """

    def __init__(
        self,
        exchange: Any,
        *,
        venue: str,
        secrets: Sequence[str],
        max_attempts: int,
        base_delay: float,
        max_delay: float,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        strict_json: bool = False,
    ) -> None:
        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {max_attempts}")
        if base_delay < 0 or max_delay < base_delay:
            raise ConfigError(
                f"retry delays must satisfy 0 <= base_delay <= max_delay, got {base_delay}, {max_delay}"
            )
        self._venue = venue
        self._secrets = list(secrets)
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._strict_json = strict_json
        self._last_status: int | None = None
        exchange.on_rest_response = self._inspect(exchange.on_rest_response)
        exchange.logger = _RedactingLogger(logging.getLogger("ccxt.base.exchange"), self._secrets)

    def redact(self, message: str) -> str:
        """Return ``message`` without credentials."""
        return redact(message, self._secrets)

    def call(self, what: str, fn: Callable[..., _T], *args: Any, placing: bool = False, **kwargs: Any) -> _T:
        """Return ``fn(*args, **kwargs)``, retrying temporary failures; ``what`` names the action in messages.

        ``placing`` marks a call that places or cancels an order: the venue's refusals then become
        ``OrderRejected`` or ``InsufficientFunds`` instead of ``ExchangeError``.
        """
        for attempt in range(1, self._max_attempts + 1):
            self._last_status = None
            try:
                return fn(*args, **kwargs)
            except ccxt.BaseError as e:
                error = self._translate(e, what, attempt, placing)
                if error is not None:
                    raise error from e
                pause = self._backoff(attempt)
                _log.warning(
                    "%s: %s failed (%s); retry %d in %.2fs",
                    self._venue,
                    what,
                    type(e).__name__,
                    attempt,
                    pause,
                )
                self._sleep(pause)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _translate(self, e: Exception, what: str, attempt: int, placing: bool) -> ScalpbotError | None:
        """Return the error to raise for ``e``, or ``None`` when the call should be retried."""
        detail = f"{type(e).__name__}: {self.redact(str(e))}"
        if isinstance(e, ccxt.AuthenticationError):
            return ConfigError(
                f"{self._venue} rejected the API credentials while {what} ({detail}); "
                "check apiKey/secret and their permissions"
            )
        if isinstance(e, ccxt.BadSymbol):
            return ConfigError(
                f"{self._venue} does not know the symbol while {what} ({detail}); check the symbol"
            )
        if placing and isinstance(e, ccxt.InsufficientFunds):
            return InsufficientFunds(f"{self._venue}: insufficient funds while {what} ({detail})")
        temporary = isinstance(e, ccxt.OperationFailed) or is_temporary_status(self._last_status)
        if temporary and attempt < self._max_attempts:
            return None
        if temporary:
            plural = "s" if attempt > 1 else ""
            return ExchangeTemporaryError(
                f"{self._venue}: {what} still failed after {attempt} attempt{plural} ({detail}); "
                "the exchange is unreachable, rate limiting or failing - retry later"
            )
        if placing and isinstance(e, ccxt.InvalidOrder | ccxt.BadRequest | ccxt.OperationRejected):
            return OrderRejected(f"{self._venue} rejected the order while {what} ({detail})")
        return ExchangeError(f"{self._venue} refused {what} ({detail})")

    def _inspect(self, respond: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap ccxt's response hook: keep the HTTP status (ccxt's errors lack it) and refuse garbled bodies."""

        def inspect(
            code: int, reason: str, url: str, method: str, headers: Any, body: Any, *rest: Any
        ) -> Any:
            self._last_status = int(code)
            if self._strict_json and 200 <= int(code) < 300 and isinstance(body, str):
                try:
                    json.loads(body)
                except ValueError:
                    raise ccxt.BadResponse(
                        f"{self._venue} {method} {url}: the reply is not valid JSON"
                    ) from None
            return respond(code, reason, url, method, headers, body, *rest)

        return inspect

    def _backoff(self, retry: int) -> float:
        full = min(self._max_delay, self._base_delay * 2.0 ** (retry - 1))
        return full * (1.0 - 0.5 * self._rng.random())


class _RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """ccxt's logger with credentials removed from every formatted message."""

    def __init__(self, logger: logging.Logger, secrets: Sequence[str]) -> None:
        super().__init__(logger, {})
        self._secrets = list(secrets)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, "%s", redact(text, self._secrets), **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return msg, kwargs


def connect(
    exchange_id: str,
    config: Mapping[str, Any] | None,
    *,
    api_urls: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    max_attempts: int,
    base_delay: float,
    max_delay: float,
    sleep: Callable[[float], None],
    rng: random.Random | None,
    strict_json: bool,
) -> tuple[Any, CcxtCalls]:
    """Return a ccxt exchange and the call layer around it (retries, error mapping, redaction).

    ``options`` are defaults under the caller's ``config["options"]``; ``api_urls`` replaces ``urls['api']``
    (a proxy or a local test server).
    """
    settings = dict(config or {})
    if options:
        settings["options"] = {**dict(options), **dict(settings.get("options") or {})}
    if api_urls is not None:
        settings["urls"] = {**dict(settings.get("urls") or {}), "api": dict(api_urls)}
    exchange = ccxt_exchange(exchange_id, settings)
    calls = CcxtCalls(
        exchange,
        venue=exchange_id,
        secrets=secret_values(settings),
        max_attempts=max_attempts,
        base_delay=base_delay,
        max_delay=max_delay,
        sleep=sleep,
        rng=rng,
        strict_json=strict_json,
    )
    return exchange, calls
