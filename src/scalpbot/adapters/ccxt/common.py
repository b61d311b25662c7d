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

Politeness: a 418/429 reply's ``Retry-After`` is honoured (a venue that sends none, such as OKX with its
``50011``, is given its rate window instead; the pause before the next try is at least that
long; a wait beyond ``max_wait`` fails the call at once instead of sleeping through a ban), and
``ccxt.InvalidNonce`` (Binance ``-1021``: the timestamp is outside ``recvWindow``) re-measures the time
difference to the venue (``resync``) before the one retry it earns.

Placing an order is different (:meth:`CcxtCalls.place`): it is sent once. Only refusals that prove the venue
did not process it (-1021, 418/429) are sent again; a timeout, a 5xx or a lost reply raises
``OrderOutcomeUnknown``, and the caller must look the order up before anything is sent again.

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
    OrderOutcomeUnknown,
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
        max_wait: float = 60.0,
        resync: Callable[[], None] | None = None,
        rate_window: float = 0.0,
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
        self._max_wait = max_wait
        self._resync = resync
        self._rate_window = rate_window
        self._last_status: int | None = None
        self._retry_after: float | None = None
        self.waits: list[float] = []
        """Every pause taken before a retry, in seconds (what a test or a report can inspect)."""
        exchange.on_rest_response = self._inspect(exchange.on_rest_response)
        exchange.logger = _RedactingLogger(logging.getLogger("ccxt.base.exchange"), self._secrets)

    def redact(self, message: str) -> str:
        """Return ``message`` without credentials."""
        return redact(message, self._secrets)

    def call(self, what: str, fn: Callable[..., _T], *args: Any, placing: bool = False, **kwargs: Any) -> _T:
        """Return ``fn(*args, **kwargs)``, retrying temporary failures; ``what`` names the action in messages.

        ``placing`` marks a call that cancels an order (or another write safe to repeat): the venue's refusals
        then become ``OrderRejected`` or ``InsufficientFunds`` instead of ``ExchangeError``. A new order goes
        through :meth:`place` instead.
        """
        for attempt in range(1, self._max_attempts + 1):
            self._last_status, self._retry_after = None, None
            try:
                return fn(*args, **kwargs)
            except ccxt.BaseError as e:
                error = self._translate(e, what, attempt, placing)
                if error is not None:
                    raise error from e
                self._pause_before_retry(e, what, attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def place(self, what: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Send one new order: return the venue's answer, or raise.

        Sent again only after a refusal that proves the venue did not process it (-1021 after a resync,
        418/429 after ``Retry-After``); any other temporary failure, or a reply that cannot be read, raises
        ``OrderOutcomeUnknown``.
        """
        for attempt in range(1, self._max_attempts + 1):
            self._last_status, self._retry_after = None, None
            try:
                return fn(*args, **kwargs)
            except ccxt.BaseError as e:
                refused_unprocessed = isinstance(
                    e, ccxt.InvalidNonce | ccxt.DDoSProtection | ccxt.RateLimitExceeded
                ) or (self._last_status in (418, 429))
                error = self._translate(e, what, attempt, True)
                if refused_unprocessed and error is None:
                    self._pause_before_retry(e, what, attempt)
                    continue
                garbled = isinstance(e, ccxt.BadResponse)  # an answer nobody can read says nothing either
                temporary = isinstance(error, ExchangeTemporaryError) and not refused_unprocessed
                if error is None or temporary or garbled:
                    raise OrderOutcomeUnknown(
                        f"{self._venue}: {what}: no answer says whether the venue took the order "
                        f"({type(e).__name__}: {self.redact(str(e))})"
                    ) from e
                raise error from e
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _pause_before_retry(self, e: Exception, what: str, attempt: int) -> None:
        """Sleep before retry ``attempt``: the backoff, at least the venue's ``Retry-After``; resync on -1021."""
        if isinstance(e, ccxt.InvalidNonce) and self._resync is not None:
            _log.warning(
                "%s: %s: the venue refused the request's timestamp; resynchronising", self._venue, what
            )
            try:
                self._resync()
            except ccxt.BaseError as failed:  # the retry meets the same refusal and is translated then
                _log.warning("%s: resynchronising the clock failed (%s)", self._venue, type(failed).__name__)
        pause = self._backoff(attempt)
        limited = isinstance(e, ccxt.DDoSProtection | ccxt.RateLimitExceeded) or self._last_status in (
            418,
            429,
        )
        if self._retry_after is None and limited and self._rate_window > 0:
            pause = max(pause, self._rate_window)  # no Retry-After: wait for the venue's next rate window
        if self._retry_after is not None:
            if self._retry_after > self._max_wait:
                raise ExchangeTemporaryError(
                    f"{self._venue}: {what}: the venue asks to wait {self._retry_after:.0f} s before the next "
                    f"request (HTTP {self._last_status}); nothing more is sent until then - retry later"
                ) from e
            pause = max(pause, self._retry_after)
        _log.warning(
            "%s: %s failed (%s); retry %d in %.2fs", self._venue, what, type(e).__name__, attempt, pause
        )
        self.waits.append(pause)
        self._sleep(pause)

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
            self._retry_after = _retry_after(headers) if int(code) in (418, 429) else None
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


def _retry_after(headers: Any) -> float | None:
    """Return the ``Retry-After`` header in seconds (its delta-seconds form), or ``None``."""
    if not headers:
        return None
    for name, value in dict(headers).items():
        if str(name).lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


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
    max_wait: float = 60.0,
    rate_window: float = 0.0,
) -> tuple[Any, CcxtCalls]:
    """Return a ccxt exchange and the call layer around it (retries, error mapping, redaction).

    ``options`` are defaults under the caller's ``config["options"]``; ``api_urls`` replaces ``urls['api']``
    (a proxy or a local test server). ``rate_window`` (seconds) is how long the venue's rate limits count
    requests: a rate-limit refusal without ``Retry-After`` waits at least that long before the next try.
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
        max_wait=max_wait,
        resync=_resync_for(exchange),
        rate_window=rate_window,
    )
    return exchange, calls


def _resync_for(exchange: Any) -> Callable[[], None] | None:
    """Return how to re-measure the clock difference to the venue, when ccxt can (``load_time_difference``)."""
    load = getattr(exchange, "load_time_difference", None)
    if load is None or not exchange.has.get("fetchTime"):
        return None

    def resync() -> None:
        load()

    return resync
