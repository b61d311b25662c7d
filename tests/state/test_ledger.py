"""The ledger on the memory and folder stores: idempotent appends, time order, payload rules, trades from fills."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalpbot.adapters.store import FolderStore, MemoryStore
from scalpbot.core.backtest.frame import backtest
from scalpbot.core.execution import Fill, FundingPayment, client_order_id
from scalpbot.core.strategies import sma_cross_signals
from scalpbot.errors import ConfigError, CorruptArtifactError, LedgerGap
from scalpbot.ports import Store
from scalpbot.state.ledger import (
    TRADE_COLUMNS,
    Ledger,
    LedgerConflict,
    LedgerError,
    event_id_for,
    fill_payload,
)

from support.backtest_oracle import load_sample_bars

T0 = pd.Timestamp("2024-03-01 10:00", tz="UTC")
MINUTE = pd.Timedelta(minutes=1)


@pytest.fixture(params=["memory", "folder"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Return each local kind of store, empty."""
    return MemoryStore() if request.param == "memory" else FolderStore(tmp_path / "store")


@pytest.fixture
def ledger(store: Store) -> Ledger:
    return Ledger(store, "bot-1")


class ListingStore(MemoryStore):
    """A memory store that remembers the prefixes it was asked to list."""

    def __init__(self) -> None:
        super().__init__()
        self.prefixes: list[str] = []

    def list(self, prefix: str = "") -> list[str]:
        self.prefixes.append(prefix)
        return super().list(prefix)


# --- appending --------------------------------------------------------------------------------------------------


def test_an_event_is_stored_under_its_day_with_a_time_sortable_name(ledger: Ledger, store: Store) -> None:
    event = ledger.append("decision", T0 + pd.Timedelta(microseconds=5), {"side": 1, "size": 0.5})

    assert event.event_id.startswith("decision-")
    assert event.key == f"state/bot-1/ledger/2024/03/01/20240301T100000000005Z-{event.event_id}.json"
    assert store.list() == [event.key]
    assert dict(event.payload) == {"side": 1, "size": 0.5}


def test_appending_the_same_event_twice_writes_one_object(ledger: Ledger, store: Store) -> None:
    first = ledger.append("order_sent", T0, {"client_id": "sbabc", "qty": 0.1})
    again = ledger.append("order_sent", T0, {"qty": 0.1, "client_id": "sbabc"})

    assert again == first
    assert store.list("state/bot-1/ledger/") == [first.key]


def test_the_same_identity_with_other_content_is_a_conflict_and_keeps_the_first(ledger: Ledger) -> None:
    first = ledger.append("decision", T0, {"side": 1, "size": 0.5})

    with pytest.raises(LedgerConflict, match=r"different content \(payload keys \['size'\] differ\)"):
        ledger.append("decision", T0, {"side": 1, "size": 0.4})

    assert ledger.events() == [first]


def test_orders_with_different_client_ids_at_one_time_are_separate_events(ledger: Ledger) -> None:
    entry = ledger.append("order_sent", T0, {"client_id": client_order_id("b", "BTC/USDT", T0, "entry")})
    stop = ledger.append("order_sent", T0, {"client_id": client_order_id("b", "BTC/USDT", T0, "sl")})

    assert entry.key != stop.key
    assert len(ledger.events()) == 2


def test_different_errors_at_one_time_are_separate_events_and_a_repeat_is_not(ledger: Ledger) -> None:
    ledger.append("error", T0, {"message": "timeout"})
    ledger.append("error", T0, {"message": "rate limited"})
    ledger.append("error", T0, {"message": "timeout"})

    assert sorted(e.payload["message"] for e in ledger.events()) == ["rate limited", "timeout"]


def test_an_explicit_event_id_must_start_with_the_kind(ledger: Ledger) -> None:
    event = ledger.append("halt", T0, {"reason": "manual"}, event_id=event_id_for("halt", T0, "operator"))
    assert event.event_id == event_id_for("halt", T0, "operator")

    with pytest.raises(LedgerError, match="must be 'halt-'"):
        ledger.append("halt", T0, {}, event_id="resume-abc")
    with pytest.raises(LedgerError, match="must be 'halt-'"):
        ledger.append("halt", T0, {}, event_id="halt-a/b")


def test_event_ids_are_deterministic() -> None:
    assert event_id_for("fill", T0, "sb1") == event_id_for("fill", T0.tz_convert("Europe/Paris"), "sb1")
    assert event_id_for("fill", T0, "sb1") != event_id_for("fill", T0, "sb2")
    assert event_id_for("fill", T0, "sb1") != event_id_for("fill", T0 + MINUTE, "sb1")


# --- payload rules ----------------------------------------------------------------------------------------------


def test_payload_times_and_numpy_values_become_json(ledger: Ledger) -> None:
    event = ledger.append(
        "decision",
        T0,
        {
            "bar": T0,
            "probs": np.array([0.2, 0.3, 0.5]).tolist(),
            "side": np.int8(1),
            "edge": np.float32(0.25),
        },
    )

    assert dict(event.payload) == {
        "bar": "2024-03-01T10:00:00.000000Z",
        "probs": [0.2, 0.3, 0.5],
        "side": 1,
        "edge": 0.25,
    }
    assert ledger.events() == [event]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"price": math.nan}, r"payload\['price'\] is nan"),
        ({"levels": [1.0, math.inf]}, r"payload\['levels'\]\[1\] is inf"),
        ({"at": pd.Timestamp("2024-03-01")}, "naive"),
        ({"obj": object()}, "not JSON"),
        ({1: "x"}, "keys must be strings"),
    ],
)
def test_payloads_that_are_not_json_are_refused(
    ledger: Ledger, payload: dict[object, object], message: str
) -> None:
    with pytest.raises(LedgerError, match=message):
        ledger.append("decision", T0, payload)  # type: ignore[arg-type]
    assert ledger.events() == []


@pytest.mark.parametrize("key", ["apiKey", "secret", "api_secret", "PASSWORD", "passphrase", "sessionToken"])
def test_credential_like_keys_are_refused_without_echoing_the_value(ledger: Ledger, key: str) -> None:
    with pytest.raises(LedgerError, match="looks like a credential") as caught:
        ledger.append("order_sent", T0, {"exchange": {key: "hunter2-very-secret"}})

    assert "hunter2" not in str(caught.value)
    assert ledger.events() == []


def test_a_naive_event_time_and_a_bad_kind_are_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="naive"):
        ledger.append("decision", pd.Timestamp("2024-03-01 10:00"), {})
    with pytest.raises(LedgerError, match="lowercase name"):
        ledger.append("Order-Sent", T0, {})
    with pytest.raises(LedgerError, match="nanoseconds"):
        ledger.append("decision", T0 + pd.Timedelta(nanoseconds=1), {})


def test_a_bad_bot_name_is_a_config_error(store: Store) -> None:
    with pytest.raises(ConfigError, match="bot name"):
        Ledger(store, "../other")


# --- reading ----------------------------------------------------------------------------------------------------


def test_events_come_back_in_time_order_across_days_and_months(ledger: Ledger) -> None:
    times = [
        pd.Timestamp("2024-03-01 00:00:00.000001", tz="UTC"),
        pd.Timestamp("2024-02-29 23:59:59.999999", tz="UTC"),
        pd.Timestamp("2024-03-02 12:00", tz="UTC"),
        pd.Timestamp("2024-01-31 08:00", tz="UTC"),
        pd.Timestamp("2024-03-01 00:00", tz="UTC"),
    ]
    for i, time in enumerate(times):
        ledger.append("decision", time, {"i": i})

    assert [e.time for e in ledger.events()] == sorted(times)
    assert [e.payload["i"] for e in ledger.events()] == [3, 1, 4, 0, 2]


def test_events_between_bounds_include_since_and_exclude_until(ledger: Ledger) -> None:
    for k in range(5):
        ledger.append("decision", T0 + k * MINUTE, {"k": k})
        ledger.append("denial", T0 + k * MINUTE, {"code": "cooldown"})

    window = ledger.events(T0 + MINUTE, T0 + 3 * MINUTE, kinds=["decision"])
    assert [e.payload["k"] for e in window] == [1, 2]
    assert [e.kind for e in ledger.events(since=T0 + 4 * MINUTE)] == ["decision", "denial"]
    assert len(ledger.events(until=T0 + MINUTE)) == 2
    assert ledger.events(T0 + MINUTE, T0 + MINUTE) == []
    assert [e.kind for e in ledger.events(kinds="denial")] == ["denial"] * 5


def test_a_bounded_read_lists_only_the_days_in_range() -> None:
    store = ListingStore()
    ledger = Ledger(store, "b")
    for day in range(10):
        ledger.append("decision", T0 + pd.Timedelta(days=day), {"day": day})

    window = ledger.events(T0 + pd.Timedelta(days=2), T0 + pd.Timedelta(days=4, hours=-10))

    assert [e.payload["day"] for e in window] == [2, 3]
    assert store.prefixes == [f"state/b/ledger/2024/03/0{d}/" for d in (3, 4)]  # until 03-05 00:00 excluded


def test_a_long_bounded_read_lists_whole_months() -> None:
    store = ListingStore()
    ledger = Ledger(store, "b")
    ledger.append("decision", pd.Timestamp("2024-04-15", tz="UTC"), {})

    assert len(ledger.events(pd.Timestamp("2024-01-20", tz="UTC"), pd.Timestamp("2024-05-01", tz="UTC"))) == 1
    assert store.prefixes == [f"state/b/ledger/2024/0{m}/" for m in (1, 2, 3, 4)]


def test_a_corrupt_event_is_reported_with_its_key(ledger: Ledger, store: Store) -> None:
    event = ledger.append("decision", T0, {"side": 1})
    store.put(event.key, b"{not json")

    with pytest.raises(CorruptArtifactError, match=event.key):
        ledger.events()


# --- trades from fills ------------------------------------------------------------------------------------------


def fill(
    client_id: str, time: pd.Timestamp, side: int, qty: float, price: float, fee: float, reason: str
) -> Fill:
    return Fill(client_id=client_id, time=time, side=side, qty=qty, price=price, fee=fee, reason=reason)


def record_hand_trades(ledger: Ledger) -> None:
    """Record a long TP win, a short SL loss across midnight, a long closed in two parts, and an open long."""
    day2 = pd.Timestamp("2024-03-02", tz="UTC")
    fills = [
        (fill("e1", T0 + MINUTE, 1, 0.1, 50_000.0, 2.0, "entry"), "e1"),
        (fill("t1", T0 + 5 * MINUTE, -1, 0.1, 50_300.0, 2.012, "tp"), "e1"),
        (fill("e2", day2 - MINUTE, -1, 0.2, 50_500.0, 4.04, "entry"), "e2"),
        (fill("s2", day2 + 3 * MINUTE, 1, 0.2, 50_600.0, 4.048, "sl"), "e2"),
        (fill("e3", day2 + 10 * MINUTE, 1, 0.4, 50_000.0, 8.0, "entry"), "e3"),
        (fill("x3a", day2 + 12 * MINUTE, -1, 0.1, 50_100.0, 2.004, "signal"), "e3"),
        (fill("x3b", day2 + 13 * MINUTE, -1, 0.3, 50_200.0, 6.024, "kill"), "e3"),
        (fill("e4", day2 + 60 * MINUTE, 1, 0.05, 50_000.0, 1.0, "entry"), "e4"),
    ]
    for f, entry_id in reversed(fills):  # the ledger orders by time, not by write order
        ledger.record_fill(f, entry_client_id=entry_id, symbol="BTC/USDT")


def test_trades_rebuilt_from_fills_match_the_hand_computed_set(ledger: Ledger) -> None:
    record_hand_trades(ledger)
    day2 = pd.Timestamp("2024-03-02", tz="UTC")
    mark_time = day2 + 120 * MINUTE

    trades = ledger.trades(T0, day2 + pd.Timedelta(days=1), mark_price=50_100.0, mark_time=mark_time)

    expected = pd.DataFrame(
        {
            "entry_time": pd.DatetimeIndex(
                [T0 + MINUTE, day2 - MINUTE, day2 + 10 * MINUTE, day2 + 60 * MINUTE],
                dtype="datetime64[us, UTC]",
            ),
            "exit_time": pd.DatetimeIndex(
                [T0 + 5 * MINUTE, day2 + 3 * MINUTE, day2 + 13 * MINUTE, mark_time],
                dtype="datetime64[us, UTC]",
            ),
            "side": np.array([1, -1, 1, 1], dtype=np.int8),
            "entry_price": [50_000.0, 50_500.0, 50_000.0, 50_000.0],
            "exit_price": [50_300.0, 50_600.0, 50_175.0, 50_100.0],
            "qty": [0.1, 0.2, 0.4, 0.05],
            # 0.1*300 - 4.012; -0.2*100 - 8.088; 0.4*175 - 16.028; 0.05*100 - 1.0 (entry fee only while open)
            "pnl": [25.988, -28.088, 53.972, 4.0],
            "fees": [4.012, 8.088, 16.028, 1.0],
            "exit_reason": ["tp", "sl", "kill", "open"],
            "funding": [0.0, 0.0, 0.0, 0.0],
        }
    )
    assert list(trades.columns) == list(TRADE_COLUMNS)
    pd.testing.assert_frame_equal(trades.astype({"exit_reason": str}), expected, rtol=1e-12)
    assert trades["exit_reason"].dtype == "category"


def test_funding_settlements_are_recorded_once_each_and_taken_from_their_trades_pnl(ledger: Ledger) -> None:
    record_hand_trades(ledger)
    entry = "e2"  # the short across midnight
    day2 = pd.Timestamp("2024-03-02", tz="UTC")
    paid = FundingPayment(day2, -1, 0.2, 50_550.0, 0.0001, -0.2 * 50_550.0 * 0.0001, entry)
    first = ledger.record_funding(paid)
    again = ledger.record_funding(paid)

    trades = ledger.trades(T0, day2 + pd.Timedelta(days=1))

    assert again == first and len(ledger.events(kinds=("funding",))) == 1
    assert first.payload["amount"] == pytest.approx(-1.011) and first.time == day2
    short = trades[trades["side"] == -1].iloc[0]
    assert short["funding"] == pytest.approx(-1.011)
    assert short["pnl"] == pytest.approx(-28.088 + 1.011)  # a short receives a positive rate
    assert (trades[trades["side"] == 1]["funding"] == 0.0).all()


def test_without_a_mark_open_trades_are_left_out(ledger: Ledger) -> None:
    record_hand_trades(ledger)

    trades = ledger.trades()

    assert list(trades["exit_reason"].astype(str)) == ["tp", "sl", "kill"]


def test_an_exit_whose_entry_is_before_the_range_is_ignored(ledger: Ledger) -> None:
    record_hand_trades(ledger)

    trades = ledger.trades(T0 + 2 * MINUTE, pd.Timestamp("2024-03-02 00:30", tz="UTC"))

    assert list(trades["exit_reason"].astype(str)) == ["sl", "kill"]


def test_no_fills_give_an_empty_frame_with_the_trade_columns_and_dtypes(ledger: Ledger) -> None:
    trades = ledger.trades(T0, T0 + MINUTE)

    assert trades.empty
    assert list(trades.columns) == list(TRADE_COLUMNS)
    assert str(trades["entry_time"].dtype) == "datetime64[us, UTC]" and trades["side"].dtype == np.int8


def test_a_mark_needs_both_price_and_time(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="together"):
        ledger.trades(mark_price=50_000.0)
    with pytest.raises(LedgerError, match="finite price"):
        ledger.trades(mark_price=math.nan, mark_time=T0)


def test_trades_rebuilt_from_a_backtests_fills_equal_the_backtests_trades() -> None:
    bars = load_sample_bars().iloc[:3_000]
    fee = 0.0004
    result = backtest(
        bars, sma_cross_signals(bars, length=30, sl=0.003, tp=0.004, size=0.9, max_hold=60), fee=fee
    )
    ledger = Ledger(MemoryStore(), "parity")
    for i, trade in enumerate(result.trades.to_dict("records")):
        entry_id, side, qty = f"entry{i}", int(trade["side"]), float(trade["qty"])
        entry_price, exit_price = float(trade["entry_price"]), float(trade["exit_price"])
        ledger.record_fill(
            fill(entry_id, trade["entry_time"], side, qty, entry_price, qty * entry_price * fee, "entry"),
            entry_client_id=entry_id,
        )
        if trade["exit_reason"] != "open":
            exit_fill = fill(
                f"exit{i}",
                trade["exit_time"],
                -side,
                qty,
                exit_price,
                qty * exit_price * fee,
                trade["exit_reason"],
            )
            ledger.record_fill(exit_fill, entry_client_id=entry_id)
    assert len(result.trades) > 10

    rebuilt = ledger.trades(mark_price=float(bars["close"].iloc[-1]), mark_time=bars.index[-1])

    assert list(rebuilt.columns) == list(result.trades.columns)
    assert rebuilt.dtypes.astype(str).to_dict() == result.trades.dtypes.astype(str).to_dict()
    pd.testing.assert_frame_equal(
        rebuilt.astype({"exit_reason": str}), result.trades.astype({"exit_reason": str}), rtol=1e-9
    )


def test_fill_payload_names_the_entry_it_belongs_to() -> None:
    payload = fill_payload(
        fill("sbx", T0, -1, 0.1, 50_000.0, 2.0, "tp"), entry_client_id="sbe", symbol="BTC/USDT"
    )

    assert payload == {
        "symbol": "BTC/USDT",
        "client_id": "sbx",
        "entry_client_id": "sbe",
        "side": -1,
        "qty": 0.1,
        "price": 50_000.0,
        "fee": 2.0,
        "reason": "tp",
        "pnl": None,
    }


def test_a_window_after_the_last_fill_has_no_trades_and_no_gap_but_a_lost_first_fill_is_one(
    ledger: Ledger,
) -> None:
    entry = fill("e1", T0 + MINUTE, 1, 0.1, 50_000.0, 2.0, "entry")
    exit_ = fill("t1", T0 + 5 * MINUTE, -1, 0.1, 50_300.0, 2.012, "tp")
    for seq, f in enumerate((entry, exit_), start=1):
        ledger.record_fill(f, entry_client_id="e1", symbol="BTC/USDT", seq=seq)

    later = ledger.trades(T0 + pd.Timedelta(hours=1), fill_count=2)  # nothing traded since: not a gap

    assert later.empty
    assert len(ledger.trades(fill_count=2)) == 1
    with pytest.raises(LedgerGap, match="missing fill #3"):
        ledger.trades(fill_count=3)
