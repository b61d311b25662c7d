"""A bot on Binance spot with default settings makes no short: not in train, backtest, replay or a trade cycle.

The session's trained release was made with default settings (``support/trained.py``). A release that allows
shorts (made for a venue that can short) still makes none on spot: the venue, not the release, decides.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalpbot.config import load_settings
from scalpbot.core.policy import decide
from scalpbot.core.venue import default_venue
from scalpbot.inference.signals import TradingModel
from scalpbot.jobs.trading import replay
from scalpbot.state.ledger import Ledger
from scalpbot.state.releases import KERAS_ARTIFACT, ONNX_ARTIFACT, ReleaseStore, new_release_id
from scalpbot.wiring import Services, build_services

from support.cli import run_cli
from support.trained import LOOSE_RISK

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"
)

START, END = "2024-12-30T12:00:00Z", "2024-12-30T16:00:00Z"


def _services(store: Path, **venue: object) -> Services:
    overrides = {"store": {"url": str(store)}, "risk": dict(LOOSE_RISK), "venue": venue}
    return build_services(load_settings(None, overrides))


def _shorting_release(source: Path, root: Path) -> Path:
    """Copy the store and make current a release of the same model whose params allow shorts."""
    store = root / "store"
    shutil.copytree(source, store)
    releases = ReleaseStore(_services(store).store)
    current = releases.pointer("BTC/USDT")
    assert current is not None
    loaded = releases.load("BTC/USDT", current.release_id, (ONNX_ARTIFACT, KERAS_ARTIFACT))
    manifest = {k: v for k, v in loaded.manifest.items() if k not in ("release_id", "symbol", "artifacts")}
    manifest["params"] = {**manifest["params"], "allow_short": True}
    onnx = loaded.artifacts[ONNX_ARTIFACT]
    release_id = new_release_id(pd.Timestamp("2025-01-02T00:00:00Z").to_pydatetime(), onnx + b"shorts")
    releases.write(
        "BTC/USDT",
        release_id,
        manifest,
        {ONNX_ARTIFACT: onnx, KERAS_ARTIFACT: loaded.artifacts[KERAS_ARTIFACT]},
    )
    releases.promote("BTC/USDT", release_id, expected=current, reason="test", now=pd.Timestamp.now(tz="UTC"))
    return store


def _backtest_sides(store: Path, capsys: pytest.CaptureFixture[str]) -> set[int]:
    args = (
        "--store",
        str(store),
        "backtest",
        "--strategy",
        "release",
        "--from",
        START,
        "--to",
        END,
        "--json",
    )
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    trades = json.loads(out)["trades"]
    assert len(trades) > 10
    return {int(t["side"]) for t in trades}


def test_a_release_allowing_shorts_decides_none_on_a_venue_that_cannot_short(
    active_release: tuple[Path, str],
) -> None:
    store, eager = active_release
    trading = TradingModel.from_release(ReleaseStore(_services(store).store).load("BTC/USDT", eager))
    shorting = dataclasses.replace(trading, params=trading.params.replace(allow_short=True))
    bearish = np.array([0.7, 0.2, 0.1])
    assert decide(bearish, 0.002, shorting.params).side == -1
    assert decide(bearish, 0.002, shorting.for_venue(default_venue("binance", "BTC/USDT")).params).side == 0
    swap = default_venue("binance", "BTC/USDT:USDT")
    assert decide(bearish, 0.002, shorting.for_venue(swap).params).side == -1


def test_train_labels_tunes_and_scores_long_only_at_the_spot_fee(active_release: tuple[Path, str]) -> None:
    store, eager = active_release
    releases = ReleaseStore(_services(store).store)
    (trained,) = [r for r in releases.list("BTC/USDT") if r != eager]
    manifest = releases.load("BTC/USDT", trained).manifest
    assert manifest["venue"] == default_venue("binance", "BTC/USDT").to_dict()
    assert manifest["labels"]["shorts"] is False and manifest["labels"]["fee"] == 0.001
    assert manifest["costs"]["fee"] == 0.001
    assert manifest["params"]["allow_short"] is False  # every trial, and so the chosen one, was long only


def test_backtest_and_replay_of_a_release_that_allows_shorts_make_none_on_spot(
    active_release: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _shorting_release(active_release[0], tmp_path)
    assert _backtest_sides(store, capsys) == {1}

    services = _services(store)
    report = replay(services, services.series(), pd.Timestamp(START), pd.Timestamp(END), bot="spot")
    assert report.cycles == {"ok": 240}
    ledger = Ledger(services.store, "spot")
    decisions = ledger.events(kinds=("decision",))
    assert len(decisions) > 10
    assert {int(e.payload["side"]) for e in decisions} == {1}
    trades = ledger.trades(pd.Timestamp(START), pd.Timestamp(END))
    assert len(trades) > 10 and set(trades["side"]) == {1}
