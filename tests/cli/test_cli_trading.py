"""The trading and inspection commands on a replayed store, run through the console entry point as a user would."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from scalpbot.cli import render
from scalpbot.cli.app import main
from scalpbot.config import load_settings
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore
from scalpbot.wiring import build_services

from support.files import snapshot
from support.operated import copy_of


def cli(capsys: pytest.CaptureFixture[str], store: Path, *args: str) -> tuple[int, str, str]:
    """Run ``scalpbot --store STORE ARGS``; return exit status, stdout and stderr."""
    try:
        main(["--store", str(store), *args])
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def store(operated_store: Path, tmp_path: Path) -> Path:
    return copy_of(operated_store, tmp_path)


@pytest.fixture
def width(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Set the terminal width of the results console for one test."""

    def set_width(columns: int) -> None:
        monkeypatch.setattr(render.out, "width", columns)

    return set_width


@pytest.mark.parametrize("columns", [80, 200])
def test_trades_fit_the_terminal_with_long_short_compact_times_and_a_totals_row(
    capsys: pytest.CaptureFixture[str], operated_store: Path, width: Callable[[int], None], columns: int
) -> None:
    width(columns)
    code, out, err = cli(capsys, operated_store, "trades", "--bot", "alpha", "--from", "2024-12-29T10:00:00Z")
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= columns
    assert "times UTC, 2024" in out
    rows = [line for line in lines if "12-29 1" in line]
    assert rows and all(("long" in row) != ("short" in row) for row in rows)
    assert all("…" not in row for row in rows)  # nothing cut off
    _, listed, _ = cli(
        capsys, operated_store, "trades", "--bot", "alpha", "--from", "2024-12-29T10:00:00Z", "--json"
    )
    trades = json.loads(listed)["trades"]
    total = f"{sum(t['pnl'] for t in trades):,.2f}"
    footer = [line for line in lines if f"{len(trades)}  trades" in line]
    assert footer and total in footer[0] and footer[0].rstrip().endswith(" won")
    assert len(rows) == len(trades)
    header = next(line for line in lines if "entry price" in line)
    assert ("fees" in header) == (columns >= 110)


def test_trades_json_is_the_ledger(capsys: pytest.CaptureFixture[str], operated_store: Path) -> None:
    code, out, _ = cli(capsys, operated_store, "trades", "--bot", "beta", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["bot"] == "beta" and len(payload["trades"]) > 0


@pytest.mark.parametrize("command", ["trades", "positions", "halt", "resume"])
def test_an_unknown_bot_is_an_error_with_a_did_you_mean_and_no_new_bot(
    capsys: pytest.CaptureFixture[str], store: Path, command: str
) -> None:
    code, _, err = cli(capsys, store, command, "--bot", "alhpa")
    assert code == 1
    assert "no bot named 'alhpa'" in err and "(did you mean 'alpha'?)" in err
    assert not (store / "state" / "alhpa").exists()


@pytest.mark.parametrize(
    "command",
    [["positions", "--bot", "alpha"], ["trades"], ["bots"], ["data", "show"], ["models", "list"], ["report"]],
)
def test_a_missing_store_is_an_error_for_reading_commands(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    code, out, err = cli(capsys, tmp_path / "nowhere", *command)
    assert code == 1 and f"no store at {tmp_path / 'nowhere'}" in err and "--store" in err
    assert not (tmp_path / "nowhere").exists() and out == ""


def test_an_empty_store_says_it_holds_no_bot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = cli(capsys, tmp_path / "empty", "halt", "--bot", "alpha")
    assert code == 1 and "holds no bot at all" in err


def test_positions_show_the_side_in_words_and_json_the_snapshot(
    capsys: pytest.CaptureFixture[str], operated_store: Path
) -> None:
    code, out, _ = cli(capsys, operated_store, "positions", "--bot", "alpha")
    assert code == 0 and out.startswith("bot alpha after 2024-12-29T11:59:00Z: equity ")
    assert ("long" in out) or ("short" in out) or ("flat" in out)
    code, out, _ = cli(capsys, operated_store, "positions", "--bot", "alpha", "--json")
    payload = json.loads(out)
    assert payload["bot"] == "alpha" and payload["halted"] is False


def test_halt_then_resume_flip_the_kill_switch_and_write_the_ledger(
    capsys: pytest.CaptureFixture[str], store: Path
) -> None:
    code, out, _ = cli(capsys, store, "halt", "--bot", "beta", "--reason", "news at 14:30")
    assert code == 0 and out.strip() == "bot beta halted: news at 14:30"
    code, out, _ = cli(capsys, store, "positions", "--bot", "beta")
    assert "HALTED: news at 14:30" in out
    code, out, _ = cli(capsys, store, "resume", "--bot", "beta")
    assert code == 0 and out.strip() == "bot beta resumed"
    services = build_services(load_settings(None, {"store": {"url": str(store)}}))
    assert [e.kind for e in Ledger(services.store, "beta").events(kinds=("halt", "resume"))] == [
        "halt",
        "resume",
    ]
    loaded = PortfolioStore(services.store, "beta").load()
    assert loaded is not None and not loaded.snapshot.risk.halted


def test_replay_says_which_release_and_ends_with_equity_and_trades(
    capsys: pytest.CaptureFixture[str], store: Path
) -> None:
    code, out, err = cli(
        capsys, store, "replay", "--bot", "gamma", "--release", "current",
        "--from", "2024-12-29T00:00:00Z", "--to", "2024-12-29T01:00:00Z",
    )  # fmt: skip
    assert code == 0, err
    assert "replaying release 2025" in err and "(current: " in err
    assert "as bot gamma: 60 ok;" in out and "trades, equity " in out


def test_replay_with_an_unknown_release_says_what_exists(
    capsys: pytest.CaptureFixture[str], store: Path
) -> None:
    code, _, err = cli(
        capsys, store, "replay", "--bot", "gamma", "--release", "newst",
        "--from", "2024-12-29T00:00:00Z", "--to", "2024-12-29T01:00:00Z",
    )  # fmt: skip
    assert code == 1 and "(did you mean 'newest'?)" in err
    assert not (store / "state" / "gamma").exists()


def test_trade_once_runs_one_cycle_on_the_newest_stored_bar(
    capsys: pytest.CaptureFixture[str], store: Path
) -> None:
    code, out, err = cli(capsys, store, "trade", "--once", "--bot", "paper1", "--source", "sample")
    assert code == 0, err
    assert out.startswith("2024-12-31T23:59:00Z ok: equity 10,000.00")
    assert "no notification channel" not in err
    assert (store / "state" / "paper1" / "portfolio.json").exists()


def test_a_failed_trade_once_cycle_exits_with_status_1_and_places_nothing(
    capsys: pytest.CaptureFixture[str], store: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bars.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n2025-01-01T00:00:00Z,1,0.5,2,1,3\n")  # high < low
    code, out, err = cli(capsys, store, "trade", "--once", "--bot", "paper1", "--source", f"file:{bad}")
    assert code == 1, out + err
    assert " failed: " in out and "no order" in out
    assert not (store / "state" / "paper1" / "portfolio.json").exists()


def test_monitor_measures_the_week_and_writes_the_report(
    capsys: pytest.CaptureFixture[str], store: Path
) -> None:
    code, out, err = cli(
        capsys, store, "monitor", "--bot", "alpha", "--days", "0.5", "--no-improve", "--json"
    )
    assert code == 0, err
    payload = json.loads(out)
    assert payload["bot"] == "alpha" and payload["report"] == "reports/alpha/2024-12-29/report.html"
    assert payload["previous_metrics"] is None  # alpha did not trade before the window
    code, out, _ = cli(capsys, store, "report", "--bot", "alpha")
    assert code == 0 and "latest report: reports/alpha/2024-12-29/report.html" in out


@pytest.mark.parametrize("args", [("monitor", "--to", "2024-12-30"), ("report",)])
def test_monitor_and_report_of_a_bot_that_never_ran_stop_with_a_did_you_mean_and_write_nothing(
    capsys: pytest.CaptureFixture[str], store: Path, args: tuple[str, ...]
) -> None:
    before = snapshot(store)
    code, _, err = cli(capsys, store, args[0], "--bot", "alpah", *args[1:])
    message = " ".join(err.split())
    assert code == 1 and "no bot named 'alpah'" in message and "(did you mean 'alpha'?)" in message, err
    assert snapshot(store) == before


def test_bots_lists_every_bot_and_json_too(capsys: pytest.CaptureFixture[str], operated_store: Path) -> None:
    code, out, _ = cli(capsys, operated_store, "bots")
    assert code == 0 and "alpha" in out and "beta" in out and "2024-12-29 11:59" in out
    code, out, _ = cli(capsys, operated_store, "bots", "--json")
    assert [b["bot"] for b in json.loads(out)["bots"]] == ["alpha", "beta"]


def test_replay_and_fetch_report_as_json(capsys: pytest.CaptureFixture[str], store: Path) -> None:
    code, out, err = cli(
        capsys, store, "replay", "--bot", "delta", "--release", "newest", "--json",
        "--from", "2024-12-29T00:00:00Z", "--to", "2024-12-29T00:30:00Z",
    )  # fmt: skip
    assert code == 0, err
    payload = json.loads(out)
    assert payload["cycles"] == {"ok": 30} and payload["release"].startswith("20")
    assert payload["first"] == "2024-12-29T00:00:00Z" and payload["last"] == "2024-12-29T00:29:00Z"
    code, out, err = cli(capsys, store, "fetch", "--source", "sample", "--json")
    assert code == 0, err
    assert json.loads(out)["added"] == 0 and json.loads(out)["last"] == "2024-12-31T23:59:00Z"


def test_a_replayed_run_ends_with_equity_return_and_trades(operated_store: Path) -> None:
    import pandas as pd

    from scalpbot.cli.summary import replay_summary

    services = build_services(load_settings(None, {"store": {"url": str(operated_store)}}))
    start, end = pd.Timestamp("2024-12-29T00:00:00Z"), pd.Timestamp("2024-12-29T12:00:00Z")
    trades = Ledger(services.store, "alpha").trades(start, end)
    loaded = PortfolioStore(services.store, "alpha").load()
    assert loaded is not None
    equity = loaded.snapshot.equity
    change = equity / (equity - float(trades["pnl"].sum())) - 1
    line = replay_summary(services, "alpha", start, end)
    won = int((trades["pnl"] > 0).sum())
    assert line == f"bot alpha: equity {equity:,.2f} ({change * 100:+.2f}%), {len(trades)} trades ({won} won)"
    assert replay_summary(services, "nobody", start, end) == "bot nobody: no cycle ran"
