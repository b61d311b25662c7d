"""A release trained on the sample as an OKX linear swap (labels and policy with shorts), held out from the last
week of the sample, with a funding-rate series stored beside its bars."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalpbot.adapters.marketdata.files import FileMarketData
from scalpbot.config import load_settings
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.train import train
from scalpbot.state.funding import append_funding
from scalpbot.state.releases import KERAS_ARTIFACT, ONNX_ARTIFACT, ReleaseStore, new_release_id
from scalpbot.wiring import Services, build_services

from support.files import write_csv
from support.trained import LOOSE_RISK

SWAP_SYMBOL = "BTC/USDT:USDT"
HELD_OUT = datetime(2024, 12, 25, tzinfo=UTC)
"""The release is trained and tuned on bars before this; the week from it on is held out."""
OKX_SWAP = {
    "taker_fee": 0.0005,
    "amount_step": 0.0001,
    "price_tick": 0.1,
    "min_amount": 0.0001,
    "min_notional": 0.0,
}
"""OKX BTC-USDT-SWAP: 0.05 % taker, 0.01 contract of 0.01 BTC, tick 0.1 USDT (as the double lists it)."""
BINANCE_USDM = {
    "taker_fee": 0.0005,
    "amount_step": 0.001,
    "price_tick": 0.1,
    "min_amount": 0.001,
    "min_notional": 100.0,
}
"""Binance USD-M BTCUSDT perpetual: 0.05 % taker, step and minimum 0.001 BTC, tick 0.1 USDT, 100 USDT minimum
notional (as the double lists it)."""


def funding_rates(start: str = "2024-11-20", end: str = "2025-01-01") -> pd.Series:
    """Return a funding series at 00:00, 08:00 and 16:00 UTC: a fixed pattern of typical sizes (about +0.01 %
    per 8 h, sometimes negative), not the venue's history, which is not bundled."""
    times = pd.date_range(start, end, freq="8h", tz="UTC", inclusive="left")
    k = np.arange(len(times))
    rates = np.round(0.0001 + 0.00015 * np.sin(k * 0.7) - 0.00004 * (k % 5 == 0), 8)
    return pd.Series(rates, index=times, name="funding_rate")


def swap_services(store: Path, **execute: float) -> Services:
    """Return services trading BTC/USDT:USDT on okx (paper unless told) with loose risk limits, 3x isolated."""
    overrides = {
        "store": {"url": str(store)},
        "exchange": {"id": "okx"},
        "data": {"symbol": SWAP_SYMBOL},
        "train": {"trials": 5, "max_epochs": 2, "min_trades": 5},
        "risk": {**LOOSE_RISK, "max_position_fraction": 3.0},
        "venue": OKX_SWAP,
        "execute": {"leverage": 3.0, "margin_mode": "isolated", **execute},
    }
    return build_services(load_settings(None, overrides))


def usdm_services(store: Path, bars: pd.DataFrame | None = None, **execute: float) -> Services:
    """Return services trading BTC/USDT:USDT on binanceusdm (Binance USD-M) with the swap release's limits, 3x
    isolated; with ``bars``, store them and the funding series under that exchange first."""
    overrides = {
        "store": {"url": str(store)},
        "exchange": {"id": "binanceusdm"},
        "data": {"symbol": SWAP_SYMBOL},
        "risk": {**LOOSE_RISK, "max_position_fraction": 3.0},
        "venue": BINANCE_USDM,
        "execute": {"leverage": 3.0, "margin_mode": "isolated", **execute},
    }
    services = build_services(load_settings(None, overrides))
    if bars is not None:
        series = services.series()
        source = FileMarketData(write_csv(bars, store.parent / "usdm-bars.csv"))
        retrieve(services.dataset, source, series, resume=False)
        append_funding(services.store, series.exchange, series.symbol, funding_rates())
    return services


@pytest.fixture(scope="session")
def swap_release(tmp_path_factory: pytest.TempPathFactory, sample_bars: pd.DataFrame) -> tuple[Path, str]:
    """Train on the sample before ``HELD_OUT`` as a swap, then publish the model with an eager policy that shorts."""
    root = tmp_path_factory.mktemp("swap")
    services = swap_services(root / "store")
    series = services.series()
    retrieve(services.dataset, FileMarketData(write_csv(sample_bars, root / "s.csv")), series, resume=False)
    append_funding(services.store, series.exchange, series.symbol, funding_rates())
    trained = train(services, series, until=HELD_OUT)
    releases = ReleaseStore(services.store)
    source = releases.load(SWAP_SYMBOL, trained.release_id, (ONNX_ARTIFACT, KERAS_ARTIFACT))
    manifest = {k: v for k, v in source.manifest.items() if k not in ("release_id", "symbol", "artifacts")}
    manifest["params"] = {
        **manifest["params"],
        "entry_threshold": 0.0,
        "min_confidence": 0.0,
        "max_hold": 12,
        "tp_mult": 0.5,
        "allow_short": True,
    }
    onnx = source.artifacts[ONNX_ARTIFACT]
    eager = new_release_id(pd.Timestamp("2025-01-01T00:00:00Z").to_pydatetime(), onnx + b"eager-swap")
    artifacts = {ONNX_ARTIFACT: onnx, KERAS_ARTIFACT: source.artifacts[KERAS_ARTIFACT]}
    releases.write(SWAP_SYMBOL, eager, manifest, artifacts)
    now = services.clock.now()
    releases.promote(SWAP_SYMBOL, eager, expected=releases.pointer(SWAP_SYMBOL), reason="test", now=now)
    return root / "store", eager
