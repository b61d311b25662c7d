"""A replay of a basket of three perpetual swaps trades exactly what the portfolio backtest trades: shorts,
reversals, entries sized at the decision close, funding paid, the same entries denied by the budget.

One bot on OKX linear swaps trades BTC/USDT:USDT (the sample's real bars), ETH/USDT:USDT and SOL/USDT:USDT (the
sample's real bars of two and four days later, moved onto the same times and rescaled to those markets' prices and
ticks), each with the eager swap release of ``support.swap_trained`` (ETH and SOL entering on the stronger half of
its edges only: a position the same signal keeps passes the budget unchecked and, within a bar, BTC is checked
first, before the others' exits settle, so two symbols always in position would hold both places), 10,000 USDT per
symbol's paper account, through a budget of at most two open positions and a gross notional of at most 1.5 x the
book's equity. Each symbol's venue profile is stored beside its bars, and so is its funding (three patterns of
typical sizes, one of them negative), settled at 08:00 and 16:00 UTC inside the window. The replay drives the
execute cycle (paper broker, stored state, the ledger); the backtest runs the pure kernel and the pure budget.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from scalpbot.adapters.marketdata.files import FileMarketData
from scalpbot.config import load_settings
from scalpbot.core.venue import default_venue
from scalpbot.errors import ConfigError
from scalpbot.inference.signals import TradingModel, predict_bars
from scalpbot.jobs.basket_backtest import basket_backtest
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.trading import replay
from scalpbot.state.funding import append_funding
from scalpbot.state.ledger import Ledger
from scalpbot.state.releases import KERAS_ARTIFACT, ONNX_ARTIFACT, Release, ReleaseStore
from scalpbot.state.risk_budget import RiskBudget
from scalpbot.state.venues import save_venue
from scalpbot.wiring import Services, build_services, portfolio_limits, venue_profile

from support.cli import run_cli
from support.files import write_csv
from support.parity import assert_trades_match
from support.swap_trained import OKX_SWAP, SWAP_SYMBOL, funding_rates, swap_release
from support.trained import LOOSE_RISK

__all__ = ["swap_release"]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]

START, END = pd.Timestamp("2024-12-26T06:00:00Z"), pd.Timestamp("2024-12-26T18:00:00Z")
BOT = "swap-basket"
MARKETS: dict[str, dict[str, Any]] = {
    SWAP_SYMBOL: {"days_later": 0, "scale": 1.0, "funding": 1.0, "venue": OKX_SWAP},
    "ETH/USDT:USDT": {
        "days_later": 2,
        "scale": 0.036,
        "funding": 1.6,
        "venue": {**OKX_SWAP, "amount_step": 0.001, "price_tick": 0.01, "min_amount": 0.001},
    },
    "SOL/USDT:USDT": {
        "days_later": 4,
        "scale": 0.0021,
        "funding": -0.8,
        "venue": {**OKX_SWAP, "amount_step": 0.01, "price_tick": 0.001, "min_amount": 0.01},
    },
}
"""Each symbol: whose bars (the sample's, so many days later), the price factor, the funding pattern's factor,
and its OKX venue profile (0.05 % taker, the contract's quantity step, the price tick)."""
SYMBOLS = tuple(MARKETS)
PORTFOLIO = {"max_positions": 2, "max_gross_exposure": 1.5}


def _settings(store: Path) -> dict[str, Any]:
    return {
        "store": {"url": str(store)},
        "exchange": {"id": "okx"},
        "data": {"symbol": SWAP_SYMBOL},
        "risk": {**LOOSE_RISK, "max_position_fraction": 3.0},
        "execute": {"leverage": 3.0, "margin_mode": "isolated"},
        "portfolio": PORTFOLIO,
        "bot": {"name": BOT, "symbols": list(SYMBOLS)},
    }


def _moved(bars: pd.DataFrame, days: int, scale: float, tick: float) -> pd.DataFrame:
    """Return ``bars`` moved ``days`` earlier, prices times ``scale`` on the tick, volume in the new base units."""
    moved = bars.copy()
    moved.index = pd.DatetimeIndex(bars.index) - pd.Timedelta(days=days)
    for column in ("open", "high", "low", "close"):
        moved[column] = np.round(np.round(bars[column].to_numpy() * scale / tick) * tick, 10)
    moved["volume"] = bars["volume"].to_numpy() / scale
    return moved


def _median_edge(release: Release, bars: pd.DataFrame) -> float:
    """Return the median |p_long - p_short| of ``release`` on ``bars`` inside the replay's window."""
    trading = TradingModel.from_release(release)
    probs, _ = predict_bars(bars, trading.model, trading.feature_set, trading.window)
    inside = np.asarray((bars.index >= START) & (bars.index < END))
    return float(np.median(np.abs(probs[inside, 2] - probs[inside, 0])))


@pytest.fixture
def basket(swap_release: tuple[Path, str], sample_bars: pd.DataFrame, tmp_path: Path) -> Services:
    """A copy of the swap store with each symbol's bars, venue profile, funding and the eager release."""
    trained, eager = swap_release
    shutil.copytree(trained, tmp_path / "store")
    services = build_services(load_settings(None, _settings(tmp_path / "store")))
    releases = ReleaseStore(services.store)
    source = releases.load(SWAP_SYMBOL, eager, (ONNX_ARTIFACT, KERAS_ARTIFACT))
    manifest = {k: v for k, v in source.manifest.items() if k not in ("release_id", "symbol", "artifacts")}
    for symbol, market in MARKETS.items():
        series = services.series(symbol)
        venue = default_venue("okx", symbol).override(market["venue"], "exchange")
        save_venue(services.store, venue)
        if symbol == SWAP_SYMBOL:  # the sample's bars and the funding are stored with the release
            continue
        bars = _moved(sample_bars, market["days_later"], market["scale"], venue.price_tick)
        path = write_csv(bars, tmp_path / f"{symbol.partition('/')[0]}.csv")
        retrieve(services.dataset, FileMarketData(path), series, resume=False)
        append_funding(services.store, "okx", symbol, np.round(funding_rates() * market["funding"], 8))
        selective = {
            **manifest,
            "params": {**manifest["params"], "entry_threshold": _median_edge(source, bars)},
        }
        releases.write(symbol, eager, selective, dict(source.artifacts))
        releases.promote(symbol, eager, expected=None, reason="test", now=services.clock.now())
    return services


def _ledger_trades(services: Services, symbol: str) -> pd.DataFrame:
    last = services.dataset.read(services.series(symbol), START, END).iloc[-1:]
    return Ledger(services.store, BOT).trades(
        START, END, symbol=symbol, mark_price=float(last["close"].iloc[0]), mark_time=last.index[0]
    )


def _portfolio_denials(services: Services) -> list[tuple[pd.Timestamp, str, int, tuple[str, ...]]]:
    return [
        (e.time, e.payload["symbol"], e.payload["side"], tuple(r["code"] for r in e.payload["reasons"]))
        for e in Ledger(services.store, BOT).events(START, END, kinds=("denial",))
        if e.payload.get("scope") == "portfolio"
    ]


def test_a_replayed_swap_basket_trades_exactly_the_portfolio_backtest_shorts_and_funding_included(
    basket: Services,
) -> None:
    services = basket
    series = [services.series(s) for s in SYMBOLS]
    report = replay(services, series, START, END, bot=BOT)
    expected = basket_backtest(services, series, START, END, bot=BOT)

    assert report.symbols == SYMBOLS and report.cycles == {"ok": 3 * 720}
    closed = shorts = reversals = settlements = 0
    for symbol in SYMBOLS:
        venue = venue_profile(services.store, services.settings, services.series(symbol))
        assert (venue.market_type, venue.amount_step) == ("swap", MARKETS[symbol]["venue"]["amount_step"])
        got, want = _ledger_trades(services, symbol), expected.results[symbol].trades
        assert len(want) >= 10, symbol
        # Entry and exit times, sides, exit reasons and prices equal; quantities to the venue's decimals; fees
        # and PnL to 2e-8 USDT, funding to 1e-9 USDT on every trade (the single-symbol swap parity's tolerances).
        assert_trades_match(got, want, amount_step=venue.amount_step)
        closed += int((want["exit_reason"] != "open").sum())
        shorts += int((want["side"] < 0).sum())
        entries = want["entry_time"].to_numpy()
        reversals += int(
            np.isin(entries, want.loc[want["exit_reason"] == "signal", "exit_time"].to_numpy()).sum()
        )
        settlements += int((want["funding"] != 0).sum())
    assert shorts >= 5 and reversals >= 1 and settlements >= 3
    # the caps bind, on the same entries, for the same reasons
    denied = _portfolio_denials(services)
    assert denied == [(d.bar, d.symbol, d.side, d.codes) for d in expected.denials]
    codes = {code for *_, reasons in denied for code in reasons}
    assert len(denied) >= 3 and "max_positions" in codes
    assert any(side < 0 for _, _, side, _ in denied)  # shorts are denied too
    risk = [
        (e.time, e.payload["code"])
        for e in Ledger(services.store, BOT).events(START, END, kinds=("denial",))
        if e.payload.get("scope") != "portfolio"
    ]
    assert [(t, code) for t, _, code in expected.risk_denials] == risk
    # the budget's book at the end: the same equity (PnL after fees and funding), reservations and settled exits
    book = RiskBudget(services.store, BOT, portfolio_limits(services.settings)).load()
    assert book is not None and expected.book is not None
    assert book.equity == pytest.approx(expected.book.equity, rel=1e-12)
    assert {s: (r.side, r.client_id, r.bar) for s, r in book.reservations.items()} == {
        s: (r.side, r.client_id, r.bar) for s, r in expected.book.reservations.items()
    }
    assert book.settled == expected.book.settled
    assert report.trades == closed
    paid = sum(
        e.payload["amount"] for e in Ledger(services.store, BOT).events(START, END, kinds=("funding",))
    )
    funding = sum(float(expected.results[s].trades["funding"].sum()) for s in SYMBOLS)
    assert paid == pytest.approx(funding, abs=1e-8)
    print(  # the figures of the note (pytest -s)
        f"swap basket: {report.trades} closed trades "
        f"({', '.join(f'{s} {len(expected.results[s].trades)}' for s in SYMBOLS)}), {shorts} short, "
        f"{reversals} reversals, {settlements} funding settlements ({funding:+.6f} USDT), "
        f"{len(denied)} entries denied by the budget {sorted(codes)}, book equity {book.equity:.2f} USDT"
    )


def test_the_command_line_backtests_the_swap_basket_through_the_budget(
    basket: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "basket.toml"
    settings = _settings(Path(basket.settings.store.url))
    config.write_text(
        "".join(
            f"[{section}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
            for section, values in settings.items()
        )
    )
    code, out, err = run_cli(
        capsys, "--config", str(config), "backtest", "--portfolio",
        "--from", START.isoformat(), "--to", END.isoformat(), "--json",
    )  # fmt: skip
    assert code == 0, err
    shown = json.loads(out)
    expected = basket_backtest(basket, [basket.series(s) for s in SYMBOLS], START, END, bot=BOT)
    assert list(shown["symbols"]) == list(SYMBOLS)
    for symbol in SYMBOLS:
        rows = shown["symbols"][symbol]["trades"]
        want = expected.results[symbol].trades
        assert [r["entry_time"] for r in rows] == [
            t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in want["entry_time"]
        ]
        assert [r["side"] for r in rows] == want["side"].astype(int).tolist()
        assert [r["funding"] for r in rows] == pytest.approx(want["funding"].tolist(), abs=1e-12)
    assert any(r["side"] < 0 for s in SYMBOLS for r in shown["symbols"][s]["trades"])
    assert any(r["funding"] != 0 for s in SYMBOLS for r in shown["symbols"][s]["trades"])
    assert [(d["symbol"], d["side"], tuple(d["codes"])) for d in shown["denials"]] == [
        (d.symbol, d.side, d.codes) for d in expected.denials
    ]
    assert shown["denials"]


def test_a_basket_of_spot_and_swap_symbols_is_refused_with_how_to_fix_it(tmp_path: Path) -> None:
    settings = {**_settings(tmp_path / "store"), "bot": {"name": BOT, "symbols": ["BTC/USDT", *SYMBOLS[1:]]}}
    mixed = build_services(load_settings(None, settings))  # one quote currency: the settings let it through
    basket = [mixed.series(s) for s in ("BTC/USDT", *SYMBOLS[1:])]
    with pytest.raises(ConfigError, match="not both: BTC/USDT spot beside ETH/USDT:USDT, SOL/USDT:USDT swap"):
        basket_backtest(mixed, basket, START, END, bot=BOT)
