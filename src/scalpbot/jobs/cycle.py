"""The execute job: on each closed bar, reconcile, check risk, decide with the current release, place orders.

One cycle for the bar ``t`` that just closed, in this order:

1. Skip if the portfolio snapshot says ``t`` was already processed (a retried or concurrent run).
2. Reconcile with the broker. If it cannot be queried the cycle places nothing and reports why (fail
   closed); the use case (``scalpbot.jobs.trading``) records the fault and notifies it.
3. Record the fills reported since the last cycle (idempotent: each fill's event id comes from its client id)
   and the funding settlements of a swap position since the last bar (one `funding` event per trade and time).
4. Update the risk state with the equity and the trades just closed; the kill switch flattens and blocks.
   Settle the bot's portfolio risk budget (``scalpbot.state.risk_budget``, shared by all its symbols): book
   the realized PnL of the exits, give back the reservation of a symbol found flat; the bot's kill switch
   there flattens and blocks this symbol too.
5. Features on the trailing window -> ONNX model -> policy -> a ``Signal`` for the next open.
6. Risk checks on an entry, then its reservation in the portfolio budget (gross exposure, per-symbol cap,
   open positions across the bot): a denial by either is recorded, not raised (a denied reversal still
   closes the position). A same-direction signal while the position's time stop closes it at the next open
   is an entry too (the broker re-enters at that open). An entry the venue refuses gives its reservation back.
7. Submit to the broker with deterministic client ids; record what was sent and what the venue answered. With
   a position open the broker is called on every cycle, whatever the model decides (a zero-side signal when it
   wants nothing), so the time stop and the broker's protection check run on every bar; refused protection is
   recorded as an ``error`` event and notified.
8. Save the portfolio snapshot by compare-and-swap.

A run lease around the cycle keeps two runs from overlapping; the snapshot check makes a repeated cycle a no-op.

**Retries converge.** Every write of a cycle is idempotent: events have deterministic ids and contents (an
order the venue already holds is recorded as accepted, as it was the first time; fills carry a sequence
number counted from the snapshot), the broker de-duplicates by client id, and the snapshot is written last
by compare-and-swap. A cycle killed after any write redoes the same bar and ends where an uninterrupted run
ends.

**Bars and holes.** The feature window is the last ``FEATURE_WINDOW`` stored bars up to the decision bar,
counted in bars: across a hole in the data it reaches further back, exactly as the backtest's features run
over the stored series. The first cycle after bars without a cycle records why they had none (a ``skip``
event: a hole in the data, or the bot not running); a cycle that cannot decide records why (``skip``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from scalpbot.core.execution import BrokerSnapshot, Fill, OrderAck, Signal, client_order_id
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.core.orders import time_stop_due
from scalpbot.core.policy import decide
from scalpbot.core.portfolio_risk import Approved, PortfolioBook, PortfolioLimits, Reservation
from scalpbot.core.risk import (
    MarketRules,
    RiskLimits,
    RiskState,
    check_entry,
    initial_risk_state,
    needs_flatten,
    update_risk_state,
)
from scalpbot.core.timeframes import timeframe_delta
from scalpbot.core.window_features import trailing_window
from scalpbot.errors import ExchangeError
from scalpbot.inference.signals import TradingModel
from scalpbot.ports import BarHistory, Broker, Clock, Notifier, Store
from scalpbot.state.ledger import Ledger, event_id_for
from scalpbot.state.portfolio import PortfolioSnapshot, PortfolioStore
from scalpbot.state.risk_budget import RiskBudget

CycleStatus = Literal["ok", "skipped", "failed", "halted", "idle", "busy"]
"""ok: reconciled and decided (maybe nothing to do); skipped: the bar was already processed; failed: failed
closed, nothing placed; halted: the kill switch is engaged; idle: no release to trade yet; busy: another run
holds the bot's lease."""


@dataclass(frozen=True)
class Executor:
    """Everything one bot's execute cycle needs; built once per process (or per Lambda container)."""

    bot: str
    symbol: str
    timeframe: str
    store: Store
    broker: Broker
    notifier: Notifier
    model: Callable[[], TradingModel]
    bars: BarHistory
    limits: RiskLimits
    market_rules: MarketRules
    initial_equity: float
    ready: Callable[[], bool] = lambda: True
    """Whether a release can be traded now (``False``: the cycle idles; see ``ReleaseCache.available``)."""
    clock: Clock | None = None
    """The wall clock of a live bot: each decision's latency from bar close to order acknowledgement is recorded
    (a ``latency`` event); ``None`` (replays) records none."""
    portfolio: PortfolioLimits = field(default_factory=PortfolioLimits)
    """The limits of the bot's risk budget, shared by all its symbols (the defaults bind nothing)."""
    scope: str | None = None
    """``symbol`` in a bot of several symbols: its snapshot, lease and paper account are its own and its
    ledger events name it (:mod:`scalpbot.state.scope`); ``None``: the bot's single-symbol keys."""

    @property
    def budget(self) -> RiskBudget:
        """Return the bot's portfolio risk budget."""
        return RiskBudget(self.store, self.bot, self.portfolio)

    @property
    def ledger(self) -> Ledger:
        """Return the bot's ledger, writing as this symbol's cycles do (its events name it when scoped)."""
        return Ledger(self.store, self.bot, self.scope)

    @property
    def snapshots(self) -> PortfolioStore:
        """Return the store of this symbol's portfolio snapshot."""
        return PortfolioStore(self.store, self.bot, self.scope)


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one cycle did for bar ``bar`` (open time); see :data:`CycleStatus`."""

    bar: pd.Timestamp
    status: CycleStatus
    equity: float | None = None
    signal: Signal | None = None
    denial: str | None = None
    acks: tuple[OrderAck, ...] = ()
    fills: tuple[Fill, ...] = ()
    message: str = ""
    fault: str = ""
    """Where a failed cycle failed (reconcile, retrieve, data, release); the caller records and notifies it."""
    symbol: str = ""
    """The symbol traded, when a bot of several symbols reports its cycles together (else empty)."""


def run_cycle(executor: Executor, bar: pd.Timestamp, window: pd.DataFrame | None = None) -> CycleReport:
    """Process the bar whose open time is ``bar`` (it has closed); see the module docstring.

    ``window``: the trailing ``FEATURE_WINDOW`` stored bars ending at ``bar``, when the caller has read them
    already; else they are read from the executor's history.
    """
    portfolio = executor.snapshots
    stored = portfolio.load()
    previous = None if stored is None else stored.snapshot
    if previous is not None and previous.last_bar_time is not None and previous.last_bar_time >= bar:
        message = f"bar {bar:%Y-%m-%dT%H:%M:%SZ} was already processed"  # bars are UTC
        return CycleReport(bar, "skipped", previous.equity, message=message)
    ledger = executor.ledger
    window = executor.bars.tail(bar, FEATURE_WINDOW) if window is None else window
    if window.empty or window.index[-1] != bar:
        return _fail(bar, "data", f"bar {bar} is not stored yet; run the retrieve job first")
    if previous is not None and previous.last_bar_time is not None:
        _record_missed(executor, ledger, window, previous.last_bar_time, bar)
    since = None if previous is None else previous.last_fill_time
    try:
        snapshot = executor.broker.snapshot(window, since)
    except ExchangeError as e:
        return _fail(bar, "reconcile", f"broker {executor.broker.name} cannot be reconciled: {e}")
    new_fills = tuple(
        f for f in snapshot.fills if since is None or f.time > since or _unrecorded(previous, f)
    )
    # Fill events are idempotent (their ids come from the client ids, their sequence numbers from the
    # snapshot): a fill recorded by a cycle that died before saving the snapshot is recorded again as a no-op.
    recorded_before = 0 if previous is None else previous.fill_count
    for k, fill in enumerate(new_fills, start=1):
        ledger.record_fill(
            fill, entry_client_id=fill.entry_client_id or fill.client_id, seq=recorded_before + k
        )
    last_bar = None if previous is None else previous.last_bar_time
    for payment in snapshot.funding:  # idempotent: one event per trade and funding time
        if last_bar is None or payment.time > last_bar:
            ledger.record_funding(payment)
    closed_pnl = [float(f.pnl) for f in new_fills if f.reason != "entry" and f.pnl is not None]
    risk = previous.risk if previous is not None else initial_risk_state(executor.initial_equity, bar)
    was_halted = risk.halted
    risk = update_risk_state(risk, snapshot.equity, bar, closed_pnl, executor.limits)
    acks: list[OrderAck] = []
    if risk.halted and not was_halted:
        ledger.append("halt", bar, {"reason": risk.halt_reason or "", "equity": snapshot.equity})
        executor.notifier.notify(
            f"{executor.bot}: kill switch engaged", risk.halt_reason or "", level="error"
        )
    budget = executor.budget
    book = _settle_budget(executor, budget, ledger, bar, snapshot, new_fills)
    bot_halted = book is not None and book.halted
    if needs_flatten(risk, snapshot.position) or (bot_halted and snapshot.position is not None):
        acks += _send(executor, ledger, bar, lambda: executor.broker.flatten(bar, snapshot))
    signal, denial = None, None
    if not risk.halted and not bot_halted:
        signal, denial = _decide(executor, ledger, window, bar, snapshot, risk, budget)
        if signal is not None or snapshot.position is not None:
            chosen = signal if signal is not None else _hold(bar)
            sent = _send(executor, ledger, bar, lambda: executor.broker.submit(chosen, snapshot))
            entry_id = client_order_id(executor.bot, executor.symbol, bar, "entry")
            if any(a.client_id == entry_id and a.status == "rejected" for a in sent):
                budget.cancel(executor.symbol, entry_id)  # refused: the reservation is given back
            acks += sent
    last_fill = max(
        (f.time for f in snapshot.fills), default=None if previous is None else previous.last_fill_time
    )
    recorded = PortfolioSnapshot(
        last_bar_time=bar,
        equity=snapshot.equity,
        risk=risk,
        position=snapshot.position,
        open_orders=snapshot.open_orders,
        last_fill_time=last_fill,
        fill_count=recorded_before + len(new_fills),
        recorded_fills=tuple(
            sorted(_fill_key(f) for f in snapshot.fills if last_fill is not None and f.time == last_fill)
        ),
    )
    portfolio.save(recorded, None if stored is None else stored.etag)
    status: CycleStatus = "halted" if risk.halted or bot_halted else "ok"
    return CycleReport(bar, status, snapshot.equity, signal, denial, tuple(acks), new_fills)


def _hold(bar: pd.Timestamp) -> Signal:
    """Return the signal of a cycle whose model wants nothing: no entry, no reversal, the position kept."""
    return Signal(bar, 0, 0.0, float("inf"), float("inf"), 0)


def _fill_key(fill: Fill) -> str:
    return f"{fill.client_id}:{fill.reason}"


def _unrecorded(previous: PortfolioSnapshot | None, fill: Fill) -> bool:
    """Return whether a fill at the newest recorded time was not yet recorded (several fills in one bar)."""
    if previous is None or previous.last_fill_time is None or fill.time != previous.last_fill_time:
        return False
    return _fill_key(fill) not in previous.recorded_fills


def _settle_budget(
    executor: Executor,
    budget: RiskBudget,
    ledger: Ledger,
    bar: pd.Timestamp,
    snapshot: BrokerSnapshot,
    new_fills: tuple[Fill, ...],
) -> PortfolioBook | None:
    """Settle this symbol in the bot's risk budget; record (once) and notify the bot's kill switch engaging.

    Idempotent: exits are booked by their fill keys, and the halt event's id names the bar and the budget
    (every symbol's cycle for that bar records the same event; the one whose write engaged it notifies).
    """
    exits = [(_fill_key(f), float(f.pnl)) for f in new_fills if f.reason != "entry" and f.pnl is not None]
    position = snapshot.position
    held = None
    if position is not None:
        notional = position.qty * position.entry_price
        held = Reservation(position.side, notional, position.entry_client_id, position.entry_time)
    commit = budget.settle(executor.symbol, exits=exits, held=held, at=bar, equity=snapshot.equity)
    book = commit.book
    if book is not None and book.halted and book.halted_at == bar:
        # Only what was fixed when it engaged: any symbol's cycle for this bar writes the very same event.
        payload = {"reason": f"portfolio {book.halt_reason}"}
        bot_ledger = Ledger(executor.store, executor.bot)  # the bot's event: it names no symbol
        bot_ledger.append("halt", bar, payload, event_id=event_id_for("halt", bar, "portfolio"))
        if commit.written:
            executor.notifier.notify(
                f"{executor.bot}: kill switch engaged (all symbols)", book.halt_reason or "", level="error"
            )
    return book


def _decide(
    executor: Executor,
    ledger: Ledger,
    window: pd.DataFrame,
    bar: pd.Timestamp,
    snapshot: BrokerSnapshot,
    risk: RiskState,
    budget: RiskBudget,
) -> tuple[Signal | None, str | None]:
    """Return the signal to submit (``None``: nothing to do) and the denial reason, if any."""
    trading = executor.model()
    unready = feature_warmup(window)
    if unready is not None:
        ledger.append("skip", bar, {"reason": "warmup", "message": unready})
        return None, None
    decided = decide_on_bar(window, trading)
    if decided is None:
        return None, None
    signal, probs, vol = decided
    payload: dict[str, Any] = {
        "release_id": trading.release_id,
        "side": signal.side,
        "size": signal.size,
        "sl": signal.sl,
        "tp": signal.tp,
        "max_hold": signal.max_hold,
        "p_short": float(probs[0]),
        "p_long": float(probs[2]),
        "vol": vol,
    }
    ledger.append("decision", bar, payload)
    position = snapshot.position
    reentry = False
    if position is not None and position.side == signal.side:
        bar_seconds = int(timeframe_delta(executor.timeframe).total_seconds())
        if not time_stop_due(position, bar, bar_seconds):
            return signal, None  # same direction: the broker ignores it
        reentry = True
    # A same-direction signal when the time stop closes the position at the next open re-enters at that open
    # (the kernel's and the live broker's rule): it is an entry like any other, checked and reserved.
    price = float(window["close"].iloc[-1])
    denial = check_entry(
        signal,
        snapshot.equity,
        None if reentry else position,
        risk,
        executor.limits,
        executor.market_rules,
        price,
    )
    if denial is None:
        verdict, _ = budget.reserve(
            executor.symbol,
            side=signal.side,
            notional=signal.size * snapshot.equity,
            client_id=client_order_id(executor.bot, executor.symbol, bar, "entry"),
            bar=bar,
            equity=snapshot.equity,
        )
        if isinstance(verdict, Approved):
            return signal, None
        refused: dict[str, Any] = {**verdict.to_dict(), "scope": "portfolio", "symbol": executor.symbol}
        message = verdict.message
    else:
        refused, message = dict(denial.to_dict()), denial.message
    ledger.append("denial", bar, {**refused, "side": signal.side})
    if position is not None and not reentry:
        return dataclasses.replace(signal, size=0.0), message  # still close the opposite position
    return None, message  # a denied re-entry: the time stop still closes the position


def feature_warmup(window: pd.DataFrame) -> str | None:
    """Return why the window's last bar has no complete feature row (too little history), or ``None``."""
    if len(window) >= FEATURE_WINDOW:
        return None
    return (
        f"no decision: {len(window)} bars are stored up to {window.index[-1].isoformat()} and the features "
        f"need {FEATURE_WINDOW}; the bot decides once enough history is stored"
    )


def _record_missed(
    executor: Executor, ledger: Ledger, window: pd.DataFrame, last_done: pd.Timestamp, bar: pd.Timestamp
) -> None:
    """Record, once, why no cycle ran for the bars between the last processed bar and ``bar``."""
    step = timeframe_delta(executor.timeframe)
    if bar - last_done <= step:
        return
    index = pd.DatetimeIndex(window.index)
    stored = int(((index > last_done) & (index < bar)).sum())
    first, last = last_done + step, bar - step
    if stored == 0 and len(index) and index[0] <= last_done:
        reason, message = (
            "hole",
            (
                f"no bars are stored from {first.isoformat()} to {last.isoformat()} (a hole in the data): "
                "no cycle for them; the features bridge the hole as the backtest does"
            ),
        )
    else:
        reason, message = (
            "not_run",
            (
                f"no cycle ran for the bars from {first.isoformat()} to {last.isoformat()} "
                "(the bot was stopped or could not run); their signals were not traded"
            ),
        )
    payload = {
        "reason": reason,
        "message": message,
        "first": first,
        "last": last,
        "bars": int((bar - last_done) / step) - 1,
    }
    ledger.append("skip", bar, payload, event_id=event_id_for("skip", bar, reason))


def decide_on_bar(window: pd.DataFrame, trading: TradingModel) -> tuple[Signal, np.ndarray, float] | None:
    """Return the signal for the open after the window's last bar, with the model's outputs; ``None``: no trade.

    ``window`` holds closed bars ending with the decision bar; the last ``FEATURE_WINDOW`` are used, so the
    features (and the trailing window of a model that reads one) equal the training computation bit for bit. The
    hot path of every execute cycle. A release that reads order flow raises ``ModelError`` when a bar of that
    window has none (its source does not report it); the cycle fails closed and the use case records and notifies
    it once.
    """
    recent = window.iloc[-FEATURE_WINDOW:]
    if trading.feature_set.order_flow:  # refuse, naming the fix, rather than wait on inputs that never come
        trading.feature_set.require(recent, release=trading.release_id)
    features = trading.feature_set.build(recent).to_numpy(dtype=np.float64)[-1]
    if trading.window:  # only the decision bar's trailing window: a row depends on its window + 1 bars alone
        last = trailing_window(window.iloc[-(trading.window + 1) :], trading.window)[-1]
        features = np.concatenate([features, last])
    if not np.isfinite(features).all():
        return None  # not enough history yet for a decision
    probs, vol = trading.model.predict(features.reshape(1, -1).astype(np.float32))
    decision = decide(probs[0], float(vol[0]), trading.params)
    if decision.side == 0:
        return None
    bar = pd.Timestamp(window.index[-1])
    return (
        Signal(bar, decision.side, decision.size, decision.sl, decision.tp, trading.params.max_hold),
        probs[0],
        float(vol[0]),
    )


def _send(
    executor: Executor, ledger: Ledger, bar: pd.Timestamp, send: Callable[[], list[OrderAck]]
) -> list[OrderAck]:
    """Send orders; record each answer; an exchange failure is recorded and notified, never raised."""
    try:
        acks = send()
    except ExchangeError as e:
        ledger.append("error", bar, {"where": "submit", "message": str(e)})
        executor.notifier.notify(f"{executor.bot}: order failed", str(e), level="error")
        return []
    protection_refused = False
    _record_latency(executor, ledger, bar, acks)
    for ack in acks:
        # A duplicate means the venue already holds the order: it was accepted by an earlier try of this
        # cycle (killed before it recorded the answer), so it is recorded as that try would have recorded it.
        accepted = ack.status != "rejected"
        payload = {
            "client_id": ack.client_id,
            "intent": ack.intent,
            "status": "accepted" if accepted else "rejected",
            "message": "" if accepted else ack.message,
        }
        ledger.append("order_ack", bar, payload)
        if ack.status == "rejected" and ack.intent in ("sl", "tp"):
            if not protection_refused:  # one error and one notification for the OCO's legs
                ledger.append("error", bar, {"where": "protection", "message": ack.message})
                executor.notifier.notify(f"{executor.bot}: protection refused", ack.message, level="error")
            protection_refused = True
        elif ack.status == "rejected":
            executor.notifier.notify(f"{executor.bot}: order rejected", ack.message, level="warning")
    return acks


def _record_latency(executor: Executor, ledger: Ledger, bar: pd.Timestamp, acks: list[OrderAck]) -> None:
    """Record how long after the close of ``bar`` the venue acknowledged the orders sent for it (live only).

    One ``latency`` event per acknowledged submission; a retried cycle records its own attempt beside it.
    """
    sent = [a.client_id for a in acks if a.status == "accepted"]
    if executor.clock is None or not sent:
        return
    close = bar + timeframe_delta(executor.timeframe)
    seconds = (pd.Timestamp(executor.clock.now()).tz_convert("UTC") - close).total_seconds()
    payload = {"bar_close": close, "ack_seconds": round(seconds, 3), "client_ids": sent}
    ledger.append("latency", bar, payload, event_id=event_id_for("latency", bar, *sent, f"{seconds:.3f}"))


def _fail(bar: pd.Timestamp, fault: str, message: str) -> CycleReport:
    """Fail closed: nothing was placed; the use case records and notifies the fault (once per outage)."""
    return CycleReport(bar, "failed", message=message, fault=fault)


__all__ = ["CycleReport", "CycleStatus", "Executor", "decide_on_bar", "feature_warmup", "run_cycle"]
