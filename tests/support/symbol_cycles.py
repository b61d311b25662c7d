"""One symbol of a basket bot trading bar after bar in step with the others, for the concurrency tests.

A worker builds its symbol's executor exactly as a replay does (``build_executor``: the paper broker, the
symbol's current release from the store, the bot's ``[portfolio]`` budget, the symbol's own state) and trades
each bar through :class:`~scalpbot.jobs.trading.BarTrader`. Before each bar close it waits at a barrier shared
with the other symbols' workers, so every symbol's cycle of bar ``t`` races the others (budget, ledger) and bar
``t + 1`` starts only when all are done. Its store records every write that committed the bot's risk budget, so
the test sees every book ever committed, not only the last.

Importable by spawned processes: arguments and results are plain data (a barrier from a
``multiprocessing.Manager`` in processes, a ``threading.Barrier`` in threads).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper

from scalpbot.adapters.clock import SystemClock
from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.config import Settings, load_settings
from scalpbot.core.features import FEATURE_NAMES, FEATURE_SPEC_VERSION
from scalpbot.core.policy_params import StrategyParams
from scalpbot.jobs.cycle import CycleReport
from scalpbot.jobs.trading import BarTrader
from scalpbot.ports import Store, StoredObject
from scalpbot.state.dataset import BarDataset
from scalpbot.state.history import MemoryHistory
from scalpbot.state.releases import ONNX_ARTIFACT, ReleaseStore, new_release_id
from scalpbot.wiring import Services, build_executor, run_lease

from support.budget_workers import StoreSpec
from support.trained import LOOSE_RISK

__all__ = ["EdgeRelease", "SymbolRun", "bot_settings", "publish_release", "trade_symbol"]


class Barrier(Protocol):
    """What the workers of one run wait at before each bar close."""

    def wait(self, timeout: float | None = None) -> int: ...

    def abort(self) -> None: ...


@dataclass(frozen=True, slots=True)
class EdgeRelease:
    """A release whose model sees the same edge on every bar: ``(p_short, p_neither, p_long)`` and a forward
    volatility (fraction of price), traded with ``params`` (as ``StrategyParams.to_dict`` writes them)."""

    probs: tuple[float, float, float]
    vol: float
    params: Mapping[str, Any] = field(default_factory=dict)

    def onnx(self) -> bytes:
        """Return the model as ONNX: one float32 input [batch, n_features], probabilities [batch, 3] and volatility
        [batch, 1] (the features are read - times zero weights - so the graph has the trained models' shape)."""
        n = len(FEATURE_NAMES)

        def const(name: str, value: np.ndarray) -> onnx.TensorProto:
            return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)

        nodes = [
            helper.make_node("MatMul", ["features", "w"], ["zw"]),
            helper.make_node("Add", ["zw", "logits"], ["z"]),
            helper.make_node("Softmax", ["z"], ["class_probs"], axis=-1),
            helper.make_node("MatMul", ["features", "v"], ["zv"]),
            helper.make_node("Add", ["zv", "vol_bias"], ["vol"]),
        ]
        graph = helper.make_graph(
            nodes,
            "edge",
            [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n])],
            [
                helper.make_tensor_value_info("class_probs", TensorProto.FLOAT, ["batch", 3]),
                helper.make_tensor_value_info("vol", TensorProto.FLOAT, ["batch", 1]),
            ],
            [
                const("w", np.zeros((n, 3))),
                const("logits", np.log(np.asarray(self.probs))),
                const("v", np.zeros((n, 1))),
                const("vol_bias", np.array([self.vol])),
            ],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        data: bytes = model.SerializeToString()
        return data


def publish_release(store: Store, symbol: str, release: EdgeRelease, at: pd.Timestamp) -> str:
    """Write ``release`` for ``symbol`` as the train job writes one (gate passed) and make it current."""
    data = release.onnx()
    params = StrategyParams.from_dict(dict(release.params)).to_dict()
    manifest = {
        "origin": "train",
        "model_kind": "edge",
        "created_at": at.isoformat(),
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "params": params,
        "gate": {"promote": True, "reason": "a fixed edge for the concurrency tests"},
        "metrics": {},
    }
    releases = ReleaseStore(store)
    release_id = new_release_id(at.to_pydatetime(), data + symbol.encode())
    releases.write(symbol, release_id, manifest, {ONNX_ARTIFACT: data})
    releases.promote(symbol, release_id, expected=None, reason="test", now=at.to_pydatetime())
    return release_id


def bot_settings(symbols: Sequence[str], portfolio: Mapping[str, Any]) -> Settings:
    """Return the settings of a bot trading ``symbols`` under the ``[portfolio]`` limits ``portfolio``."""
    return load_settings(
        None,
        {
            "bot": {"symbols": list(symbols)},
            "risk": dict(LOOSE_RISK),
            "portfolio": dict(portfolio),
        },
    )


class RecordingStore:
    """A store that keeps a copy of every write to ``watched`` that committed (a lost compare-and-swap is not
    kept), tagged with the bar being traded (``bar``: its position in the run); every other call goes straight
    to ``inner``."""

    def __init__(self, inner: Store, watched: str) -> None:
        self._inner = inner
        self._watched = watched
        self._lock = threading.Lock()
        self.bar = -1
        self.committed: list[tuple[int, bytes]] = []

    def _keep(self, key: str, data: bytes) -> None:
        if key == self._watched:
            with self._lock:
                self.committed.append((self.bar, data))

    def get(self, key: str) -> StoredObject:
        return self._inner.get(key)

    def head(self, key: str) -> str | None:
        return self._inner.head(key)

    def put(self, key: str, data: bytes) -> str:
        etag = self._inner.put(key, data)
        self._keep(key, data)
        return etag

    def put_if_absent(self, key: str, data: bytes) -> str:
        etag = self._inner.put_if_absent(key, data)
        self._keep(key, data)
        return etag

    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        new = self._inner.put_if_match(key, data, etag)
        self._keep(key, data)
        return new

    def list(self, prefix: str = "") -> list[str]:
        return self._inner.list(prefix)

    def delete(self, key: str) -> None:
        self._inner.delete(key)

    def describe(self) -> str:
        return self._inner.describe()


@dataclass(frozen=True, slots=True)
class SymbolRun:
    """What one symbol's worker did: its cycles' ``(bar, status, denial, message)`` and every budget write it
    committed with the position in the run of the bar it traded then."""

    symbol: str
    cycles: tuple[tuple[pd.Timestamp, str, str | None, str], ...]
    committed: tuple[tuple[int, bytes], ...]


def trade_symbol(
    spec: StoreSpec,
    bot: str,
    symbols: Sequence[str],
    portfolio: Mapping[str, Any],
    symbol: str,
    bars: pd.DataFrame,
    closes: Sequence[pd.Timestamp],
    barrier: Barrier,
) -> SymbolRun:
    """Trade ``symbol`` of ``bot`` at each of ``closes`` (bar close times, UTC) over ``bars``, each close after
    every worker reached ``barrier``; return what it did."""
    settings = bot_settings(symbols, portfolio)
    store = RecordingStore(spec.open(), f"state/{bot}/portfolio_risk.json")
    services = Services(
        settings, store, BarDataset(store, settings.data.format), SystemClock(), build_executor
    )
    series = services.series(symbol)
    executor = build_executor(
        services,
        series,
        bot=bot,
        bars=MemoryHistory(bars),
        mode="replay",
        notifier=ConsoleNotifier(io.StringIO()),
    )
    trader = BarTrader(
        services,
        executor,
        series,
        source=None,
        lease=run_lease(services, bot, symbol=symbol),
        release_lease=False,
    )
    cycles: list[tuple[pd.Timestamp, str, str | None, str]] = []
    try:
        for k, close in enumerate(closes):
            barrier.wait(timeout=120)
            store.bar = k
            report: CycleReport = trader(close)
            cycles.append((report.bar, report.status, report.denial, report.message))
    except BaseException:
        barrier.abort()  # the other symbols stop at the next bar instead of waiting for this one
        raise
    finally:
        trader.close()
    return SymbolRun(symbol, tuple(cycles), tuple(store.committed))
