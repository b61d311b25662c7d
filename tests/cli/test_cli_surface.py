"""The CLI's surface: -h on every command, --version, serve on a real port, one symbol, synthetic bars apart."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
import typer

from scalpbot.adapters.marketdata.files import sample_path
from scalpbot.cli.app import app

from support.cli import run_cli as run
from support.web import call


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((*path, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))  # type: ignore[arg-type]


def test_the_command_list_is_the_documented_one() -> None:
    top = {c[0] for c in COMMANDS}
    assert top == {
        "backtest", "bots", "config", "data", "fetch", "halt", "models", "monitor", "notify-test", "positions",
        "replay", "report", "resume", "run", "serve", "trade", "trades", "train", "venue",
    }  # fmt: skip
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for command in COMMANDS:
        assert f"scalpbot {' '.join(command)}" in readme, (
            f"README does not show `scalpbot {' '.join(command)}`"
        )


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_answers_dash_h(capsys: pytest.CaptureFixture[str], command: tuple[str, ...]) -> None:
    code, out, _ = run(capsys, *command, "-h")
    assert code == 0
    assert f"Usage: scalpbot {' '.join(command)}" in " ".join(out.split())


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip().startswith("scalpbot 0.")


@pytest.mark.parametrize(
    ("symbol", "message"),
    [
        ("BTC/USDT ETH/USDT", "separate several symbols with commas"),
        ("BTCUSDT", "must look like BASE/QUOTE"),
        ("BTC/USDT,btc/usdt", "names BTC/USDT twice"),
    ],
)
def test_a_malformed_or_repeated_symbol_is_refused(
    capsys: pytest.CaptureFixture[str], symbol: str, message: str
) -> None:
    code, _, err = run(capsys, "backtest", "--symbol", symbol)
    assert code == 1 and message in " ".join(err.split())


def test_several_symbols_run_one_after_another(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "fetch", "--source", "sample")[0] == 0
    code, out, err = run(capsys, "backtest", "--symbol", "BTC/USDT,ETH/USDT", "--json")
    assert code == 1 and "no bars of binance ETH/USDT 1m are stored" in err  # BTC/USDT ran first
    code, _, err = run(capsys, "fetch", "--source", "sample", "--symbol", "ETH/USDT")
    assert code == 1 and "--source sample holds binance BTC/USDT 1m bars only" in " ".join(err.split())
    sample = f"file:{sample_path()}"  # the same bars as ETH/USDT, for the test: a file says what it holds
    assert run(capsys, "fetch", "--source", sample, "--symbol", "ETH/USDT")[0] == 0
    code, out, _ = run(
        capsys, "backtest", "--symbol", "BTC/USDT", "--symbol", "ETH/USDT", "--days", "1", "--json"
    )
    assert code == 0
    both = json.loads(out)  # several symbols: a list, one document each, in the order given
    assert [len(doc["trades"]) for doc in both] == [len(both[0]["trades"])] * 2 and both[0]["trades"]
    code, out, _ = run(capsys, "backtest", "--days", "1", "--json")
    assert code == 0 and json.loads(out) == both[0]  # one symbol: one object, as always


def test_an_unknown_symbol_names_what_is_stored(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "fetch", "--source", "sample")[0] == 0
    code, _, err = run(capsys, "backtest", "--symbol", "BTC/USDC")
    assert code == 1 and "no bars of binance BTC/USDC 1m are stored" in err
    assert "(did you mean binance BTC/USDT 1m?)" in err


def test_synthetic_bars_are_stored_under_their_own_exchange_id(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(
        capsys, "fetch", "--source", "synthetic:3", "--from", "2024-01-01", "--to", "2024-01-01T06:00:00Z"
    )
    assert code == 0, err
    assert "synthetic BTC/USDT 1m: 360 new bars" in out
    assert (tmp_path / "scalpbot-data" / "data" / "synthetic").is_dir()
    assert not (tmp_path / "scalpbot-data" / "data" / "binance").exists()
    code, _, err = run(capsys, "fetch", "--source", "synthetic", "--exchange", "binance")
    assert code == 1 and "stored under the exchange id 'synthetic'" in err


def test_config_show_never_prints_the_serve_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCALPBOT_SERVE__TOKEN", "tok-123456789")
    code, out, _ = run(capsys, "config", "show")
    assert code == 0 and "tok-123456789" not in out
    assert json.loads(out)["serve"]["token"] == "********"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_answers_on_its_port_and_stops_on_sigterm(operated_store: Path) -> None:
    port = _free_port()
    env = {**os.environ, "SCALPBOT_SERVE__TOKEN": "t0ken-for-serve"}
    command = [sys.executable, "-m", "scalpbot", "--store", str(operated_store), "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body, _ = call(f"http://127.0.0.1:{port}/api/bots")
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        assert status == 200 and [b["bot"] for b in body["bots"]] == ["alpha", "beta"]
        assert body["actions"] is True
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
    assert f"on http://127.0.0.1:{port}/" in output and "halt/resume enabled" in output
    assert "t0ken-for-serve" not in output


def test_train_with_several_workers_needs_a_postgresql_study_storage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "train", "--workers", "2")
    assert code == 1 and "--workers 2 needs a study several processes can share" in err
    assert "train.study_storage to postgresql://" in " ".join(err.split())
