"""Meta-labelling in the train job: fit the filter on the folds' trades, keep it only if it paid out of sample.

With ``train.meta_label = "logistic"`` the chosen candidate's tuned policy is replayed on each validation fold's
out-of-sample predictions: every bar where it would enter is a candidate trade, labelled by its own net outcome
under the policy's stop, target and time stop (:func:`scalpbot.core.trade_outcomes.trade_outcomes`, never
reading past its fold). The filter (:mod:`scalpbot.ml.meta_label`) is judged walk-forward, like everything
else in the job: fitted on the candidates of folds ``1 .. k - 1``, it filters fold ``k``, whose backtest
return with and without it is recorded (a fold with too few trades before it is not judged). It is kept only
when the judged folds earned more in sum with it; it is then fitted again on every fold's candidates and the
release's ONNX graph applies it. Otherwise the release is the primary model alone, and the manifest says why.
The manifest's validation metrics and folds stay the primary's (the refitted filter has seen every fold's
trades, so a validation score through it would be in sample); the judged folds' returns with and without the
filter are its out-of-sample evidence. A policy without a time stop (``max_hold`` 0) has its candidates held
for the label's horizon at most.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from scalpbot.core.labels import ohlc_prices
from scalpbot.core.policy import decide_arrays, signals_frame
from scalpbot.core.trade_outcomes import trade_outcomes
from scalpbot.errors import DataError
from scalpbot.jobs.learning import simulate
from scalpbot.jobs.services import Services
from scalpbot.jobs.train_steps import Fitted, Prepared
from scalpbot.ml.meta_label import fit_meta_filter

__all__ = ["candidate_trades", "meta_label"]


def candidate_trades(
    prepared: Prepared, chosen: Fitted, slippage: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return, per validation fold, the candidate trades' rows and whether each paid (net return > 0).

    A candidate is a bar of the fold where the tuned policy enters on the fold's out-of-sample predictions
    and whose trade ends inside the fold.
    """
    params = chosen.tuned.best_params
    side, _, sl, tp, _ = decide_arrays(chosen.probs, chosen.vol, params)
    hold = params.max_hold if params.max_hold > 0 else chosen.label.horizon
    prices = ohlc_prices(prepared.bars)
    out = []
    for fold in prepared.folds.folds:
        start, end = fold.validation
        outcome = trade_outcomes(
            prices, side, sl, tp, max_hold=hold, fee=prepared.venue.taker_fee, slippage=slippage, end=end
        )
        rows = start + np.flatnonzero(np.isfinite(outcome[start:end]))
        out.append((rows, outcome[rows] > 0.0))
    return out


def meta_label(services: Services, prepared: Prepared, chosen: Fitted, log: Callable[[str], None]) -> Fitted:
    """Return ``chosen`` with its meta filter when the folds keep it (module docstring), else without; its
    ``meta_record`` says what was measured either way. Called when ``train.meta_label`` is on."""
    costs = services.settings.backtest
    x = prepared.features
    columns = tuple(range(x.shape[1]))
    trades = candidate_trades(prepared, chosen, costs.slippage)
    folds: list[dict[str, Any]] = []
    unjudged = ""
    for k in range(1, len(trades)):
        rows = np.concatenate([r for r, _ in trades[:k]])
        wins = np.concatenate([w for _, w in trades[:k]])
        try:
            meta = fit_meta_filter(x[rows], chosen.probs[rows], wins, columns=columns)
        except DataError as e:  # too few trades before this fold: the next one may have enough
            unjudged = f"fold {k + 1} not judged: {e}"
            continue
        start, end = prepared.folds.folds[k].validation
        span = slice(start, end)
        filtered = meta.apply(x[span], chosen.probs[span])
        folds.append(
            {
                "fold": k + 1,
                "fitted_on": int(meta.rows),
                "candidates": int(trades[k][0].size),
                "return": _fold_return(services, prepared, chosen, chosen.probs[span], span),
                "filtered": _fold_return(services, prepared, chosen, filtered, span),
            }
        )
    record: dict[str, Any] = {"method": "logistic", "folds": folds}
    if not folds:
        reason = unjudged or "one validation fold: nothing to judge the filter on out of sample"
    else:
        before, after = (sum(f[key] for f in folds) for key in ("return", "filtered"))
        judged = ", ".join(str(f["fold"]) for f in folds)
        reason = (
            f"fold{'s' if len(folds) > 1 else ''} {judged}: {before:+.2%} unfiltered, {after:+.2%} filtered"
        )
        if after > before:  # every fold's trades are more than any judged fold was fitted on
            rows = np.concatenate([r for r, _ in trades])
            wins = np.concatenate([w for _, w in trades])
            meta = fit_meta_filter(x[rows], chosen.probs[rows], wins, columns=columns)
            log(f"meta filter kept: {reason}")
            record.update(adopted=True, reason=reason, filter=meta.to_dict())
            return dataclasses.replace(chosen, meta=meta, meta_record=record)
    log(f"meta filter not kept: {reason}")
    record.update(adopted=False, reason=reason)
    return dataclasses.replace(chosen, meta_record=record)


def _fold_return(
    services: Services, prepared: Prepared, chosen: Fitted, probs: np.ndarray, span: slice
) -> float:
    """Return the backtest's total return of the tuned policy on fold ``span`` with predictions ``probs``."""
    bars = prepared.bars.iloc[span]
    signals = signals_frame(bars.index, probs, chosen.vol[span], chosen.tuned.best_params)
    result = simulate(bars, signals, services.settings.backtest, prepared.venue, prepared.funding)
    return float(result.metrics.total_return)
