"""The live broker on the strict Binance USDⓈ-M double: shorts, margin type and leverage set and checked, reduce-only
protection on the Algo Service placed at the fill, reduce-only exits, re-protection after a restart, lost replies,
funding and liquidation."""

from __future__ import annotations

import math
from decimal import Decimal

import pandas as pd
import pytest

from scalpbot.errors import ConfigError

from support.binance_usdm import SYMBOL
from support.binance_usdm_server import ALGO_ORDER, LEVERAGE, MARGIN_TYPE, ORDER, UsdmVenue, running_usdm


def enter(venue: UsdmVenue, side: int, **signal: float) -> None:
    broker = venue.broker()
    acks = broker.submit(venue.signal(side, **signal), broker.snapshot(venue.bars(), None))
    assert [(a.intent, a.status) for a in acks] == [
        ("entry", "accepted"),
        ("sl", "accepted"),
        ("tp", "accepted"),
    ]


def test_a_short_is_protected_on_the_algo_service_at_the_fill_after_margin_type_and_leverage_are_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with running_usdm(monkeypatch) as venue:
        broker = venue.broker(leverage=3)
        snapshot = broker.snapshot(venue.bars(), None)
        assert (venue.book.margin_type, venue.book.leverage) == ("ISOLATED", 3)
        assert [p["marginType"] for p in venue.posts(MARGIN_TYPE)] == ["ISOLATED"]
        assert [p["leverage"] for p in venue.posts(LEVERAGE)] == ["3"]
        close = float(venue.bars()["close"].iloc[-1])
        acks = broker.submit(venue.signal(-1, size=1.0, sl=0.004, tp=0.006), snapshot)
        assert [a.status for a in acks] == ["accepted"] * 3
        (entry,) = venue.posts(ORDER)
        assert (entry["side"], entry["type"], entry["newOrderRespType"]) == ("SELL", "MARKET", "RESULT")
        assert "reduceOnly" not in entry and entry["newClientOrderId"].endswith("0")  # max_hold 0
        assert float(entry["quantity"]) == pytest.approx(10_000 / close, abs=0.001)
        held = venue.book.position
        assert held is not None and held.amount == -Decimal(entry["quantity"]) and held.leverage == 3
        fill = float(held.entry)
        stop, take = venue.posts(ALGO_ORDER)  # exactly what ccxt 4.5 sends to the Algo Service
        for leg in (stop, take):
            assert (leg["algoType"], leg["side"], leg["reduceOnly"]) == ("CONDITIONAL", "BUY", "true")
            assert (
                leg["quantity"] == entry["quantity"] and "stopPrice" not in leg and "closePosition" not in leg
            )
        assert (stop["type"], take["type"]) == ("STOP_MARKET", "TAKE_PROFIT_MARKET")
        assert float(stop["triggerPrice"]) == pytest.approx(fill * 1.004, abs=0.05)  # at the fill's distances
        assert float(take["triggerPrice"]) == pytest.approx(fill * 0.994, abs=0.05)
        assert [a.client_algo_id for a in venue.book.algos] == [acks[1].client_id, acks[2].client_id]
        after = broker.snapshot(venue.bars(), None)
    assert after.position is not None and after.position.side == -1
    assert after.position.qty == float(entry["quantity"])
    assert after.position.entry_client_id == acks[0].client_id
    assert after.position.sl_price == float(stop["triggerPrice"])
    assert after.position.tp_price == float(take["triggerPrice"])
    assert [f.reason for f in after.fills] == ["entry"] and after.fills[0].fee == pytest.approx(
        float(entry["quantity"]) * fill * 0.0005, abs=1e-8
    )


def test_reduce_only_protection_can_never_open_a_position(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_usdm(monkeypatch) as venue:
        enter(venue, -1, size=1.0, sl=0.02, tp=0.02)
        held = venue.book.position
        assert held is not None
        # the short is closed behind the bot's back; its reduce-only stop and take profit stay on the venue
        venue.book.new_order({"symbol": SYMBOL, "side": "BUY", "type": "MARKET", "quantity": str(-held.amount),
                              "reduceOnly": "true"}, venue.clock_ms())  # fmt: skip
        assert venue.book.position is None
        assert [a.status for a in venue.book.algos] == ["NEW", "NEW"]
        for _ in range(2000):  # until the price reaches one of them
            venue.server.advance_bar()
            if any(a.status != "NEW" for a in venue.book.algos):
                break
        fired = [a for a in venue.book.algos if a.status == "FINISHED"]
        assert fired and all(a.actual_order_id == "" for a in fired)  # triggered, rejected: nothing to reduce
        assert venue.book.position is None
        broker = venue.broker()
        assert broker.snapshot(venue.bars(), None).position is None
        # the exact requests the broker's exits and protection send find no position: refused or inert
        exchange = broker._exchange
        with pytest.raises(Exception, match="-2022"):
            exchange.create_order(
                "BTC/USDT:USDT", "market", "buy", 0.01, None, {"reduceOnly": True, "newClientOrderId": "x1"}
            )
        with pytest.raises(Exception, match="-2022"):
            exchange.create_order("BTC/USDT:USDT", "market", "sell", 0.01, None, {"reduceOnly": True})
        last = float(venue.book.last(venue.clock_ms()))
        placed = exchange.create_order(
            "BTC/USDT:USDT", "market", "buy", 0.01, None,
            {"stopLossPrice": f"{last * 1.001:.1f}", "reduceOnly": True, "clientAlgoId": "x2"},
        )  # fmt: skip
        assert placed["info"]["algoType"] == "CONDITIONAL"
        for _ in range(600):
            venue.server.advance_bar()
            if venue.book.algos[-1].status != "NEW":
                break
        assert venue.book.algos[-1].status == "FINISHED" and venue.book.position is None
        # the same stop without reduceOnly is an ordinary order once triggered: it would open a long
        last = float(venue.book.last(venue.clock_ms()))
        exchange.create_order(
            "BTC/USDT:USDT",
            "market",
            "buy",
            0.01,
            None,
            {"stopLossPrice": f"{last * 1.001:.1f}", "clientAlgoId": "x3"},
        )
        for _ in range(600):
            venue.server.advance_bar()
            if venue.book.algos[-1].status != "NEW":
                break
        assert venue.book.position is not None and venue.book.position.amount == Decimal("0.01")


def test_a_reduce_only_order_larger_than_the_position_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_usdm(monkeypatch) as venue:
        enter(venue, 1, size=0.5, sl=0.02, tp=0.02)
        held = venue.book.position
        assert held is not None
        broker = venue.broker()
        with pytest.raises(Exception, match="-2022"):
            broker._exchange.create_order(
                "BTC/USDT:USDT", "market", "sell", float(held.amount) + 0.001, None, {"reduceOnly": True}
            )
        assert venue.book.position is held and held.amount > 0


def test_a_restart_with_an_open_short_re_attaches_protection_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_usdm(monkeypatch) as venue:
        enter(venue, -1, size=1.0, sl=0.004, tp=0.006)
        stop, take = venue.book.algos
        for algo in (stop, take):  # the protection is gone
            venue.book.cancel_algo({"algoId": str(algo.algo_id)}, venue.clock_ms())
        venue.server.advance_bar()

        restarted = venue.broker()
        snapshot = restarted.snapshot(venue.bars(), None)
        assert snapshot.position is not None and snapshot.position.side == -1
        assert math.isnan(snapshot.position.sl_price) and math.isnan(snapshot.position.tp_price)
        acks = restarted.submit(venue.signal(0), snapshot)
        assert [(a.intent, a.status) for a in acks] == [("sl", "accepted"), ("tp", "accepted")]
        again = venue.broker()  # a second restart, and a retried cycle: both find it and send nothing
        for broker in (restarted, again):
            assert broker.submit(venue.signal(0), broker.snapshot(venue.bars(), None)) == []

        placed = venue.posts(ALGO_ORDER)
        assert len(placed) == 4  # two at the entry, two after the restart: once
        assert [(p["side"], p["reduceOnly"], p["type"]) for p in placed[2:]] == [
            ("BUY", "true", "STOP_MARKET"),
            ("BUY", "true", "TAKE_PROFIT_MARKET"),
        ]
        live = [a for a in venue.book.algos if a.status == "NEW"]
        held = venue.book.position
        assert held is not None and [a.qty for a in live] == [-held.amount, -held.amount]
        assert [a.trigger for a in live] == [stop.trigger, take.trigger]  # the entry's barriers, again
        assert len(venue.posts(ORDER)) == 1  # no entry or exit was sent


@pytest.mark.parametrize("restarted", [False, True])
def test_the_venues_leverage_differing_from_the_config_stops_the_bot_with_one_line(
    monkeypatch: pytest.MonkeyPatch, restarted: bool
) -> None:
    with running_usdm(monkeypatch) as venue:
        running = venue.broker()
        acks = running.submit(
            venue.signal(1, size=0.5, sl=0.01, tp=0.01), running.snapshot(venue.bars(), None)
        )
        assert acks[0].status == "accepted"
        venue.book.leverage = 20  # changed in the venue's app while the position is open
        broker = venue.broker() if restarted else running
        sent = len(venue.server.requests)
        with pytest.raises(ConfigError) as stopped:
            broker.snapshot(venue.bars(), None)
        later = [r for r in venue.server.requests[sent:] if r.method in ("POST", "DELETE")]
    message = str(stopped.value)
    assert "\n" not in message
    assert message == (
        "binance BTC/USDT:USDT: the venue trades 20x isolated, the configuration says 3x isolated; the bot "
        "stopped (set execute.leverage/margin_mode or the venue back)"
    )
    assert later == []  # nothing is sent: with a position open the setting is not changed under it


def test_a_margin_type_differing_from_the_config_under_an_open_position_stops_the_bot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with running_usdm(monkeypatch) as venue:
        enter(venue, -1, size=0.5, sl=0.01, tp=0.01)
        venue.book.margin_type = "CROSSED"
        with pytest.raises(
            ConfigError, match="the venue trades 3x cross, the configuration says 3x isolated"
        ):
            venue.broker().snapshot(venue.bars(), None)
        assert len(venue.posts(MARGIN_TYPE)) == 1  # the one at the first start, none under the position


def test_hedge_mode_is_refused_before_anything_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_usdm(monkeypatch) as venue:
        venue.book.dual_side = True
        with pytest.raises(ConfigError, match="needs one-way mode"):
            venue.broker().snapshot(venue.bars(), None)
        posts = [r for r in venue.server.requests if r.method == "POST"]
    assert posts == [] and venue.book.leverage == 20


def test_a_refused_stop_closes_the_short_at_market_within_the_submit(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_usdm(monkeypatch) as venue:
        venue.book.shift_after_fill = Decimal("1.03")  # the price jumps 3 % right after the short fills
        broker = venue.broker()
        acks = broker.submit(
            venue.signal(-1, size=1.0, sl=0.004, tp=0.006), broker.snapshot(venue.bars(), None)
        )
        assert [(a.intent, a.status) for a in acks] == [
            ("entry", "accepted"),
            ("sl", "rejected"),
            ("tp", "rejected"),
            ("exit", "accepted"),
        ]
        assert "-2021" in acks[1].message and acks[-1].message.startswith("closed at market")
        entry, closed = venue.posts(ORDER)
        assert (closed["side"], closed["reduceOnly"], closed["quantity"]) == (
            "BUY",
            "true",
            entry["quantity"],
        )
        assert venue.book.position is None and venue.book.algos == []
        after = broker.snapshot(venue.bars(), None)
    assert after.position is None
    assert [f.reason for f in after.fills] == ["entry", "unprotected"]


def test_a_refused_take_profit_cancels_the_stop_and_closes_at_market(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_usdm(monkeypatch) as venue:
        venue.book.shift_after_fill = Decimal("0.99")  # the price falls 1 % after the short fills: TP crossed
        broker = venue.broker()
        acks = broker.submit(
            venue.signal(-1, size=1.0, sl=0.004, tp=0.006), broker.snapshot(venue.bars(), None)
        )
        assert [(a.intent, a.status) for a in acks][-1] == ("exit", "accepted")
        assert [a.status for a in venue.book.algos] == ["CANCELED"]  # the stop was placed, then cancelled
        assert venue.book.position is None


def test_a_lost_entry_reply_is_looked_up_and_gives_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_usdm(monkeypatch) as venue:
        venue.server.lose_reply_next(1, ORDER)  # executed, answered 503 -1007
        broker = venue.broker()
        snapshot = broker.snapshot(venue.bars(), None)
        signal = venue.signal(1, size=0.5, sl=0.01, tp=0.01)
        acks = broker.submit(signal, snapshot)
        assert [(a.intent, a.status) for a in acks] == [
            ("entry", "accepted"),
            ("sl", "accepted"),
            ("tp", "accepted"),
        ]
        assert acks[0].message == "found after an unknown outcome"
        again = broker.submit(signal, snapshot)  # the cycle retried: found by its client id
        assert [(a.intent, a.status) for a in again] == [
            ("entry", "duplicate"),
            ("sl", "duplicate"),
            ("tp", "duplicate"),
        ]
        assert len(venue.posts(ORDER)) == 1 and len(venue.posts(ALGO_ORDER)) == 2
        assert len(venue.book.orders) == 1 and len([a for a in venue.book.algos if a.status == "NEW"]) == 2


def test_a_lost_protection_reply_is_looked_up_and_not_sent_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_usdm(monkeypatch) as venue:
        venue.server.lose_reply_next(1, ALGO_ORDER)
        broker = venue.broker()
        acks = broker.submit(venue.signal(-1, size=0.5), broker.snapshot(venue.bars(), None))
        assert [(a.intent, a.status) for a in acks] == [
            ("entry", "accepted"),
            ("sl", "accepted"),
            ("tp", "accepted"),
        ]
        assert len(venue.posts(ALGO_ORDER)) == 2 and len(venue.book.algos) == 2


def test_funding_is_read_from_the_income_history_and_given_to_the_trade_open_at_its_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    funding_time = pd.Timestamp("2024-12-01 12:02", tz="UTC")  # not a real settlement time: a test double's
    with running_usdm(monkeypatch, funding={funding_time: 0.0003}) as venue:
        enter(venue, -1, size=1.0, sl=0.05, tp=0.05)
        for _ in range(3):
            venue.server.advance_bar()
        broker = venue.broker()
        bars = venue.bars()
        snapshot = broker.snapshot(bars, None)
        (row,) = venue.book.income
    (paid,) = snapshot.funding
    assert snapshot.position is not None and row["incomeType"] == "FUNDING_FEE"
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
    with running_usdm(monkeypatch) as venue:
        broker = venue.broker(leverage=100)  # liquidated ~0.6 % away; a 5 % stop is far beyond it
        acks = broker.submit(
            venue.signal(1, size=20.0, sl=0.05, tp=0.05), broker.snapshot(venue.bars(), None)
        )
        assert acks[0].status == "accepted"
        held = venue.book.position
        assert held is not None
        assert float(held.liquidation) == pytest.approx(float(held.entry) * (1 - 0.006), abs=0.1)
        for _ in range(2000):
            venue.server.advance_bar()
            if venue.book.position is None:
                break
        assert venue.book.liquidations
        snapshot = venue.broker(leverage=100).snapshot(venue.bars(240), None)
    liquidated = [f for f in snapshot.fills if f.reason == "liquidation"]
    assert len(liquidated) == 1 and liquidated[0].price == float(venue.book.liquidations[0][1])
    assert snapshot.position is None


def test_a_timestamp_outside_the_recv_window_is_resynchronised_and_a_rate_limit_waits_its_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with running_usdm(monkeypatch) as venue:
        broker = venue.broker()
        broker.snapshot(venue.bars(), None)
        venue.server.skew_ms = 30_000  # the venue's clock runs ahead: the next signed request is -1021
        venue.server.fail_next(1, 429, path="/fapi/v1/allOrders")
        snapshot = broker.snapshot(venue.bars(), None)
        refused = [r for r in venue.server.requests if r.path == "/fapi/v1/time"]
    assert snapshot.position is None and len(refused) >= 2  # measured at start, again after the -1021
    assert venue.sleeps and max(venue.sleeps) >= 1.0  # Retry-After: 1 s, honoured


def test_a_position_the_bot_did_not_open_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_usdm(monkeypatch) as venue:
        venue.broker().snapshot(venue.bars(), None)  # settings applied: 3x isolated
        venue.book.new_order(
            {"symbol": SYMBOL, "side": "SELL", "type": "MARKET", "quantity": "0.01"}, venue.clock_ms()
        )  # opened in the app
        with pytest.raises(ConfigError, match="holds a short position of 0.01 that the bot did not open"):
            venue.broker().snapshot(venue.bars(), None)


def test_a_reversals_entry_is_sized_on_the_equity_at_the_decision_close_as_the_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernel sizes a swap entry, a reversal's too, as ``size x equity / close`` of the decision bar (the
    equity marked at that close): not on what the exit leaves at the fill, which can straddle a step."""
    with running_usdm(monkeypatch) as venue:
        enter(venue, 1, size=2.0, sl=0.02, tp=0.02)
        venue.server.advance_bar()
        broker = venue.broker()
        snapshot = broker.snapshot(venue.bars(), None)
        assert snapshot.position is not None
        close, held = float(venue.bars()["close"].iloc[-1]), snapshot.position.qty
        fill = float(venue.book.last(venue.clock_ms()))  # where the exit and the new entry fill
        left = snapshot.equity + held * (fill - close) - held * fill * 0.0005
        # a size whose quantity crosses a 0.001 step between the snapshot's equity and what the exit leaves
        steps = math.floor(2.0 * max(left, snapshot.equity) / close / 0.001)
        size = steps * 0.001 * close / max(left, snapshot.equity) * (1 + 1e-9)
        want = math.floor(size * snapshot.equity / close / 0.001 + 1e-9)
        assert want != math.floor(size * left / close / 0.001 + 1e-9)
        acks = broker.submit(venue.signal(-1, size=size, sl=0.02, tp=0.02), snapshot)
        assert [(a.intent, a.status) for a in acks][:2] == [("exit", "accepted"), ("entry", "accepted")]
        exit_, entry = venue.book.orders[-2:]
    assert (exit_.avg_price, entry.avg_price) == (Decimal(repr(fill)), Decimal(repr(fill)))
    assert entry.qty == Decimal(want) * Decimal("0.001")
