"""Settings: embedded defaults, then ``scalpbot.toml``, then ``SCALPBOT_*`` environment, then CLI options.

Each section is a frozen model that rejects unknown keys with a "did you mean" hint. Environment
variables are ``SCALPBOT_<SECTION>__<KEY>`` (e.g. ``SCALPBOT_DATA__TIMEFRAME=5m``); ``SCALPBOT_STORE``
alone is the store URL. Secrets are ``SecretStr`` and are redacted wherever settings are shown.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, cast, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from scalpbot.core.gate import GateRules
from scalpbot.core.timeframes import timeframe_seconds
from scalpbot.errors import ConfigError, ScalpbotError

ENV_PREFIX = "SCALPBOT_"
DEFAULT_CONFIG_FILE = "scalpbot.toml"
STORE_URL_ENV = "SCALPBOT_STORE"
AUTO_MODEL = "auto"
"""``train.model`` for every registered model kind, the walk-forward folds' validation choosing between them."""
NUMBA_CACHE_SEED_ENV = "SCALPBOT_NUMBA_CACHE_SEED"
"""Not a setting: the folder of prebuilt numba kernels a Lambda environment starts from (``scalpbot.aws``)."""


_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9._-]*/[A-Z0-9][A-Z0-9._-]*(:[A-Z0-9][A-Z0-9._-]*)?")


def check_symbol(value: str) -> str:
    """Return ``value`` upper-cased; raise ``ValueError`` unless it names one ``BASE/QUOTE[:SETTLE]`` market."""
    if "," in value or any(ch.isspace() for ch in value.strip()):
        raise ValueError(f"one symbol at a time: '{value}' names several; run the command once per symbol")
    if not _SYMBOL.fullmatch(value.strip().upper()):
        raise ValueError(f"symbol '{value}' must look like BASE/QUOTE, e.g. BTC/USDT")
    return value.strip().upper()


def quote_of(symbol: str) -> str:
    """Return the currency ``symbol``'s PnL is in: its settle currency (swaps), else its quote."""
    pair, _, settle = symbol.partition(":")
    return settle or pair.partition("/")[2]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreSettings(_Section):
    """Where everything is kept: a folder path or ``s3://bucket/prefix``."""

    url: str = "./scalpbot-data"
    endpoint_url: str | None = None
    region: str | None = None


class ExchangeSettings(_Section):
    """The ccxt exchange used for market data and orders."""

    id: str = "binance"
    api_key: SecretStr | None = None
    secret: SecretStr | None = None
    password: SecretStr | None = None
    sandbox: bool = False
    secret_id: str | None = Field(
        default=None, description="AWS Secrets Manager id of a JSON {api_key, secret, password} for the keys"
    )
    ssm_prefix: str | None = Field(
        default=None, description="SSM Parameter Store path holding api_key, secret (SecureString)"
    )
    api_url: str | None = Field(
        default=None,
        description="scheme://host[:port] replacing the host of every REST endpoint of the exchange "
        "(a proxy, a regional mirror or a local server speaking the venue's REST format); paths are kept",
    )
    timeout_ms: int = Field(default=10_000, gt=0)
    max_retries: int = Field(default=5, ge=1, le=20)

    @field_validator("api_url")
    @classmethod
    def _check_api_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ValueError(
                f"must be http(s)://host[:port] without a path, e.g. https://proxy.example:8443; got {value!r}"
            )
        return f"{parts.scheme}://{parts.netloc}"

    @model_validator(mode="after")
    def _check_sandbox(self) -> ExchangeSettings:
        if self.sandbox and self.api_url:
            raise ValueError(
                "api_url and sandbox cannot be combined: the sandbox has its own hosts; set one of them"
            )
        return self


class DataSettings(_Section):
    """The market series the bot trades and how its bars are stored and checked."""

    symbol: str = "BTC/USDT"
    timeframe: str = "1m"
    format: Literal["parquet", "csv"] = "parquet"
    lookback_days: int = Field(default=7, gt=0, description="first fetch window when nothing is stored")
    spike_sigmas: float = Field(default=15.0, gt=0, description="robust z-score that flags a price spike")
    spike_min_move: float = Field(default=0.01, ge=0, description="smallest log move reported as a spike")

    @field_validator("symbol")
    @classmethod
    def _symbol_is_base_quote(cls, value: str) -> str:
        return check_symbol(value)

    @field_validator("timeframe")
    @classmethod
    def _timeframe_is_supported(cls, value: str) -> str:
        try:
            timeframe_seconds(value)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return value


class VenueSettings(_Section):
    """Overrides of the venue profile (``scalpbot venue show``); unset keys keep the exchange's or default value."""

    taker_fee: float | None = Field(default=None, ge=0, lt=0.1, description="fraction of notional per fill")
    maker_fee: float | None = Field(default=None, gt=-0.1, lt=0.1, description="fraction of notional")
    amount_step: float | None = Field(default=None, ge=0, description="quantity increment, base units")
    price_tick: float | None = Field(default=None, ge=0, description="price increment, quote currency")
    min_amount: float | None = Field(default=None, ge=0, description="smallest quantity, base units")
    min_notional: float | None = Field(default=None, ge=0, description="smallest order value, quote")
    shorts: bool | None = Field(default=None, description="whether the bot may open short positions")
    buy_fee_in_base: bool | None = Field(
        default=None,
        description="whether a buy's commission is taken from the base coin received (false when paid in BNB)",
    )


class BacktestSettings(_Section):
    """Slippage, starting equity and the baseline strategy used by ``scalpbot backtest`` (fees: ``[venue]``)."""

    slippage: float = Field(default=0.0, ge=0, lt=0.1, description="adverse fill move, fraction of price")
    initial_equity: float = Field(default=10_000.0, gt=0, description="quote currency")
    strategy: str = "sma-cross"
    sma_length: int = Field(default=50, ge=2)
    size: float = Field(default=1.0, gt=0, description="fraction of equity committed as notional")
    sl: float = Field(default=0.003, gt=0, description="stop loss, fraction of the fill price")
    tp: float = Field(default=0.006, gt=0, description="take profit, fraction of the fill price")
    max_hold: int = Field(default=0, ge=0, description="bars; 0 = no time stop")


class TrainSettings(_Section):
    """The daily train job: history window, labels, model, tuning and the promotion gate."""

    days: int = Field(default=90, gt=0, description="days of bars, ending at --until, used per training run")
    horizon: int = Field(default=30, ge=2, le=1440, description="label horizon in bars (triple barrier)")
    k_sl: float = Field(default=1.0, gt=0, description="label stop loss, multiple of barrier volatility")
    k_tp: float = Field(default=1.0, gt=0, description="label take profit, multiple of barrier volatility")
    label_search: tuple[tuple[int, float, float], ...] = Field(
        default=((60, 2.0, 2.0),),
        description="more (horizon, k_sl, k_tp) labels to try beside horizon/k_sl/k_tp; the folds choose",
    )
    holding_horizons: tuple[int, ...] = Field(
        default=(30,),
        description="horizons (bars) of holding labels to try beside the barrier labels: a side wins when "
        "holding it that long made money after costs; the folds choose",
    )
    min_tp_round_trips: float = Field(
        default=1.0,
        ge=0,
        description="a label's take profit (a holding label's move) is at least this many round trips of cost",
    )
    validation_fraction: float = Field(
        default=0.3, gt=0, lt=0.6, description="share of the bars cut into the walk-forward validation folds"
    )
    test_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    folds: int = Field(default=3, ge=1, le=12, description="walk-forward validation folds")
    embargo: int = Field(
        default=60, ge=0, description="bars between a fold's purged training rows and its window"
    )
    max_train_days: float | None = Field(
        default=90.0, gt=0, description="rolling folds: train on at most this many days before each fold"
    )
    dispersion: float = Field(
        default=1.0, ge=0, description="weight of the folds' spread of mean returns in the tuning objective"
    )
    objective: Literal["sharpe", "return", "alpha", "timing"] = Field(
        default="timing",
        description="tuning maximizes the folds' mean return beyond the same exposure at random bars (timing), "
        "hedged of the market's (alpha), their mean return or their Sharpe ratio",
    )
    confidence_floor: Literal["return", "tuned"] = Field(
        default="return",
        description="after tuning, the confidence floor (min_confidence) is chosen again on the folds' mean "
        "return, the rest of the tuned policy kept (return), or kept as tuned",
    )
    time_stop: Literal["any", "label"] = Field(
        default="any",
        description="the time stop (max_hold) is tuned over 5 .. 240 bars (any), or from half to twice the "
        "horizon of the label the model learned (label)",
    )
    exits: Literal["tuned", "label", "label stop"] = Field(
        default="tuned",
        description="the policy's stop, take-profit and time stop are tuned with its entries (tuned), or those of "
        "the label the model learned (label: a barrier label's k_sl/k_tp sigmas and horizon; a holding label's "
        "horizon with a protective stop at 3 predicted volatilities), or its stop alone (label stop)",
    )
    trials: int = Field(default=300, ge=1, description="Bayesian optimization trials over StrategyParams")
    sampler: Literal["tpe", "gp"] = "tpe"
    study_storage: str | None = Field(
        default=None,
        description="Optuna RDB URL; default: a study kept in the store; postgresql://...: shared by --workers",
    )
    study_storage_secret_id: str | None = Field(
        default=None,
        description="AWS Secrets Manager id of the study_storage URL (it holds the database password): the "
        "secret's string is the postgresql:// URL, or RDS's JSON {host, port, username, password, dbname}; "
        "read when the services are built, used where study_storage is unset",
    )
    min_trades: int = Field(
        default=20, ge=1, description="fewest trades a tuning trial and a promoted challenger need"
    )
    model: str | tuple[str, ...] = Field(
        default="mlp",
        description="the model kind trained (scalpbot.ml.registry): 'mlp' (Keras MLP), 'conv1d' (temporal "
        "convolution over the trailing window); a list, or 'auto' for every kind: the folds' validation choose",
    )
    ensemble: int = Field(
        default=1, ge=1, le=16, description="models per fold with consecutive seeds, averaged (1: one model)"
    )
    calibration: Literal["none", "isotonic"] = Field(
        default="isotonic",
        description="isotonic calibration of the win probabilities on the folds' out-of-sample predictions",
    )
    meta_label: Literal["off", "logistic"] = Field(
        default="off",
        description="a second model deciding whether to take the tuned policy's trades (scalpbot.ml.meta_label), "
        "fitted on the folds' out-of-sample trades and kept only when it raised the later folds' return",
    )
    risk_per_trade: float = Field(
        default=0.005,
        gt=0,
        le=0.1,
        description="fraction of equity a stop-out loses at full size: a position's notional is this over its "
        "stop's distance (capped by max_position); the stops are tuned for it",
    )
    sample_weights: Literal["none", "return"] = Field(
        default="none",
        description="weights of the training rows' class loss: each row by the size of the move its label spans "
        "(return; scalpbot.core.sample_weights), or all alike (none); online learning fine-tunes unweighted",
    )
    max_epochs: int = Field(default=30, ge=1)
    widths: tuple[int, ...] = (64, 64)
    model_trials: int = Field(
        default=0,
        ge=0,
        description="Bayesian trials over the model's widths, dropout and learning rate; 0: use widths",
    )
    seed: int = 7
    fit_workers: int = Field(
        default=0,
        ge=0,
        description="processes fitting the folds' models at once (0: one per CPU core; 1: in the job's process); "
        "the models are the same for any number",
    )
    order_flow: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="order-flow features (trades, taker-buy volume): 'auto' when every bar trained on has them",
    )

    @model_validator(mode="after")
    def _label_exits_fit_the_policy(self) -> TrainSettings:
        if self.exits != "tuned":
            for horizon, k_sl, k_tp in ((self.horizon, self.k_sl, self.k_tp), *self.label_search):
                if not (0 < k_sl <= 100 and 0 < k_tp <= 100):
                    raise ValueError(
                        f"train.exits = {self.exits!r} makes each label's k_sl and k_tp the policy's stop and "
                        f"take-profit multiples, which must be in (0, 100]; got label ({horizon}, {k_sl}, {k_tp})"
                    )
        return self

    @field_validator("model")
    @classmethod
    def _model_is_registered(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        from scalpbot.ml.registry import MODEL_KINDS, unknown_kind  # light: names only, no kind is loaded

        names = (value,) if isinstance(value, str) else value
        if not names:
            raise ValueError("name at least one model kind, or 'auto' for every registered kind")
        if isinstance(value, str) and value == AUTO_MODEL:
            return value
        for name in names:
            if name not in MODEL_KINDS:
                raise ValueError(unknown_kind(name))
        if len(set(names)) != len(names):
            raise ValueError(f"model kinds are named more than once: {list(names)}")
        return value if isinstance(value, str) or len(names) > 1 else names[0]

    def model_kinds(self) -> tuple[str, ...]:
        """Return the kinds the train job chooses from: ``model`` as a tuple, every registered kind for 'auto'."""
        from scalpbot.ml.registry import kind_names

        if self.model == AUTO_MODEL:
            return tuple(kind_names())
        return (self.model,) if isinstance(self.model, str) else self.model


class GateSettings(_Section):
    """The promotion gate's evidence thresholds (with ``train.min_trades``), for training, online learning and RL."""

    min_days: float = Field(default=7.0, gt=0, description="fewest days the scored window must span")
    max_p_value: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="stationary-bootstrap p-value of the edge over the rival must be below",
    )
    min_deflated_sharpe: float = Field(
        default=0.95,
        ge=0,
        le=1,
        description="deflated Sharpe ratio over the trials run must be above (0: off)",
    )
    max_pbo: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="probability of backtest overfitting must be below (with folds; 1: off)",
    )
    max_pbo_loss: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="a PBO at or above max_pbo still passes when the in-sample winner's probability of loss "
        "out of sample is below this (0: PBO alone)",
    )
    max_timing_p: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="random-entry p-value of the trades' timing must be below (1: off)",
    )
    bootstrap_resamples: int = Field(
        default=2000, ge=100, le=100_000, description="bootstrap and random-entry resamples"
    )

    def rules(self, min_trades: int) -> GateRules:
        """Return the gate's rules with the fewest trades a challenger needs (``train.min_trades``)."""
        return GateRules(
            min_trades=min_trades,
            min_days=self.min_days,
            max_p_value=self.max_p_value,
            min_deflated_sharpe=self.min_deflated_sharpe,
            max_pbo=self.max_pbo,
            max_timing_p=self.max_timing_p,
            max_pbo_loss=self.max_pbo_loss,
        )


class RiskSettings(_Section):
    """Limits checked before every entry; daily loss and drawdown engage the kill switch."""

    max_position_fraction: float = Field(default=1.0, gt=0, le=100, description="notional cap / equity")
    max_position_notional: float = Field(default=float("inf"), gt=0, description="quote currency")
    max_open_positions: int = Field(default=1, ge=0)
    max_daily_loss: float = Field(
        default=0.03, gt=0, le=1, description="fraction of the UTC day's start equity"
    )
    max_drawdown: float = Field(default=0.10, gt=0, le=1, description="fraction of the peak equity")
    cooldown_after_losses: int = Field(default=3, ge=0, description="consecutive losses; 0 = off")
    cooldown_bars: int = Field(default=15, ge=0)


class PortfolioSettings(_Section):
    """The bot's risk budget, shared by all its symbols and checked before every entry (unset: no limit).

    Gross exposure is the notional of every open position together; the bot's equity is its realized equity
    (the budget's starting equity plus every realized PnL), and its kill switch flattens every symbol.
    """

    max_gross_exposure: float = Field(
        default=float("inf"), gt=0, description="gross notional / equity, e.g. 2.0 (inf = none)"
    )
    max_gross_notional: float = Field(default=float("inf"), gt=0, description="quote currency (inf = none)")
    max_symbol_notional: float = Field(
        default=float("inf"), gt=0, description="one symbol's notional, quote currency (inf = none)"
    )
    max_positions: int | None = Field(
        default=None, ge=0, description="open positions across the bot's symbols (unset = none)"
    )
    max_daily_loss: float | None = Field(
        default=None, gt=0, le=1, description="realized loss, fraction of the UTC day's start equity"
    )
    max_drawdown: float | None = Field(
        default=None, gt=0, le=1, description="fraction of the peak realized equity"
    )


class ExecuteSettings(_Section):
    """The execute job: which broker trades and how runs are serialized."""

    broker: Literal["paper", "ccxt"] = "paper"
    lease_seconds: int = Field(
        default=120, ge=10, description="a run lease older than this may be taken over"
    )
    adopt: bool = Field(
        default=False,
        description="live: take base coins already on the account as the bot's position (else refused)",
    )
    leverage: float = Field(
        default=1.0, ge=1, le=125, description="swaps: notional / margin, set on the venue at start"
    )
    margin_mode: Literal["isolated", "cross"] = Field(
        default="isolated", description="swaps: margin mode, set on the venue at start"
    )
    maintenance_margin: float = Field(
        default=0.004, gt=0, lt=0.5, description="swaps: the venue's first-tier maintenance margin rate"
    )
    liquidation_margin: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="swaps: share of the distance to liquidation a stop must leave free (0.5 = half)",
    )


class NotifySettings(_Section):
    """Where results and errors are sent: console, an SNS topic and any apprise URLs, all at once."""

    console: bool = True
    sns_topic_arn: str = ""
    sns_endpoint_url: str | None = None
    sns_region: str | None = None
    apprise_urls: tuple[SecretStr, ...] = Field(
        default=(), description="apprise URLs (tgram://, slack://, discord://, mailto://, json:// ...)"
    )
    attempts: int = Field(default=3, ge=1, le=10)
    retry_base_delay: float = Field(default=1.0, ge=0)


class BotSettings(_Section):
    """Identity of this bot's state (ledger, portfolio) in the store."""

    name: str = Field(default="default", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    symbols: tuple[str, ...] = Field(
        default=(),
        description="the symbols the bot trades on exchange.id, sharing one quote currency and the "
        "[portfolio] budget (empty = [data.symbol])",
    )

    @field_validator("symbols")
    @classmethod
    def _symbols_are_distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        symbols = tuple(check_symbol(symbol) for symbol in value)
        repeated = sorted({symbol for symbol in symbols if symbols.count(symbol) > 1})
        if repeated:
            raise ValueError(f"bot.symbols names {', '.join(repeated)} more than once; list each symbol once")
        quotes = sorted({quote_of(symbol) for symbol in symbols})
        if len(quotes) > 1:
            raise ValueError(
                f"bot.symbols mixes quote currencies ({', '.join(quotes)}): the bot's equity and its portfolio "
                "budget are in one currency; trade each quote currency in its own bot"
            )
        return symbols


class ServeSettings(_Section):
    """``scalpbot serve``: the dashboard and JSON API over the store."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    token: SecretStr | None = Field(
        default=None, description="bearer token the halt and resume actions require; unset: actions refused"
    )
    refresh_seconds: float = Field(default=15.0, ge=1.0, description="how often the page reloads its data")


class Settings(BaseSettings):
    """The effective configuration of one scalpbot process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    store: StoreSettings = StoreSettings()
    exchange: ExchangeSettings = ExchangeSettings()
    data: DataSettings = DataSettings()
    venue: VenueSettings = VenueSettings()
    backtest: BacktestSettings = BacktestSettings()
    train: TrainSettings = TrainSettings()
    gate: GateSettings = GateSettings()
    risk: RiskSettings = RiskSettings()
    portfolio: PortfolioSettings = PortfolioSettings()
    execute: ExecuteSettings = ExecuteSettings()
    notify: NotifySettings = NotifySettings()
    bot: BotSettings = BotSettings()
    serve: ServeSettings = ServeSettings()

    @property
    def symbols(self) -> tuple[str, ...]:
        """Return the bot's symbols in the configured order (the order a bar's cycles run in); ``bot.symbols``
        unset (empty) means the one symbol ``data.symbol``."""
        return self.bot.symbols or (self.data.symbol,)


class _ScalpbotEnvSource(EnvSettingsSource):
    """Environment source that also accepts ``SCALPBOT_STORE=<url>`` as the store URL."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = dict(super()._load_env_vars())
        plain_url = env.pop(STORE_URL_ENV.lower(), None)
        if plain_url and f"{STORE_URL_ENV.lower()}__url" not in env:
            env[f"{STORE_URL_ENV.lower()}__url"] = plain_url
        return env


SECTIONS: dict[str, type[_Section]] = {
    "store": StoreSettings,
    "exchange": ExchangeSettings,
    "data": DataSettings,
    "venue": VenueSettings,
    "backtest": BacktestSettings,
    "train": TrainSettings,
    "gate": GateSettings,
    "risk": RiskSettings,
    "portfolio": PortfolioSettings,
    "execute": ExecuteSettings,
    "notify": NotifySettings,
    "bot": BotSettings,
    "serve": ServeSettings,
}


def load_settings(
    config_path: Path | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Return the effective settings; raise ``ConfigError`` with a fix-it message on any bad key or value.

    ``config_path`` defaults to ``./scalpbot.toml`` when that file exists. ``overrides`` are CLI options
    as ``{section: {key: value}}``; ``None`` values are ignored so unset options do not mask the file.
    """
    path = config_path if config_path is not None else Path(DEFAULT_CONFIG_FILE)
    file_data = _read_toml(path, required=config_path is not None)
    _reject_unknown_keys(file_data, origin=str(path))
    _reject_unknown_env(os.environ)
    cli = {s: {k: v for k, v in kv.items() if v is not None} for s, kv in (overrides or {}).items()}
    cli = {s: kv for s, kv in cli.items() if kv}
    _reject_unknown_keys(cli, origin="command-line options")

    class _Layered(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            # Highest priority first: CLI overrides, environment, the TOML file.
            file_source = InitSettingsSource(settings_cls, init_kwargs=file_data)
            return (init_settings, _ScalpbotEnvSource(settings_cls), file_source)

    try:
        layered = cast(Any, _Layered)(**cli)
    except ValidationError as e:
        raise ConfigError(_describe_validation_error(e)) from None
    except SettingsError as e:
        raise ConfigError(_describe_env_error(e, os.environ)) from None
    # Already validated: re-wrap as the public class without consulting the sources again.
    return Settings.model_construct(**{name: getattr(layered, name) for name in SECTIONS})


def _describe_env_error(error: SettingsError, environ: Mapping[str, str]) -> str:
    """Return one line for an environment value pydantic-settings cannot parse: a list or table setting, which
    takes JSON there (``SCALPBOT_TRAIN__WIDTHS=64,64`` is not read; ``'[64, 64]'`` is)."""
    found = re.search(r'field "(\w+)"', str(error))
    section = found.group(1) if found else ""
    model = SECTIONS.get(section)
    prefix = f"{ENV_PREFIX}{section}__".upper()
    names = []
    if model is not None:
        for name in sorted(environ):
            field = model.model_fields.get(name.upper().removeprefix(prefix).lower())
            if name.upper().startswith(prefix) and field is not None and _takes_json(field.annotation):
                try:
                    json.loads(environ[name])
                except ValueError:
                    names.append(name)
    where = ", ".join(names) or f"a {prefix}* variable"
    return (
        f"{where} cannot be read: a list or table setting takes JSON in the environment, e.g. "
        f"{ENV_PREFIX}BOT__SYMBOLS='[\"BTC/USDT\", \"ETH/USDT\"]' or {ENV_PREFIX}TRAIN__WIDTHS='[64, 64]'"
    )


def _takes_json(annotation: Any) -> bool:
    """Return whether a field of this type is read from the environment as JSON (a list, tuple or table)."""
    if get_origin(annotation) in (Union, UnionType):  # plain text is read as is where a str is allowed
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        return str not in args and any(_takes_json(arg) for arg in args)
    return get_origin(annotation) in (tuple, list, dict, set, frozenset) or annotation in (tuple, list, dict)


def _read_toml(path: Path, *, required: bool) -> dict[str, Any]:
    if not path.exists():
        if required:
            raise ConfigError(f"config file {path} does not exist; create it or drop --config")
        return {}
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror}") from None


_MOVED = {"backtest.fee": "venue.taker_fee"}
"""Keys that moved, with their new place: an old file gets told where the key went."""
_RETIRED = {"execute.history_days": "a cycle reads the bars its features need (the feature window)"}
"""Keys that no longer set anything, with why: an old file gets told to delete them."""


def _did_you_mean(name: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _reject_unknown_keys(table: Mapping[str, Any], *, origin: str) -> None:
    for section, values in table.items():
        if section not in SECTIONS:
            hint = _did_you_mean(section, list(SECTIONS))
            raise ConfigError(f"unknown section '{section}' in {origin}{hint}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"'{section}' in {origin} must be a table of keys, e.g. [{section}]")
        fields = list(SECTIONS[section].model_fields)
        for key in values:
            if key not in fields:
                retired = _RETIRED.get(f"{section}.{key}")
                if retired:
                    raise ConfigError(
                        f"'{section}.{key}' in {origin} no longer sets anything ({retired}); delete it"
                    )
                moved = _MOVED.get(f"{section}.{key}")
                hint = f" (it moved to '{moved}')" if moved else _did_you_mean(key, fields)
                raise ConfigError(f"unknown key '{section}.{key}' in {origin}{hint}")


def _reject_unknown_env(environ: Mapping[str, str]) -> None:
    for name in environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in (STORE_URL_ENV, NUMBA_CACHE_SEED_ENV):
            continue
        section, sep, key = upper[len(ENV_PREFIX) :].lower().partition("__")
        if section not in SECTIONS:
            match = difflib.get_close_matches(section, list(SECTIONS), n=1, cutoff=0.6)
            hint = f" (did you mean SCALPBOT_{match[0].upper()}__...?)" if match else ""
            raise ConfigError(f"unknown environment variable {name}{hint}")
        if not sep:
            raise ConfigError(
                f"environment variable {name} must name a key: SCALPBOT_{section.upper()}__<KEY>"
            )
        fields = list(SECTIONS[section].model_fields)
        if key not in fields:
            match = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
            hint = f" (did you mean SCALPBOT_{section.upper()}__{match[0].upper()}?)" if match else ""
            raise ConfigError(f"unknown environment variable {name}{hint}")


def _describe_validation_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    hidden = isinstance(value, Mapping) or any(
        word in where for word in ("secret", "key", "apprise", "password", "token")
    )
    shown = "" if hidden else f" (got {value!r})"
    return f"invalid setting {where}: {message}{shown}"


def redacted(settings: Settings) -> dict[str, Any]:
    """Return the settings as JSON-ready data: secrets replaced by ``'********'``, infinities as ``"inf"``."""

    def scrub(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return "********"
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)  # JSON has no infinity: "inf" (no limit)
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [scrub(v) for v in value]
        return value

    return {name: scrub(dict(getattr(settings, name))) for name in SECTIONS}


__all__ = [
    "BacktestSettings",
    "BotSettings",
    "ConfigError",
    "DataSettings",
    "ExchangeSettings",
    "GateSettings",
    "PortfolioSettings",
    "ScalpbotError",
    "ServeSettings",
    "Settings",
    "StoreSettings",
    "TrainSettings",
    "VenueSettings",
    "load_settings",
    "redacted",
]
