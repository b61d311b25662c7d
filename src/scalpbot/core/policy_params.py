"""The policy's parameters (``StrategyParams``) and their search space (``ParamBounds``): validated values.

Both are frozen, reject bad values with a message that says how to fix them, and round-trip through JSON-native
dicts (``to_dict``/``from_dict``; unknown keys are rejected with a "did you mean" hint, missing ones take their
defaults). Units: ``entry_threshold``, ``min_confidence`` and ``full_size_edge`` are probabilities;
``sl_mult``/``tp_mult`` multiples of the predicted volatility; ``min_stop``/``max_stop`` fractions of the fill
price; ``risk_per_trade`` a fraction of equity; ``max_position`` notional as a fraction of equity; ``max_hold``
bars. See :mod:`scalpbot.core.policy` for how they turn predictions into trades.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from scalpbot.errors import ConfigError

__all__ = ["TUNABLE_FIELDS", "KernelParams", "ParamBounds", "StrategyParams"]


class _Spec(NamedTuple):
    low: float
    high: float
    low_open: bool  # True: the value must be > low, else >= low
    hint: str


_SPECS: dict[str, _Spec] = {
    "entry_threshold": _Spec(
        0.0, 1.0, False, "the minimum edge p_win - p_lose to enter, in [0, 1], e.g. 0.1"
    ),
    "min_confidence": _Spec(0.0, 1.0, False, "the minimum p_win to enter, in [0, 1] (0 = off)"),
    "sl_mult": _Spec(
        0.0, 100.0, True, "the stop-loss distance in predicted volatilities, in (0, 100], e.g. 1.0"
    ),
    "tp_mult": _Spec(
        0.0, 100.0, True, "the take-profit distance in predicted volatilities, in (0, 100], e.g. 1.5"
    ),
    "min_stop": _Spec(
        0.0, 0.5, True, "the floor on SL/TP as a fraction of the fill price, in (0, 0.5], e.g. 0.0005"
    ),
    "max_stop": _Spec(
        0.0, 0.5, True, "the cap on SL/TP as a fraction of the fill price, in (0, 0.5], e.g. 0.05"
    ),
    "risk_per_trade": _Spec(
        0.0, 0.2, True, "the fraction of equity lost at the stop, in (0, 0.2], e.g. 0.005"
    ),
    "max_position": _Spec(0.0, 100.0, True, "the cap on notional / equity, in (0, 100] (1.0 = no leverage)"),
    "max_hold": _Spec(0.0, 1e6, False, "the time stop in bars, a whole number >= 0 (0 = none)"),
    "full_size_edge": _Spec(0.0, 1.0, False, "the edge that uses the full risk, in [0, 1] (0 = always full)"),
}

TUNABLE_FIELDS = (
    "entry_threshold",
    "min_confidence",
    "sl_mult",
    "tp_mult",
    "risk_per_trade",
    "max_position",
    "max_hold",
    "full_size_edge",
)
"""Fields a ``ParamBounds`` may give a range; the others (stops' floor/cap, ``allow_short``) stay at the base."""


class KernelParams(NamedTuple):
    """The float/bool fields of ``StrategyParams`` in the form numba kernels take (``max_hold`` goes apart)."""

    entry_threshold: float
    min_confidence: float
    sl_mult: float
    tp_mult: float
    min_stop: float
    max_stop: float
    risk_per_trade: float
    max_position: float
    full_size_edge: float
    allow_short: bool


def _did_you_mean(name: str, choices: tuple[str, ...]) -> str:
    hint = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""


def _unknown_key_error(what: str, key: str, allowed: tuple[str, ...]) -> ConfigError:
    return ConfigError(
        f"{what} has no field '{key}'{_did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}"
    )


def _check_number(name: str, value: object) -> float:
    spec = _SPECS[name]
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"{name} must be a number, {spec.hint}; got {value!r}")
    number = float(value)
    above = number > spec.low if spec.low_open else number >= spec.low
    if not (math.isfinite(number) and above and number <= spec.high):
        raise ConfigError(f"{name} must be {spec.hint}; got {value!r}")
    if name == "max_hold" and number != math.floor(number):
        raise ConfigError(f"max_hold must be {spec.hint}; got {value!r}")
    return number


@dataclass(frozen=True, slots=True)
class StrategyParams:
    """Validated policy parameters (units in the module docstring); ``max_hold`` 0 means no time stop."""

    entry_threshold: float = 0.1
    min_confidence: float = 0.0
    sl_mult: float = 1.0
    tp_mult: float = 1.5
    min_stop: float = 0.0005
    max_stop: float = 0.05
    risk_per_trade: float = 0.005
    max_position: float = 1.0
    max_hold: int = 30
    full_size_edge: float = 0.3
    allow_short: bool = True

    def __post_init__(self) -> None:
        for name in _SPECS:
            number = _check_number(name, getattr(self, name))
            object.__setattr__(self, name, int(number) if name == "max_hold" else number)
        if not isinstance(self.allow_short, bool | np.bool_):
            raise ConfigError(f"allow_short must be true or false; got {self.allow_short!r}")
        object.__setattr__(self, "allow_short", bool(self.allow_short))
        if self.min_stop > self.max_stop:
            raise ConfigError(
                f"min_stop ({self.min_stop}) must not exceed max_stop ({self.max_stop}); raise max_stop or lower min_stop"
            )

    def kernel_params(self) -> KernelParams:
        """Return the fields numba kernels take, in ``KernelParams`` order."""
        return KernelParams(
            self.entry_threshold,
            self.min_confidence,
            self.sl_mult,
            self.tp_mult,
            self.min_stop,
            self.max_stop,
            self.risk_per_trade,
            self.max_position,
            self.full_size_edge,
            self.allow_short,
        )

    def replace(self, **changes: Any) -> StrategyParams:
        """Return a copy with ``changes`` applied and validated; unknown names raise ``ConfigError``."""
        names = tuple(f.name for f in dataclasses.fields(self))
        for key in changes:
            if key not in names:
                raise _unknown_key_error("StrategyParams", key, names)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, float | int | bool]:
        """Return the fields as a JSON-serializable dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StrategyParams:
        """Return params from a dict such as ``to_dict()``'s; unknown keys raise, missing ones take defaults."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"strategy params must be a JSON object (a mapping); got {type(data).__name__}")
        return cls().replace(**dict(data))


@dataclass(frozen=True)
class ParamBounds:
    """The search space of tuning and of the RL agent: a closed ``(low, high)`` range per tuned field.

    Fields of ``TUNABLE_FIELDS`` absent from ``ranges`` (and every other field) keep ``base``'s value;
    ``low == high`` fixes a field. ``max_hold`` bounds are whole bars.
    """

    ranges: Mapping[str, tuple[float, float]]
    base: StrategyParams = field(default_factory=StrategyParams)

    def __post_init__(self) -> None:
        if not isinstance(self.base, StrategyParams):
            raise ConfigError(f"ParamBounds.base must be StrategyParams; got {type(self.base).__name__}")
        checked: dict[str, tuple[float, float]] = {}
        for name, pair in self.ranges.items():
            if name not in TUNABLE_FIELDS:
                raise ConfigError(
                    f"'{name}' cannot be tuned{_did_you_mean(name, TUNABLE_FIELDS)}; "
                    f"tunable: {', '.join(TUNABLE_FIELDS)}"
                )
            try:
                low, high = pair
            except (TypeError, ValueError):
                raise ConfigError(f"bounds for {name} must be a pair [low, high]; got {pair!r}") from None
            low, high = _check_number(name, low), _check_number(name, high)
            if low > high:
                raise ConfigError(f"bounds for {name}: low {low} exceeds high {high}; swap them")
            checked[name] = (low, high)
        ordered = {name: checked[name] for name in TUNABLE_FIELDS if name in checked}
        object.__setattr__(self, "ranges", MappingProxyType(ordered))

    def __reduce__(self) -> tuple[type[ParamBounds], tuple[dict[str, tuple[float, float]], StrategyParams]]:
        """Pickle as the constructor's arguments (a read-only mapping does not pickle): for worker processes."""
        return (ParamBounds, (dict(self.ranges), self.base))

    @classmethod
    def default(cls) -> ParamBounds:
        """Return the default search space: entry/confidence thresholds, SL/TP multiples, time stop, sizing edge."""
        return cls(
            {
                "entry_threshold": (0.02, 0.6),
                "min_confidence": (0.0, 0.8),
                "sl_mult": (0.5, 4.0),
                "tp_mult": (0.5, 6.0),
                "max_hold": (5, 240),
                "full_size_edge": (0.05, 1.0),
            }
        )

    def including(self, params: StrategyParams) -> ParamBounds:
        """Return these ranges widened where needed to hold ``params``' values, with ``params`` as the base: a
        search around a policy tuned in other ranges (e.g. a time stop fixed at a label's 600-bar horizon)
        starts from that policy itself, not from a clipped copy of it."""
        ranges = {
            name: (min(low, getattr(params, name)), max(high, getattr(params, name)))
            for name, (low, high) in self.ranges.items()
        }
        return ParamBounds(ranges, base=params)

    @property
    def names(self) -> tuple[str, ...]:
        """Return the tuned field names in ``TUNABLE_FIELDS`` order."""
        return tuple(self.ranges)

    @property
    def low(self) -> np.ndarray:
        """Return the lower bounds in ``names`` order."""
        return np.array([low for low, _ in self.ranges.values()], dtype=np.float64)

    @property
    def high(self) -> np.ndarray:
        """Return the upper bounds in ``names`` order."""
        return np.array([high for _, high in self.ranges.values()], dtype=np.float64)

    def with_values(self, values: Mapping[str, float]) -> StrategyParams:
        """Return ``base`` with tuned fields set from ``values``, clipped into bounds (``max_hold`` rounded)."""
        changes: dict[str, float | int] = {}
        for name, value in values.items():
            if name not in self.ranges:
                raise _unknown_key_error("ParamBounds.ranges", name, self.names)
            low, high = self.ranges[name]
            clipped = min(max(float(value), low), high)
            changes[name] = round(clipped) if name == "max_hold" else clipped
        return self.base.replace(**changes)

    def clip(self, params: StrategyParams) -> StrategyParams:
        """Return ``params`` with each tuned field clipped into its range (other fields untouched)."""
        return params.replace(
            **{n: min(max(getattr(params, n), lo), hi) for n, (lo, hi) in self.ranges.items()}
        )

    def contains(self, params: StrategyParams) -> bool:
        """Return whether every tuned field of ``params`` lies inside its range."""
        return all(lo <= getattr(params, n) <= hi for n, (lo, hi) in self.ranges.items())

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"ranges": {name: [low, high]}, "base": {...}}``, JSON-serializable."""
        return {
            "ranges": {name: [low, high] for name, (low, high) in self.ranges.items()},
            "base": self.base.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParamBounds:
        """Return bounds from a dict such as ``to_dict()``'s; unknown keys raise ``ConfigError``."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"param bounds must be a JSON object (a mapping); got {type(data).__name__}")
        for key in data:
            if key not in ("ranges", "base"):
                raise _unknown_key_error("ParamBounds", key, ("ranges", "base"))
        ranges = data.get("ranges", {})
        if not isinstance(ranges, Mapping):
            raise ConfigError(f"ParamBounds ranges must be an object of name: [low, high]; got {ranges!r}")
        return cls(dict(ranges), StrategyParams.from_dict(data.get("base", {})))
