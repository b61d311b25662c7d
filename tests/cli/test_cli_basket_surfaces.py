"""``scalpbot bots``, ``monitor`` and ``halt`` on a basket bot: its portfolio and each symbol, at 80 columns too."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from test_cli_trading import cli

from scalpbot.cli import render
from scalpbot.state.portfolio import PortfolioStore

from support.operated import BASKET, BASKET_BOT, BASKET_HOURS, BASKET_LIMITS, basket_services, copy_of

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]


@pytest.fixture
def width(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    def set_width(columns: int) -> None:
        monkeypatch.setattr(render.out, "width", columns)

    return set_width


def _config(tmp_path: Path, *, basket: bool) -> Path:
    """Write a configuration with the basket's ``[portfolio]`` caps (and, with ``basket``, its symbols)."""
    caps = "\n".join(f"{name} = {value}" for name, value in BASKET_LIMITS.items())
    symbols = f'\n[bot]\nname = "{BASKET_BOT}"\nsymbols = {json.dumps(list(BASKET))}\n' if basket else ""
    path = tmp_path / "basket.toml"
    path.write_text(f"[portfolio]\n{caps}\n{symbols}")
    return path


@pytest.mark.parametrize("columns", [80, 200])
def test_bots_shows_a_basket_its_symbols_and_its_budget_within_the_width(
    capsys: pytest.CaptureFixture[str],
    basket_store: Path,
    tmp_path: Path,
    width: Callable[[int], None],
    columns: int,
) -> None:
    width(columns)
    config = _config(tmp_path, basket=False)  # the basket is found in the store
    code, out, err = cli(capsys, basket_store, "--config", str(config), "bots")
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= columns
    pair = next(line for line in lines if line.lstrip("│ ").startswith(f"{BASKET_BOT} "))
    assert "2 symbols, " in pair and " open" in pair
    for symbol in BASKET:
        row = next(line for line in lines if f" {symbol} " in line)
        assert "2024-12-29 02:59" in row and ("long" in row or "short" in row or "flat" in row)
    text = " ".join(out.split())
    assert f"{BASKET_BOT} portfolio: gross " in text and "(cap 10,000.00)" in text and "(no max)" in text
    assert "kill switch off; denied in the last day: portfolio max_gross_exposure " in text


def test_bots_json_keeps_a_single_symbol_bots_row_and_adds_the_basket(
    capsys: pytest.CaptureFixture[str], basket_store: Path
) -> None:
    code, out, _ = cli(capsys, basket_store, "bots", "--json")
    alpha, pair = json.loads(out)["bots"]
    assert code == 0 and list(alpha) == [
        "bot", "last_bar", "equity", "release_id", "position", "halted", "halt_reason"
    ]  # fmt: skip
    assert pair["bot"] == BASKET_BOT and pair["basket"]["symbols"] == list(BASKET)
    assert [row["symbol"] for row in pair["basket"]["per_symbol"]] == list(BASKET)
    assert pair["equity"] == pytest.approx(sum(row["equity"] for row in pair["basket"]["per_symbol"]))


def test_monitor_reviews_the_portfolio_and_each_symbol_in_one_table(
    capsys: pytest.CaptureFixture[str], basket_store: Path, tmp_path: Path, width: Callable[[int], None]
) -> None:
    store = copy_of(basket_store, tmp_path)
    config = _config(tmp_path, basket=True)
    days = str(BASKET_HOURS / 24)
    width(80)
    code, out, err = cli(capsys, store, "--config", str(config), "monitor", "--days", days, "--no-improve")
    assert code == 0, err
    lines = out.splitlines()
    table = lines[: next(i for i, line in enumerate(lines) if line.startswith("denied entries: "))]
    assert max(len(line) for line in table) <= 80  # the report's key and store may be longer: a path
    header = next(line for line in lines if "portfolio" in line and "BTC/USDT" in line)
    assert header.index("portfolio") < header.index("BTC/USDT") < header.index("ETH/USDT")
    for metric in ("total_return", "win_rate", "risk_reward", "max_drawdown", "return_on_capital"):
        assert any(line.split()[:1] == [metric] and len(line.split()) == 4 for line in lines), metric
    assert f"report: reports/{BASKET_BOT}/2024-12-29/report.html" in out
    code, out, err = cli(
        capsys, store, "--config", str(config), "monitor", "--days", days, "--no-improve", "--json"
    )
    payload = json.loads(out)
    assert code == 0 and set(payload["symbols"]) == set(BASKET)
    assert payload["metrics"]["trades"] == sum(s["metrics"]["trades"] for s in payload["symbols"].values())
    assert payload["symbols"]["ETH/USDT"]["report"] == f"reports/{BASKET_BOT}/2024-12-29/ETH_USDT/report.html"
    code, out, _ = cli(capsys, store, "--config", str(config), "report")
    assert code == 0 and f"latest report: reports/{BASKET_BOT}/2024-12-29/report.html" in out


def test_halt_and_resume_reach_every_symbol_of_a_basket_whatever_the_configuration_lists(
    capsys: pytest.CaptureFixture[str], basket_store: Path, tmp_path: Path
) -> None:
    store = copy_of(basket_store, tmp_path)
    code, _, err = cli(capsys, store, "halt", "--bot", BASKET_BOT, "--reason", "news")
    assert code == 0, err
    services = basket_services(store)
    for symbol in BASKET:
        loaded = PortfolioStore(services.store, BASKET_BOT, symbol).load()
        assert loaded is not None and loaded.snapshot.risk.halt_reason == "news"
    assert PortfolioStore(services.store, BASKET_BOT).load() is None
    code, _, err = cli(capsys, store, "resume", "--bot", BASKET_BOT)
    assert code == 0, err
    assert not any(PortfolioStore(services.store, BASKET_BOT, s).load().snapshot.risk.halted for s in BASKET)  # type: ignore[union-attr]
