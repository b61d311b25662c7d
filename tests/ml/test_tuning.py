"""Bayesian optimization of the policy: reproducible, finds a planted optimum, penalizes thin trials, resumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalpbot.adapters.store.memory import MemoryStore
from scalpbot.core.evaluation import PolicyEvaluator, PolicyWindow
from scalpbot.core.policy import ParamBounds, StrategyParams
from scalpbot.errors import ConfigError
from scalpbot.ml.tuning import load_study_db, save_study_db, tune_policy

from support.planted_window import NOISE_EDGE, TRUE_EDGE, planted_window


@pytest.fixture(scope="module")
def window() -> PolicyWindow:
    return planted_window()


THRESHOLD_ONLY = ParamBounds(
    {"entry_threshold": (0.05, 0.95)}, base=StrategyParams(sl_mult=1.0, tp_mult=1.5, max_hold=10)
)


def test_study_finds_the_planted_entry_threshold(window: PolicyWindow) -> None:
    result = tune_policy(window, THRESHOLD_ONLY, n_trials=30, seed=0, show_progress=False)
    assert NOISE_EDGE < result.best_params.entry_threshold <= TRUE_EDGE
    assert result.best_is_valid
    assert result.best_value > 10.0  # annualized Sharpe of trading the true signals alone
    # the objective is the annualized Sharpe the evaluator (= the backtest) gives the best params
    assert result.best_value == PolicyEvaluator(window).__call__(result.best_params).sharpe
    assert result.best_params.sl_mult == 1.0 and result.best_params.max_hold == 10


def test_seeded_study_is_reproducible(window: PolicyWindow) -> None:
    bounds = ParamBounds({"entry_threshold": (0.05, 0.6), "tp_mult": (0.5, 4.0), "max_hold": (2, 60)})
    runs = [
        tune_policy(window, bounds, n_trials=15, seed=11, n_startup_trials=5, show_progress=False)
        for _ in "ab"
    ]
    np.testing.assert_array_equal(runs[0].values, runs[1].values)
    assert runs[0].best_params == runs[1].best_params
    other = tune_policy(window, bounds, n_trials=15, seed=12, n_startup_trials=5, show_progress=False)
    assert not np.array_equal(other.values, runs[0].values)


def test_trials_under_min_trades_get_a_penalty_ordered_by_trade_count(window: PolicyWindow) -> None:
    result = tune_policy(
        window, THRESHOLD_ONLY, n_trials=12, seed=0, min_trades=100_000, penalty=-50.0, show_progress=False
    )
    assert not result.best_is_valid
    assert np.all((result.values >= -51.0) & (result.values < -50.0))
    order = np.argsort(result.trial_trades)
    assert np.all(np.diff(result.values[order]) >= 0.0)


def test_resumed_sqlite_study_continues_trial_numbers(window: PolicyWindow, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = tune_policy(
        window, THRESHOLD_ONLY, n_trials=4, storage=storage, study_name="btc", show_progress=False
    )
    resumed = tune_policy(
        window, THRESHOLD_ONLY, n_trials=3, storage=storage, study_name="btc", show_progress=False
    )
    assert first.trial_numbers.tolist() == [0, 1, 2, 3]
    assert resumed.trial_numbers.tolist() == list(range(7))
    assert (resumed.n_trials, resumed.new_trials) == (7, 3)
    np.testing.assert_array_equal(resumed.values[:4], first.values)
    np.testing.assert_array_equal(
        resumed.trial_returns[:4], first.trial_returns
    )  # earlier trials re-evaluated
    assert resumed.best_value >= first.best_value
    assert resumed.trial_params[:4] == first.trial_params
    # the sampler is reseeded past the stored trials: the new proposals are not a replay of the first ones
    first_thresholds = {p.entry_threshold for p in first.trial_params}
    assert not first_thresholds & {p.entry_threshold for p in resumed.trial_params[4:]}


def test_resuming_on_another_window_or_settings_is_refused(window: PolicyWindow, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    tune_policy(window, THRESHOLD_ONLY, n_trials=2, storage=storage, study_name="btc", show_progress=False)
    with pytest.raises(ConfigError, match="new study_name"):
        tune_policy(
            window,
            THRESHOLD_ONLY,
            n_trials=2,
            storage=storage,
            study_name="btc",
            fee=0.001,
            show_progress=False,
        )
    with pytest.raises(ConfigError, match="new study_name"):
        tune_policy(
            window.slice(0, 5 * 1440),
            THRESHOLD_ONLY,
            n_trials=2,
            storage=storage,
            study_name="btc",
            show_progress=False,
        )


def test_study_file_travels_through_the_store(window: PolicyWindow, tmp_path: Path) -> None:
    store = MemoryStore()
    key = "models/BTC_USDT/studies/policy.db"
    here, there = tmp_path / "here" / "study.db", tmp_path / "there" / "study.db"
    assert load_study_db(store, key, here) is False
    assert not here.exists()
    here.parent.mkdir()
    tune_policy(
        window, THRESHOLD_ONLY, n_trials=3, storage=f"sqlite:///{here}", study_name="p", show_progress=False
    )
    save_study_db(store, key, here)
    assert load_study_db(store, key, there) is True
    assert there.read_bytes() == here.read_bytes()
    resumed = tune_policy(
        window, THRESHOLD_ONLY, n_trials=2, storage=f"sqlite:///{there}", study_name="p", show_progress=False
    )
    assert resumed.trial_numbers.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="does not exist"):
        save_study_db(store, key, tmp_path / "missing.db")


def test_result_reports_overfitting_measures(window: PolicyWindow) -> None:
    result = tune_policy(
        window, ParamBounds.default(), n_trials=25, seed=3, sampler="random", show_progress=False
    )
    assert result.trial_returns.shape == (25, window.day_ends.shape[0])
    assert result.sharpe_variance > 0.0
    assert 0.0 <= result.deflated_sharpe() <= 1.0
    assert 0.0 <= result.backtest_overfitting(n_splits=4).probability <= 1.0
    summary = result.summary()
    assert summary["n_trials"] == 25 and summary["n_days"] == 8
    assert np.all(np.isfinite(result.trial_seconds))


def test_gp_sampler_runs_a_small_study(window: PolicyWindow) -> None:
    pytest.importorskip("torch")
    result = tune_policy(
        window, THRESHOLD_ONLY, n_trials=8, sampler="gp", n_startup_trials=4, show_progress=False
    )
    assert result.n_trials == 8


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_trials": 0}, "n_trials"),
        ({"sampler": "cmaes"}, "sampler 'cmaes'"),
        ({"min_trades": 0}, "min_trades"),
    ],
)
def test_bad_options_are_rejected(window: PolicyWindow, options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tune_policy(window, THRESHOLD_ONLY, show_progress=False, **options)  # type: ignore[arg-type]


def test_folds_are_scored_together_with_a_penalty_for_their_spread(window: PolicyWindow) -> None:
    folds = [window.slice(0, 2880), window.slice(2880, 5760), window.slice(5760, len(window))]
    pooled = tune_policy(folds, THRESHOLD_ONLY, n_trials=12, seed=3, dispersion=0.0, show_progress=False)
    penalized = tune_policy(folds, THRESHOLD_ONLY, n_trials=12, seed=3, dispersion=2.0, show_progress=False)
    assert pooled.fold_slices == ((0, 2), (2, 4), (4, 8)) and len(pooled.best_folds) == 3
    best = pooled.best_params
    evaluations = [PolicyEvaluator(fold)(best) for fold in folds]
    returns = np.concatenate([e.daily_returns for e in evaluations])
    np.testing.assert_array_equal(pooled.trial_returns[pooled.best_index], returns)
    assert pooled.best_value == pytest.approx(returns.mean() / returns.std(ddof=1) * np.sqrt(365.0))
    assert [f["trades"] for f in pooled.best_folds] == [e.trades for e in evaluations]
    # Same trials (same seed, same proposals): the spread of the folds' mean returns is subtracted.
    spread = np.std([returns[a:b].mean() for a, b in pooled.fold_slices])
    value = penalized.values[pooled.best_index]
    assert value == pytest.approx((returns.mean() - 2.0 * spread) / returns.std(ddof=1) * np.sqrt(365.0))
    assert np.all(penalized.values <= pooled.values + 1e-12)


def test_the_return_objective_is_the_annualized_mean_return_less_the_spread(window: PolicyWindow) -> None:
    folds = [window.slice(0, 4320), window.slice(4320, len(window))]
    tuned = tune_policy(folds, THRESHOLD_ONLY, n_trials=8, seed=1, objective="return", show_progress=False)
    returns = tuned.trial_returns[tuned.best_index]
    spread = np.std([returns[a:b].mean() for a, b in tuned.fold_slices])
    assert tuned.best_value == pytest.approx((returns.mean() - spread) * 365.0)


def test_the_alpha_objective_gives_a_policy_that_only_holds_the_market_nothing_and_keeps_timing() -> None:
    from scalpbot.ml.tuning import _score, hedged_returns

    rng = np.random.default_rng(11)
    market = rng.normal(0.002, 0.01, 2_000)  # a strongly rising market, hour by hour
    holding = 0.9 * market  # long 90 % of the time: its mean return is the market's drift
    timing = rng.normal(0.0004, 0.004, 2_000)  # an edge of its own, unrelated to the market
    assert np.allclose(hedged_returns(holding, market), 0.0, atol=1e-15)
    assert np.allclose(hedged_returns(timing + 0.5 * market, market), timing, atol=2e-4)
    options = {"min_trades": 1, "penalty": -100.0, "dispersion": 0.0, "periods_per_year": 8760.0}
    slices = ((0, 2_000),)
    for objective, holder_wins in (("return", True), ("alpha", False)):
        held = _score(50, holding, slices, objective=objective, market=market, **options)
        timed = _score(50, timing, slices, objective=objective, market=market, **options)
        assert (held > timed) is holder_wins, objective
    assert hedged_returns(timing, np.zeros(2_000)) is timing  # a flat market: nothing to hedge


def _drift_after_events(days: int = 6, seed: int = 5) -> PolicyWindow:
    """Return hourly-scored bars whose price drifts up 1 % over the 30 bars after an event every 120 bars (so
    the market itself rises about 12 % a day), with predictions that flag each event (edge 0.6) and lean long
    everywhere else (edge 0.1)."""
    rng = np.random.default_rng(seed)
    n = days * 1440
    moves = rng.normal(0.0, 0.0004, n)
    events = np.arange(7, n - 31, 120)
    for event in events:
        moves[event + 1 : event + 31] += 0.01 / 30
    close = 100.0 * np.exp(np.cumsum(moves))
    open_ = np.append(100.0, close[:-1])
    bars = pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.0001,
            "low": np.minimum(open_, close) * 0.9999,
            "close": close,
        },
        index=pd.date_range("2024-03-01", periods=n, freq="1min", tz="UTC"),
    )
    probs = np.tile([0.35, 0.2, 0.45], (n, 1))
    probs[events] = [0.1, 0.2, 0.7]
    return PolicyWindow.from_frame(bars, probs, np.full(n, 0.004), period="1h")


def test_the_timing_objective_keeps_an_edge_that_moves_the_market_and_gives_holding_it_nothing() -> None:
    from scalpbot.core.evaluation import mean_bar_return
    from scalpbot.ml.tuning import _score, market_returns

    window = _drift_after_events()
    base = StrategyParams(sl_mult=10.0, tp_mult=10.0, risk_per_trade=0.2, allow_short=False)
    holder = base.replace(entry_threshold=0.05, max_hold=240)  # long nearly all the time
    timer = base.replace(entry_threshold=0.5, max_hold=30)  # long for the 30 bars after each event
    evaluator = PolicyEvaluator(window, fee=0.001, periods_per_year=8760.0, track_exposure=True)
    options = {"min_trades": 1, "penalty": -100.0, "dispersion": 0.0, "periods_per_year": 8760.0}
    slices = ((0, window.day_ends.shape[0]),)
    market, drift = market_returns(window), mean_bar_return(window)

    def scores(params: StrategyParams) -> dict[str, float]:
        e = evaluator(params)
        assert e.exposure is not None
        return {
            objective: _score(
                e.trades, e.daily_returns, slices, objective=objective, market=market,
                at_random=e.exposure * drift, **options,
            )
            for objective in ("return", "alpha", "timing")
        }  # fmt: skip

    held, timed = scores(holder), scores(timer)
    assert held["return"] > 0.0 and timed["return"] > 0.0
    assert held["timing"] < 0.1 * held["return"]  # what it earns, the same exposure earns at random bars
    assert timed["timing"] > 0.6 * timed["return"]  # the timing keeps most of what it earns
    assert timed["timing"] > held["timing"]
    assert timed["alpha"] < 0.5 * timed["return"]  # regressed on a market its own edge moves: hedged away

    bounds = ParamBounds({"entry_threshold": (0.05, 0.7), "max_hold": (5, 240)}, base=base)
    tuned = tune_policy(
        window, bounds, n_trials=40, seed=3, fee=0.001, min_trades=10, periods_per_year=8760.0,
        objective="timing", show_progress=False,
    )  # fmt: skip
    assert 0.1 < tuned.best_params.entry_threshold <= 0.6  # the events alone
    assert tuned.best_params.max_hold <= 60  # for about the drift they start
    e = evaluator(tuned.best_params)
    assert e.exposure is not None
    expected = _score(
        e.trades, e.daily_returns, slices, objective="timing", at_random=e.exposure * drift, **options
    )
    assert tuned.best_value == pytest.approx(expected, rel=1e-12)


def test_the_time_stop_is_sampled_on_a_log_scale_unless_its_bounds_start_at_zero() -> None:
    import optuna

    from scalpbot.ml.tuning import _suggest

    for low, log in ((5, True), (0, False)):  # a study keeps one scale per parameter: one study each
        trial = optuna.create_study().ask()
        params = _suggest(trial, ParamBounds({"max_hold": (low, 240)}))
        assert trial.distributions["max_hold"].log is log  # type: ignore[attr-defined]
        assert low <= params.max_hold <= 240
    study = optuna.create_study()
    samples = [_suggest(study.ask(), ParamBounds({"max_hold": (5, 240)})).max_hold for _ in range(400)]
    assert 0.35 < np.mean(np.array(samples) <= 34) < 0.65  # the geometric middle of 5..240 is 34 bars


def _event_folds(
    events: tuple[tuple[int, float, float], ...], trend: float = 0.0, days: int = 10, seed: int = 9
) -> list[PolicyWindow]:
    """Return two folds (5 and 5 days) of hourly-scored bars whose price rises ``trend`` a bar on average, and
    for each ``(first, drift, p_long)`` of ``events`` an event every 240 bars from bar ``first``, after which
    the price drifts up ``drift`` over 30 bars and which the predictions give ``p_long``; every other bar
    gets p_long 0.45."""
    rng = np.random.default_rng(seed)
    n = days * 1440
    moves = rng.normal(trend, 0.0002, n)
    probs = np.tile([0.3, 0.25, 0.45], (n, 1))
    for first, drift, p_long in events:
        for event in np.arange(first, n - 31, 240):
            moves[event + 1 : event + 31] += drift / 30
            probs[event] = [0.1, 0.9 - p_long, p_long]
    close = 100.0 * np.exp(np.cumsum(moves))
    open_ = np.append(100.0, close[:-1])
    bars = pd.DataFrame(
        {"open": open_, "high": np.maximum(open_, close), "low": np.minimum(open_, close), "close": close},
        index=pd.date_range("2024-03-01", periods=n, freq="1min", tz="UTC"),
    )
    window = PolicyWindow.from_frame(bars, probs, np.full(n, 0.004), period="1h")
    return [window.slice(0, n // 2), window.slice(n // 2, n)]


FLOOR_ONLY = ParamBounds(
    {"min_confidence": (0.3, 0.95)},
    base=StrategyParams(
        entry_threshold=0.05, sl_mult=10.0, tp_mult=10.0, risk_per_trade=0.2, full_size_edge=0.0,
        max_hold=30, allow_short=False,
    ),
)  # fmt: skip
"""Only the confidence floor is tuned; every trade is held 30 bars at full size, long."""
FLOOR_STUDY: dict[str, object] = {
    "fee": 0.001, "min_trades": 10, "periods_per_year": 8760.0, "objective": "timing", "show_progress": False,
}  # fmt: skip


def test_the_confidence_floor_chosen_again_on_the_return_takes_the_weak_events_that_pay_their_costs() -> None:
    from scalpbot.ml.tuning import FLOOR_REFINED

    # strong events: 1 % at p_long 0.9; weak ones: 0.3 % at 0.65; the market rises about 7.8 % a day
    folds = _event_folds(((7, 0.01, 0.9), (127, 0.003, 0.65)))
    tuned = tune_policy(folds, FLOOR_ONLY, n_trials=40, seed=4, floor="tuned", **FLOOR_STUDY)  # type: ignore[arg-type]
    # a weak event nets 0.3 % - 0.2 % of costs, less than 30 bars of this market at random: the timing
    # objective takes the strong events only
    assert 0.65 < tuned.best_params.min_confidence <= 0.9
    assert tuned.floor == {} and FLOOR_REFINED not in tuned.trial_numbers

    again = tune_policy(folds, FLOOR_ONLY, n_trials=40, seed=4, floor="return", **FLOOR_STUDY)  # type: ignore[arg-type]
    assert 0.45 < again.best_params.min_confidence <= 0.65  # the weak events too, and no other bar
    assert again.best_params == tuned.best_params.replace(min_confidence=again.best_params.min_confidence)
    assert again.floor["tuned"] == tuned.best_params.min_confidence
    assert again.floor["chosen"] == again.best_params.min_confidence
    assert again.floor["chosen_value"] > again.floor["tuned_value"]
    # the study is the same; the policy that ships is one more row, which the DSR and the PBO judge
    assert again.best_value == tuned.best_value and again.best_trial == tuned.best_trial
    assert again.n_trials == tuned.n_trials and again.n_rows == tuned.n_rows + 1
    assert again.best_index == again.n_rows - 1
    assert again.trial_numbers[-1] == FLOOR_REFINED
    evaluations = [PolicyEvaluator(f, fee=0.001, periods_per_year=8760.0)(again.best_params) for f in folds]
    np.testing.assert_array_equal(
        again.trial_returns[again.best_index], np.concatenate([e.daily_returns for e in evaluations])
    )
    assert [f["trades"] for f in again.best_folds] == [e.trades for e in evaluations]
    assert again.summary()["floor"]["chosen"] == again.best_params.min_confidence


def test_a_floor_whose_extra_trades_only_ride_the_trend_is_not_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    import math

    import scalpbot.ml.tuning as tuning

    # A market rising about 17 % a day, and an event every 240 bars that adds 1 % over 30 bars: below the
    # events' floor every bar trades, and each 30-bar trade nets the trend less the round trip, more than 0.
    folds = _event_folds(((7, 0.01, 0.9),), trend=0.00012, seed=13)
    kept = tune_policy(folds, FLOOR_ONLY, n_trials=30, seed=2, floor="return", **FLOOR_STUDY)  # type: ignore[arg-type]
    assert 0.45 < kept.best_params.min_confidence <= 0.9  # the events alone
    assert kept.floor["study_objective_chosen"] >= kept.floor["study_objective_least"]
    # the sweep alone, which the trades' timing does not bound, would trade every bar
    monkeypatch.setattr(tuning, "FLOOR_KEEPS", -math.inf)
    riding = tune_policy(folds, FLOOR_ONLY, n_trials=30, seed=2, floor="return", **FLOOR_STUDY)  # type: ignore[arg-type]
    assert riding.best_params.min_confidence <= 0.45
    assert riding.floor["chosen_value"] > kept.floor["chosen_value"]
