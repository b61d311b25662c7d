"""The execute job through the live broker on the strict OKX spot double: a refused protection within the cycle,
and parity with the paper broker (SL/TP attached to the entry instead of Binance's OCO after the fill).

The paper side runs on a venue profile with OKX's BTC-USDT rules (lot 0.00000001 BTC, tick 0.1 USDT, minimum
0.00001 BTC, 0.1 % taker fee); spot cannot be shorted, so the paper broker is given the live broker's reading
of a short signal (close a long, never open a short), as in the Binance parity test.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.config import load_settings
from scalpbot.errors import ConfigError
from scalpbot.jobs.cycle import run_cycle
from scalpbot.state.history import MemoryHistory
from scalpbot.state.ledger import Ledger
from scalpbot.wiring import build_executor, build_services, live_broker, paper_broker

from support.live_helpers import RecordingNotifier, SpotPaper
from support.okx_server import KEY, PASSPHRASE, SECRET
from support.okx_venue import running_okx
from support.trained import active_services

pytestmark = pytest.mark.slow

OKX_SPOT = {
    "taker_fee": 0.001,
    "amount_step": 0.00000001,
    "price_tick": 0.1,
    "min_amount": 0.00001,
    "min_notional": 0.0,
}
BARS = 300


def test_a_refused_attached_stop_leaves_the_bot_flat_within_the_cycle_with_an_error_event(
    active_release: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = active_services(active_release[0], OKX_SPOT)
    notifier = RecordingNotifier()
    with running_okx(monkeypatch) as okx:
        bars = services.dataset.read(
            services.series(), pd.Timestamp("2024-11-30", tz="UTC"), pd.Timestamp("2024-12-02", tz="UTC")
        )
        executor = build_executor(
            services, services.series(), bot="okx-refused", bars=MemoryHistory(bars), notifier=notifier,
            broker=okx.broker(),
        )  # fmt: skip
        okx.server.book.shift_after_fill = Decimal("0.97")  # the price falls 3 % right after the entry fill
        for _ in range(30):
            report = run_cycle(executor, okx.decided())
            if any(a.intent == "entry" and a.status == "accepted" for a in report.acks):
                break
            okx.server.advance_bar()
        else:
            raise AssertionError("the eager release never went long in 30 bars")

        assert [(a.intent, a.status) for a in report.acks][-1] == ("exit", "accepted")
        assert [a.state for a in okx.server.book.algos] == ["canceled"]
        entry, sold = okx.server.orders()
        assert sold.side == "sell" and sold.sz == (entry.filled - entry.fee).quantize(Decimal("0.00000001"))
    errors = [e for e in Ledger(services.store, "okx-refused").events() if e.kind == "error"]
    assert [e.payload["where"] for e in errors] == ["protection"]
    assert "51280" in str(errors[0].payload["message"])
    assert [level for subject, _, level in notifier.sent if "protection refused" in subject] == ["error"]


def test_trade_cycles_through_the_live_broker_on_the_okx_double_make_the_paper_brokers_trades(
    active_release: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = active_services(active_release[0], OKX_SPOT)
    series = services.series()
    with running_okx(monkeypatch) as okx:
        first = okx.decided()
        bars = services.dataset.read(
            series, first - pd.Timedelta(days=1), first + pd.Timedelta(minutes=BARS + 1)
        )
        history = MemoryHistory(bars)
        live = build_executor(
            services, series, bot="okx-live", bars=history, notifier=ConsoleNotifier(), broker=okx.broker()
        )
        paper = build_executor(
            services,
            series,
            bot="okx-paper",
            bars=history,
            notifier=ConsoleNotifier(),
            broker=SpotPaper(
                paper_broker(services.store, services.settings, bot="okx-paper", series=series, bars=history)
            ),
        )
        for _ in range(BARS):
            bar = okx.decided()
            assert run_cycle(live, bar).status == "ok"
            assert run_cycle(paper, bar).status == "ok"
            okx.server.advance_bar()
        assert all(a.state in ("live", "effective", "canceled") for a in okx.server.book.algos)

    got = Ledger(services.store, "okx-live").trades()
    want = Ledger(services.store, "okx-paper").trades()

    assert len(want) >= 5, "the eager release should trade several times in the stretch"
    assert list(got["entry_time"]) == list(want["entry_time"])
    assert list(got["exit_time"]) == list(want["exit_time"])
    assert list(got["exit_reason"]) == list(want["exit_reason"])
    assert {"sl", "tp"} <= set(got["exit_reason"])  # both barriers of the attached protection fired
    assert (got["side"] == 1).all()
    tick = OKX_SPOT["price_tick"]
    assert got["entry_price"].to_numpy() == pytest.approx(want["entry_price"].to_numpy(), abs=tick)
    assert got["exit_price"].to_numpy() == pytest.approx(want["exit_price"].to_numpy(), abs=tick)
    # live: size x equity / last close, less the commission taken in BTC, rounded down to the lot;
    # paper: size x cash / fill. Fees: 0.1 % of each side's notional.
    step = OKX_SPOT["amount_step"]
    assert got["qty"].to_numpy() == pytest.approx(want["qty"].to_numpy(), rel=2e-3, abs=2 * step)
    assert got["fees"].to_numpy() == pytest.approx(want["fees"].to_numpy(), rel=2e-3, abs=0.01)


def test_the_configured_okx_broker_trades_through_the_api_url_with_key_secret_and_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_okx(monkeypatch) as okx:
        exchange = {
            "id": "okx",
            "api_url": okx.server.url,
            "api_key": KEY,
            "secret": SECRET,
            "timeout_ms": 2000,
        }
        unsigned = build_services(
            load_settings(None, {"store": {"url": str(tmp_path)}, "exchange": exchange})
        )
        broker = live_broker(unsigned, unsigned.series(), bot="wired")
        with pytest.raises(ConfigError, match="rejected the API credentials"):
            broker.snapshot(okx.bars(), None)  # no passphrase: refused before any private request is signed

        settings = load_settings(
            None,
            {
                "store": {"url": str(tmp_path)},
                "exchange": {**exchange, "password": PASSPHRASE},
                "venue": OKX_SPOT,
            },
        )
        services = build_services(settings)
        broker = live_broker(services, services.series(), bot="wired")
        acks = broker.submit(okx.signal(1), broker.snapshot(okx.bars(), None))

    assert [(a.intent, a.status) for a in acks] == [
        ("entry", "accepted"),
        ("sl", "accepted"),
        ("tp", "accepted"),
    ]
    assert services.series().exchange == "okx" and len(okx.server.book.algos) == 1
