"""CcxtBroker on a local Binance spot look-alike: exchange-side SL/TP, idempotent orders, exits by reason."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from scalpbot.core.execution import Signal, client_order_id

from support.binance_trading import ALL_ORDERS, OCO, ORDER, ORDER_LIST
from support.broker_venue import BOT, MINUTE, OPEN_1200, SYMBOL, Venue, running_venue, statuses

WIDE = {"sl": 0.01, "tp": 0.01}  # never reached in the quiet minutes after 12:00


@pytest.fixture
def venue(monkeypatch: pytest.MonkeyPatch) -> Iterator[Venue]:
    with running_venue(monkeypatch) as running:
        yield running


def ids(decided_at, *tags: str) -> set[str]:
    return {client_order_id(BOT, SYMBOL, decided_at, tag) for tag in tags}


# --- every entry carries its protection -----------------------------------------------------------------


def test_a_long_entry_is_followed_by_its_stop_loss_and_take_profit_as_one_oco(venue):
    _, _, sig = venue.enter(size=0.5, sl=0.003, tp=0.006, hold=7)

    (entry,), (oco,) = venue.server.posts(ORDER), venue.server.posts(OCO)
    assert [r.path for r in venue.server.requests if r.method == "POST"] == [ORDER, OCO]
    assert (entry["type"], entry["side"]) == ("MARKET", "BUY")
    assert entry["newClientOrderId"] == client_order_id(BOT, SYMBOL, sig.decided_at, "entry")
    # a quote amount, size x the free USDT, as the kernel sizes it: what it buys at the fill is up to the venue
    assert "quantity" not in entry and entry["quoteOrderQty"] == "5000"
    bought = venue.server.orders()[0]
    assert float(bought.executed) == math.floor(5000 / OPEN_1200 * 1e5) / 1e5
    assert (oco["side"], oco["aboveType"], oco["belowType"]) == ("SELL", "TAKE_PROFIT", "STOP_LOSS")
    assert float(oco["belowStopPrice"]) == pytest.approx(OPEN_1200 * (1 - 0.003), abs=0.006)  # from the fill
    assert float(oco["aboveStopPrice"]) == pytest.approx(OPEN_1200 * (1 + 0.006), abs=0.006)
    assert oco["belowClientOrderId"] == client_order_id(BOT, SYMBOL, sig.decided_at, "sl")
    assert oco["aboveClientOrderId"] == client_order_id(BOT, SYMBOL, sig.decided_at, "tp")
    assert (
        oco["quantity"] == f"{venue.server.balance('BTC')[1].normalize():f}"
    )  # all of it, net of commission


def test_the_snapshot_shows_the_position_with_its_protection_and_equity_at_the_last_close(venue):
    trader, _, sig = venue.enter(sl=0.003, tp=0.006, hold=7)
    venue.server.advance_bar()

    after = venue.snapshot(trader, since=sig.decided_at)

    position = after.position
    assert position is not None
    assert (position.side, position.entry_price, position.max_hold) == (1, pytest.approx(OPEN_1200), 7)
    assert position.entry_time == sig.decided_at + MINUTE
    assert position.entry_client_id == client_order_id(BOT, SYMBOL, sig.decided_at, "entry")
    assert position.sl_price == pytest.approx(OPEN_1200 * 0.997, abs=0.006)
    assert position.tp_price == pytest.approx(OPEN_1200 * 1.006, abs=0.006)
    usdt, btc = (sum(venue.server.balance(a)) for a in ("USDT", "BTC"))
    assert after.equity == pytest.approx(float(usdt) + float(btc) * 97110.74)  # the 12:00 close
    (entry,) = after.fills
    assert (entry.reason, entry.side, entry.entry_client_id) == ("entry", 1, position.entry_client_id)
    bought = float(venue.server.orders()[0].executed)
    assert entry.qty == pytest.approx(
        math.floor(bought * 0.999 * 1e5) / 1e5
    )  # net of commission, to the step
    assert entry.qty * entry.price + entry.fee == pytest.approx(bought * OPEN_1200)  # fee: commission + dust
    assert set(after.open_orders) == ids(sig.decided_at, "sl", "tp")


# --- idempotency ----------------------------------------------------------------------------------------


def test_the_same_signal_submitted_twice_places_each_order_once(venue):
    trader, before, sig = venue.enter()

    again = trader.submit(sig, before)

    assert statuses(again) == [("entry", "duplicate"), ("sl", "duplicate"), ("tp", "duplicate")]
    assert len(venue.server.posts(ORDER)) == 1 and len(venue.server.posts(OCO)) == 1


def test_a_crash_after_the_order_was_accepted_is_reconciled_by_a_fresh_broker(venue):
    _, before, sig = venue.enter()  # ... and the caller died before recording the acks
    fresh = venue.broker()

    now = venue.snapshot(fresh)
    retried_on_the_old_view = fresh.submit(sig, before)
    retried_on_the_new_view = fresh.submit(sig, now)

    assert now.position is not None and now.position.entry_client_id == client_order_id(
        BOT, SYMBOL, sig.decided_at, "entry"
    )
    assert not math.isnan(now.position.sl_price) and not math.isnan(now.position.tp_price)
    assert statuses(retried_on_the_old_view) == [
        ("entry", "duplicate"),
        ("sl", "duplicate"),
        ("tp", "duplicate"),
    ]
    assert retried_on_the_new_view == []
    assert len(venue.server.posts(ORDER)) == 1 and len(venue.server.posts(OCO)) == 1


def test_an_order_whose_reply_is_lost_is_looked_up_and_not_placed_again(venue):
    trader = venue.broker()
    before = venue.snapshot(trader)
    venue.server.lose_reply_next(1, ORDER)

    acks = trader.submit(venue.signal(1), before)

    assert statuses(acks) == [("entry", "accepted"), ("sl", "accepted"), ("tp", "accepted")]
    assert acks[0].venue_id is not None and "found after an unknown outcome" in acks[0].message
    assert len(venue.server.posts(ORDER)) == 1 and len(venue.server.orders("FILLED")) == 1


def test_an_oco_failing_with_a_5xx_and_absent_from_the_venue_closes_the_position_at_market(venue):
    trader = venue.broker()
    before = venue.snapshot(trader)
    venue.server.fail_next(1, 503, path=OCO)

    acks = trader.submit(venue.signal(1, sl=0.003, tp=0.006), before)

    assert statuses(acks) == [
        ("entry", "accepted"),
        ("sl", "rejected"),
        ("tp", "rejected"),
        ("exit", "accepted"),
    ]
    assert "not found on the venue after 4 look-ups" in acks[1].message
    assert "closed at market" in acks[3].message
    assert len(venue.server.posts(OCO)) == 1  # never sent twice on a guess
    assert venue.snapshot(trader).position is None


def test_a_restarted_broker_closes_a_position_found_without_protection_whatever_the_signal(venue):
    trader = venue.broker()
    before = venue.snapshot(trader)
    trader.submit(venue.signal(1, sl=math.inf, tp=math.inf), before)  # entered, then died before its OCO
    venue.server.advance_bar()

    fresh = venue.broker()
    unprotected = venue.snapshot(fresh)
    assert unprotected.position is not None and math.isnan(unprotected.position.sl_price)
    acks = fresh.submit(Signal(venue.decided(), 0, 0.0, 0.0, 0.0, 0), unprotected)

    assert statuses(acks) == [("exit", "accepted")]
    assert "no SL/TP on the venue" in acks[0].message
    assert acks[0].client_id == client_order_id(BOT, SYMBOL, venue.decided(), "unprotected")
    assert venue.snapshot(fresh).position is None


# --- exits ----------------------------------------------------------------------------------------------


def advance_until_flat(venue: Venue, bars: int = 10) -> None:
    for _ in range(bars):
        venue.server.advance_bar()
        if not venue.server.orders("NEW"):
            return
    raise AssertionError("the protection never filled")


@pytest.mark.parametrize(
    ("sl", "tp", "reason", "price"),
    [(0.0003, 0.05, "sl", OPEN_1200 * 0.9997), (0.05, 0.0002, "tp", OPEN_1200 * 1.0002)],
)
def test_stop_loss_and_take_profit_fills_come_back_with_their_reason_and_pnl(venue, sl, tp, reason, price):
    _, _, sig = venue.enter(sl=sl, tp=tp)
    advance_until_flat(venue)
    fresh = venue.broker()

    after = venue.snapshot(fresh, since=sig.decided_at)

    assert after.position is None and after.open_orders == ()
    entry, exit_ = after.fills
    assert (entry.reason, exit_.reason, exit_.side) == ("entry", reason, -1)
    assert exit_.client_id == client_order_id(BOT, SYMBOL, sig.decided_at, reason)
    assert exit_.price == pytest.approx(price, abs=0.006)
    assert exit_.pnl == pytest.approx(exit_.qty * (exit_.price - entry.price) - exit_.fee - entry.fee)
    assert exit_.entry_client_id == entry.client_id
    assert exit_.time >= entry.time == sig.decided_at + MINUTE
    assert len(venue.server.requests_to(ALL_ORDERS)) == 1  # both orders read in one request


def test_a_time_exit_cancels_the_protection_then_sells_at_market_at_entry_bar_plus_max_hold(venue):
    trader, _, sig = venue.enter(hold=2, **WIDE)
    venue.server.advance_bar()
    assert trader.submit(venue.signal(0), venue.snapshot(trader)) == []  # held 1 bar of 2
    venue.server.advance_bar()

    acks = trader.submit(venue.signal(0), venue.snapshot(trader))

    assert statuses(acks) == [("exit", "accepted")]
    assert acks[0].client_id == client_order_id(BOT, SYMBOL, venue.decided(), "time")
    assert [r.method for r in venue.server.requests if r.path == ORDER_LIST] == ["DELETE"]
    assert venue.server.posts(ORDER)[-1]["side"] == "SELL" and venue.server.orders("NEW") == []
    venue.server.advance_bar()
    after = venue.snapshot(trader, since=sig.decided_at)
    assert after.position is None
    assert [f.reason for f in after.fills] == ["entry", "time"]
    assert after.fills[1].time == sig.decided_at + 3 * MINUTE  # the open of bar e + max_hold, e = decided + 1


def test_a_short_signal_while_long_closes_the_long_and_the_short_is_rejected(venue):
    trader, _, _ = venue.enter(**WIDE)
    venue.server.advance_bar()

    acks = trader.submit(venue.signal(-1), venue.snapshot(trader))

    assert statuses(acks) == [("exit", "accepted"), ("entry", "rejected")]
    assert "cannot be shorted" in acks[1].message
    assert venue.server.orders("NEW") == [] and [o.side for o in venue.server.orders("FILLED")] == [
        "BUY",
        "SELL",
    ]
    assert venue.snapshot(trader).fills[-1].reason == "signal"


def test_a_short_signal_when_flat_is_rejected_without_sending_anything(venue):
    trader = venue.broker()

    acks = trader.submit(venue.signal(-1), venue.snapshot(trader))

    assert statuses(acks) == [("entry", "rejected")]
    assert "BTC/USDT is a spot market and cannot be shorted" in acks[0].message
    assert venue.server.posts(ORDER) == [] and venue.server.posts(OCO) == []


def test_the_kill_switch_cancels_the_protection_and_flattens_once(venue):
    trader, _, _ = venue.enter(**WIDE)
    venue.server.advance_bar()
    now = venue.snapshot(trader)

    acks = trader.flatten(venue.decided(), now)
    again = trader.flatten(venue.decided(), now)

    assert statuses(acks) == [("exit", "accepted")] and statuses(again) == [("exit", "duplicate")]
    assert acks[0].client_id == client_order_id(BOT, SYMBOL, venue.decided(), "kill")
    assert venue.server.orders("NEW") == [] and venue.server.balance("BTC")[0] < 0.00001
    assert venue.snapshot(trader).fills[-1].reason == "kill"
