"""Assemble the adapters a job needs from settings: the one place where an adapter is chosen.

Jobs receive what they use (store, dataset, clock, market data source, broker, notifier) and import no
adapter. The execute path has two modes: ``live`` trades through the configured broker (paper or ccxt), and
``replay`` - any drive through stored history - always trades the paper broker, whatever the configuration,
so a replay can never send an order to an exchange.
"""

from __future__ import annotations

import difflib
import io
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from scalpbot.adapters.clock import SystemClock
from scalpbot.adapters.marketdata.files import FileMarketData, sample_path
from scalpbot.adapters.paper_broker import PaperBroker
from scalpbot.adapters.store.factory import open_store
from scalpbot.config import Settings
from scalpbot.core.portfolio_risk import PortfolioLimits
from scalpbot.core.risk import Margin, RiskLimits
from scalpbot.core.venue import Venue, market_type_of
from scalpbot.errors import ConfigError
from scalpbot.inference.signals import ReleaseCache, TradingModel
from scalpbot.jobs.cycle import Executor
from scalpbot.jobs.services import (
    ExecuteMode,
    Services,
    SourceChoice,
    replay_history,
    run_lease,
    state_symbol,
    venue_profile,
)
from scalpbot.ports import BarHistory, Broker, Clock, FundingHistory, Notifier, Store
from scalpbot.state.dataset import BarDataset, SeriesId
from scalpbot.state.funding import load_funding
from scalpbot.state.history import MemoryHistory, StoredHistory
from scalpbot.state.releases import ReleaseStore

SOURCE_KINDS = ("ccxt", "file:PATH", "sample", "synthetic", "synthetic:SEED")
SWAP_VENUES = ("okx", "binanceusdm")
"""ccxt exchange ids whose perpetual swaps have a live broker (``binanceusdm``: Binance USD-M linear perpetuals)."""


def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    """Return the services for ``settings`` (store from ``store.url``, wall clock by default).

    ``train.study_storage_secret_id`` without ``train.study_storage``: the study storage URL is read from
    that Secrets Manager secret here, once.
    """
    train = settings.train
    if train.study_storage_secret_id and not train.study_storage:
        from scalpbot.adapters.secrets import study_storage_url

        url = study_storage_url(train.study_storage_secret_id)
        settings = settings.model_copy(update={"train": train.model_copy(update={"study_storage": url})})
    store = open_store(settings.store.url, settings.store.endpoint_url, settings.store.region)
    return Services(
        settings, store, BarDataset(store, settings.data.format), clock or SystemClock(), build_executor
    )


SAMPLE_SERIES = ("binance", "BTC/USDT", "1m")
"""What the bundled sample holds: Binance BTC/USDT 1m bars."""


def _check_sample_series(services: Services, symbols: Sequence[str]) -> None:
    """Refuse to serve the bundled sample as another series than its own (``ConfigError``)."""
    settings = services.settings
    exchange, symbol, timeframe = SAMPLE_SERIES
    others = [s for s in symbols if s != symbol]
    if settings.exchange.id != exchange or settings.data.timeframe != timeframe or others:
        asked = f"{settings.exchange.id} {', '.join(symbols)} {settings.data.timeframe}"
        raise ConfigError(
            f"--source sample holds {exchange} {symbol} {timeframe} bars only, not {asked}: use it for "
            f"{exchange} {symbol}, or give other bars with --source file:PATH"
        )


def build_market_data(spec: str, services: Services, symbols: Sequence[str] = ()) -> SourceChoice:
    """Return the source named by ``spec``: ``ccxt``, ``file:PATH``, ``sample``, ``synthetic[:SEED]``.

    ``symbols``: the symbols the source will serve (default: ``data.symbol``); the bundled sample serves its
    own series only.
    """
    kind, _, arg = spec.partition(":")
    if kind == "file":
        if not arg:
            raise ConfigError("--source file needs a path: --source file:path/to/bars.csv.gz")
        path = Path(arg).expanduser()
        if not path.is_file():
            raise ConfigError(f"--source {spec}: no such file {path}")
        return SourceChoice(FileMarketData(path), resume=False)
    if kind == "sample" and not arg:
        _check_sample_series(services, tuple(symbols) or (services.settings.data.symbol,))
        return SourceChoice(FileMarketData(sample_path(), name="sample"), resume=False)
    if kind == "synthetic":
        from scalpbot.adapters.marketdata.synthetic import SyntheticMarketData

        try:
            seed = int(arg) if arg else 7
        except ValueError:
            raise ConfigError(f"--source {spec}: the seed must be an integer, e.g. synthetic:42") from None
        return SourceChoice(SyntheticMarketData(seed=seed, clock=services.clock), resume=True)
    if kind == "ccxt" and not arg:
        from scalpbot.adapters.ccxt.common import RetryPolicy
        from scalpbot.adapters.ccxt.market_data import CcxtMarketData

        exchange = services.settings.exchange
        return SourceChoice(
            CcxtMarketData(
                exchange.id,
                clock=services.clock,
                config=_ccxt_config(services.settings),
                api_urls=exchange_api_urls(services.settings),
                retry=RetryPolicy(max_attempts=exchange.max_retries),
            ),
            resume=True,
            funding=funding_history(services.settings),
        )
    match = difflib.get_close_matches(kind, ["ccxt", "file", "sample", "synthetic"], n=1)
    hint = f" (did you mean '{match[0]}'?)" if match else ""
    raise ConfigError(f"unknown source '{spec}'{hint}; use one of {', '.join(SOURCE_KINDS)}")


def _ccxt_config(settings: Settings) -> dict[str, object]:
    """Return the ccxt options for public market data: no API keys, so a restricted key cannot block bars.

    On the venues the live broker trades (Binance, OKX) a spot symbol (no ``:settle``) loads the spot markets
    only: one request instead of four at every cold start, and no dependence on the derivatives endpoints.
    """
    exchange = settings.exchange
    config: dict[str, object] = {"timeout": exchange.timeout_ms}
    if exchange.sandbox:
        config["sandbox"] = True
    if exchange.id in ("binance", "okx") and ":" not in settings.data.symbol:
        from scalpbot.adapters.ccxt.family import family_of

        config["options"] = dict(family_of(exchange.id).options)
    return config


def exchange_api_urls(settings: Settings) -> dict[str, object] | None:
    """Return the exchange's REST endpoints rebased on ``exchange.api_url``, or ``None`` for the venue's own."""
    exchange = settings.exchange
    if exchange.api_url is None:
        return None
    from scalpbot.adapters.ccxt.common import rebased_api_urls

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


def stored_history(services: Services, series: SeriesId) -> StoredHistory:
    """Return the bars of ``series`` as stored (live trading reads new bars as they are retrieved)."""
    return StoredHistory(services.dataset, series)


def fetch_venue_profile(services: Services, series: SeriesId) -> Venue:
    """Return the profile of ``series`` read from its exchange (ccxt), before any ``[venue]`` override.

    Public market data only, unless exchange keys are configured: then the account's own fees are read too.
    """
    from scalpbot.adapters.ccxt.common import RetryPolicy
    from scalpbot.adapters.ccxt.venue_profile import fetch_venue
    from scalpbot.adapters.secrets import exchange_credentials

    settings = services.settings
    exchange = settings.exchange
    config: dict[str, object] = _ccxt_config(settings)
    if exchange.api_key is not None or exchange.secret_id or exchange.ssm_prefix:
        config.update(exchange_credentials(exchange))
    return fetch_venue(
        series.exchange,
        series.symbol,
        config=config,
        api_urls=exchange_api_urls(settings),
        now=services.clock.now(),
        retry=RetryPolicy(max_attempts=exchange.max_retries),
    )


def funding_history(settings: Settings) -> FundingHistory:
    """Return the configured exchange's funding-rate history of a perpetual swap (public data through ccxt, the
    ``exchange`` settings' endpoints and retries)."""

    def fetch(symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
        from scalpbot.adapters.ccxt.funding import fetch_funding

        return fetch_funding(
            settings.exchange.id,
            symbol,
            pd.Timestamp(start),
            pd.Timestamp(end),
            config=_ccxt_config(settings),
            api_urls=exchange_api_urls(settings),
            max_attempts=settings.exchange.max_retries,
        )

    return fetch


def store_funding_history(
    services: Services, series: SeriesId, start: datetime | pd.Timestamp, end: datetime | pd.Timestamp
) -> int:
    """Fetch the swap's funding rates in ``[start, end)`` from its exchange and store them beside the bars;
    return how many were new."""
    from scalpbot.state.funding import append_funding

    rates = funding_history(services.settings)(series.symbol, pd.Timestamp(start), pd.Timestamp(end))
    return append_funding(services.store, series.exchange, series.symbol, rates)


def risk_limits(services: Services, timeframe: str, symbol: str | None = None) -> RiskLimits:
    """Return the configured risk limits for bars of ``timeframe``; a swap ``symbol`` adds its margin rules."""
    settings = services.settings
    margin = None
    if market_type_of(symbol or settings.data.symbol) != "spot":
        execute = settings.execute
        margin = Margin(execute.leverage, execute.maintenance_margin, execute.liquidation_margin)
    return RiskLimits(**settings.risk.model_dump(), timeframe=timeframe, margin=margin)


def portfolio_limits(settings: Settings) -> PortfolioLimits:
    """Return the configured limits of the bot's risk budget (``[portfolio]``)."""
    return PortfolioLimits(**settings.portfolio.model_dump())


def paper_broker(
    store: Store, settings: Settings, *, bot: str, series: SeriesId, bars: BarHistory
) -> PaperBroker:
    """Return the paper broker of ``bot``: the backtest's fill model with the venue's fee, step and minimums, and
    on a swap the funding rates stored beside the bars."""
    costs = settings.backtest
    venue = venue_profile(store, settings, series)

    def funding(start: pd.Timestamp, last: pd.Timestamp) -> pd.Series:
        return load_funding(store, series.exchange, series.symbol, start, last)

    return PaperBroker(
        store,
        bot=bot,
        symbol=series.symbol,
        timeframe=series.timeframe,
        bars=bars.between,
        fee=venue.taker_fee,
        slippage=costs.slippage,
        initial_equity=costs.initial_equity,
        rules=venue.order_rules(),
        funding=funding if venue.market_type == "swap" else None,
        scoped=state_symbol(settings, series.symbol) is not None,
    )


def build_executor(
    services: Services,
    series: SeriesId,
    *,
    bot: str,
    bars: BarHistory,
    mode: ExecuteMode = "live",
    notifier: Notifier | None = None,
    broker: Broker | None = None,
    release_id: str | None = None,
    fallback_latest: bool = False,
) -> Executor:
    """Return the executor of ``bot`` on ``series``.

    ``mode`` ``live``: the configured broker (``execute.broker``: paper or ccxt); ``replay``: the paper broker
    always. ``broker`` replaces the choice (tests). ``fallback_latest``: while no release is current, a paper
    broker trades the newest release written; a live broker never does.
    """
    settings = services.settings
    venue = venue_profile(services.store, settings, series)
    if broker is None:
        if mode == "live" and settings.execute.broker == "ccxt":
            broker = live_broker(services, series, bot=bot)
        else:
            broker = paper_broker(services.store, settings, bot=bot, series=series, bars=bars)
    paper = isinstance(broker, PaperBroker)
    cache = ReleaseCache(
        ReleaseStore(services.store), series.symbol, release_id, fallback_latest=fallback_latest and paper
    )
    return Executor(
        bot=bot,
        symbol=series.symbol,
        timeframe=series.timeframe,
        store=services.store,
        broker=broker,
        notifier=notifier or build_notifier(settings, services.store, services.clock),
        model=lambda: cache.current().for_venue(venue),
        bars=bars,
        limits=risk_limits(services, series.timeframe, series.symbol),
        market_rules=venue.market_rules(),
        initial_equity=settings.backtest.initial_equity,
        ready=cache.available,
        clock=None if paper else services.clock,
        portfolio=portfolio_limits(settings),
        scope=state_symbol(settings, series.symbol),
    )


def live_broker(services: Services, series: SeriesId, *, bot: str) -> Broker:
    """Return the ccxt broker of ``bot`` with the exchange keys from the environment or AWS (see secrets)."""
    from scalpbot.adapters.ccxt.broker import CcxtBroker
    from scalpbot.adapters.ccxt.common import RetryPolicy
    from scalpbot.adapters.secrets import exchange_credentials

    exchange = services.settings.exchange
    if market_type_of(series.symbol) != "spot" and series.exchange not in SWAP_VENUES:
        hint = "binanceusdm (Binance USD-M)" if series.exchange == "binance" else "okx or binanceusdm"
        raise ConfigError(
            f"perpetual swaps are traded live on okx and binanceusdm only; {series.exchange} {series.symbol} is "
            f"not supported (trade it with the paper broker, or use exchange.id = {hint})"
        )
    config: dict[str, object] = {"timeout": exchange.timeout_ms, **exchange_credentials(exchange)}
    if exchange.sandbox:
        config["sandbox"] = True
    venue = venue_profile(services.store, services.settings, series)
    if venue.market_type != "spot":
        return _swap_broker(services, series, bot=bot, config=config)
    return CcxtBroker(
        exchange.id,
        bot=bot,
        symbol=series.symbol,
        timeframe=series.timeframe,
        config=config,
        api_urls=exchange_api_urls(services.settings),
        fee_rate=venue.taker_fee,
        venue=venue,
        adopt=services.settings.execute.adopt,
        retry=RetryPolicy(max_attempts=exchange.max_retries),
    )


def _swap_broker(services: Services, series: SeriesId, *, bot: str, config: dict[str, object]) -> Broker:
    """Return the live broker of a perpetual swap: OKX linear swaps, or Binance USD-M (``binanceusdm``)."""
    settings = services.settings
    from scalpbot.adapters.ccxt.binance_swap import BinanceSwapBroker
    from scalpbot.adapters.ccxt.common import RetryPolicy
    from scalpbot.adapters.ccxt.okx_swap import OkxSwapBroker

    common: dict[str, Any] = {
        "bot": bot,
        "symbol": series.symbol,
        "timeframe": series.timeframe,
        "leverage": settings.execute.leverage,
        "margin_mode": settings.execute.margin_mode,
        "config": config,
        "api_urls": exchange_api_urls(settings),
        "retry": RetryPolicy(max_attempts=settings.exchange.max_retries),
    }
    if series.exchange == "binanceusdm":
        return BinanceSwapBroker(**common)
    return OkxSwapBroker(**common)


def synthetic_bars(seed: int, series: SeriesId, start: datetime, end: datetime) -> pd.DataFrame:
    """Return validated seeded synthetic bars of ``series`` with open times in ``[start, end)`` (warm-ups, demos)."""
    from scalpbot.adapters.clock import FixedClock
    from scalpbot.adapters.marketdata.synthetic import SyntheticMarketData
    from scalpbot.core.bars import validate_bars

    source = SyntheticMarketData(FixedClock(end), seed=seed)
    raw = pd.concat(list(source.fetch_bars(series.symbol, series.timeframe, start, end)))
    return validate_bars(raw, series.timeframe, source=source.name)


def memory_paper_executor(
    settings: Settings, series: SeriesId, bars: pd.DataFrame, model: Callable[[], TradingModel], *, bot: str
) -> tuple[Executor, Services]:
    """Return a paper executor over ``bars`` in a fresh memory store, and its services (kernel warm-up)."""
    from scalpbot.adapters.notify.console import ConsoleNotifier
    from scalpbot.adapters.store.memory import MemoryStore

    store = MemoryStore()
    services = Services(
        settings, store, BarDataset(store, settings.data.format), SystemClock(), build_executor
    )
    history = MemoryHistory(bars)
    venue = venue_profile(store, settings, series)
    executor = Executor(
        bot=bot,
        symbol=series.symbol,
        timeframe=series.timeframe,
        store=store,
        broker=paper_broker(store, settings, bot=bot, series=series, bars=history),
        notifier=ConsoleNotifier(io.StringIO()),
        model=lambda: model().for_venue(venue),
        bars=history,
        limits=risk_limits(services, series.timeframe, series.symbol),
        market_rules=venue.market_rules(),
        initial_equity=settings.backtest.initial_equity,
        portfolio=portfolio_limits(settings),
        scope=state_symbol(settings, series.symbol),
    )
    return executor, services


__all__ = [
    "SOURCE_KINDS",
    "ExecuteMode",
    "Services",
    "SourceChoice",
    "build_executor",
    "build_market_data",
    "build_notifier",
    "build_services",
    "exchange_api_urls",
    "fetch_venue_profile",
    "live_broker",
    "memory_paper_executor",
    "paper_broker",
    "portfolio_limits",
    "replay_history",
    "risk_limits",
    "run_lease",
    "stored_history",
    "synthetic_bars",
    "venue_profile",
]
