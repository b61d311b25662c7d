"""The paper broker: fills with the backtest kernel itself, so paper trading is the backtest, bar by bar.

State (``state/{bot}/paper.json``, compare-and-swap) is a *segment*: the equity when the account was last
flat (``cash``), the first bar after that (``anchor``) and every signal decided since. Each snapshot runs
:func:`scalpbot.core.backtest.nb.simulate_nb` over the segment's bars with those signals - the exact rules
of a backtest: an entry decided on bar ``t`` fills at the open of ``t + 1`` once that bar is known, stops
are checked from the entry bar on, SL first, gaps at the open, time and signal exits at the next open.
When the account is flat again with nothing pending, the segment closes: ``cash`` becomes its equity and
the next one starts, so the work per bar stays bounded by the length of one position.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scalpbot.core.backtest.enums import ExitReasonT, OrderRules
from scalpbot.core.backtest.nb import simulate_nb
from scalpbot.core.execution import BrokerSnapshot, Fill, OrderAck, Position, Signal, client_order_id
from scalpbot.core.timeframes import timeframe_delta
from scalpbot.errors import CorruptArtifactError, ObjectNotFound
from scalpbot.ports import Store

BarSource = Callable[[pd.Timestamp | None, pd.Timestamp], pd.DataFrame]
"""``(start, last)`` -> closed bars with open time in ``[start, last]`` (``start`` None: as far back as needed)."""

_REASONS = ExitReasonT._fields
_RECENT_FILLS = 200


@dataclass(frozen=True, slots=True)
class _Segment:
    anchor: pd.Timestamp | None
    cash: float
    signals: tuple[Signal, ...]
    recent_fills: tuple[Fill, ...]
    etag: str | None


class PaperBroker:
    """A broker that simulates fills on stored bars with the one fill model and the venue's order rules.

    ``fee`` is the venue's taker fee (every simulated fill is a market fill), ``rules`` its amount step,
    minimums and whether it can short (see :meth:`scalpbot.core.venue.Venue.order_rules`).
    """

    name = "paper"

    def __init__(
        self,
        store: Store,
        *,
        bot: str,
        symbol: str,
        timeframe: str,
        bars: BarSource,
        fee: float,
        slippage: float,
        initial_equity: float,
        rules: OrderRules,
    ) -> None:
        self._store = store
        self._bot = bot
        self._symbol = symbol
        self._step = timeframe_delta(timeframe)
        self._bars = bars
        self._fee = fee
        self._slippage = slippage
        self._initial_equity = initial_equity
        self._rules = rules
        self._key = f"state/{bot}/paper.json"

    def snapshot(self, bars: pd.DataFrame, since: pd.Timestamp | None) -> BrokerSnapshot:
        """Simulate the open segment up to the last bar of ``bars``; close the segment when flat and idle."""
        last = pd.Timestamp(bars.index[-1])
        segment = self._load()
        snapshot, closed = self._simulate(segment, last)
        if closed is not None:
            self._save(closed, segment.etag)
        fills = tuple(f for f in snapshot.fills if since is None or f.time >= since)
        return BrokerSnapshot(snapshot.as_of, snapshot.equity, snapshot.position, fills, snapshot.open_orders)

    def submit(self, signal: Signal, snapshot: BrokerSnapshot) -> list[OrderAck]:
        """Queue the signal for the next open (idempotent per decision bar).

        Every non-zero signal is queued, even one in the direction of the open position: the kernel ignores it,
        except when a time stop closes the position at that same open, where it re-enters - as in a backtest.
        """
        if signal.side == 0:
            return []
        segment = self._load()
        client_id = client_order_id(self._bot, self._symbol, signal.decided_at, "entry")
        if any(s.decided_at == signal.decided_at for s in segment.signals):
            return [OrderAck(client_id, "entry", "duplicate", "already queued for the next open")]
        anchor = segment.anchor if segment.anchor is not None else signal.decided_at
        updated = _Segment(
            anchor, segment.cash, (*segment.signals, signal), segment.recent_fills, segment.etag
        )
        self._save(updated, segment.etag)
        return [OrderAck(client_id, "entry", "accepted", "fills at the next open", venue_id=client_id)]

    def flatten(self, decided_at: pd.Timestamp, snapshot: BrokerSnapshot) -> list[OrderAck]:
        """Close the open position at the next open (an opposite signal of size 0 only closes)."""
        if snapshot.position is None:
            return []
        close = Signal(decided_at, -snapshot.position.side, 0.0, np.inf, np.inf, 0)
        segment = self._load()
        if any(s.decided_at == decided_at for s in segment.signals):
            kept = tuple(s for s in segment.signals if s.decided_at != decided_at)
            segment = _Segment(segment.anchor, segment.cash, kept, segment.recent_fills, segment.etag)
        updated = _Segment(
            segment.anchor, segment.cash, (*segment.signals, close), segment.recent_fills, segment.etag
        )
        self._save(updated, segment.etag)
        client_id = client_order_id(self._bot, self._symbol, decided_at, "kill")
        return [OrderAck(client_id, "kill", "accepted", "closes at the next open", venue_id=client_id)]

    def _simulate(self, segment: _Segment, last: pd.Timestamp) -> tuple[BrokerSnapshot, _Segment | None]:
        if segment.anchor is None or not segment.signals:
            flat = BrokerSnapshot(last, segment.cash, None, segment.recent_fills, ())
            return flat, None
        bars = self._bars(segment.anchor, last)
        index = pd.DatetimeIndex(bars.index)
        n = len(bars)
        side = np.zeros(n, dtype=np.int8)
        size = np.zeros(n)
        sl = np.full(n, np.inf)
        tp = np.full(n, np.inf)
        max_hold = np.zeros(n, dtype=np.int64)
        positions = index.get_indexer(pd.DatetimeIndex([s.decided_at for s in segment.signals]))
        for k, signal in zip(positions, segment.signals, strict=True):
            if k < 0:
                raise CorruptArtifactError(
                    f"paper state of {self._bot}: no stored bar at {signal.decided_at}"
                )
            side[k], size[k], sl[k], tp[k], max_hold[k] = (
                signal.side,
                signal.size,
                signal.sl,
                signal.tp,
                signal.max_hold,
            )
        o, h, lo, c = (
            np.ascontiguousarray(bars[k].to_numpy(dtype=np.float64)) for k in ("open", "high", "low", "close")
        )
        records, equity, _ = simulate_nb(
            o,
            h,
            lo,
            c,
            side,
            size,
            sl,
            tp,
            max_hold,
            self._fee,
            self._slippage,
            segment.cash,
            False,
            self._rules,
        )
        fills, position = self._fills(records, index, positions, segment.signals)
        all_fills = _merge_fills(segment.recent_fills, fills)
        pending = bool(side[-1] != 0)
        snapshot = BrokerSnapshot(
            last, float(equity[-1]), position, all_fills, ("pending",) if pending else ()
        )
        if position is None and not pending:
            closed = _Segment(None, float(equity[-1]), (), all_fills[-_RECENT_FILLS:], segment.etag)
            return snapshot, closed
        return snapshot, None

    def _fills(
        self, records: np.ndarray, index: pd.DatetimeIndex, positions: np.ndarray, signals: tuple[Signal, ...]
    ) -> tuple[list[Fill], Position | None]:
        decided = dict(zip(positions.tolist(), signals, strict=True))
        fills: list[Fill] = []
        position: Position | None = None
        for rec in records:
            entry_idx, exit_idx = int(rec["entry_idx"]), int(rec["exit_idx"])
            signal = decided[entry_idx - 1]
            entry_id = client_order_id(self._bot, self._symbol, signal.decided_at, "entry")
            qty, entry_price, side = float(rec["qty"]), float(rec["entry_price"]), int(rec["side"])
            reason = _REASONS[int(rec["exit_reason"])]
            exit_price, fees = float(rec["exit_price"]), float(rec["fees"])
            # the record's fees are both sides' (the entry's alone while open); the exit pays the fee on its notional
            exit_fee = 0.0 if reason == "open" else qty * exit_price * self._fee
            entry_fee = fees - exit_fee
            fills.append(
                Fill(entry_id, index[entry_idx], side, qty, entry_price, entry_fee, "entry", None, entry_id)
            )
            if reason == "open":
                position = Position(
                    side,
                    qty,
                    entry_price,
                    index[entry_idx],
                    entry_price * (1 - side * signal.sl),
                    entry_price * (1 + side * signal.tp),
                    signal.max_hold,
                    entry_id,
                )
                continue
            exit_id = client_order_id(self._bot, self._symbol, signal.decided_at, reason)
            pnl = float(rec["pnl"])
            fills.append(
                Fill(exit_id, index[exit_idx], -side, qty, exit_price, exit_fee, reason, pnl, entry_id)
            )
        return fills, position

    def _load(self) -> _Segment:
        try:
            stored = self._store.get(self._key)
        except ObjectNotFound:
            return _Segment(None, self._initial_equity, (), (), None)
        try:
            body = json.loads(stored.data)
            return _Segment(
                None if body["anchor"] is None else pd.Timestamp(body["anchor"]),
                float(body["cash"]),
                tuple(_signal_from(s) for s in body["signals"]),
                tuple(_fill_from(f) for f in body["recent_fills"]),
                stored.etag,
            )
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptArtifactError(
                f"{self._key} cannot be read ({e}); restore it or start a new bot"
            ) from None

    def _save(self, segment: _Segment, etag: str | None) -> None:
        body = {
            "anchor": None if segment.anchor is None else segment.anchor.isoformat(),
            "cash": segment.cash,
            "signals": [_signal_to(s) for s in segment.signals],
            "recent_fills": [_fill_to(f) for f in segment.recent_fills],
        }
        data = json.dumps(body, sort_keys=True, allow_nan=True).encode()
        if etag is None:
            self._store.put_if_absent(self._key, data)
        else:
            self._store.put_if_match(self._key, data, etag)


def _merge_fills(recent: tuple[Fill, ...], new: list[Fill]) -> tuple[Fill, ...]:
    known = {(f.client_id, f.reason) for f in recent}
    return (*recent, *(f for f in new if (f.client_id, f.reason) not in known))


def _signal_to(signal: Signal) -> dict[str, Any]:
    return {
        "decided_at": signal.decided_at.isoformat(),
        "side": signal.side,
        "size": signal.size,
        "sl": signal.sl,
        "tp": signal.tp,
        "max_hold": signal.max_hold,
    }


def _signal_from(body: dict[str, Any]) -> Signal:
    return Signal(
        pd.Timestamp(body["decided_at"]),
        int(body["side"]),
        float(body["size"]),
        float(body["sl"]),
        float(body["tp"]),
        int(body["max_hold"]),
    )


def _fill_to(fill: Fill) -> dict[str, Any]:
    return {
        "client_id": fill.client_id,
        "time": fill.time.isoformat(),
        "side": fill.side,
        "qty": fill.qty,
        "price": fill.price,
        "fee": fill.fee,
        "reason": fill.reason,
        "pnl": fill.pnl,
        "entry_client_id": fill.entry_client_id,
    }


def _fill_from(body: dict[str, Any]) -> Fill:
    return Fill(
        str(body["client_id"]),
        pd.Timestamp(body["time"]),
        int(body["side"]),
        float(body["qty"]),
        float(body["price"]),
        float(body["fee"]),
        str(body["reason"]),
        None if body.get("pnl") is None else float(body["pnl"]),
        body.get("entry_client_id"),
    )
