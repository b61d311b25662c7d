"""The execute job: on each closed bar, reconcile, check risk, decide with the current release, place orders.

One cycle for the bar ``t`` that just closed, in this order:

1. Skip if the portfolio snapshot says ``t`` was already processed (a retried or concurrent run).
2. Reconcile with the broker. If it cannot be queried the cycle places nothing, records an ``error`` event
   and notifies (fail closed).
3. Record the fills reported since the last cycle (idempotent: each fill's event id comes from its client id).
4. Update the risk state with the equity and the trades just closed; the kill switch flattens and blocks.
5. Features on the trailing window -> ONNX model -> policy -> a ``Signal`` for the next open.
6. Risk checks on an entry: a denial is recorded, not raised (a denied reversal still closes the position).
7. Submit to the broker with deterministic client ids; record what was sent and what the venue answered.
8. Save the portfolio snapshot by compare-and-swap.

A run lease around the cycle keeps two runs from overlapping; the snapshot check makes a repeated cycle a no-op.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scalpbot.core.execution import BrokerSnapshot, Fill, OrderAck, Signal
from scalpbot.core.features import FEATURE_WINDOW, build_features
from scalpbot.core.policy import decide
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
from scalpbot.errors import ExchangeError
from scalpbot.ports import Broker, Notifier, Store
from scalpbot.release_signals import TradingModel
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioSnapshot, PortfolioStore

BarWindow = Callable[[pd.Timestamp | None, pd.Timestamp], pd.DataFrame]
"""``(start, last)`` -> closed bars with open time in ``[start, last]``."""


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
    bars: BarWindow
    limits: RiskLimits
    market_rules: MarketRules
    initial_equity: float

    @property
    def ledger(self) -> Ledger:
        """Return the bot's ledger."""
        return Ledger(self.store, self.bot)


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one cycle did for bar ``bar`` (open time): ``status`` is ok, skipped, failed or halted."""

    bar: pd.Timestamp
    status: str
    equity: float | None = None
    signal: Signal | None = None
    denial: str | None = None
    acks: tuple[OrderAck, ...] = ()
    fills: tuple[Fill, ...] = ()
    message: str = ""


def run_cycle(executor: Executor, bar: pd.Timestamp) -> CycleReport:
    """Process the bar whose open time is ``bar`` (it has closed); see the module docstring."""
    portfolio = PortfolioStore(executor.store, executor.bot)
    stored = portfolio.load()
    previous = None if stored is None else stored.snapshot
    if previous is not None and previous.last_bar_time is not None and previous.last_bar_time >= bar:
        return CycleReport(bar, "skipped", previous.equity, message=f"bar {bar} was already processed")
    ledger = executor.ledger
    window = executor.bars(bar - (FEATURE_WINDOW - 1) * timeframe_delta(executor.timeframe), bar)
    if window.empty or window.index[-1] != bar:
        return _fail(executor, ledger, bar, f"bar {bar} is not stored yet; run the retrieve job first")
    since = None if previous is None else previous.last_fill_time
    try:
        snapshot = executor.broker.snapshot(window, since)
    except ExchangeError as e:
        return _fail(executor, ledger, bar, f"broker {executor.broker.name} cannot be reconciled: {e}")
    new_fills = tuple(
        f for f in snapshot.fills if since is None or f.time > since or _unrecorded(previous, f)
    )
    # Fill events are idempotent (their ids come from the client ids): a re-reported fill is a no-op.
    for fill in new_fills:
        ledger.record_fill(fill, entry_client_id=fill.entry_client_id or fill.client_id)
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
    if needs_flatten(risk, snapshot.position):
        acks += _send(executor, ledger, bar, lambda: executor.broker.flatten(bar, snapshot))
    signal, denial = None, None
    if not risk.halted:
        signal, denial = _decide(executor, ledger, window, bar, snapshot, risk)
        if signal is not None:
            chosen = signal
            acks += _send(executor, ledger, bar, lambda: executor.broker.submit(chosen, snapshot))
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
        extra={
            "recorded_fills": sorted(
                _fill_key(f) for f in snapshot.fills if last_fill is not None and f.time == last_fill
            )
        },
    )
    portfolio.save(recorded, None if stored is None else stored.etag)
    status = "halted" if risk.halted else "ok"
    return CycleReport(bar, status, snapshot.equity, signal, denial, tuple(acks), new_fills)


def _fill_key(fill: Fill) -> str:
    return f"{fill.client_id}:{fill.reason}"


def _unrecorded(previous: PortfolioSnapshot | None, fill: Fill) -> bool:
    """Return whether a fill at the newest recorded time was not yet recorded (several fills in one bar)."""
    if previous is None or previous.last_fill_time is None or fill.time != previous.last_fill_time:
        return False
    return _fill_key(fill) not in previous.extra.get("recorded_fills", [])


def _decide(
    executor: Executor,
    ledger: Ledger,
    window: pd.DataFrame,
    bar: pd.Timestamp,
    snapshot: BrokerSnapshot,
    risk: RiskState,
) -> tuple[Signal | None, str | None]:
    """Return the signal to submit (``None``: nothing to do) and the denial reason, if any."""
    trading = executor.model()
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
    if position is not None and position.side == signal.side:
        return signal, None  # same direction: the broker ignores it unless a time stop frees the slot
    price = float(window["close"].iloc[-1])
    denial = check_entry(
        signal, snapshot.equity, position, risk, executor.limits, executor.market_rules, price
    )
    if denial is None:
        return signal, None
    ledger.append("denial", bar, {**denial.to_dict(), "side": signal.side})
    if position is not None:
        return dataclasses.replace(signal, size=0.0), denial.message  # still close the opposite position
    return None, denial.message


def decide_on_bar(window: pd.DataFrame, trading: TradingModel) -> tuple[Signal, np.ndarray, float] | None:
    """Return the signal for the open after the window's last bar, with the model's outputs; ``None``: no trade.

    ``window`` holds closed bars ending with the decision bar; the last ``FEATURE_WINDOW`` are used, so the
    features equal the training computation bit for bit. The hot path of every execute cycle.
    """
    features = build_features(window.iloc[-FEATURE_WINDOW:]).to_numpy(dtype=np.float64)[-1]
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
    for ack in acks:
        payload = {
            "client_id": ack.client_id,
            "intent": ack.intent,
            "status": ack.status,
            "message": ack.message,
        }
        ledger.append("order_ack", bar, payload)
        if ack.status == "rejected":
            executor.notifier.notify(f"{executor.bot}: order rejected", ack.message, level="warning")
    return acks


def _fail(executor: Executor, ledger: Ledger, bar: pd.Timestamp, message: str) -> CycleReport:
    ledger.append("error", bar, {"where": "reconcile", "message": message})
    executor.notifier.notify(f"{executor.bot}: execute failed closed", message, level="error")
    return CycleReport(bar, "failed", message=message)


__all__ = ["BarWindow", "CycleReport", "Executor", "decide_on_bar", "run_cycle"]
