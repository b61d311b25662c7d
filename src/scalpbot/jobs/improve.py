"""Weekly improvements of the current release, each promoted only through the gate.

* Online learning: fine-tune the current release's model with its own model kind (for the Keras MLP: restored
  optimizer state, small learning rate, few epochs; each member of an ensemble; a calibrated release keeps
  its calibration, a meta-filtered one its filter) on the bars since its training cut-off, up to the most
  recent window (``recent_days``, 7 by default), and score it beside its parent on that window. A kind that
  cannot be fine-tuned is skipped with its reason.
* Reinforcement learning: a PPO agent trained on history before the most recent window proposes adjusted
  ``StrategyParams``; they are scored against the static tuned params on that window.

Both write a new immutable release and move ``current.json`` by compare-and-swap only when the gate
(:mod:`scalpbot.core.gate`, the train job's rules and thresholds) says so: the challenger is scored at the
configured costs and must trade enough, over enough days, and beat its parent by more than noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scalpbot.core.backtest.frame import BacktestResult
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.core.funding import funding_at_bars
from scalpbot.core.gate import GateVerdict, judge
from scalpbot.core.metrics import Metrics
from scalpbot.core.policy import StrategyParams, signals_frame
from scalpbot.core.timeframes import timeframe_delta
from scalpbot.core.window_features import model_inputs
from scalpbot.inference.signals import TradingModel, predict_bars
from scalpbot.jobs.learning import LabelConfig, labelled_rows, promote_through_gate, simulate
from scalpbot.jobs.monitor import Change, Step, WeekData
from scalpbot.jobs.services import Services, stored_funding, venue_profile
from scalpbot.state.dataset import SeriesId
from scalpbot.state.releases import ONNX_ARTIFACT, Pointer, Release, ReleaseStore, new_release_id

if TYPE_CHECKING:
    from scalpbot.ml.registry import ModelKind

_MIN_ROWS = 1_000


def _score(
    services: Services,
    series: SeriesId,
    bars: pd.DataFrame,
    probs: np.ndarray,
    vol: np.ndarray,
    params: StrategyParams,
) -> BacktestResult:
    """Return the backtest of ``params`` on ``bars`` with the model outputs ``probs``/``vol``, on the venue (a
    perpetual swap paying its stored funding)."""
    venue = venue_profile(services.store, services.settings, series)
    index = pd.DatetimeIndex(bars.index)
    funding = stored_funding(services.store, series, index[0], index[-1]) if len(index) else None
    signals = signals_frame(bars.index, probs, vol, params)
    return simulate(bars, signals, services.settings.backtest, venue, funding)


def _online_verdict(
    services: Services,
    series: SeriesId,
    window: pd.DataFrame,
    challenger: BacktestResult,
    incumbent: BacktestResult,
    parent: str,
) -> GateVerdict:
    """Weigh the fine-tuned model against its parent on the most recent window (one candidate: no trials)."""
    from scalpbot.ml.evidence import TrialSelection, gate_statistics, period_returns, window_days
    from scalpbot.ml.timing import timing_test

    settings = services.settings
    venue = venue_profile(services.store, settings, series)
    returns = period_returns(challenger.equity)
    costs = venue.trading_costs(settings.backtest.slippage)
    resamples = settings.gate.bootstrap_resamples
    statistics = gate_statistics(
        window="most recent window",
        rival=f"parent release {parent}",
        challenger_returns=returns,
        rival_returns=period_returns(incumbent.equity),
        total_return=float(challenger.metrics["total_return"] or 0.0),
        rival_return=float(incumbent.metrics["total_return"] or 0.0),
        trades=int(challenger.metrics["trades"] or 0),
        days=window_days(pd.DatetimeIndex(challenger.equity.index)),
        selection=TrialSelection.single(returns, "hour"),
        costs=costs,
        resamples=resamples,
        seed=settings.train.seed,
        timing=timing_test(window, challenger.trades, costs, resamples=resamples, seed=settings.train.seed),
    )
    return judge(statistics, settings.gate.rules(settings.train.min_trades))


def _current(
    services: Services, symbol: str, traded: tuple[str, ...]
) -> tuple[ReleaseStore, Pointer | None, Release, ModelKind] | None:
    """Return the release to improve, with its ONNX and its model kind's artifact, and the kind.

    The release is the current one, else the one that traded the week (nothing current yet).
    """
    from scalpbot.ml.ensemble import release_kind

    releases = ReleaseStore(services.store)
    pointer = releases.pointer(symbol)
    release_id = pointer.release_id if pointer is not None else (traded[-1] if traded else None)
    if release_id is None:
        return None
    manifest = releases.manifest(symbol, release_id)
    kind = release_kind(manifest.model_kind, int(manifest.get("ensemble") or 1))
    return releases, pointer, releases.load(symbol, release_id, (ONNX_ARTIFACT, kind.artifact)), kind


def _publish(
    services: Services,
    releases: ReleaseStore,
    pointer: Pointer | None,
    parent: Release,
    *,
    kind: str,
    onnx: bytes,
    artifacts: Mapping[str, bytes],
    params: StrategyParams,
    challenger: Metrics,
    incumbent: Metrics,
    verdict: GateVerdict,
    extra: dict[str, Any],
    now: datetime,
) -> Change:
    """Write the challenger as a release; promote it if the gate's ``verdict`` says so. Return the change record.

    ``artifacts``: beside ``onnx``, the model kind's own artifact (the parent's kind: the manifest's
    ``model_kind`` is inherited) and any other file of the release.
    """
    manifest = {
        k: v
        for k, v in parent.manifest.items()
        if k not in ("release_id", "symbol", "artifacts", "gate", "metrics", "training_key")
    }  # the training key names the train run that wrote a release: a derived one has its parent_release
    manifest.update(
        {
            "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "parent_release": parent.release_id,
            "origin": kind,
            "model_kind": parent.manifest.model_kind,
            "params": params.to_dict(),
            "metrics": {"recent": challenger, "parent_recent": incumbent},
            "gate": verdict.to_dict(),
            **extra,
        }
    )
    release_id = new_release_id(now, onnx + kind.encode() + str(sorted(params.to_dict().items())).encode())
    releases.write(parent.symbol, release_id, manifest, {ONNX_ARTIFACT: onnx, **artifacts})
    promoted, _ = promote_through_gate(
        releases, parent.symbol, release_id, verdict, pointer, now, reason=f"{kind}: {verdict.reason}"
    )
    reason = verdict.reason
    if verdict.promote and not promoted:
        reason = "another release was promoted meanwhile; the pointer was left as it is"
    return {
        "kind": kind,
        "parent": parent.release_id,
        "release_id": release_id,
        "promoted": promoted,
        "reason": reason,
        "challenger": challenger,
        "incumbent": incumbent,
        "gate": verdict.summary(),
    }


def online_learning(services: Services, symbol: str, timeframe: str, *, recent_days: float = 7.0) -> Step:
    """Return the monitor step that fine-tunes the current model and promotes it only through the gate."""

    def online_learning_step(week: WeekData) -> Change:
        from scalpbot.ml.registry import LabelledRows

        found = _current(services, symbol, week.releases)
        if found is None:
            return {"kind": "online_learning", "skipped": "no current release and none traded this week"}
        releases, pointer, parent, model = found
        if model.cannot_fine_tune is not None:
            return {
                "kind": "online_learning",
                "skipped": f"release {parent.release_id} is a '{model.name}' model, which cannot be "
                f"fine-tuned: {model.cannot_fine_tune}",
            }
        label_config = LabelConfig.from_manifest(parent.manifest["labels"])
        horizon = label_config.horizon
        cutoff = pd.Timestamp(parent.manifest["data_window"]["train"][1])
        end = week.end
        recent_start = end - pd.Timedelta(days=recent_days)
        step = timeframe_delta(timeframe)
        bars = services.dataset.read(week.series, cutoff - FEATURE_WINDOW * step, end)
        trading = TradingModel.from_release(parent)
        trading.feature_set.require(bars, release=parent.release_id, series=str(week.series))
        features = model_inputs(bars, trading.window, trading.feature_set)
        label, fwd, usable = labelled_rows(bars, features, label_config)
        times = pd.DatetimeIndex(bars.index)
        rows = (times > cutoff) & (times < recent_start - horizon * step) & usable
        if rows.sum() < _MIN_ROWS:
            return {
                "kind": "online_learning",
                "skipped": f"{int(rows.sum())} new labelled bars since the cut-off, need {_MIN_ROWS}",
            }
        model.threads(1)
        tuned = model.fine_tune(
            model.load(parent.artifacts[model.artifact]),
            LabelledRows(features[rows].astype(np.float32), label[rows], fwd[rows]),
            learning_rate=1e-4,
            epochs=2,
        )
        onnx = model.export_onnx(tuned.model)
        calibration = parent.manifest.get("calibration")
        if calibration:  # the parent's calibration: its policy was tuned on calibrated probabilities
            from scalpbot.ml.calibration import Calibration

            onnx = Calibration.from_dict(calibration).append_to(onnx)
        meta = parent.manifest.get("meta_label")
        if meta and meta.get("adopted"):  # and its meta filter, which decides which of its trades to take
            from scalpbot.ml.meta_label import MetaFilter

            onnx = MetaFilter.from_dict(meta["filter"]).append_to(onnx)
        from scalpbot.inference.onnx import OnnxModel

        recent = times >= recent_start
        old_probs, old_vol = predict_bars(
            bars, trading.model, feature_set=trading.feature_set, window=trading.window
        )
        new_probs, new_vol = predict_bars(
            bars, OnnxModel.from_bytes(onnx), feature_set=trading.feature_set, window=trading.window
        )
        window = bars.loc[recent]
        incumbent = _score(services, week.series, window, old_probs[recent], old_vol[recent], trading.params)
        challenger = _score(services, week.series, window, new_probs[recent], new_vol[recent], trading.params)
        verdict = _online_verdict(services, week.series, window, challenger, incumbent, parent.release_id)
        return _publish(
            services, releases, pointer, parent, kind="online_learning", onnx=onnx,
            artifacts={model.artifact: model.save(tuned.model)},
            params=trading.params, challenger=challenger.metrics, incumbent=incumbent.metrics, verdict=verdict,
            extra={"fine_tune": {"from": cutoff.isoformat(), "to": recent_start.isoformat(), "rows": int(rows.sum())}},
            now=services.clock.now(),
        )  # fmt: skip

    return online_learning_step


RL_AGENT_ARTIFACT = "rl_agent.zip"


def reinforcement_learning(
    services: Services, symbol: str, *, train_days: float = 14.0, timesteps: int = 4_096
) -> Step:
    """Return the monitor step that trains a PPO agent before the week and scores its params on the week."""

    def reinforcement_learning_step(week: WeekData) -> Change:
        from scalpbot.core.evaluation import PolicyWindow
        from scalpbot.core.policy import ParamBounds
        from scalpbot.ml.rl_agent import compare_on_holdout, judge_on_holdout, propose, train_agent
        from scalpbot.ml.rl_env import RlSettings

        found = _current(services, symbol, week.releases)
        if found is None:
            return {
                "kind": "reinforcement_learning",
                "skipped": "no current release and none traded this week",
            }
        releases, pointer, parent, model = found
        trading = TradingModel.from_release(parent)
        step = timeframe_delta(week.series.timeframe)
        start = week.start - pd.Timedelta(days=train_days)
        history = services.dataset.read(week.series, start - FEATURE_WINDOW * step, week.end)
        trading.feature_set.require(history, release=parent.release_id, series=str(week.series))
        probs, vol = predict_bars(
            history, trading.model, feature_set=trading.feature_set, window=trading.window
        )
        ready = np.asarray(history.index >= start)
        bars, probs, vol = history.loc[ready], probs[ready], vol[ready]
        before = np.asarray(bars.index < week.start)
        settings = RlSettings()
        days_before = int(before.sum() * step / pd.Timedelta(days=1))
        if days_before <= settings.warmup + 1:
            return {
                "kind": "reinforcement_learning",
                "skipped": f"{days_before} days of history before the week; the agent needs more than {settings.warmup + 1}",
            }
        costs = services.settings.backtest
        venue = venue_profile(services.store, services.settings, week.series)
        fee, rules, equity = venue.taker_fee, venue.order_rules(), costs.initial_equity
        base = trading.params
        bounds = ParamBounds.default().including(base)  # the agent adjusts the release's own params
        volume = bars["volume"].to_numpy(np.float64)
        index = pd.DatetimeIndex(bars.index)
        # a perpetual swap's stored rates, one per bar (empty for a market without funding)
        funding = funding_at_bars(stored_funding(services.store, week.series, index[0], index[-1]), index)

        def rates(rows: np.ndarray) -> np.ndarray:
            return funding[rows] if funding.shape[0] else funding

        window = PolicyWindow.from_frame(bars.loc[before], probs[before], vol[before])
        agent = train_agent(
            window, base, bounds, timesteps=timesteps, n_envs=2, seed=services.settings.train.seed,
            fee=fee, slippage=costs.slippage, rules=rules, equity=equity, volume=volume[before],
            settings=settings, funding=rates(before),
        )  # fmt: skip
        # Held out: the week itself; the warm-up days before it only feed the first observation.
        held = np.asarray(bars.index >= week.start - pd.Timedelta(days=settings.warmup))
        holdout = PolicyWindow.from_frame(bars.loc[held], probs[held], vol[held])
        result = compare_on_holdout(
            agent, holdout, base, bounds, fee, costs.slippage, rules=rules, equity=equity, volume=volume[held],
            funding=rates(held),
        )  # fmt: skip
        proposal = propose(
            agent, holdout, base, bounds, fee=fee, slippage=costs.slippage, rules=rules, equity=equity,
            volume=volume[held], funding=rates(held),
        )  # fmt: skip
        change = _publish(
            services, releases, pointer, parent, kind="reinforcement_learning",
            onnx=parent.artifacts[ONNX_ARTIFACT], params=proposal,
            artifacts={model.artifact: parent.artifacts[model.artifact], RL_AGENT_ARTIFACT: agent.save()},
            challenger=result["rl"], incumbent=result["static"], verdict=judge_on_holdout(
                result, services.settings.gate.rules(services.settings.train.min_trades),
                resamples=services.settings.gate.bootstrap_resamples, seed=services.settings.train.seed,
            ),
            extra={"rl": {"train_days": train_days, "timesteps": timesteps, "holdout": result}},
            now=services.clock.now(),
        )  # fmt: skip
        change["proposed_params"] = proposal.to_dict()
        change["static_params"] = base.to_dict()
        return change

    return reinforcement_learning_step


def weekly_steps(services: Services, series: SeriesId) -> tuple[Step, ...]:
    """Return the weekly improvement steps of ``series``: online learning, then the RL parameter adjustment."""
    return (
        online_learning(services, series.symbol, series.timeframe),
        reinforcement_learning(services, series.symbol),
    )
