"""A release trained on bars with order flow reads it, records it, and refuses bars without it, naming the fix.

The bars before the cut carry order flow (a Binance source); the bars after it come from a source without it.
Training up to the cut takes the order-flow features; replaying after the cut fails closed, recorded and
notified once, instead of trading on inputs the model never saw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalpbot.adapters.marketdata.files import FileMarketData
from scalpbot.core.feature_set import ORDER_FLOW_FEATURES
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.core.order_flow import ORDER_FLOW_FEATURE_NAMES
from scalpbot.errors import ModelError
from scalpbot.inference.signals import TradingModel, predict_bars
from scalpbot.jobs.cycle import decide_on_bar
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.trading import replay
from scalpbot.jobs.train import TrainReport, train
from scalpbot.jobs.train_evaluation import importance_units
from scalpbot.state.ledger import Ledger
from scalpbot.state.releases import ReleaseStore

from support.cli import run_cli
from support.files import write_csv
from support.live_helpers import RecordingNotifier
from support.order_flow import with_order_flow
from support.trained import active_services

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]

CUT = pd.Timestamp("2024-12-29T00:00:00Z")


@pytest.fixture(scope="module")
def flow_release(
    tmp_path_factory: pytest.TempPathFactory, sample_bars: pd.DataFrame
) -> tuple[Path, TrainReport]:
    root = tmp_path_factory.mktemp("order_flow")
    services = active_services(root / "store")
    series = services.series()
    before, after = sample_bars.loc[sample_bars.index < CUT], sample_bars.loc[sample_bars.index >= CUT]
    retrieve(
        services.dataset, FileMarketData(write_csv(with_order_flow(before), root / "binance.csv")), series
    )
    report = train(services, series, until=CUT.to_pydatetime())
    retrieve(services.dataset, FileMarketData(write_csv(after, root / "plain.csv")), series)
    return root / "store", report


def test_the_release_records_the_order_flow_feature_set_and_ranks_its_features(
    flow_release: tuple[Path, TrainReport],
) -> None:
    store, report = flow_release
    release = ReleaseStore(active_services(store).store).load("BTC/USDT", report.release_id)
    assert release.manifest["feature_set"] == ORDER_FLOW_FEATURES.to_manifest()
    assert release.manifest["feature_names"] == list(ORDER_FLOW_FEATURES.names)
    assert sorted(report.importance) == sorted(
        name for name, _ in importance_units(ORDER_FLOW_FEATURES.names)
    )
    assert set(ORDER_FLOW_FEATURE_NAMES) <= {name for name, _ in release.manifest["feature_importance"]}
    trading = TradingModel.from_release(release)
    assert trading.feature_set == ORDER_FLOW_FEATURES
    assert trading.model.n_features == len(ORDER_FLOW_FEATURES.names) == 138  # 130 OHLCV + 8 order flow


def test_a_decision_reads_the_order_flow_and_equals_the_full_history_computation(
    flow_release: tuple[Path, TrainReport],
) -> None:
    store, report = flow_release
    services = active_services(store)
    trading = TradingModel.from_release(ReleaseStore(services.store).load("BTC/USDT", report.release_id))
    history = services.dataset.read(services.series(), None, CUT)
    probs, _ = predict_bars(history, trading.model, feature_set=trading.feature_set)
    window = history.iloc[-FEATURE_WINDOW - 40 :]
    decide_on_bar(window, trading)  # no refusal: every bar of the window reports order flow
    last, _ = trading.model.predict(
        trading.feature_set.build(window.iloc[-FEATURE_WINDOW:]).to_numpy()[-1:].astype(np.float32)
    )
    assert np.array_equal(last[0], probs[-1])


def test_replay_on_bars_without_order_flow_fails_closed_once_naming_the_fix(
    flow_release: tuple[Path, TrainReport],
) -> None:
    store, report = flow_release
    services = active_services(store)
    notifier = RecordingNotifier()
    start = CUT + pd.Timedelta(hours=2)
    replayed = replay(
        services, services.series(), start, start + pd.Timedelta(minutes=30), bot="plain",
        release_id=report.release_id, notifier=notifier,
    )  # fmt: skip
    assert replayed.cycles == {"failed": 30}
    errors = Ledger(services.store, "plain").events(kinds=("error",))
    assert len(errors) == 1 and errors[0].payload["where"] == "release"
    message = errors[0].payload["message"]
    assert f"release {report.release_id} reads order flow (trades, taker_buy_volume)" in message
    assert "source that does" in message and 'train.order_flow = "off"' in message
    assert [s for s in notifier.sent if s[2] == "error"] == [
        ("plain: execute failed closed", message, "error")
    ]


def test_replay_on_bars_with_order_flow_trades(flow_release: tuple[Path, TrainReport]) -> None:
    store, report = flow_release
    services = active_services(store)
    start = CUT - pd.Timedelta(hours=3)
    replayed = replay(
        services, services.series(), start, start + pd.Timedelta(minutes=30), bot="flow",
        release_id=report.release_id, notifier=RecordingNotifier(),
    )  # fmt: skip
    assert replayed.cycles == {"ok": 30}


def test_a_backtest_of_the_release_on_bars_without_order_flow_is_refused(
    flow_release: tuple[Path, TrainReport], capsys: pytest.CaptureFixture[str]
) -> None:
    store, report = flow_release
    args = ("--from", "2024-12-30T00:00:00Z", "--to", "2024-12-31T00:00:00Z")
    code, _, err = run_cli(
        capsys,
        "--store",
        str(store),
        "backtest",
        "--strategy",
        "release",
        "--release",
        report.release_id,
        *args,
    )
    assert code != 0
    assert f"release {report.release_id} reads order flow" in err
    assert "the bars have no trades, taker_buy_volume" in err
    services = active_services(store)
    with pytest.raises(ModelError, match="the bar of 2024-12-29T00:00:00\\+00:00 has no trades"):
        ORDER_FLOW_FEATURES.require(
            services.dataset.read(services.series(), CUT - pd.Timedelta(hours=1)), release="r"
        )
