"""The train job's evaluation: baselines, the current release's score, the gate's verdict, feature importance.

All scores are on the test window, which neither the fits nor the tuning saw, on the venue's profile.
Feature importance is measured on the validation folds, each by its own model: the rise of the class
cross-entropy when one feature is shuffled across the fold's rows (permutation importance); a one-hot feature
(hour, minute) is shuffled as its whole group of columns.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scalpbot.core.backtest.frame import BacktestResult
from scalpbot.core.features import FEATURE_WINDOW, ONE_HOT_GROUPS
from scalpbot.core.folds import label_rows
from scalpbot.core.gate import GateVerdict, judge
from scalpbot.core.metrics import Metrics
from scalpbot.core.policy import signals_frame
from scalpbot.core.strategies import sma_cross_signals
from scalpbot.core.venue import Venue
from scalpbot.errors import ScalpbotError
from scalpbot.inference.signals import TradingModel, predict_bars
from scalpbot.jobs.learning import labelled_rows, score_signals, simulate
from scalpbot.state.dataset import SeriesId
from scalpbot.state.releases import ReleaseStore

if TYPE_CHECKING:
    from scalpbot.jobs.train_steps import Fitted, Prepared
    from scalpbot.ml.evidence import TrialSelection
    from scalpbot.ml.registry import ModelKind

__all__ = [
    "baselines",
    "feature_importance",
    "importance_units",
    "incumbent_score",
    "judge_test",
    "library_versions",
    "promotion_reason",
    "timed",
]

_LIBRARIES = (
    "scalpbot",
    "numpy",
    "pandas",
    "numba",
    "keras",
    "torch",
    "onnx",
    "onnxruntime",
    "optuna",
    "arch",
)
_IMPORTANCE_ROWS = 20_000
_IMPORTANCE_SHOWN = 5
_IMPORTANCE_CELLS = 40_000_000  # float32 cells of shuffled copies per prediction call (160 MB)


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Add the seconds spent in the block to ``timings[name]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def baselines(
    bars: pd.DataFrame,
    signals: pd.DataFrame,
    trades: pd.DataFrame,
    costs: Any,
    venue: Venue,
    seed: int,
    funding: pd.Series | None = None,
) -> dict[str, Metrics]:
    """Return not trading, ``sma-cross`` and random entries with the release's SL/TP, size and trade count
    (paying a swap's ``funding`` as the release does)."""
    flat = signals.assign(side=0)
    sma = sma_cross_signals(
        bars, length=costs.sma_length, sl=costs.sl, tp=costs.tp, size=costs.size, max_hold=costs.max_hold
    )
    entries = signals.loc[signals["side"] != 0]
    random = flat.copy()
    count = min(len(trades), len(bars) - 1)
    if count and len(entries):
        rng = np.random.default_rng(seed)
        picks = np.sort(rng.choice(len(bars) - 1, size=count, replace=False))
        side = np.zeros(len(bars), dtype=np.int8)
        sides = np.array([-1, 1] if venue.shorts else [1], dtype=np.int8)
        side[picks] = rng.choice(sides, size=count)
        random["side"] = side
        for column in ("size", "sl", "tp", "max_hold"):
            values = random[column].to_numpy(copy=True)
            values[picks] = entries[column].median()
            random[column] = values
    return {
        "not_trading": score_signals(bars, flat, costs, venue, funding),
        "sma_cross": score_signals(bars, sma, costs, venue, funding),
        "random": score_signals(bars, random, costs, venue, funding),
    }


def incumbent_score(
    releases: ReleaseStore,
    series: SeriesId,
    pointer: Any,
    bars: pd.DataFrame,
    test: slice,
    costs: Any,
    venue: Venue,
    funding: pd.Series | None = None,
) -> tuple[dict[str, Any] | None, pd.Series | None]:
    """Return the current release's score on the same test window (or why it could not be scored) and its equity
    (paying a swap's ``funding`` as the challenger does).

    Its predictions come from the same full history as the challenger's, so both start the window warmed up.
    """
    if pointer is None:
        return None, None
    try:
        trading = TradingModel.from_release(releases.load(series.symbol, pointer.release_id)).for_venue(venue)
        scored = bars.iloc[
            max((test.start or 0) - FEATURE_WINDOW, 0) : test.stop
        ]  # the window and its warm-up
        trading.feature_set.require(scored, release=pointer.release_id, series=str(series))
        probs, vol = predict_bars(bars, trading.model, feature_set=trading.feature_set, window=trading.window)
    except ScalpbotError as e:
        return {"release_id": pointer.release_id, "error": str(e)}, None
    window = bars.iloc[test]
    result = simulate(
        window, signals_frame(window.index, probs[test], vol[test], trading.params), costs, venue, funding
    )
    return {"release_id": pointer.release_id, "metrics": result.metrics}, result.equity


def judge_test(
    settings: Any,
    venue: Venue,
    test_bars: pd.DataFrame,
    test: BacktestResult,
    incumbent: dict[str, Any] | None,
    incumbent_equity: pd.Series | None,
    selection: TrialSelection,
) -> GateVerdict:
    """Weigh the challenger's test window (``test``, traded on ``test_bars``) against the current release (or not
    trading) with the gate, its trades' timing against the same trades at random bars.

    A current release that cannot be loaded is no rival: the challenger must then beat not trading.
    """
    from scalpbot.ml.evidence import gate_statistics, period_returns, window_days
    from scalpbot.ml.timing import timing_test

    costs = venue.trading_costs(settings.backtest.slippage)
    resamples = settings.gate.bootstrap_resamples

    rival = None if incumbent_equity is None else incumbent
    statistics = gate_statistics(
        window="test window",
        rival="not trading" if rival is None else f"current release {rival['release_id']}",
        challenger_returns=period_returns(test.equity),
        rival_returns=None if incumbent_equity is None else period_returns(incumbent_equity),
        total_return=float(test.metrics["total_return"] or 0.0),
        rival_return=0.0 if rival is None else rival["metrics"]["total_return"],
        trades=int(test.metrics["trades"] or 0),
        days=window_days(pd.DatetimeIndex(test.equity.index)),
        selection=selection,
        costs=costs,
        resamples=resamples,
        seed=settings.train.seed,
        timing=timing_test(test_bars, test.trades, costs, resamples=resamples, seed=settings.train.seed),
    )
    return judge(statistics, settings.gate.rules(settings.train.min_trades))


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):+.2%}".replace("%", " %")


def promotion_reason(
    verdict: GateVerdict,
    folds: Sequence[Mapping[str, Any]],
    test: Mapping[str, Any],
    rivals: Mapping[str, Mapping[str, Any]],
) -> str:
    """Return the verdict's line; a promotion also names the folds' results, the test result and the baselines.

    A refusal stays the gate's one line.
    """
    if not verdict.promote:
        return verdict.reason
    fold_text = ", ".join(_pct(f.get("total_return")) for f in folds)
    rival_text = ", ".join(
        f"{name.replace('_', '-')} {_pct(m.get('total_return'))}" for name, m in rivals.items()
    )
    return (
        f"{verdict.reason}; validation folds {fold_text}; test {_pct(test.get('total_return'))} "
        f"in {test.get('trades')} trades beside {rival_text}"
    )


def _log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    picked = probs[np.arange(y.size), y]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))


def importance_units(names: Sequence[str]) -> list[tuple[str, list[int]]]:
    """Return the features whose importance is measured, each with its columns in ``names``: a column of its
    own, or a one-hot group (:data:`~scalpbot.core.features.ONE_HOT_GROUPS`) named by the group, in the order
    of their first column."""
    group_of = {column: group for group, columns in ONE_HOT_GROUPS.items() for column in columns}
    units: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        units.setdefault(group_of.get(name, name), []).append(j)
    return list(units.items())


def feature_importance(
    prepared: Prepared, chosen: Fitted, kind: ModelKind, *, seed: int, x: np.ndarray | None = None
) -> dict[str, float]:
    """Return each feature's permutation importance, averaged over the validation folds, largest first.

    The importance is the rise of the class cross-entropy (nats per row) of the fold's own model when the
    feature is shuffled across at most 20,000 of the fold's labelled rows: its column, or a one-hot group's
    columns together (``hour``, ``minute``: rows moved whole). ``x``: the rows the model reads (default: the
    features); only the feature matrix's columns, which come first, are shuffled.
    """
    inputs = prepared.features if x is None else x
    n = len(prepared.bars)
    y, _, usable = labelled_rows(prepared.bars, prepared.features, chosen.label)
    rng = np.random.default_rng(seed)
    units = importance_units(prepared.feature_names)
    rises = np.zeros(len(units))
    for fold, model in zip(prepared.folds.folds, chosen.models, strict=True):
        rows = np.flatnonzero(usable & label_rows(fold.validation, chosen.label.horizon, n))
        if rows.size > _IMPORTANCE_ROWS:
            rows = np.sort(rng.choice(rows, _IMPORTANCE_ROWS, replace=False))
        x_rows, labels = inputs[rows].astype(np.float32), y[rows].astype(np.int64)
        base = _log_loss(kind.predict(model, x_rows)[0], labels)
        permutations = [rng.permutation(rows.size) for _ in units]
        chunk = max(1, _IMPORTANCE_CELLS // max(1, x_rows.size))  # features shuffled per prediction call
        for first in range(0, len(units), chunk):
            batch = range(first, min(first + chunk, len(units)))
            stacked = np.repeat(x_rows[None], len(batch), axis=0)
            for i, u in enumerate(batch):
                columns = units[u][1]
                stacked[i][:, columns] = x_rows[np.ix_(permutations[u], np.asarray(columns))]
            probs = kind.predict(model, stacked.reshape(-1, x_rows.shape[1]))[0].reshape(
                len(batch), rows.size, 3
            )
            rises[first : first + len(batch)] += [
                _log_loss(probs[i], labels) - base for i in range(len(batch))
            ]
    rises /= len(prepared.folds.folds)
    order = np.argsort(-rises)
    return {units[j][0]: float(rises[j]) for j in order}


def top_features(importance: Mapping[str, float], count: int = _IMPORTANCE_SHOWN) -> str:
    """Return the ``count`` most important features as ``name +0.0123`` text."""
    return ", ".join(f"{name} {value:+.4f}" for name, value in list(importance.items())[:count])


def library_versions() -> Mapping[str, str]:
    """Return the versions of Python and of the libraries a release depends on."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
