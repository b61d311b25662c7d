"""The live broker on the strict OKX linear-swap double: shorts, leverage set and checked, attached SL/TP amended
to the fill, reduce-only exits and protection, re-protection after a restart, funding and liquidation."""

from __future__ import annotations

import math
from decimal import Decimal

import pandas as pd
import pytest

from scalpbot.errors import ConfigError

from support.okx_book import OkxError
from support.okx_server import ORDER, ORDER_ALGO
from support.okx_swap import SWAP
from support.okx_swap_venue import OkxSwapVenue, running_okx_swap

AMEND = "/api/v5/trade/amend-algos"


def enter(okx: OkxSwapVenue, side: int, **signal: float) -> None:
    broker = okx.broker()
    acks = broker.submit(okx.signal(side, **signal), broker.snapshot(okx.bars(), None))
    assert [(a.intent, a.status) for a in acks] == [
        ("entry", "accepted"),
        ("sl", "accepted"),
        ("tp", "accepted"),
    ]


def test_a_short_entry_carries_its_sl_tp_amended_to_the_fill_and_the_leverage_is_set_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with running_okx_swap(monkeypatch) as okx:
        broker = okx.broker(leverage=3)
        snapshot = broker.snapshot(okx.bars(), None)
        assert okx.book.levers["isolated"] == Decimal(3)
        close = float(okx.bars()["close"].iloc[-1])
        acks = broker.submit(okx.signal(-1, size=1.0, sl=0.004, tp=0.006), snapshot)
        assert [a.status for a in acks] == ["accepted"] * 3
        (entry,) = okx.server.posts(ORDER)
        assert (entry["side"], entry["tdMode"], entry["ordType"]) == ("sell", "isolated", "market")
        assert "reduceOnly" not in entry
        attached = entry["attachAlgoOrds"][0]
        assert float(attached["slTriggerPx"]) == pytest.approx(close * 1.004, abs=0.05)  # priced at the close
        held = okx.book.position
        assert held is not None and held.pos == -Decimal(entry["sz"]) and held.lever == 3
        fill = float(held.avg_px)
        (algo,) = okx.book.algos
        assert float(algo.sl) == pytest.approx(fill * 1.004, abs=0.05)  # amended to the fill
        assert float(algo.tp) == pytest.approx(fill * 0.994, abs=0.05)
        after = broker.snapshot(okx.bars(), None)
    assert after.position is not None and after.position.side == -1
    assert after.position.qty == pytest.approx(float(Decimal(entry["sz"]) * Decimal("0.01")), abs=0)
    assert float(Decimal(entry["sz"])) * 0.01 * close == pytest.approx(10_000, rel=0.002)  # 1.0 x equity
    assert after.position.sl_price == float(algo.sl) and after.position.tp_price == float(algo.tp)


def test_reduce_only_protection_can_never_open_a_position(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_okx_swap(monkeypatch) as okx:
        enter(okx, -1, size=1.0, sl=0.02, tp=0.02)
        held = okx.book.position
        assert held is not None
        # the short is closed behind the bot's back; its protection stays on the venue, reduce-only
        okx.book.place({"instId": SWAP, "tdMode": "isolated", "side": "buy", "ordType": "market",
                        "sz": str(-held.pos), "reduceOnly": "true"}, okx.server.server_ms())  # fmt: skip
        assert okx.book.position is None and [a.state for a in okx.book.algos] == ["live"]
        for _ in range(600):  # until the price reaches a barrier of the live algo order
            okx.server.advance_bar()
            if okx.book.algos[0].state != "live":
                break
        assert okx.book.algos[0].state in ("canceled", "order_failed")
        assert okx.book.position is None  # fired or not, nothing was opened
        # a reduce-only order or a standalone reduce-only SL/TP finds no position: refused, nothing opened
        broker = okx.broker()
        snapshot = broker.snapshot(okx.bars(), None)
        assert snapshot.position is None
        with pytest.raises(Exception, match="51169"):
            broker._exchange.private_post_trade_order(  # the exact request the broker's exits send
                {
                    "instId": SWAP,
                    "tdMode": "isolated",
                    "side": "buy",
                    "ordType": "market",
                    "sz": "1",
                    "reduceOnly": "true",
                    "clOrdId": "sbx1",
                }
            )
        with pytest.raises(Exception, match="51169"):
            broker._exchange.private_post_trade_order_algo(
                {
                    "instId": SWAP,
                    "tdMode": "isolated",
                    "side": "buy",
                    "ordType": "conditional",
                    "sz": "1",
                    "reduceOnly": "true",
                    "slTriggerPx": "1000000",
                    "slOrdPx": "-1",
                    "algoClOrdId": "sbx2",
                }
            )
        assert okx.book.position is None


def test_a_reduce_only_order_larger_than_the_position_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_okx_swap(monkeypatch) as okx:
        enter(okx, 1, size=0.5, sl=0.02, tp=0.02)
        held = okx.book.position
        assert held is not None
        with pytest.raises(OkxError) as refused:
            okx.book.place({"instId": SWAP, "tdMode": "isolated", "side": "sell", "ordType": "market",
                            "sz": str(held.pos + 1), "reduceOnly": "true"}, okx.server.server_ms())  # fmt: skip
        assert refused.value.row["sCode"] == "51205"
        assert okx.book.position is held and held.pos > 0


def test_a_restart_with_an_open_short_re_attaches_protection_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_okx_swap(monkeypatch) as okx:
        enter(okx, -1, size=1.0, sl=0.004, tp=0.006)
        (first,) = okx.book.algos
        fill = okx.book.position.avg_px if okx.book.position else Decimal(0)
        okx.book.cancel({"algoId": first.algo_id}, okx.server.server_ms())  # the protection is gone
        okx.server.advance_bar()

        restarted = okx.broker()
        snapshot = restarted.snapshot(okx.bars(), None)
        assert snapshot.position is not None and snapshot.position.side == -1
        assert math.isnan(snapshot.position.sl_price) and math.isnan(snapshot.position.tp_price)
        acks = restarted.submit(okx.signal(0), snapshot)
        assert [(a.intent, a.status) for a in acks] == [("sl", "accepted"), ("tp", "accepted")]
        again = okx.broker()  # a second restart, and a retried cycle: both find it and send nothing
        for broker in (restarted, again):
            assert broker.submit(okx.signal(0), broker.snapshot(okx.bars(), None)) == []

        assert len(okx.server.posts(ORDER_ALGO)) == 1
        placed = okx.server.posts(ORDER_ALGO)[0]
        assert (placed["side"], placed["reduceOnly"], placed["ordType"]) == ("buy", "true", "oco")
        assert placed["algoClOrdId"] == first.algo_cl_ord_id
        live = [a for a in okx.book.algos if a.state == "live"]
        assert len(live) == 1 and okx.book.position is not None and live[0].sz == -okx.book.position.pos
        assert float(live[0].sl) == pytest.approx(
            float(fill) * 1.004, abs=0.1
        )  # the entry's distances, again
        assert float(live[0].tp) == pytest.approx(float(fill) * 0.994, abs=0.1)
        assert len(okx.server.posts(ORDER)) == 1  # no entry or exit was sent


@pytest.mark.parametrize("restarted", [False, True])
def test_the_venues_leverage_differing_from_the_config_stops_the_bot_with_one_line(
    monkeypatch: pytest.MonkeyPatch, restarted: bool
) -> None:
    with running_okx_swap(monkeypatch) as okx:
        running = okx.broker()
        acks = running.submit(okx.signal(1, size=0.5, sl=0.01, tp=0.01), running.snapshot(okx.bars(), None))
        assert acks[0].status == "accepted"
        okx.book.levers["isolated"] = Decimal(20)  # changed in the venue's app while the position is open
        okx.book.position.lever = Decimal(20)  # type: ignore[union-attr]
        broker = okx.broker() if restarted else running
        sent = len(okx.server.requests)
        with pytest.raises(ConfigError) as stopped:
            broker.snapshot(okx.bars(), None)
        later = [r for r in okx.server.requests[sent:] if r.method == "POST"]
    message = str(stopped.value)
    assert "\n" not in message
    assert message == (
        "okx BTC/USDT:USDT: the venue trades 20x isolated, the configuration says 3x isolated; the bot stopped "
        "(set execute.leverage/margin_mode or the venue back)"
    )
    assert later == []  # nothing is sent: with a position open the setting is not changed under it


def test_a_position_mode_other_than_net_is_refused_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with running_okx_swap(monkeypatch) as okx:
        okx.book.pos_mode = "long_short_mode"
        with pytest.raises(ConfigError, match="needs one-way \\(net_mode\\)"):
            okx.broker().snapshot(okx.bars(), None)
        assert okx.server.posts(ORDER) == [] and okx.book.levers["isolated"] == Decimal(10)


def test_funding_is_read_from_the_bills_and_given_to_the_trade_open_at_its_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    funding_time = pd.Timestamp("2024-12-01 12:02", tz="UTC")  # not a real settlement time: a test double's
    with running_okx_swap(monkeypatch, funding={funding_time: 0.0003}) as okx:
        enter(okx, -1, size=1.0, sl=0.05, tp=0.05)
        for _ in range(3):
            okx.server.advance_bar()
        broker = okx.broker()
        bars = okx.bars()
        snapshot = broker.snapshot(bars, None)
    (paid,) = snapshot.funding
    assert snapshot.position is not None
    open_at = float(bars.loc[funding_time, "open"])
    assert paid.time == funding_time and paid.side == -1 and paid.price == open_at
    assert paid.amount == pytest.approx(
        -snapshot.position.qty * open_at * 0.0003, abs=1e-8
    )  # a short receives
    assert paid.rate == pytest.approx(0.0003, rel=1e-6)
    assert paid.entry_client_id == snapshot.position.entry_client_id


def test_a_stop_beyond_the_liquidation_price_lets_the_venue_liquidate_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with running_okx_swap(monkeypatch) as okx:
        broker = okx.broker(leverage=100)  # liquidated ~0.6 % away; a 5 % stop is far beyond it
        acks = broker.submit(okx.signal(1, size=20.0, sl=0.05, tp=0.05), broker.snapshot(okx.bars(), None))
        assert acks[0].status == "accepted"
        held = okx.book.position
        assert held is not None and float(held.liq_px) == pytest.approx(
            float(held.avg_px) * (1 - 0.006), abs=0.1
        )
        margin, entry_fee = float(held.margin), float(okx.book.orders[0].fee)
        for _ in range(2000):
            okx.server.advance_bar()
            if okx.book.position is None:
                break
        assert okx.book.liquidations and okx.book.algos[0].state == "canceled"
        snapshot = okx.broker(leverage=100).snapshot(okx.bars(240), None)
    liquidated = [f for f in snapshot.fills if f.reason == "liquidation"]
    assert len(liquidated) == 1 and liquidated[0].price == float(okx.book.liquidations[0][1])
    assert margin == pytest.approx(10_000 * 20 / 100, rel=0.002)
    assert snapshot.equity == pytest.approx(10_000 - margin - liquidated[0].fee - entry_fee, abs=1e-6)


def test_a_refused_amendment_closes_the_short_at_market_within_the_submit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with running_okx_swap(monkeypatch) as okx:
        okx.book.shift_after_fill = Decimal("1.03")  # the price jumps 3 % right after the short fills
        broker = okx.broker()
        acks = broker.submit(okx.signal(-1, size=1.0, sl=0.004, tp=0.006), broker.snapshot(okx.bars(), None))
        assert [(a.intent, a.status) for a in acks] == [
            ("entry", "accepted"),
            ("sl", "rejected"),
            ("tp", "rejected"),
            ("exit", "accepted"),
        ]
        assert "51280" in acks[1].message and acks[-1].message.startswith("closed at market")
        entry, closed = okx.server.posts(ORDER)
        assert (closed["side"], closed["reduceOnly"], closed["sz"]) == ("buy", "true", entry["sz"])
        assert okx.book.position is None and [a.state for a in okx.book.algos] == ["canceled"]
        after = broker.snapshot(okx.bars(), None)
    assert after.position is None
    assert [f.reason for f in after.fills] == ["entry", "unprotected"]
