"""The spot broker reads the venue's trades in the venue's execution order, whatever the width of their ids.

Binance and OKX number their trades with decimal integers, which ccxt hands over as text. A time stop's sale and
the re-entry at the same open fill in the same millisecond: the sale (trade ``9``) closes the old position before
the buy (trade ``10``) opens the new one, and the sale's fill must name the old entry. Read as text, ``"10"`` sorts
before ``"9"`` and the sale would be booked against the new entry.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from scalpbot.adapters.ccxt._fills import IdDecoder, execution_order, executions, fills, holdings

BOT, SYMBOL = "bot", "BTC/USDT"
FIRST = pd.Timestamp("2024-12-28T00:00:00Z")
MINUTE_MS = 60_000


def _order(order_id: str, client_id: str, created_ms: int) -> dict[str, Any]:
    return {"id": order_id, "clientOrderId": client_id, "timestamp": created_ms}


def _trade(trade_id: str, order_id: str, side: str, amount: float, price: float, ms: int) -> dict[str, Any]:
    fee = {"cost": amount * price * 0.001, "currency": "USDT"}
    return {"id": trade_id, "order": order_id, "side": side, "amount": amount, "price": price, "timestamp": ms,
            "fee": fee}  # fmt: skip


@pytest.mark.parametrize(("sale_id", "buy_id"), [("9", "10"), ("99", "100"), ("3999999999", "4000000000")])
def test_a_time_stop_and_the_re_entry_in_one_millisecond_close_the_old_trade_first(
    sale_id: str, buy_id: str
) -> None:
    decoder = IdDecoder(BOT, SYMBOL, 60)
    first_entry = decoder.client_id(FIRST, "entry")
    time_stop = decoder.client_id(FIRST + pd.Timedelta(minutes=12), "time")
    re_entry = decoder.client_id(FIRST + pd.Timedelta(minutes=12), "entry")
    entry_ms = int(FIRST.timestamp() * 1000) + MINUTE_MS
    open_ms = entry_ms + 12 * MINUTE_MS  # the open where the time stop sells and the re-entry buys
    orders = {
        "1": _order("1", first_entry, entry_ms + 5),
        "2": _order("2", time_stop, open_ms + 5),
        "3": _order("3", re_entry, open_ms + 6),
    }
    trades = [  # as a venue lists them: newest first, the two of one millisecond in id order
        _trade(buy_id, "3", "buy", 0.02, 94390.93, open_ms + 7),
        _trade(sale_id, "2", "sell", 0.01, 94390.93, open_ms + 7),
        _trade(str(int(sale_id) - 1), "1", "buy", 0.01, 94306.0, entry_ms + 5),
    ]

    done = executions(trades, orders, decoder, base="BTC", quote="USDT", fee_rate=0.001)

    assert [e.client_id for e in done] == [first_entry, time_stop, re_entry]
    assert holdings(done).position == pytest.approx(0.02)
    booked = fills(
        done, lambda sale: done[0] if sale.client_id == time_stop else None, pd.Timedelta(minutes=1)
    )
    assert [(f.reason, f.entry_client_id) for f in booked] == [
        ("entry", first_entry),
        ("time", first_entry),
        ("entry", re_entry),
    ]


def test_ids_that_are_not_numbers_keep_their_text_order_after_the_numbered_ones() -> None:
    at = {"timestamp": 1_700_000_000_000}
    keys = sorted(
        [{**at, "id": "b"}, {**at, "id": "10"}, {**at, "id": "a"}, {**at, "id": "9"}], key=execution_order
    )
    assert [k["id"] for k in keys] == ["9", "10", "a", "b"]
    assert execution_order({"timestamp": 1, "id": "100"}) < execution_order({"timestamp": 2, "id": "1"})
