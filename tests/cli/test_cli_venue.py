"""``scalpbot venue show|fetch``: the profile and each value's source; a fetched profile is used offline."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.clock import FixedClock
from scalpbot.adapters.store.folder import FolderStore
from scalpbot.core.venue import VALUE_FIELDS, default_venue
from scalpbot.state.venues import save_venue

from support.binance_server import BinanceServer
from support.cli import run_cli as run


def test_show_prints_every_value_with_where_it_came_from(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCALPBOT_VENUE__TAKER_FEE", "0.00075")
    code, out, err = run(capsys, "venue", "show")
    assert code == 0, err
    assert "venue binance BTC/USDT (spot)" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") == 5}
    assert set(rows) == set(VALUE_FIELDS)
    assert "0.0750%" in rows["taker_fee"] and "config" in rows["taker_fee"]
    assert "no" in rows["shorts"] and "default" in rows["shorts"]
    assert "not fetched: offline defaults" in out

    code, out, err = run(capsys, "venue", "show", "--json", "--symbol", "ETH/USDT")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["symbol"] == "ETH/USDT" and payload["stored_at"] is None
    assert payload["taker_fee"] == 0.00075 and payload["sources"]["taker_fee"] == "config"
    assert payload["amount_step"] == 0.0001 and payload["sources"]["amount_step"] == "default"
    assert set(payload["sources"]) == set(VALUE_FIELDS)


def test_an_unknown_venue_setting_is_refused_with_a_hint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "scalpbot.toml").write_text("[venue]\nshort = false\n")
    code, _, err = run(capsys, "venue", "show")
    assert code == 1
    assert "unknown key 'venue.short' in scalpbot.toml (did you mean 'shorts'?)" in err


def test_fetch_reads_the_exchange_and_stores_the_profile_beside_the_bars_for_offline_use(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with BinanceServer(FixedClock(datetime(2024, 12, 31, tzinfo=UTC))) as server:
        monkeypatch.setenv("SCALPBOT_EXCHANGE__API_URL", server.url)
        code, out, err = run(capsys, "venue", "fetch", "--json")
        assert code == 0, err
        # the markets (and the server time, which ccxt reads to sign later requests in step): nothing else
        assert [r.path for r in server.requests if r.path != "/api/v3/time"] == ["/api/v3/exchangeInfo"]
    fetched = json.loads(out)
    assert fetched["stored_at"] == "data/binance/BTC_USDT/venue.json"
    assert (tmp_path / "scalpbot-data" / fetched["stored_at"]).is_file()
    read_at = pd.Timestamp(fetched["fetched_at"])
    assert read_at.tzinfo is not None and abs(pd.Timestamp.now(tz="UTC") - read_at) < pd.Timedelta(minutes=5)
    # The local exchange's filters (LOT_SIZE, PRICE_FILTER, NOTIONAL) as ccxt parses them.
    assert (fetched["amount_step"], fetched["price_tick"], fetched["min_amount"]) == (1e-5, 0.01, 1e-5)
    assert fetched["min_notional"] > 0 and fetched["shorts"] is False and "oco" in fetched["protection"]
    assert fetched["sources"]["amount_step"] == "exchange" and fetched["sources"]["shorts"] == "exchange"
    assert fetched["sources"]["taker_fee"] == "ccxt"  # no keys: ccxt's published schedule, said so

    monkeypatch.delenv("SCALPBOT_EXCHANGE__API_URL")  # the exchange is gone: everything reads the store
    code, out, err = run(capsys, "venue", "show")
    assert code == 0, err
    assert "stored at data/binance/BTC_USDT/venue.json" in out
    assert f"read {fetched['fetched_at']}" in out


def test_an_offline_backtest_pays_the_stored_fee_and_rounds_to_the_stored_step(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run(capsys, "fetch", "--source", "sample")[0] == 0
    window = ("--from", "2024-12-02", "--to", "2024-12-04", "--sma-length", "30", "--size", "0.37", "--json")
    code, out, err = run(capsys, "backtest", *window)
    assert code == 0, err
    default_trades = pd.DataFrame(json.loads(out)["trades"])
    stored = default_venue("binance", "BTC/USDT").override(
        {"taker_fee": 0.002, "amount_step": 0.001, "min_amount": 0.001}, "exchange"
    )
    save_venue(FolderStore(tmp_path / "scalpbot-data"), stored)
    code, out, err = run(capsys, "backtest", *window)
    assert code == 0, err
    trades = pd.DataFrame(json.loads(out)["trades"])

    for frame, fee, step in ((default_trades, 0.001, 1e-5), (trades, 0.002, 0.001)):
        assert len(frame) > 10
        assert set(frame["side"]) == {1}  # Binance spot: the sma-cross's short signals only close longs
        units = frame["qty"] / step
        assert (units - units.round()).abs().max() < 1e-9
        closed = frame.loc[frame["exit_reason"] != "open"]
        # spot: the buy's commission is taken in BTC, so the position is the fill net of it rounded down to the
        # step; the entry's fee is what was bought less what is held: qty x price x f / (1 - f) plus < 1 step
        entry_fee = closed["fees"] - fee * closed["qty"] * closed["exit_price"]
        commission = closed["qty"] * closed["entry_price"] * fee / (1 - fee)
        dust = (entry_fee - commission) / closed["entry_price"]
        assert dust.min() > -1e-12
        assert dust.max() < step / (1 - fee)
    assert trades["qty"].iloc[0] < default_trades["qty"].iloc[0]


def test_the_first_fetch_from_an_exchange_stores_its_venue_profile_and_later_ones_do_not_read_it_again(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    window = ("--since", "2024-12-31T22:00:00Z", "--until", "2024-12-31T22:10:00Z")
    with BinanceServer(FixedClock(datetime(2024, 12, 31, 23, tzinfo=UTC))) as server:
        monkeypatch.setenv("SCALPBOT_EXCHANGE__API_URL", server.url)
        code, out, err = run(capsys, "fetch", *window)
        assert code == 0, err
        assert "10 new bars stored" in out
        assert "venue profile of binance BTC/USDT stored at data/binance/BTC_USDT/venue.json" in out
        assert [r.path for r in server.requests].count("/api/v3/exchangeInfo") == 2  # bars' markets, venue
        code, out, err = run(capsys, "fetch", *window)
        assert code == 0, err
        assert "venue profile" not in out
        assert [r.path for r in server.requests].count("/api/v3/exchangeInfo") == 3  # the bars' markets only
    stored = json.loads((tmp_path / "scalpbot-data/data/binance/BTC_USDT/venue.json").read_text())
    assert stored["sources"]["amount_step"] == "exchange" and stored["shorts"] is False
