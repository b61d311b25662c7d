"""Must show 2: a replay of a basket of three symbols trades exactly what the portfolio backtest trades.

Three BTC-quoted Bittrex markets (ETH/BTC, LTC/BTC, ADA/BTC, 2018-01-26, ``tests/fixtures``; LTC/BTC misses
four bars and ADA/BTC one in the window; the day before warms the features up) traded by one bot whose equity is in BTC (1 BTC per symbol's paper
account), each with the eager release of the sample's trained model, through a budget of at most two open positions. The replay
drives the execute cycle (paper broker, stored state, the ledger); the backtest runs the pure kernel and the
pure budget. Trade for trade, the same entries denied by the cap, the same book at the end.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.marketdata.files import FileMarketData
from scalpbot.config import load_settings
from scalpbot.jobs.basket_backtest import basket_backtest
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.trading import replay
from scalpbot.state.ledger import Ledger
from scalpbot.state.releases import KERAS_ARTIFACT, ONNX_ARTIFACT, ReleaseStore
from scalpbot.state.risk_budget import RiskBudget
from scalpbot.wiring import Services, build_services, portfolio_limits

from support.cli import run_cli
from support.files import FIXTURES
from support.trained import LOOSE_RISK

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]

SYMBOLS = ("ETH/BTC", "LTC/BTC", "ADA/BTC")
START, END = pd.Timestamp("2018-01-26T00:00:00Z"), pd.Timestamp("2018-01-27T00:00:00Z")
BOT = "basket"
COLUMNS = ["entry_time", "exit_time", "side", "entry_price", "exit_price", "qty", "fees", "exit_reason"]


def _services(store: Path) -> Services:
    return build_services(
        load_settings(
            None,
            {
                "store": {"url": str(store)},
                "risk": dict(LOOSE_RISK),
                "backtest": {"initial_equity": 1.0},
                "portfolio": {"max_positions": 2},
                "bot": {"symbols": list(SYMBOLS)},
            },
        )
    )


@pytest.fixture
def basket(active_release: tuple[Path, str], tmp_path: Path) -> Services:
    """A copy of the trained store with each symbol's bars and the eager release promoted for each symbol."""
    trained, eager = active_release
    shutil.copytree(trained, tmp_path / "store")
    services = _services(tmp_path / "store")
    releases = ReleaseStore(services.store)
    source = releases.load("BTC/USDT", eager, (ONNX_ARTIFACT, KERAS_ARTIFACT))
    manifest = {k: v for k, v in source.manifest.items() if k not in ("release_id", "symbol", "artifacts")}
    for symbol in SYMBOLS:
        path = FIXTURES / f"{symbol.replace('/', '_')}-1m-2018-01-25_26.csv.gz"
        retrieve(services.dataset, FileMarketData(path), services.series(symbol), resume=False)
        releases.write(symbol, eager, manifest, dict(source.artifacts))
        releases.promote(symbol, eager, expected=None, reason="test", now=services.clock.now())
    return services


def _paper_trades(services: Services, symbol: str) -> pd.DataFrame:
    last = services.dataset.read(services.series(symbol), START, END).iloc[-1:]
    trades = Ledger(services.store, BOT).trades(
        START, END, symbol=symbol, mark_price=float(last["close"].iloc[0]), mark_time=last.index[0]
    )
    return trades.assign(exit_reason=trades["exit_reason"].astype(str), side=trades["side"].astype(int))


def test_a_replayed_basket_trades_exactly_the_portfolio_backtest(basket: Services) -> None:
    services = basket
    report = replay(services, [services.series(s) for s in SYMBOLS], START, END, bot=BOT)
    expected = basket_backtest(services, [services.series(s) for s in SYMBOLS], START, END, bot=BOT)

    assert report.symbols == SYMBOLS
    assert report.cycles == {"ok": 3 * 1440 - 5, "skipped": 5}  # LTC/BTC misses 4 bars, ADA/BTC 1
    total = 0
    for symbol in SYMBOLS:
        got = _paper_trades(services, symbol)
        want = expected.results[symbol].trades
        want = want.assign(exit_reason=want["exit_reason"].astype(str), side=want["side"].astype(int))
        assert len(want) >= 5, symbol
        pd.testing.assert_frame_equal(
            got[COLUMNS].reset_index(drop=True),
            want[COLUMNS].reset_index(drop=True),
            check_dtype=False,
            check_exact=False,
            rtol=1e-12,
        )
        assert got["pnl"].to_numpy() == pytest.approx(want["pnl"].to_numpy(), rel=1e-9, abs=1e-15)
        total += int((want["exit_reason"] != "open").sum())
    # the cap binds, on the same entries, for the same reasons
    denied = [
        (e.time, e.payload["symbol"], e.payload["side"], tuple(r["code"] for r in e.payload["reasons"]))
        for e in Ledger(services.store, BOT).events(START, END, kinds=("denial",))
        if e.payload.get("scope") == "portfolio"
    ]
    assert denied == [(d.bar, d.symbol, d.side, d.codes) for d in expected.denials]
    assert len(denied) >= 3 and all(codes == ("max_positions",) for *_, codes in denied)
    assert expected.risk_denials == ()
    # the budget's book at the end: the same equity, reservations and settled exits
    book = RiskBudget(services.store, BOT, portfolio_limits(services.settings)).load()
    assert book is not None and expected.book is not None
    assert book.equity == pytest.approx(expected.book.equity, rel=1e-12)
    assert book.reservations.keys() == expected.book.reservations.keys()
    assert {s: (r.side, r.client_id, r.bar) for s, r in book.reservations.items()} == {
        s: (r.side, r.client_id, r.bar) for s, r in expected.book.reservations.items()
    }
    assert book.settled == expected.book.settled
    assert report.trades == total  # the replay counts closed trades
    print(  # the figures of the note (pytest -s)
        f"basket: {report.trades} closed trades "
        f"({', '.join(f'{s} {len(expected.results[s].trades)}' for s in SYMBOLS)}), "
        f"{len(denied)} entries denied by max_positions, book equity {book.equity:.6f} BTC"
    )


def test_the_command_line_replays_the_basket_and_shows_each_symbols_trades_and_position(
    basket: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "basket.toml"
    config.write_text(
        f"""
store.url = "{basket.settings.store.url}"
[risk]
cooldown_after_losses = 0
max_daily_loss = 1.0
max_drawdown = 1.0
[backtest]
initial_equity = 1.0
[portfolio]
max_positions = 2
[bot]
name = "cli"
symbols = {list(SYMBOLS)!r}
""".replace("'", '"')
    )
    args = ("--config", str(config))
    code, out, err = run_cli(
        capsys, *args, "replay", "--from", "2018-01-26T00:00:00Z", "--to", "2018-01-26T03:00:00Z", "--json"
    )
    assert code == 0, err
    replayed = json.loads(out)
    assert replayed["symbols"] == list(SYMBOLS) and sum(replayed["cycles"].values()) == 3 * 180
    code, out, err = run_cli(capsys, *args, "trades", "--json")
    assert code == 0, err
    rows = json.loads(out)["trades"]
    assert {row["symbol"] for row in rows} <= set(SYMBOLS) and len(rows) >= replayed["trades"]
    code, out, _ = run_cli(capsys, *args, "trades", "--symbol", "ETH/BTC", "--json")
    eth = json.loads(out)["trades"]
    assert code == 0 and eth and eth == [row for row in rows if row["symbol"] == "ETH/BTC"]
    code, out, _ = run_cli(capsys, *args, "positions", "--json")
    shown = json.loads(out)
    assert code == 0 and [p["symbol"] for p in shown["symbols"]] == list(SYMBOLS)
    assert all(p["last_bar"] == "2018-01-26T02:59:00Z" for p in shown["symbols"] if p["symbol"] == "ETH/BTC")
    code, out, err = run_cli(
        capsys,
        *args,
        "backtest",
        "--portfolio",
        "--from",
        "2018-01-26T00:00:00Z",
        "--to",
        "2018-01-26T03:00:00Z",
        "--json",
    )
    assert code == 0, err
    backtested = json.loads(out)
    for symbol in SYMBOLS:  # the portfolio backtest of the same window trades what the replay traded
        want = backtested["symbols"][symbol]["trades"]
        got = [row for row in rows if row["symbol"] == symbol]
        key = ("entry_time", "exit_time", "side", "exit_reason")
        assert [tuple(r[k] for k in key) for r in got] == [tuple(r[k] for k in key) for r in want]
        assert [r["qty"] for r in got] == pytest.approx([r["qty"] for r in want], rel=1e-12)
    code, _, err = run_cli(capsys, *args, "trades", "--symbol", "XRP/BTC")
    assert code == 1 and "XRP/BTC is not in bot.symbols" in " ".join(err.split())
