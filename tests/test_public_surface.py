"""The package's public surface: exactly the names in ``__all__``, each resolving to the real object, cheaply."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import scalpbot

PUBLIC = {
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
}


def test_all_lists_exactly_the_public_names_once() -> None:
    assert sorted(scalpbot.__all__) == scalpbot.__all__
    assert set(scalpbot.__all__) == PUBLIC


def test_every_public_name_is_the_object_of_its_home_module() -> None:
    from scalpbot.config import load_settings
    from scalpbot.core.backtest.frame import backtest
    from scalpbot.errors import ScalpbotError

    assert scalpbot.backtest is backtest
    assert scalpbot.load_settings is load_settings
    for name in scalpbot.__all__:
        value = getattr(scalpbot, name)
        if name != "__version__":
            assert value.__module__.startswith("scalpbot."), name
        if isinstance(value, type) and name.endswith(("Error", "Found", "Failed", "Rejected", "Funds")):
            assert issubclass(value, ScalpbotError), name


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="simulate"):
        scalpbot.simulate  # type: ignore[attr-defined]  # noqa: B018


def test_importing_the_package_loads_no_numerical_library() -> None:
    code = (
        "import json, sys\nimport scalpbot\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'pandas', 'numba'})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
