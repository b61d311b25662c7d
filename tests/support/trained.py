"""A trained model and an eager release on the real sample, shared by the execute and replay tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.marketdata.files import FileMarketData
from scalpbot.config import load_settings
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.train import train
from scalpbot.state.releases import KERAS_ARTIFACT, ONNX_ARTIFACT, ReleaseStore, new_release_id
from scalpbot.wiring import Services, build_services

from support.files import write_csv

LOOSE_RISK: dict[str, float] = {"cooldown_after_losses": 0, "max_daily_loss": 1.0, "max_drawdown": 1.0}


def active_services(store: Path, venue: dict[str, float] | None = None, **risk: float) -> Services:
    """Return services on ``store`` with loose risk limits; ``venue`` overrides the venue profile (``[venue]``)."""
    overrides = {
        "store": {"url": str(store)},
        # an eager release on raw probabilities: the tests that share it need trades, wins and losses
        # on the barrier label, whose SL and TP both fire in the shared stretch (the parity tests want both)
        "train": {
            "trials": 5,
            "max_epochs": 2,
            "min_trades": 5,
            "calibration": "none",
            "holding_horizons": [],
        },
        "risk": {**LOOSE_RISK, **risk},
        "venue": venue or {},
    }
    return build_services(load_settings(None, overrides))


@pytest.fixture(scope="session")
def active_release(tmp_path_factory: pytest.TempPathFactory, sample_bars: pd.DataFrame) -> tuple[Path, str]:
    """Train on the real sample, then publish its model with an eager policy so the window has many trades."""
    root = tmp_path_factory.mktemp("parity")
    services = active_services(root / "store")
    retrieve(
        services.dataset,
        FileMarketData(write_csv(sample_bars, root / "s.csv")),
        services.series(),
        resume=False,
    )
    trained = train(services, services.series())
    releases = ReleaseStore(services.store)
    source = releases.load("BTC/USDT", trained.release_id, (ONNX_ARTIFACT, KERAS_ARTIFACT))
    manifest = {k: v for k, v in source.manifest.items() if k not in ("release_id", "symbol", "artifacts")}
    manifest["params"] = {
        **manifest["params"],
        "entry_threshold": 0.0,
        "min_confidence": 0.0,
        "max_hold": 12,
        "tp_mult": 0.5,
    }
    onnx = source.artifacts[ONNX_ARTIFACT]
    eager = new_release_id(pd.Timestamp("2025-01-01T00:00:00Z").to_pydatetime(), onnx + b"eager")
    releases.write(
        "BTC/USDT", eager, manifest, {ONNX_ARTIFACT: onnx, KERAS_ARTIFACT: source.artifacts[KERAS_ARTIFACT]}
    )
    releases.promote(
        "BTC/USDT", eager, expected=releases.pointer("BTC/USDT"), reason="test", now=services.clock.now()
    )
    return root / "store", eager
