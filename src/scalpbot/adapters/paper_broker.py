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

import numpy as np
import pandas as pd

from scalpbot.core.backtest.enums import NO_FUNDING, ExitReasonT, OrderRules, SimulationStatus
from scalpbot.core.backtest.nb import simulate_nb
from scalpbot.core.execution import (
    BrokerSnapshot,
    Fill,
    FundingPayment,
    OrderAck,
    Position,
    Signal,
    client_order_id,
)
from scalpbot.core.funding import funding_at_bars, funding_payments
from scalpbot.core.lots import round_to_tick_nb
from scalpbot.core.timeframes import timeframe_delta
from scalpbot.errors import CorruptArtifactError, DataError, ObjectNotFound
from scalpbot.ports import Store
from scalpbot.state.codec import fill_from_dict, fill_to_dict, signal_from_dict, signal_to_dict
from scalpbot.state.scope import state_key

BarSource = Callable[[pd.Timestamp | None, pd.Timestamp], pd.DataFrame]
"""``(start, last)`` -> closed bars with open time in ``[start, last]`` (``start`` None: as far back as needed)."""
FundingSource = Callable[[pd.Timestamp, pd.Timestamp], pd.Series]
"""``(start, last)`` -> funding rates by funding time in ``[start, last]`` (a perpetual swap's stored series)."""

_REASONS = ExitReasonT._fields
_RECENT_FILLS = 200


@dataclass(frozen=True, slots=True)
class _Segment:
    anchor: pd.Timestamp | None
    cash: float
    signals: tuple[Signal, ...]
    recent_fills: tuple[Fill, ...]
    etag: str | None
    dust: float = 0.0
    """Base units under one step left by buys whose commission was taken in base, carried to the next buy."""


class PaperBroker:
    """A broker that simulates fills on stored bars with the one fill model and the venue's order rules.

    ``fee`` is the venue's taker fee (every simulated fill is a market fill), ``rules`` its amount step,
    minimums and whether it can short (see :meth:`scalpbot.core.venue.Venue.order_rules`). ``funding`` (swaps)
    gives the funding rates charged on open positions at their funding times, reported in each snapshot.
    ``scoped``: the account is the symbol's own (``state/{bot}/symbols/{symbol}/paper.json``), in a bot of
    several symbols; otherwise the bot's (``state/{bot}/paper.json``).
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
        funding: FundingSource | None = None,
        scoped: bool = False,
    ) -> None:
        self._store = store
        self._funding = funding
        self._bot = bot
        self._symbol = symbol
        self._step = timeframe_delta(timeframe)
        self._bars = bars
        self._fee = fee
        self._slippage = slippage
        self._initial_equity = initial_equity
        self._rules = rules
        self._key = state_key(bot, "paper.json", symbol if scoped else None)

    def snapshot(self, bars: pd.DataFrame, since: pd.Timestamp | None) -> BrokerSnapshot:
        """Simulate the open segment up to the last bar of ``bars``; close the segment when flat and idle."""
        last = pd.Timestamp(bars.index[-1])
        segment = self._load()
        snapshot, closed = self._simulate(segment, last)
        if closed is not None:
            self._save(closed, segment.etag)
        fills = tuple(f for f in snapshot.fills if since is None or f.time >= since)
        return BrokerSnapshot(
            snapshot.as_of, snapshot.equity, snapshot.position, fills, snapshot.open_orders, snapshot.funding
        )

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
            anchor, segment.cash, (*segment.signals, signal), segment.recent_fills, segment.etag, segment.dust
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
            segment = _Segment(
                segment.anchor, segment.cash, kept, segment.recent_fills, segment.etag, segment.dust
            )
        updated = _Segment(
            segment.anchor,
            segment.cash,
            (*segment.signals, close),
            segment.recent_fills,
            segment.etag,
            segment.dust,
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
        dust = np.array([segment.dust])
        rates = NO_FUNDING if self._funding is None else funding_at_bars(self._funding(index[0], last), index)
        records, equity, _, status = simulate_nb(
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
            rates,
            dust,
        )
        if status == SimulationStatus.invalid_input:
            raise DataError(
                f"paper broker: a bar or signal in {index[0]} .. {last} is invalid (NaN or inconsistent prices, or "
                "an out-of-range signal); check the stored bars with `scalpbot fetch` and rerun"
            )
        fills, position = self._fills(records, index, positions, segment.signals)
        funding = self._funding_paid(records, index, positions, segment.signals, rates, o)
        all_fills = _merge_fills(segment.recent_fills, fills)
        pending = bool(side[-1] != 0)
        snapshot = BrokerSnapshot(
            last, float(equity[-1]), position, all_fills, ("pending",) if pending else (), funding
        )
        if position is None and not pending:
            closed = _Segment(
                None, float(equity[-1]), (), all_fills[-_RECENT_FILLS:], segment.etag, float(dust[0])
            )
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
                    round_to_tick_nb(entry_price * (1 - side * signal.sl), self._rules.price_tick),
                    round_to_tick_nb(entry_price * (1 + side * signal.tp), self._rules.price_tick),
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

    def _funding_paid(
        self,
        records: np.ndarray,
        index: pd.DatetimeIndex,
        positions: np.ndarray,
        signals: tuple[Signal, ...],
        rates: np.ndarray,
        open_: np.ndarray,
    ) -> tuple[FundingPayment, ...]:
        decided = dict(zip(positions.tolist(), signals, strict=True))
        paid: list[FundingPayment] = []
        for rec in records:
            entry_idx = int(rec["entry_idx"])
            entry_id = client_order_id(self._bot, self._symbol, decided[entry_idx - 1].decided_at, "entry")
            paid += funding_payments(
                rates,
                open_,
                index,
                entry_idx,
                int(rec["exit_idx"]),
                int(rec["side"]),
                float(rec["qty"]),
                entry_id,
                self._rules.funding_step,
            )
        return tuple(paid)

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
                tuple(signal_from_dict(s) for s in body["signals"]),
                tuple(fill_from_dict(f) for f in body["recent_fills"]),
                stored.etag,
                float(body.get("dust", 0.0)),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptArtifactError(
                f"{self._key} cannot be read ({e}); restore it or start a new bot"
            ) from None

    def _save(self, segment: _Segment, etag: str | None) -> None:
        body = {
            "anchor": None if segment.anchor is None else segment.anchor.isoformat(),
            "cash": segment.cash,
            "signals": [signal_to_dict(s) for s in segment.signals],
            "recent_fills": [fill_to_dict(f) for f in segment.recent_fills],
            "dust": segment.dust,
        }
        data = json.dumps(body, sort_keys=True, allow_nan=True).encode()
        if etag is None:
            self._store.put_if_absent(self._key, data)
        else:
            self._store.put_if_match(self._key, data, etag)


def _merge_fills(recent: tuple[Fill, ...], new: list[Fill]) -> tuple[Fill, ...]:
    known = {(f.client_id, f.reason) for f in recent}
    return (*recent, *(f for f in new if (f.client_id, f.reason) not in known))
