"""scalpbot: a scalping trading bot for 1-minute bars.

The public surface is small and listed in ``__all__``: :func:`backtest` (a signal frame on a bar frame, with
the one execution model) and its :class:`BacktestResult` and :class:`Metrics`, the values it is driven by
(:class:`StrategyParams`, :class:`Venue`), the settings loader :func:`load_settings` and the error tree of
:mod:`scalpbot.errors`. Everything else is importable from its module but may change without notice.

Names are imported on first use, so ``import scalpbot`` stays cheap (the Lambda handlers and the CLI pay only
for what they use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scalpbot.config import Settings, load_settings
    from scalpbot.core.backtest.frame import BacktestResult, backtest
    from scalpbot.core.metrics import Metrics
    from scalpbot.core.policy_params import StrategyParams
    from scalpbot.core.venue import Venue
    from scalpbot.errors import (
        ConfigError,
        CorruptArtifactError,
        DataError,
        ExchangeError,
        ExchangeTemporaryError,
        InsufficientFunds,
        ModelError,
        ObjectNotFound,
        OrderRejected,
        PreconditionFailed,
        ScalpbotError,
        StoreError,
    )

__version__ = "0.1.0"

_HOMES = {
    "backtest": "scalpbot.core.backtest.frame",
    "BacktestResult": "scalpbot.core.backtest.frame",
    "Metrics": "scalpbot.core.metrics",
    "StrategyParams": "scalpbot.core.policy_params",
    "Venue": "scalpbot.core.venue",
    "Settings": "scalpbot.config",
    "load_settings": "scalpbot.config",
    **{
        name: "scalpbot.errors"
        for name in (
            "ScalpbotError",
            "ConfigError",
            "DataError",
            "CorruptArtifactError",
            "StoreError",
            "ObjectNotFound",
            "PreconditionFailed",
            "ModelError",
            "ExchangeError",
            "ExchangeTemporaryError",
            "OrderRejected",
            "InsufficientFunds",
        )
    },
}

__all__ = [
    "BacktestResult",
    "ConfigError",
    "CorruptArtifactError",
    "DataError",
    "ExchangeError",
    "ExchangeTemporaryError",
    "InsufficientFunds",
    "Metrics",
    "ModelError",
    "ObjectNotFound",
    "OrderRejected",
    "PreconditionFailed",
    "ScalpbotError",
    "Settings",
    "StoreError",
    "StrategyParams",
    "Venue",
    "__version__",
    "backtest",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its home module on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'scalpbot' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
