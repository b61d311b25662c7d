"""`scalpbot replay` trades exactly what `scalpbot backtest --strategy release` trades on the same bars."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.marketdata.files import FileMarketData
from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.cli.app import main
from scalpbot.config import load_settings
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.trading import replay
from scalpbot.jobs.train import train
from scalpbot.releases import KERAS_ARTIFACT, ONNX_ARTIFACT, ReleaseStore, new_release_id
from scalpbot.services import Services, build_services
from scalpbot.state.ledger import Ledger

from support.files import write_csv

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"
)

LOOSE_RISK = {"cooldown_after_losses": 0, "max_daily_loss": 1.0, "max_drawdown": 1.0}
START, END = "2024-12-30T00:00:00Z", "2024-12-30T12:00:00Z"
COLUMNS = ["entry_time", "exit_time", "side", "entry_price", "exit_price", "qty", "exit_reason"]


def _services(store: Path) -> Services:
    overrides = {
        "store": {"url": str(store)},
        "train": {"trials": 5, "max_epochs": 2, "min_trades": 5},
        "risk": LOOSE_RISK,
    }
    return build_services(load_settings(None, overrides))


@pytest.fixture(scope="module")
def active_release(tmp_path_factory: pytest.TempPathFactory, sample_bars: pd.DataFrame) -> tuple[Path, str]:
    """Train on the real sample, then publish its model with an eager policy so the window has many trades."""
    root = tmp_path_factory.mktemp("parity")
    services = _services(root / "store")
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


def test_replay_makes_exactly_the_trades_of_the_backtest(
    active_release: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    store, _ = active_release
    services = _services(store)
    report = replay(
        services,
        services.series(),
        pd.Timestamp(START),
        pd.Timestamp(END),
        bot="parity",
        notifier=ConsoleNotifier(),
    )
    assert report.cycles == {"ok": 720}
    # main() returns on success and raises SystemExit(1) on an error, which fails the test.
    main(["--store", str(store), "backtest", "--strategy", "release", "--from", START, "--to", END, "--json"])
    expected = pd.DataFrame(json.loads(capsys.readouterr().out)["trades"])
    last_close = float(
        services.dataset.read(services.series(), pd.Timestamp(END) - pd.Timedelta("1min"), pd.Timestamp(END))[
            "close"
        ].iloc[-1]
    )
    paper = Ledger(services.store, "parity").trades(
        pd.Timestamp(START),
        pd.Timestamp(END),
        mark_price=last_close,
        mark_time=pd.Timestamp(END) - pd.Timedelta("1min"),
    )
    assert len(expected) > 20
    assert len(set(expected["exit_reason"]) & {"sl", "tp", "time", "signal"}) >= 3
    got = paper.assign(
        entry_time=paper["entry_time"].map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")),
        exit_time=paper["exit_time"].map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")),
        exit_reason=paper["exit_reason"].astype(str),
        side=paper["side"].astype(int),
    )
    pd.testing.assert_frame_equal(
        got[COLUMNS].reset_index(drop=True),
        expected[COLUMNS].reset_index(drop=True),
        check_dtype=False,
        rtol=0,
        atol=0,
    )
    assert got["pnl"].to_numpy() == pytest.approx(expected["pnl"].to_numpy(), rel=1e-9)


def test_replaying_again_is_a_no_op(active_release: tuple[Path, str]) -> None:
    store, _ = active_release
    services = _services(store)
    before = Ledger(services.store, "parity").events()
    report = replay(services, services.series(), pd.Timestamp(START), pd.Timestamp(END), bot="parity")
    assert report.cycles == {"skipped": 720}
    assert Ledger(services.store, "parity").events() == before
