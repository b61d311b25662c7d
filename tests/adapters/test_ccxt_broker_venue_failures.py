"""CcxtBroker under the failures the strict Binance spot double produces, each test named after its failure."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest

from scalpbot.adapters.ccxt.binance import BinanceSpot
from scalpbot.core.execution import Signal
from scalpbot.errors import ConfigError, ExchangeTemporaryError

from support.binance_trading import OCO, ORDER, BinanceTradingServer
from support.broker_venue import OPEN_1200, Venue, running_venue, statuses


@pytest.fixture
def venue(monkeypatch: pytest.MonkeyPatch) -> Iterator[Venue]:
    with running_venue(monkeypatch) as running:
        yield running


def market_orders(server: BinanceTradingServer) -> list[str]:
    return [o.status for o in server.orders() if o.type == "MARKET"]


def test_a_lost_reply_after_execution_gives_one_entry(venue):
    trader = venue.broker()
    before = venue.snapshot(trader)
    venue.server.book.lag_reads = 2  # the order reaches the database a few reads later
    venue.server.drop_reply_next(1, ORDER)  # executed, then the connection closed unanswered

    acks = trader.submit(venue.signal(1), before)

    assert statuses(acks) == [("entry", "accepted"), ("sl", "accepted"), ("tp", "accepted")]
    assert "found after an unknown outcome" in acks[0].message
    assert market_orders(venue.server) == ["FILLED"]
    assert len(venue.server.posts(ORDER)) == 1 and len(venue.server.posts(OCO)) == 1


def test_a_lost_reply_never_found_is_not_sent_again(venue):
    trader = venue.broker()
    before = venue.snapshot(trader)
    venue.server.book.lag_reads = 50  # longer than the broker looks
    venue.server.lose_reply_next(1, ORDER)

    acks = trader.submit(venue.signal(1), before)

    assert statuses(acks) == [("entry", "rejected")]
    assert "not sent again" in acks[0].message
    assert len(venue.server.posts(ORDER)) == 1 and market_orders(venue.server) == ["FILLED"]


def test_protection_refused_closes_the_position_at_market_within_the_submit(venue):
    trader = venue.broker()
    before = venue.snapshot(trader)
    venue.server.book.shift_after_fill = Decimal("0.98")  # the price falls 2 % between the fill and the OCO

    acks = trader.submit(venue.signal(1, sl=0.005, tp=0.01), before)

    assert statuses(acks) == [
        ("entry", "accepted"),
        ("sl", "rejected"),
        ("tp", "rejected"),
        ("exit", "accepted"),
    ]
    assert "Stop price would trigger immediately" in acks[1].message
    assert "closed at market" in acks[3].message
    assert venue.server.orders("NEW") == [] and venue.snapshot(trader).position is None
    sold = venue.server.orders()[-1]
    assert (sold.side, sold.type, sold.status) == ("SELL", "MARKET", "FILLED")


def test_a_partial_fill_is_protected_for_the_filled_quantity_net_of_commission(venue):
    trader = venue.broker()
    before = venue.snapshot(trader)
    venue.server.book.liquidity.append((Decimal("0.5"), "EXPIRED"))

    acks = trader.submit(venue.signal(1), before)

    assert statuses(acks) == [("entry", "accepted"), ("sl", "accepted"), ("tp", "accepted")]
    (entry,) = [o for o in venue.server.orders() if o.type == "MARKET"]
    assert entry.status == "EXPIRED" and 0 < entry.executed < entry.qty
    (oco,) = venue.server.posts(OCO)
    net = entry.executed * Decimal("0.999")
    assert Decimal(oco["quantity"]) == net.quantize(Decimal("0.00001"), rounding="ROUND_DOWN")
    position = venue.snapshot(trader).position
    assert position is not None and position.qty == float(oco["quantity"])


@pytest.mark.parametrize("asset", ["quote", "BNB"])
def test_commission_not_taken_in_base_leaves_the_whole_fill_protected(monkeypatch, asset):
    with running_venue(monkeypatch) as venue:
        venue.server.book.commission = asset
        venue.server.book.balances["BNB"] = [Decimal("1"), Decimal(0)]
        trader = venue.broker()
        before = venue.snapshot(trader)

        trader.submit(venue.signal(1), before)

        (entry,) = [o for o in venue.server.orders() if o.type == "MARKET"]
        assert Decimal(venue.server.posts(OCO)[0]["quantity"]) == entry.executed


def test_a_foreign_balance_is_refused_at_start_unless_adopted(monkeypatch):
    with running_venue(monkeypatch) as venue:
        venue.server.book.balances["BTC"] = [Decimal("0.5"), Decimal(0)]

        with pytest.raises(ConfigError, match=r"holds 0.5 BTC that this bot did not buy.*--adopt"):
            venue.snapshot(venue.broker())
        position = venue.snapshot(venue.broker(adopt=True)).position

    assert position is not None and position.qty == 0.5


def test_dust_of_base_coins_is_not_a_foreign_balance(monkeypatch):
    with running_venue(monkeypatch) as venue:
        venue.server.book.balances["BTC"] = [Decimal("0.00004"), Decimal(0)]  # below the 5 USDT minimum
        assert venue.snapshot(venue.broker()).position is None


def test_sixty_idle_days_cost_the_same_calls_per_cycle_as_one_idle_day(venue):
    trader, _, _ = venue.enter(sl=0.0005, tp=0.0005)
    for _ in range(120):
        venue.server.advance_bar()
        if not venue.server.orders("NEW"):
            break
    last_fill = venue.snapshot(trader).fills[-1].time

    def calls_after(idle: timedelta) -> int:
        venue.clock.advance(idle)
        fresh = venue.broker()
        fresh.snapshot(venue.bars(), None)  # markets and caches of a fresh process
        before = len(venue.server.requests)
        snapshot = fresh.snapshot(venue.bars(), last_fill)
        assert snapshot.position is None
        return len(venue.server.requests) - before

    one_day = calls_after(timedelta(days=1))
    sixty_days = calls_after(timedelta(days=59))

    assert one_day == sixty_days <= 4


def test_a_429_with_retry_after_is_waited_out_before_the_next_request(venue):
    trader = venue.broker()
    venue.snapshot(trader)
    limiter = venue.server.limiter
    limiter.limit = limiter.used + 25  # the account read (20) fits, the open orders (6) do not

    snapshot = venue.snapshot(trader)

    assert snapshot.position is None
    ((status, retry_after),) = limiter.retry_afters
    assert status == 429 and retry_after >= 1
    assert max(venue.sleeps) >= retry_after  # honoured: the next request came after the venue's wait


def test_a_ban_longer_than_the_broker_may_wait_fails_the_read_without_sleeping_through_it(venue):
    trader = venue.broker(max_wait=60.0)
    venue.snapshot(trader)
    venue.server.limiter.banned_until = venue.server.limiter.now() + 600

    with pytest.raises(ExchangeTemporaryError, match="asks to wait 600 s"):
        venue.snapshot(trader)

    assert all(pause < 60 for pause in venue.sleeps)


def test_a_skewed_clock_is_resynchronised_and_no_order_is_lost_or_doubled(venue):
    trader = venue.broker()
    before = venue.snapshot(trader)
    venue.server.skew_ms = 30_000  # the venue's clock is now 30 s ahead: timestamps fall outside recvWindow
    times_before = len(venue.server.requests_to("/api/v3/time"))

    acks = trader.submit(venue.signal(1), before)

    assert statuses(acks) == [("entry", "accepted"), ("sl", "accepted"), ("tp", "accepted")]
    assert len(venue.server.requests_to("/api/v3/time")) > times_before  # resynchronised
    assert market_orders(venue.server) == ["FILLED"] and len(venue.server.book.lists) == 1
    position = venue.snapshot(trader).position
    assert position is not None and not math.isnan(position.sl_price)
    assert position.entry_price == pytest.approx(OPEN_1200)


def test_a_stop_that_fills_partly_and_expires_leaves_a_remainder_closed_at_the_next_cycle(venue):
    trader, _, sig = venue.enter(sl=0.0003, tp=0.05)
    venue.server.book.liquidity.append((Decimal("0.5"), "EXPIRED"))  # the triggered stop finds half the book
    for _ in range(30):
        venue.server.advance_bar()
        if not venue.server.orders("NEW"):
            break
    stop = next(o for o in venue.server.orders() if o.type == "STOP_LOSS")
    assert stop.status == "EXPIRED" and 0 < stop.executed < stop.qty

    left = venue.snapshot(trader, since=sig.decided_at)
    assert left.position is not None and math.isnan(left.position.sl_price)
    assert left.position.qty == float(stop.qty - stop.executed)
    acks = trader.submit(Signal(venue.decided(), 0, 0.0, 0.0, 0.0, 0), left)

    assert statuses(acks) == [("exit", "accepted")]
    venue.server.advance_bar()
    after = venue.snapshot(trader, since=sig.decided_at)
    assert after.position is None
    assert [f.reason for f in after.fills] == ["entry", "sl", "unprotected"]


def test_a_lost_reply_to_the_oco_is_resolved_by_looking_its_legs_up_not_by_sending_it_again(venue):
    trader = venue.broker()
    before = venue.snapshot(trader)
    venue.server.lose_reply_next(1, OCO)  # placed, answered 503 -1007 "execution status unknown"

    acks = trader.submit(venue.signal(1), before)

    assert statuses(acks) == [("entry", "accepted"), ("sl", "accepted"), ("tp", "accepted")]
    assert "found after an unknown outcome" in acks[1].message
    assert len(venue.server.posts(OCO)) == 1 and len(venue.server.book.lists) == 1
    position = venue.snapshot(trader).position
    assert position is not None and not math.isnan(position.sl_price)


def test_a_garbled_reply_to_an_entry_is_an_unknown_outcome_resolved_by_look_up(venue):
    trader = venue.broker()
    before = venue.snapshot(trader)
    venue.server.garble_next(1, ORDER, "POST")  # answered 200 with a truncated body, the order not placed

    acks = trader.submit(venue.signal(1), before)

    assert statuses(acks) == [("entry", "rejected")]
    assert "not found on the venue after 4 look-ups" in acks[0].message
    assert len(venue.server.posts(ORDER)) == 1 and market_orders(venue.server) == []


def test_commission_dust_stays_under_one_step_however_many_trades_and_is_never_foreign(monkeypatch):
    # Buys pay their commission in BTC; each leaves dust under the 0.00001 step, carried into the next buy (as
    # the kernel carries it), so a restart - whose reads cover only the most recent trades - finds no coins
    # it did not buy, after any number of trades.
    with running_venue(monkeypatch) as venue:
        trader = venue.broker()
        for _ in range(25):
            trader.submit(venue.signal(1, size=0.37, hold=1, sl=0.01, tp=0.01), venue.snapshot(trader))
            venue.server.advance_bar()
            trader.submit(venue.signal(0), venue.snapshot(trader))  # the time stop sells the position
            venue.server.advance_bar()
        assert len([o for o in venue.server.orders("FILLED") if o.side == "BUY"]) == 25
        assert venue.server.balance("BTC")[0] < Decimal("0.00001")  # all of it dust, under one step
        monkeypatch.setattr(BinanceSpot, "page", 4)  # a restart whose reads reach only the last round trip
        assert venue.snapshot(venue.broker()).position is None
