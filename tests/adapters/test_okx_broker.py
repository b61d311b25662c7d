"""CcxtBroker on the strict OKX spot double: SL/TP attached to the entry, amended to the fill, and the same
guarantees as on Binance (never unprotected, never twice, only its own inventory)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import ROUND_DOWN, Decimal

import pytest

from support.okx_server import AMEND_ALGOS, ORDER, ORDER_ALGO
from support.okx_venue import OkxVenue, running_okx

TICK, LOT = Decimal("0.1"), Decimal("0.00000001")


@pytest.fixture
def okx(monkeypatch: pytest.MonkeyPatch) -> Iterator[OkxVenue]:
    with running_okx(monkeypatch) as running:
        yield running


def statuses(acks):
    return [(a.intent, a.status) for a in acks]


def test_one_entry_carries_both_its_stop_loss_and_take_profit(okx):
    trader = okx.broker()
    acks = trader.submit(okx.signal(1, sl=0.01, tp=0.02), okx.snapshot(trader))

    assert statuses(acks) == [("entry", "accepted"), ("sl", "accepted"), ("tp", "accepted")]
    (entry,) = okx.server.posts(ORDER)
    (attached,) = entry["attachAlgoOrds"]
    assert attached["slOrdPx"] == attached["tpOrdPx"] == "-1"  # market orders once triggered
    assert float(attached["slTriggerPx"]) < float(attached["tpTriggerPx"])
    (algo,) = okx.server.book.algos
    assert (algo.ord_type, algo.state, algo.algo_cl_ord_id) == ("oco", "live", attached["attachAlgoClOrdId"])
    assert not any(r.path.endswith("/order-algo") for r in okx.server.requests)  # no second order placed
    position = okx.snapshot(trader).position
    assert position is not None and (position.sl_price, position.tp_price) == (float(algo.sl), float(algo.tp))


@pytest.mark.parametrize("attached_size", ["filled", "ordered"])
def test_protection_priced_before_the_fill_is_amended_to_the_fill_price_and_the_quantity_held(
    monkeypatch, attached_size
):
    with running_okx(monkeypatch, attached_size=attached_size) as okx:
        trader = okx.broker()
        before = okx.snapshot(trader)
        close = Decimal(str(okx.bars()["close"].iloc[-1]))

        trader.submit(okx.signal(1, sl=0.01, tp=0.02), before)

        (attached,) = okx.server.posts(ORDER)[0]["attachAlgoOrds"]
        assert Decimal(attached["slTriggerPx"]) == (close * Decimal("0.99")).quantize(TICK)  # at the close
        (entry,) = okx.server.orders()
        fill = entry.cost / entry.filled
        assert fill != close
        (algo,) = okx.server.book.algos
        assert algo.sl == (fill * Decimal("0.99")).quantize(TICK)
        assert algo.tp == (fill * Decimal("1.02")).quantize(TICK)
        held = (entry.filled - entry.fee).quantize(LOT, rounding=ROUND_DOWN)  # commission taken in BTC
        assert entry.fee_ccy == "BTC" and algo.sz == held
        (amend,) = okx.server.posts(AMEND_ALGOS)
        assert Decimal(amend["newSz"]) == held


def test_a_partial_fill_is_protected_for_the_filled_quantity_net_of_commission(okx):
    trader = okx.broker()
    before = okx.snapshot(trader)
    okx.server.book.liquidity.append(Decimal("0.4"))

    acks = trader.submit(okx.signal(1), before)

    assert statuses(acks) == [("entry", "accepted"), ("sl", "accepted"), ("tp", "accepted")]
    (entry,) = okx.server.orders()
    assert entry.state == "canceled" and 0 < entry.filled < entry.sz
    (standalone,) = okx.server.posts(ORDER_ALGO)  # OKX attaches only to an order filled completely
    assert standalone["ordType"] == "oco" and "placed after the fill" in acks[1].message
    (algo,) = okx.server.book.algos
    assert algo.sz == (entry.filled - entry.fee).quantize(LOT, rounding=ROUND_DOWN)
    position = okx.snapshot(trader).position
    assert position is not None and position.qty == float(algo.sz)
    assert (position.sl_price, position.tp_price) == (float(algo.sl), float(algo.tp))


def test_a_refused_amendment_closes_the_position_at_market_within_the_submit(okx):
    trader = okx.broker()
    before = okx.snapshot(trader)
    okx.server.book.shift_after_fill = Decimal("0.98")  # the price falls 2 % right after the entry fill

    acks = trader.submit(okx.signal(1, sl=0.005, tp=0.01), before)

    assert statuses(acks) == [
        ("entry", "accepted"),
        ("sl", "rejected"),
        ("tp", "rejected"),
        ("exit", "accepted"),
    ]
    assert "51280" in acks[1].message and "closed at market" in acks[3].message
    assert [a.state for a in okx.server.book.algos] == ["canceled"]
    sold = okx.server.orders()[-1]
    assert (sold.side, sold.state) == ("sell", "filled")
    assert okx.snapshot(trader).position is None


def test_an_attached_stop_that_would_trigger_at_once_is_refused_with_the_entry_and_nothing_is_held(okx):
    trader = okx.broker()
    before = okx.snapshot(trader)
    now_ms = int(okx.clock.now().timestamp() * 1000)
    okx.server.book.move_price("BTC-USDT", now_ms, Decimal("0.98"))  # a 2 % gap below the decision's close

    acks = trader.submit(okx.signal(1, sl=0.01, tp=0.02), before)  # the stop, at close - 1 %, is above it

    assert statuses(acks) == [("entry", "rejected")]
    assert "51047" in acks[0].message
    assert okx.server.orders() == [] and okx.server.book.algos == []


def test_protection_missing_after_a_partial_fill_and_refused_standalone_closes_the_position_at_market(okx):
    trader = okx.broker()
    before = okx.snapshot(trader)
    okx.server.book.liquidity.append(Decimal("0.4"))  # no attachment: the buy is not filled completely
    okx.server.book.shift_after_fill = Decimal("0.98")  # and the price falls through the stop

    acks = trader.submit(okx.signal(1, sl=0.005, tp=0.01), before)

    assert statuses(acks) == [
        ("entry", "accepted"),
        ("sl", "rejected"),
        ("tp", "rejected"),
        ("exit", "accepted"),
    ]
    assert "protection not placed" in acks[1].message and "51280" in acks[1].message
    assert len(okx.server.posts(ORDER_ALGO)) == 1 and okx.server.book.algos == []
    assert okx.snapshot(trader).position is None


def test_a_lost_reply_after_execution_gives_one_entry(okx):
    trader = okx.broker()
    before = okx.snapshot(trader)
    okx.server.book.lag_reads = 2  # the order is seen a few reads later
    okx.server.drop_reply_next(1, ORDER)  # executed, then the connection closed unanswered

    acks = trader.submit(okx.signal(1), before)

    assert statuses(acks) == [("entry", "accepted"), ("sl", "accepted"), ("tp", "accepted")]
    assert "found after an unknown outcome" in acks[0].message
    assert len(okx.server.posts(ORDER)) == 1 and len(okx.server.orders()) == 1
    assert len(okx.server.posts(AMEND_ALGOS)) == 1


def test_a_retried_cycle_finds_its_entry_and_sends_nothing_twice(okx):
    trader = okx.broker()
    before = okx.snapshot(trader)
    signal = okx.signal(1)
    trader.submit(signal, before)

    again = okx.broker().submit(signal, before)

    assert again[0].status == "duplicate"
    assert len(okx.server.posts(ORDER)) == 1 and len(okx.server.book.algos) == 1


def test_a_triggered_stop_reads_back_as_a_stop_loss_exit_and_leaves_the_bot_flat(okx):
    trader = okx.broker()
    before = okx.snapshot(trader)
    entry_acks = trader.submit(okx.signal(1, sl=0.0005, tp=0.05), before)
    assert statuses(entry_acks)[0] == ("entry", "accepted")

    for _ in range(60):
        okx.server.advance_bar()
        if okx.server.book.algos[0].state != "live":
            break
    after = okx.snapshot(trader)

    (algo,) = okx.server.book.algos
    assert (algo.state, algo.actual_side) == ("effective", "sl")
    assert after.position is None
    entry, exit_ = after.fills
    assert (exit_.reason, exit_.side, exit_.entry_client_id) == ("sl", -1, entry.client_id)
    assert exit_.client_id == entry_acks[1].client_id  # the stop's own client id
    assert exit_.pnl is not None and exit_.pnl < 0


def test_a_time_stop_cancels_the_protection_and_sells_only_the_bots_own_quantity(okx):
    trader = okx.broker()
    trader.submit(okx.signal(1, sl=0.05, tp=0.05, hold=1), okx.snapshot(trader))
    okx.server.book.balances["BTC"][0] += Decimal("0.00000500")  # foreign dust, below the minimum
    okx.server.advance_bar()
    okx.server.advance_bar()

    acks = okx.broker().submit(okx.signal(0, size=0.0), okx.snapshot(trader))

    assert statuses(acks) == [("exit", "accepted")]
    assert [a.state for a in okx.server.book.algos] == ["canceled"]
    entry, sold = okx.server.orders()
    assert sold.sz == (entry.filled - entry.fee).quantize(LOT, rounding=ROUND_DOWN)
    assert okx.server.book.balances["BTC"][0] >= Decimal("0.000005")


def test_the_venue_checks_keys_passphrases_signatures_timestamps_and_client_ids(okx):
    import ccxt

    from scalpbot.adapters.ccxt.common import rebased_api_urls

    from support.okx_server import KEY, PASSPHRASE, SECRET

    def client(**config):
        return ccxt.okx(
            {"apiKey": KEY, "secret": SECRET, "password": PASSPHRASE, **config}
            | {"urls": {"api": rebased_api_urls("okx", okx.server.url)}}
        )

    body = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "market", "sz": "0.001"}
    with pytest.raises(ccxt.AuthenticationError, match="50113"):
        client(secret="wrong").private_post_trade_order({**body, "clOrdId": "a1"})
    with pytest.raises(ccxt.AuthenticationError, match="50105"):
        client(password="wrong").private_post_trade_order({**body, "clOrdId": "a1"})
    okx.server.skew_ms = 60_000
    with pytest.raises(ccxt.InvalidNonce, match="50102"):
        client().private_post_trade_order({**body, "clOrdId": "a1"})
    okx.server.skew_ms = 0
    with pytest.raises(ccxt.BaseError, match="51000"):
        client().private_post_trade_order({**body, "clOrdId": "not-alphanumeric", "tgtCcy": "base_ccy"})
    assert okx.server.orders() == []


def test_a_cycle_retried_after_its_protection_fired_sells_nothing_more(okx):
    trader = okx.broker()
    before = okx.snapshot(trader)
    signal = okx.signal(1, sl=0.0005, tp=0.05)
    trader.submit(signal, before)
    for _ in range(60):
        okx.server.advance_bar()
        if okx.server.book.algos[0].state != "live":
            break
    orders = len(okx.server.orders())

    again = okx.broker().submit(signal, before)  # the same decision, replayed on its stale snapshot

    assert [(a.intent, a.status) for a in again] == [("entry", "duplicate")]
    assert len(okx.server.orders()) == orders and len(okx.server.posts(ORDER)) == 1


def test_a_lost_reply_never_found_is_not_sent_again(okx):
    trader = okx.broker()
    before = okx.snapshot(trader)
    okx.server.book.lag_reads = 50  # longer than the broker looks
    okx.server.lose_reply_next(1, ORDER)  # executed, answered 503 50001

    acks = trader.submit(okx.signal(1), before)

    assert statuses(acks) == [("entry", "rejected")]
    assert "not sent again" in acks[0].message
    assert len(okx.server.posts(ORDER)) == 1 and len(okx.server.orders()) == 1


def test_a_skewed_clock_is_measured_and_no_order_is_lost_or_doubled(monkeypatch):
    with running_okx(monkeypatch, skew_ms=45_000) as okx:  # beyond OKX's 30 s window
        trader = okx.broker()

        acks = trader.submit(okx.signal(1), okx.snapshot(trader))

        assert statuses(acks) == [("entry", "accepted"), ("sl", "accepted"), ("tp", "accepted")]
        assert len(okx.server.posts(ORDER)) == 1 and len(okx.server.orders()) == 1
        assert [r.path for r in okx.server.requests].count("/api/v5/public/time") >= 1


def test_an_idle_cycle_costs_three_reads_and_a_protected_one_four(okx):
    trader = okx.broker()
    okx.snapshot(trader)  # cold: markets, clock, currencies

    def reads_of_one_snapshot() -> list[str]:
        seen = len(okx.server.requests)
        okx.snapshot(trader)
        return [r.path.rsplit("/", 1)[-1] for r in okx.server.requests[seen:]]

    assert reads_of_one_snapshot() == ["balance", "orders-pending", "fills-history"]
    trader.submit(okx.signal(1), okx.snapshot(trader))
    okx.snapshot(trader)  # caches the entry's order
    assert reads_of_one_snapshot() == ["balance", "orders-pending", "fills-history", "orders-algo-pending"]


def test_a_50011_rate_limit_without_retry_after_is_waited_out_for_one_window(okx):
    trader = okx.broker()
    okx.snapshot(trader)
    balance = "/api/v5/account/balance"
    okx.server.limits[balance] = 1  # the window's one balance read is spent: the next one is refused

    snapshot = okx.snapshot(trader)

    assert snapshot.position is None and snapshot.equity == pytest.approx(10_000)
    assert okx.server.rate_limited == [balance]
    assert max(okx.sleeps) >= 2.0  # OKX sends no Retry-After: the broker waits for its next 2-s window


def test_a_rate_limited_entry_is_sent_again_only_after_the_refusal_and_fills_once(okx):
    trader = okx.broker()
    before = okx.snapshot(trader)
    okx.server.limits[ORDER] = 1  # the look-up before sending spends the window: the order itself is refused

    acks = trader.submit(okx.signal(1), before)

    assert statuses(acks) == [("entry", "accepted"), ("sl", "accepted"), ("tp", "accepted")]
    assert ORDER in okx.server.rate_limited
    buys = [o for o in okx.server.orders() if o.side == "buy"]
    assert (
        len(buys) == 1 and buys[0].state == "filled"
    )  # a 429 proves the order was not taken: sent once more
    assert len(okx.server.book.algos) == 1
