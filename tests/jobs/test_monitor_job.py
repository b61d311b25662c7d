"""The weekly monitor: metrics from the ledger equal an independent recomputation; drift against the simulator."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.jobs.monitor import monitor
from scalpbot.jobs.trading import replay
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore
from scalpbot.wiring import venue_profile

from support.trained import active_services

pytestmark = pytest.mark.slow

DISCOUNTED = {"taker_fee": 0.0002}
"""A fee tier at which the session's eager release wins some trades (at Binance's 0.1 % it wins none), so that
the win rate and the risk/reward have wins and losses to be computed from."""
START = pd.Timestamp("2024-12-29T00:00:00Z")
END = pd.Timestamp("2024-12-29T12:00:00Z")


@pytest.fixture(scope="module")
def replayed(active_release: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A copy: the improvement steps may promote a release, and the session's release must stay current.
    store = tmp_path_factory.mktemp("weekly") / "store"
    shutil.copytree(active_release[0], store)
    services = active_services(store, DISCOUNTED)
    replay(services, services.series(), START, END, bot="weekly", notifier=ConsoleNotifier())
    return store


def test_weekly_metrics_equal_an_independent_recomputation_from_the_ledger(replayed: Path) -> None:
    services = active_services(replayed, DISCOUNTED)
    notifier = ConsoleNotifier()
    report = monitor(
        services, services.series(), bot="weekly", days=0.5, notifier=notifier, write_report=False
    )
    week = report.week
    assert (week.start, week.end) == (START, END)
    fills: dict[str, list[dict[str, object]]] = defaultdict(list)
    for event in Ledger(services.store, "weekly").events(kinds=("fill",)):
        fills[str(event.payload["entry_client_id"])].append(dict(event.payload))
    closed = [group for group in fills.values() if len(group) == 2]
    pnl = []
    for group in closed:
        entry = next(f for f in group if f["reason"] == "entry")
        exit_ = next(f for f in group if f["reason"] != "entry")
        side, qty = float(entry["side"]), float(entry["qty"])  # type: ignore[arg-type]
        gross = side * qty * (float(exit_["price"]) - float(entry["price"]))  # type: ignore[arg-type]
        pnl.append(gross - float(entry["fee"]) - float(exit_["fee"]))  # type: ignore[arg-type]
    pnl_array = np.array(pnl)
    stored = PortfolioStore(services.store, "weekly").load()
    assert stored is not None
    final = stored.snapshot.equity
    m = week.metrics
    assert m["trades"] == len(closed) > 10
    assert m["win_rate"] == pytest.approx(float(np.mean(pnl_array > 0)), rel=1e-12)
    assert m["fees_paid"] == pytest.approx(sum(float(f["fee"]) for g in fills.values() for f in g), rel=1e-9)  # type: ignore[arg-type]
    assert m["total_return"] == pytest.approx(final / services.settings.backtest.initial_equity - 1, rel=1e-9)
    wins, losses = pnl_array[pnl_array > 0], pnl_array[pnl_array < 0]
    assert m["risk_reward"] == pytest.approx(wins.mean() / -losses.mean(), rel=1e-9)
    assert report.drift["totals"]["missed_trades"] == 0
    assert report.drift["totals"]["extra_trades"] == 0
    assert notifier.sent[-1][1] == "weekly: weekly report"


def test_improvements_write_releases_and_move_the_pointer_only_through_the_gate(replayed: Path) -> None:
    from scalpbot.jobs.improve import online_learning, reinforcement_learning
    from scalpbot.state.releases import ReleaseStore

    services = active_services(replayed, DISCOUNTED)
    releases = ReleaseStore(services.store)
    before = releases.pointer("BTC/USDT")
    steps = (
        online_learning(services, "BTC/USDT", "1m", recent_days=0.25),
        reinforcement_learning(services, "BTC/USDT", train_days=10, timesteps=256),
    )
    report = monitor(
        services, services.series(), bot="weekly", days=0.5, notifier=ConsoleNotifier(), steps=steps
    )
    assert report.notes == []
    kinds = [c["kind"] for c in report.changes]
    assert kinds == ["online_learning", "reinforcement_learning"]
    after = releases.pointer("BTC/USDT")
    assert after is not None and before is not None
    # Half a day of evidence is not enough for the gate (gate.min_days = 7): both challengers are refused, each
    # with the first criterion it fails, and the release trading before the week still trades.
    for change in report.changes:
        manifest = releases.manifest("BTC/USDT", change["release_id"])
        assert manifest["parent_release"] == before.release_id
        assert "training_key" not in manifest  # a train rerun finds the release train wrote, not this one
        gate = manifest["gate"]
        assert gate["promote"] is change["promoted"] is False
        failing = next(c for c in gate["criteria"] if c["passed"] is False)
        assert change["reason"] == gate["reason"]
        assert gate["reason"].startswith(f"refused: {failing['text']} (")
        assert (
            change["gate"]["fee"]
            == gate["statistics"]["fee"]
            == venue_profile(services.store, services.settings, services.series()).taker_fee
        )
        assert change["gate"]["days"] < services.settings.gate.min_days
        assert gate["statistics"]["trades"] == change["challenger"]["trades"]
    assert after.release_id == before.release_id
    rl = report.changes[1]
    assert set(rl["proposed_params"]) == set(rl["static_params"])
    assert "rl_agent.zip" in releases.manifest("BTC/USDT", rl["release_id"])["artifacts"]
    assert report.report_key is not None
    html = services.store.get(report.report_key).data.decode()
    assert "<td>Reinforcement learning</td>" in html and "<td>Online learning</td>" in html
    assert html.count("refused: ") >= 2  # each verdict line, with its statistics beside it
    assert "deflated Sharpe" in html and "bootstrap p = " in html  # the statistics behind each verdict


def test_the_week_lists_the_gates_verdict_on_each_release_trained_in_it(tmp_path: Path) -> None:
    from scalpbot.core.gate import GateRules, GateStatistics, judge
    from scalpbot.jobs.monitor import WeekData, trained_in_week
    from scalpbot.state.releases import ReleaseStore, new_release_id

    from support.planted_edge import COSTS

    services = active_services(tmp_path / "store")
    releases = ReleaseStore(services.store)
    statistics = GateStatistics(
        "test window", "not trading", 0.0059, 0.0, 34, 18.0, 0.31, 432, "hour", 2.0, 2000, 0.02, 100, 0.04,
        0.2, "validation day", 0.4, COSTS.fee, COSTS.slippage,
    )  # fmt: skip
    verdict = judge(statistics, GateRules())
    written = {}
    for moment, origin in ((START, None), (START + pd.Timedelta(hours=3), "online_learning"), (END, None)):
        release_id = new_release_id(moment.to_pydatetime(), str(moment).encode())
        manifest = {"gate": verdict.to_dict(), **({"origin": origin} if origin else {})}
        releases.write("BTC/USDT", release_id, manifest, {"model.onnx": b"x"})
        written[moment] = release_id
    week = WeekData(
        "weekly", services.series(), START, END, pd.DataFrame(), pd.DataFrame(), pd.Series(dtype=float), {},
        None, (),
    )  # fmt: skip
    changes = trained_in_week(services, week)
    assert changes == [
        {
            "kind": "train",
            "release_id": written[START],
            "promoted": False,
            "reason": "refused: deflated Sharpe 0.02 < 0.95 over 100 trials (test +0.59 %, 34 trades, "
            "bootstrap p = 0.31)",
            "gate": verdict.summary(),
        }
    ]
