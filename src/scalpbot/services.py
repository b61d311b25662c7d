"""Assemble the adapters a job needs from settings: the one place where an adapter is chosen."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from scalpbot.adapters.clock import SystemClock
from scalpbot.adapters.marketdata.files import FileMarketData, sample_path
from scalpbot.adapters.store.factory import open_store
from scalpbot.config import Settings
from scalpbot.data.dataset import BarDataset, SeriesId
from scalpbot.errors import ConfigError
from scalpbot.ports import Clock, MarketData, Notifier, Store

SOURCE_KINDS = ("ccxt", "file:PATH", "sample", "synthetic", "synthetic:SEED")


@dataclass(frozen=True, slots=True)
class Services:
    """The collaborators shared by the jobs of one process."""

    settings: Settings
    store: Store
    dataset: BarDataset
    clock: Clock

    def series(self, symbol: str | None = None, timeframe: str | None = None) -> SeriesId:
        """Return the configured series, or another symbol/timeframe on the configured exchange."""
        data = self.settings.data
        return SeriesId(self.settings.exchange.id, symbol or data.symbol, timeframe or data.timeframe)


def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    """Return the services for ``settings`` (store from ``store.url``, wall clock by default)."""
    store = open_store(settings.store.url, settings.store.endpoint_url, settings.store.region)
    return Services(settings, store, BarDataset(store, settings.data.format), clock or SystemClock())


@dataclass(frozen=True, slots=True)
class SourceChoice:
    """A market data source and whether a run resumes after the newest stored bar."""

    source: MarketData
    resume: bool


def build_market_data(spec: str, services: Services) -> SourceChoice:
    """Return the source named by ``spec``: ``ccxt``, ``file:PATH``, ``sample``, ``synthetic[:SEED]``."""
    kind, _, arg = spec.partition(":")
    if kind == "file":
        if not arg:
            raise ConfigError("--source file needs a path: --source file:path/to/bars.csv.gz")
        path = Path(arg).expanduser()
        if not path.is_file():
            raise ConfigError(f"--source {spec}: no such file {path}")
        return SourceChoice(FileMarketData(path), resume=False)
    if kind == "sample" and not arg:
        return SourceChoice(FileMarketData(sample_path(), name="sample"), resume=False)
    if kind == "synthetic":
        from scalpbot.adapters.marketdata.synthetic import SyntheticMarketData

        try:
            seed = int(arg) if arg else 7
        except ValueError:
            raise ConfigError(f"--source {spec}: the seed must be an integer, e.g. synthetic:42") from None
        return SourceChoice(SyntheticMarketData(seed=seed, clock=services.clock), resume=True)
    if kind == "ccxt" and not arg:
        from scalpbot.adapters.marketdata.ccxt_source import CcxtMarketData

        exchange = services.settings.exchange
        return SourceChoice(
            CcxtMarketData(
                exchange.id,
                clock=services.clock,
                config=_ccxt_config(services.settings),
                api_urls=exchange_api_urls(services.settings),
                max_attempts=exchange.max_retries,
            ),
            resume=True,
        )
    match = difflib.get_close_matches(kind, ["ccxt", "file", "sample", "synthetic"], n=1)
    hint = f" (did you mean '{match[0]}'?)" if match else ""
    raise ConfigError(f"unknown source '{spec}'{hint}; use one of {', '.join(SOURCE_KINDS)}")


def _ccxt_config(settings: Settings) -> dict[str, object]:
    """Return the ccxt options for public market data: no API keys, so a restricted key cannot block bars.

    On Binance a spot symbol (no ``:settle``) loads the spot markets only: one request instead of four at
    every cold start, and no dependence on the futures hosts.
    """
    exchange = settings.exchange
    config: dict[str, object] = {"timeout": exchange.timeout_ms}
    if exchange.sandbox:
        config["sandbox"] = True
    if exchange.id == "binance" and ":" not in settings.data.symbol:
        from scalpbot.adapters.broker._binance import OPTIONS

        config["options"] = dict(OPTIONS)
    return config


def exchange_api_urls(settings: Settings) -> dict[str, object] | None:
    """Return the exchange's REST endpoints rebased on ``exchange.api_url``, or ``None`` for the venue's own."""
    exchange = settings.exchange
    if exchange.api_url is None:
        return None
    from scalpbot.adapters.ccxt_common import rebased_api_urls

    return rebased_api_urls(exchange.id, exchange.api_url)


def build_notifier(settings: Settings, store: Store | None = None, clock: Clock | None = None) -> Notifier:
    """Return the configured channels as one notifier; failures are recorded in ``store``'s bot ledger."""
    from scalpbot.adapters.notify.factory import build_notifier as build_channels
    from scalpbot.state.ledger import Ledger

    notify = settings.notify
    return build_channels(
        notify.console,
        notify.sns_topic_arn or None,
        [url.get_secret_value() for url in notify.apprise_urls],
        endpoint_url=notify.sns_endpoint_url,
        region=notify.sns_region,
        ledger=None if store is None else Ledger(store, settings.bot.name),
        clock=clock or SystemClock(),
        attempts=notify.attempts,
        base_delay=notify.retry_base_delay,
    )
