"""The venue profile (pure): what one exchange lets the bot do on one market, at what cost, and where each fact
came from.

Everything that simulates or trades reads one :class:`Venue`: labels and the policy (no short where the venue
cannot short), tuning and the gate (its fee, step and minimums), the backtest kernel and the paper broker
(:meth:`Venue.order_rules`, ``taker_fee``), the risk checks (:meth:`Venue.market_rules`) and the live broker.

Units: fees are fractions of notional (0.001 = 0.1 %); ``amount_step`` and ``min_amount`` base units;
``price_tick`` and ``min_notional`` quote currency; ``rate_limit_ms`` milliseconds between requests of weight 1
(ccxt's ``rateLimit``); ``request_weight_per_minute`` the venue's weight budget per minute (0 = unknown).
A step, tick or minimum of 0 means "no rule". Every simulated fill is a market fill and pays ``taker_fee``.
``buy_fee_in_base``: a buy's commission is taken from the base coin it receives (spot, without a fee token such
as BNB), so a long holds its fill net of that commission. On spot the live broker sends market buys as a quote
amount, and :meth:`Venue.order_rules` tells the kernel to size them the same way (``cost_step``).

Each value has a source (:data:`Source`): ``exchange`` (read from the venue through ccxt), ``ccxt`` (ccxt's
published facts about the venue, not read from it: its default fee schedule, its rate limit), ``config`` (the
``[venue]`` settings) or ``default`` (scalpbot's offline profile, e.g. Binance spot: 0.1 % taker, no shorts).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, get_args

from scalpbot.core.backtest.enums import OrderRules
from scalpbot.core.costs import TradingCosts
from scalpbot.core.risk import MarketRules
from scalpbot.errors import ConfigError

__all__ = [
    "MARKET_TYPES",
    "PROTECTIONS",
    "VALUE_FIELDS",
    "Source",
    "Venue",
    "default_venue",
    "market_type_of",
]

Source = Literal["exchange", "ccxt", "config", "default"]
SOURCES: tuple[str, ...] = get_args(Source)
MarketType = Literal["spot", "swap", "future"]
MARKET_TYPES: tuple[str, ...] = get_args(MarketType)
PROTECTIONS = ("oco", "attached", "reduce_only")
"""Exchange-side protection a venue offers: an OCO order list after the fill, SL/TP attached to the entry,
reduce-only stop orders (derivatives)."""

FUNDING_STEPS: Mapping[str, float] = MappingProxyType({"binanceusdm": 1e-8})
"""Quote-currency step to which a venue books each funding payment (Binance USD-M writes its ``FUNDING_FEE``
income with 8 decimals, half to even); a venue not listed books the exact product."""

VALUE_FIELDS = (
    "taker_fee",
    "maker_fee",
    "amount_step",
    "price_tick",
    "min_amount",
    "min_notional",
    "shorts",
    "buy_fee_in_base",
    "protection",
    "rate_limit_ms",
    "request_weight_per_minute",
)
"""The facts of a profile, each with a source; ``exchange``, ``symbol`` and ``market_type`` name it."""

_HINTS = {
    "taker_fee": "a fraction of notional in [0, 0.1), e.g. 0.001 for 0.1 %",
    "maker_fee": "a fraction of notional in (-0.1, 0.1), e.g. 0.001 for 0.1 % (negative: a rebate)",
    "amount_step": "the quantity increment in base units, >= 0, e.g. 0.00001 (0 = any)",
    "price_tick": "the price increment in quote currency, >= 0, e.g. 0.01 (0 = any)",
    "min_amount": "the smallest order quantity in base units, >= 0 (0 = none)",
    "min_notional": "the smallest order value in quote currency, >= 0, e.g. 5.0 (0 = none)",
    "rate_limit_ms": "milliseconds between requests of weight 1, >= 0, e.g. 50",
    "request_weight_per_minute": "the request weight allowed per minute, a whole number >= 0 (0 = unknown)",
}


def market_type_of(symbol: str) -> MarketType:
    """Return the market type a unified symbol names: ``BTC/USDT`` spot, ``BTC/USDT:USDT`` swap, with a date future."""
    settle = symbol.partition(":")[2]
    if not settle:
        return "spot"
    return "future" if "-" in settle else "swap"


@dataclass(frozen=True, slots=True)
class Venue:
    """One exchange's rules and costs for one market, each fact with its source (see the module docstring)."""

    exchange: str
    symbol: str
    market_type: MarketType
    taker_fee: float
    maker_fee: float
    amount_step: float
    price_tick: float
    min_amount: float
    min_notional: float
    shorts: bool
    protection: tuple[str, ...]
    rate_limit_ms: float
    request_weight_per_minute: int
    sources: Mapping[str, Source]
    fetched_at: str | None = None
    """ISO-8601 UTC time the exchange was read, ``None`` for a profile never read from it."""
    buy_fee_in_base: bool | None = None
    """Whether a buy's commission is taken from the base coin received; ``None``: the market type's default
    (spot yes, derivatives no: they settle fees in the margin currency)."""

    def __post_init__(self) -> None:
        if not self.exchange or not self.symbol:
            raise ConfigError("a venue needs an exchange id and a symbol, e.g. binance and BTC/USDT")
        if self.market_type not in MARKET_TYPES:
            raise ConfigError(
                f"market_type must be one of {', '.join(MARKET_TYPES)}; got {self.market_type!r}"
            )
        for name in ("taker_fee", "maker_fee"):
            value = _number(name, getattr(self, name))
            low_ok = value >= 0.0 if name == "taker_fee" else value > -0.1
            if not (low_ok and value < 0.1):
                raise ConfigError(f"venue {name} must be {_HINTS[name]}; got {value!r}")
            object.__setattr__(self, name, value)
        for name in ("amount_step", "price_tick", "min_amount", "min_notional", "rate_limit_ms"):
            value = _number(name, getattr(self, name))
            if value < 0.0:
                raise ConfigError(f"venue {name} must be {_HINTS[name]}; got {value!r}")
            object.__setattr__(self, name, value)
        weight = self.request_weight_per_minute
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise ConfigError(
                f"venue request_weight_per_minute must be {_HINTS['request_weight_per_minute']}"
            )
        if not isinstance(self.shorts, bool):
            raise ConfigError(f"venue shorts must be true or false; got {self.shorts!r}")
        if (
            self.buy_fee_in_base is None
        ):  # a profile stored before the fact existed: the market type's default
            object.__setattr__(self, "buy_fee_in_base", self.market_type == "spot")
            object.__setattr__(self, "sources", {"buy_fee_in_base": "default", **self.sources})
        if not isinstance(self.buy_fee_in_base, bool):
            raise ConfigError(f"venue buy_fee_in_base must be true or false; got {self.buy_fee_in_base!r}")
        protection = tuple(self.protection)
        unknown = [p for p in protection if p not in PROTECTIONS]
        if unknown:
            raise ConfigError(
                f"venue protection '{unknown[0]}' is unknown{_did_you_mean(unknown[0], PROTECTIONS)}; "
                f"use any of {', '.join(PROTECTIONS)}"
            )
        object.__setattr__(self, "protection", protection)
        sources = dict(self.sources)
        missing = [name for name in VALUE_FIELDS if name not in sources]
        extra = [name for name in sources if name not in VALUE_FIELDS]
        bad = [name for name, source in sources.items() if source not in SOURCES]
        if missing or extra or bad:
            raise ConfigError(
                f"venue sources must name one of {', '.join(SOURCES)} for each of {', '.join(VALUE_FIELDS)}; "
                f"missing {missing}, unknown {extra}, bad source for {bad}"
            )
        object.__setattr__(self, "sources", MappingProxyType(sources))

    def order_rules(self) -> OrderRules:
        """Return the rules the backtest kernel applies to entries: step, minimums, shorts, and how a spot buy
        is sized and pays its commission.

        On spot the live broker buys a quote amount (``cost_step`` = the price tick, which ccxt truncates the
        amount to), and where ``buy_fee_in_base`` the position is the fill net of the commission in base. On
        derivatives (swaps, futures) it sends a quantity of contracts computed from the decision bar's close, so
        the kernel sizes entries there too (``size_at_close``), and charges funding rounded as the venue books it
        (``funding_step``, :data:`FUNDING_STEPS`).
        """
        cost_step = self.price_tick if self.market_type == "spot" and self.price_tick > 0 else 0.0
        return OrderRules(
            self.amount_step,
            self.min_amount,
            self.min_notional,
            self.shorts,
            cost_step,
            bool(self.buy_fee_in_base),
            self.price_tick,
            self.market_type != "spot",
            FUNDING_STEPS.get(self.exchange, 0.0) if self.market_type != "spot" else 0.0,
        )

    def trading_costs(self, slippage: float) -> TradingCosts:
        """Return the costs a simulated market fill pays here: the taker fee and the configured ``slippage``."""
        return TradingCosts(fee=self.taker_fee, slippage=slippage)

    def market_rules(self) -> MarketRules:
        """Return the rules the risk checks apply before an order: step, minimums, price tick."""
        return MarketRules(
            amount_step=self.amount_step,
            min_qty=self.min_amount,
            min_notional=self.min_notional,
            price_tick=self.price_tick,
        )

    def override(self, values: Mapping[str, Any], source: Source = "config") -> Venue:
        """Return the profile with ``values`` replacing facts, each marked with ``source``; ``None`` is skipped.

        Unknown names raise ``ConfigError`` with a "did you mean" hint.
        """
        changes: dict[str, Any] = {}
        for name, value in values.items():
            if name not in VALUE_FIELDS:
                raise ConfigError(
                    f"a venue has no setting '{name}'{_did_you_mean(name, VALUE_FIELDS)}; "
                    f"allowed: {', '.join(VALUE_FIELDS)}"
                )
            if value is not None:
                changes[name] = tuple(value) if name == "protection" else value
        if not changes:
            return self
        sources = {**self.sources, **dict.fromkeys(changes, source)}
        return dataclasses.replace(self, **changes, sources=sources)

    def rows(self) -> list[tuple[str, Any, Source]]:
        """Return ``(fact, value, source)`` for each fact, in ``VALUE_FIELDS`` order (for display)."""
        return [(name, getattr(self, name), self.sources[name]) for name in VALUE_FIELDS]

    def to_dict(self) -> dict[str, Any]:
        """Return the profile as JSON-ready data (what ``venue.json`` holds)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["protection"] = list(self.protection)
        data["sources"] = dict(self.sources)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Venue:
        """Return a profile from ``to_dict()``'s data; raise ``ConfigError`` naming what is wrong."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a venue profile must be a JSON object; got {type(data).__name__}")
        names = tuple(f.name for f in dataclasses.fields(cls))
        unknown = [key for key in data if key not in names]
        if unknown:
            raise ConfigError(
                f"a venue profile has no field '{unknown[0]}'{_did_you_mean(unknown[0], names)}"
            )
        missing = [
            name for name in names if name not in data and name not in ("fetched_at", "buy_fee_in_base")
        ]
        if missing:
            raise ConfigError(f"a venue profile lacks {', '.join(missing)}")
        values = dict(data)
        values["protection"] = tuple(values["protection"])
        return cls(**values)


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"venue {name} must be {_HINTS[name]}; got {value!r}")
    return float(value)


def _did_you_mean(name: str, choices: tuple[str, ...]) -> str:
    hint = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""


_BINANCE_SPOT_LOTS: dict[str, tuple[float, float, float, float]] = {
    "BTC/USDT": (0.00001, 0.01, 0.00001, 5.0),
    "ETH/USDT": (0.0001, 0.01, 0.0001, 5.0),
}
"""Binance spot ``LOT_SIZE`` step and minimum, ``PRICE_FILTER`` tick and ``NOTIONAL`` minimum of the bundled
markets: (amount step, price tick, minimum amount, minimum notional)."""


_SPOT_PROTECTION = {"binance": ("oco",), "okx": ("attached",)}
"""How the live broker protects a spot position on the venues it trades: Binance OCO lists, OKX SL/TP attached
to the entry."""


def default_venue(exchange: str, symbol: str) -> Venue:
    """Return the offline profile of ``exchange`` / ``symbol``, used until the venue is read (``venue fetch``).

    Spot markets cannot be shorted and pay 0.1 % per side (Binance's base spot rate; most spot venues charge
    about that or more), a buy's commission in the base coin received. Binance spot protects with OCO order lists, OKX spot with SL/TP attached to the entry.
    Swaps pay 0.05 % taker / 0.02 % maker
    (Binance USD-M's base rates) and protect with reduce-only stops (on OKX attached to the entry as well). Steps and minimums are known offline
    only for the markets of ``_BINANCE_SPOT_LOTS``; elsewhere they are 0 (no rule) until fetched.
    """
    market_type = market_type_of(symbol)
    spot = market_type == "spot"
    step, tick, min_amount, min_notional = (
        _BINANCE_SPOT_LOTS.get(symbol, (0.0, 0.0, 0.0, 0.0)) if exchange == "binance" and spot else (0.0,) * 4
    )
    if spot:
        protection: tuple[str, ...] = _SPOT_PROTECTION.get(exchange, ())
    else:
        protection = ("attached", "reduce_only") if exchange == "okx" else ("reduce_only",)
    return Venue(
        exchange=exchange,
        symbol=symbol,
        market_type=market_type,
        taker_fee=0.001 if spot else 0.0005,
        maker_fee=0.001 if spot else 0.0002,
        amount_step=step,
        price_tick=tick,
        min_amount=min_amount,
        min_notional=min_notional,
        shorts=not spot,
        buy_fee_in_base=spot,
        protection=protection,
        rate_limit_ms=50.0 if exchange == "binance" else 0.0,
        request_weight_per_minute=6000 if exchange == "binance" and spot else 0,
        sources=dict.fromkeys(VALUE_FIELDS, "default"),
    )
