"""``scalpbot models list``: each release's gate verdict as one line, and the statistics behind it in JSON.

The verdicts are the gate's own, computed on real bars (``support.planted_edge``): a strategy with a planted edge
well above costs (promoted) and one whose edge the costs eat (refused).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.store.folder import FolderStore
from scalpbot.core.gate import GateVerdict
from scalpbot.state.releases import KERAS_ARTIFACT, ONNX_ARTIFACT, ReleaseStore, new_release_id

from support.cli import run_cli as run
from support.planted_edge import CASES, load_real_bars, run_case

pytestmark = pytest.mark.slow

_, ABOVE_COSTS, BELOW_COSTS = CASES


@pytest.fixture(scope="module")
def verdicts() -> tuple[GateVerdict, GateVerdict]:
    bars = load_real_bars()
    return run_case(ABOVE_COSTS, 0, bars).verdict, run_case(BELOW_COSTS, 0, bars).verdict


def _publish(store: Path, verdicts: tuple[GateVerdict, GateVerdict]) -> list[str]:
    releases = ReleaseStore(FolderStore(store))
    ids = []
    for day, verdict in enumerate(verdicts, start=1):
        release_id = new_release_id(pd.Timestamp(f"2024-07-0{day}T00:00:00Z").to_pydatetime(), bytes([day]))
        statistics = verdict.statistics
        manifest = {
            "created_at": f"2024-07-0{day}T00:00:00Z",
            "timeframe": "1m",
            "metrics": {"test": {"total_return": statistics.total_return, "trades": statistics.trades}},
            "gate": verdict.to_dict(),
        }
        releases.write("BTC/USDT", release_id, manifest, {ONNX_ARTIFACT: b"onnx", KERAS_ARTIFACT: b"keras"})
        ids.append(release_id)
    return ids


def test_models_list_prints_the_promotion_and_the_refusal_lines(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, verdicts: tuple[GateVerdict, GateVerdict]
) -> None:
    promoted, refused = verdicts
    assert promoted.promote and not refused.promote
    ids = _publish(tmp_path / "store", verdicts)
    code, out, err = run(capsys, "--store", str(tmp_path / "store"), "models", "list")
    assert code == 0, err
    text = " ".join(out.split())  # each verdict is one paragraph, folded to the terminal's width
    assert f"{ids[0]}: {promoted.reason}" in text
    assert f"{ids[1]}: {refused.reason}" in text
    assert promoted.reason.startswith(
        "promoted: 1439 trades >= 20 on the test window, 30.0 days >= 7 on the test"
    )
    for text in (
        "deflated Sharpe",
        "> 0.95 over 20 trials",
        "< 0.05 against not trading",
        "PBO",
        "< 0.2 (test +",
    ):
        assert text in promoted.reason
    assert refused.reason.startswith("refused: deflated Sharpe 0.00 < 0.95 over 20 trials (test -")
    assert refused.reason.endswith(", 1439 trades, bootstrap p = 1.00)")


def test_models_list_json_holds_every_criterion_and_statistic(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, verdicts: tuple[GateVerdict, GateVerdict]
) -> None:
    ids = _publish(tmp_path / "store", verdicts)
    code, out, err = run(capsys, "--store", str(tmp_path / "store"), "models", "list", "--json")
    assert code == 0, err
    rows = {row["release_id"]: row for row in json.loads(out)["releases"]}
    promoted = rows[ids[0]]["gate"]
    assert promoted == json.loads(json.dumps(verdicts[0].to_dict()))
    statistics = promoted["statistics"]
    assert statistics["n_trials"] == 20 and statistics["fee"] == 0.0004
    assert statistics["p_value"] < 0.05 < 0.95 < statistics["deflated_sharpe"]
    assert statistics["pbo"] < 0.2 and statistics["bootstrap_period"] == "hour"
    assert [c["passed"] for c in promoted["criteria"]] == [True] * 6
    assert statistics["timing_p"] < 0.05 and statistics["timing_observed"] > statistics["timing_random"]
    refused = rows[ids[1]]["gate"]
    assert refused["promote"] is False and refused["criteria"][2]["passed"] is False
