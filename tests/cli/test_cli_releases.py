"""`scalpbot models list` at 80 and 200 columns, and the release selectors every command accepts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from test_cli_trading import cli

from scalpbot.cli import render
from scalpbot.config import load_settings
from scalpbot.errors import ModelError
from scalpbot.state.release_choice import choose_release
from scalpbot.state.releases import ReleaseStore
from scalpbot.wiring import build_services

pytestmark = pytest.mark.slow


@pytest.fixture
def width(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    def set_width(columns: int) -> None:
        monkeypatch.setattr(render.out, "width", columns)

    return set_width


def _releases(store: Path) -> ReleaseStore:
    return ReleaseStore(build_services(load_settings(None, {"store": {"url": str(store)}})).store)


@pytest.mark.parametrize("columns", [80, 200])
def test_models_list_shows_full_ids_origin_and_the_gates_reason_at_any_width(
    capsys: pytest.CaptureFixture[str], operated_store: Path, width: Callable[[int], None], columns: int
) -> None:
    width(columns)
    code, out, err = cli(capsys, operated_store, "models", "list")
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= columns
    ids = _releases(operated_store).list("BTC/USDT")
    for release_id in ids:
        row = next(line for line in lines if release_id in line)  # the whole id, never cut
        assert " train " in row and " mlp " in row and ("promoted" in row or "refused" in row)
    current = next(line for line in lines if "*" in line and "20" in line)
    assert _releases(operated_store).pointer("BTC/USDT").release_id in current  # type: ignore[union-attr]
    text = " ".join(out.split())
    assert all(f"{release_id}: refused: " in text or f"{release_id}: promoted" in text for release_id in ids)
    assert ("sharpe" in lines[1]) == (columns >= 110)


def test_models_list_json_names_origin_and_gate(
    capsys: pytest.CaptureFixture[str], operated_store: Path
) -> None:
    code, out, _ = cli(capsys, operated_store, "models", "list", "--json")
    rows = json.loads(out)["releases"]
    assert (
        code == 0 and {r["origin"] for r in rows} == {"train"} and {r["model_kind"] for r in rows} == {"mlp"}
    )
    assert all(isinstance(r["reason"], str) and r["passed_gate"] in (True, False) for r in rows)


def test_selectors_current_newest_latest_and_prefixes(operated_store: Path) -> None:
    releases = _releases(operated_store)
    ids = releases.list("BTC/USDT")
    pointer = releases.pointer("BTC/USDT")
    assert pointer is not None and len(ids) == 2
    assert choose_release(releases, "BTC/USDT", None).release_id == pointer.release_id
    assert choose_release(releases, "BTC/USDT", "current").how.startswith("current: ")
    assert choose_release(releases, "BTC/USDT", "newest").release_id == ids[-1]
    # the current release was promoted (by hand here), so it counts as having passed
    assert choose_release(releases, "BTC/USDT", "latest").release_id == pointer.release_id
    assert choose_release(releases, "BTC/USDT", pointer.release_id[:12]).release_id == pointer.release_id
    with pytest.raises(ModelError, match="matches 2 releases"):
        choose_release(releases, "BTC/USDT", "20")
    with pytest.raises(ModelError, match=r"did you mean 'latest'\?"):
        choose_release(releases, "BTC/USDT", "lastest")


def test_without_a_current_release_the_message_names_the_newest_candidate(
    tmp_path: Path, operated_store: Path
) -> None:
    import shutil

    store = tmp_path / "store"
    shutil.copytree(operated_store, store)
    (store / "models" / "BTC_USDT" / "current.json").unlink()
    releases = _releases(store)
    newest = releases.list("BTC/USDT")[-1]
    with pytest.raises(
        ModelError, match=f"none has passed the promotion gate yet.*--release newest.*{newest}"
    ):
        choose_release(releases, "BTC/USDT", "current")
    with pytest.raises(ModelError, match="no release of BTC/USDT has passed the promotion gate"):
        choose_release(releases, "BTC/USDT", "latest")


def test_backtest_of_a_release_says_which_and_compare_prints_one_table(
    capsys: pytest.CaptureFixture[str], operated_store: Path, tmp_path: Path
) -> None:
    window = ["--from", "2024-12-29T00:00:00Z", "--to", "2024-12-29T06:00:00Z"]
    code, out, err = cli(
        capsys, operated_store, "backtest", "--strategy", "release", "--release", "newest", *window
    )
    assert code == 0, err and "newest: release 2026" not in err
    assert "(newest written, gate not required)" in err
    code, out, err = cli(
        capsys, operated_store, "backtest", *window, "--compare", "current", "newest", "sma-cross"
    )
    assert code == 0, err
    header = next(line for line in out.splitlines() if "metric" in line)
    assert "sma-cross" in header and "buy and hold" in header
    assert sum("total_return" in line for line in out.splitlines()) == 1
    code, out, _ = cli(capsys, operated_store, "backtest", *window, "--compare", "current")
    assert code == 1


def test_backtest_html_and_trades(
    capsys: pytest.CaptureFixture[str], operated_store: Path, tmp_path: Path
) -> None:
    page = tmp_path / "bt" / "sma.html"
    code, out, err = cli(
        capsys, operated_store, "backtest", "--strategy", "sma-cross", "--days", "1",
        "--html", str(page), "--trades",
    )  # fmt: skip
    assert code == 0, err
    assert f"wrote {page}" in out and "trades of sma-cross" in out and " won" in out
    html = page.read_text()
    for section in ("equity-chart", "drawdown-chart", "price-chart", "exit-reasons"):
        assert section in html
    assert "buy and hold" in html and "<th>Exit reason</th>" in html
