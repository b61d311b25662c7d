"""Several workers tune one study on a real PostgreSQL server: one budget, unique trials, a killed worker's
trial retried, and the same kind of result as one worker's."""

from __future__ import annotations

import multiprocessing
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import psycopg
import pytest

from scalpbot.core.evaluation import PolicyWindow
from scalpbot.core.policy import ParamBounds
from scalpbot.errors import ConfigError
from scalpbot.ml.shared_study import WORKER_ATTR, is_shared, shared_url
from scalpbot.ml.tuning import TuningResult, tune_policy
from scalpbot.ml.tuning_workers import tune_with_workers

from support.planted_window import planted_window
from support.tuning_worker import worker_command, worker_env

State = optuna.trial.TrialState


@pytest.fixture(scope="module")
def window() -> PolicyWindow:
    return planted_window()


def _trials(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return sorted(optuna.load_study(study_name=study, storage=url).get_trials(), key=lambda t: t.number)


def _start_together(
    url: str, study: str, budget: int, folder: Path, *extras: list[str]
) -> list[subprocess.Popen[str]]:
    """Start one worker process per ``extras`` entry and release them at once when all are ready."""
    workers = [
        subprocess.Popen(
            worker_command(url, study, budget, folder, *extra),
            env=worker_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for extra in extras
    ]
    deadline = time.monotonic() + 120
    while len(list(folder.glob("ready-*"))) < len(workers):
        assert time.monotonic() < deadline, "the workers did not get ready in 120 s"
        assert all(w.poll() is None for w in workers), [w.communicate() for w in workers]
        time.sleep(0.05)
    (folder / "go").touch()
    return workers


def _assert_result_covers(result: TuningResult, complete: list[optuna.trial.FrozenTrial]) -> None:
    """The result is the whole study's: every complete trial, the best one the max over them."""
    assert result.trial_numbers.tolist() == [t.number for t in complete]
    values = np.array([t.value for t in complete])
    np.testing.assert_array_equal(result.values, values)
    assert result.best_value == values.max()
    best = complete[int(np.argmax(values))]
    assert result.best_trial == best.number
    assert result.best_params == ParamBounds.default().with_values(best.params)


def test_postgresql_urls_are_shared_and_use_the_psycopg_driver() -> None:
    assert shared_url("postgresql://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    assert shared_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert not is_shared("sqlite:///study.db") and not is_shared(None)


def test_a_shared_study_needs_its_total_budget(window: PolicyWindow) -> None:
    with pytest.raises(ConfigError, match="top_up=True"):
        tune_policy(window, n_trials=2, storage="postgresql://nobody@127.0.0.1:1/none", show_progress=False)


def test_several_workers_need_postgresql(window: PolicyWindow, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PostgreSQL"):
        tune_with_workers(window, workers=2, storage=f"sqlite:///{tmp_path / 's.db'}", n_trials=4)


def test_an_unreachable_server_is_a_config_error(window: PolicyWindow) -> None:
    with pytest.raises(ConfigError, match="cannot reach the study storage"):
        tune_policy(
            window,
            n_trials=2,
            top_up=True,
            storage="postgresql://nobody@127.0.0.1:1/none",
            show_progress=False,
        )


def test_one_worker_on_postgresql_tunes_like_one_on_sqlite(
    window: PolicyWindow, postgres_url: str, tmp_path: Path
) -> None:
    """Same seed, one worker: the same proposals and result as a sqlite study; a rerun runs nothing more."""
    options = {"n_trials": 8, "seed": 3, "n_startup_trials": 4, "top_up": True, "show_progress": False}
    on_pg = tune_policy(window, storage=postgres_url.replace("+psycopg", ""), study_name="one", **options)
    on_file = tune_policy(window, storage=f"sqlite:///{tmp_path / 'one.db'}", study_name="one", **options)
    np.testing.assert_array_equal(on_pg.values, on_file.values)
    assert on_pg.best_params == on_file.best_params and on_pg.new_trials == 8
    again = tune_policy(window, storage=postgres_url, study_name="one", **options)
    assert again.new_trials == 0 and again.trial_numbers.tolist() == list(range(8))
    _assert_result_covers(again, _trials(postgres_url, "one"))


def test_a_shared_study_refuses_a_worker_with_another_window(window: PolicyWindow, postgres_url: str) -> None:
    tune_policy(window, n_trials=2, top_up=True, storage=postgres_url, study_name="w", show_progress=False)
    with pytest.raises(ConfigError, match="new study_name"):
        tune_policy(
            window.slice(0, 5 * 1440),
            n_trials=2,
            top_up=True,
            storage=postgres_url,
            study_name="w",
            show_progress=False,
        )


@pytest.mark.slow
def test_two_worker_processes_share_one_study_and_its_budget(
    window: PolicyWindow, postgres_url: str, tmp_path: Path
) -> None:
    """Two processes start at once on an empty database: one schema, one study, exactly the budget."""
    budget = 40
    workers = _start_together(postgres_url, "pair", budget, tmp_path, [], [])
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = _trials(postgres_url, "pair")
    assert [t.number for t in trials] == list(range(budget))  # no more, no fewer, every number once
    assert {t.state for t in trials} == {State.COMPLETE}
    by_worker = Counter(t.user_attrs[WORKER_ATTR] for t in trials)
    assert len(by_worker) == 2, by_worker  # both contributed
    assert sorted(int(out.strip()) for out, _ in outputs) == sorted(by_worker.values())
    assert len({tuple(sorted(t.params.items())) for t in trials}) == budget  # no proposal run twice
    # A third worker joining the finished study runs nothing and returns the whole study's result.
    result = tune_policy(
        window, n_trials=budget, top_up=True, storage=postgres_url, study_name="pair", min_trades=5,
        show_progress=False,
    )  # fmt: skip
    assert result.new_trials == 0
    _assert_result_covers(result, trials)


@pytest.mark.slow
def test_a_killed_workers_trial_is_retried_once_and_the_budget_completes(
    window: PolicyWindow, postgres_url: str, tmp_path: Path
) -> None:
    budget = 12
    (killed,) = _start_together(
        postgres_url, "kill", budget, tmp_path, ["--kill-at", "5", "--heartbeat", "1"]
    )
    killed.communicate(timeout=300)
    assert killed.returncode == -9
    before = _trials(postgres_url, "kill")
    assert [t.state for t in before] == [State.COMPLETE] * 4 + [State.RUNNING]  # killed mid-trial
    lost = before[-1]
    result = tune_policy(  # the rerun: fails the stale trial after 3 heartbeats, retries it, tops up
        window, n_trials=budget, top_up=True, storage=postgres_url, study_name="kill", min_trades=5,
        heartbeat_s=1, show_progress=False,
    )  # fmt: skip
    trials = _trials(postgres_url, "kill")
    states = Counter(t.state for t in trials)
    assert states == {State.COMPLETE: budget, State.FAIL: 1}
    assert trials[lost.number].state == State.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == lost.number]
    assert len(retries) == 1 and retries[0].state == State.COMPLETE
    assert retries[0].params == lost.params
    complete = [t for t in trials if t.state == State.COMPLETE]
    assert len({tuple(sorted(t.params.items())) for t in complete}) == budget  # nothing doubled
    assert result.new_trials == budget - 4
    _assert_result_covers(result, complete)


@pytest.mark.slow
def test_tune_with_workers_runs_the_budget_in_spawned_processes(
    window: PolicyWindow, postgres_url: str
) -> None:
    result, exits = tune_with_workers(
        window, workers=2, storage=postgres_url, study_name="spawned", n_trials=30, min_trades=5,
        show_progress=False,
    )  # fmt: skip
    assert exits == (0,)
    trials = _trials(postgres_url, "spawned")
    assert [t.number for t in trials] == list(range(30)) and {t.state for t in trials} == {State.COMPLETE}
    assert result.n_trials == 30 and 0 < result.new_trials <= 30
    _assert_result_covers(result, trials)


@pytest.mark.slow
def test_the_calling_process_tunes_while_its_workers_start(
    window: PolicyWindow, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starting a spawned worker blocks until it has imported the main module and read its windows: the caller
    does not wait for that. Here each start is held until the caller has completed a trial (at most 30 s)."""
    held: list[int] = []
    start = multiprocessing.context.SpawnProcess.start

    def start_once_tuning(process: multiprocessing.process.BaseProcess) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            complete = _complete_trials(postgres_url.replace("+psycopg", ""))
            if complete:
                held.append(complete)
                break
            time.sleep(0.05)
        start(process)

    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "start", start_once_tuning)
    result, exits = tune_with_workers(
        window, workers=3, storage=postgres_url, study_name="early", n_trials=40, min_trades=5,
        show_progress=False,
    )  # fmt: skip
    assert len(held) == 2 and min(held) >= 1  # both started once the caller had tuned
    assert exits == (0, 0) and result.n_trials == 40
    assert {t.state for t in _trials(postgres_url, "early")} == {State.COMPLETE}


def _complete_trials(dsn: str) -> int:
    """Return the complete trials in the database ``dsn`` by plain SQL (0 before Optuna has made its tables):
    reading through Optuna would create the tables, racing the workers that do."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        try:
            row = connection.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
    return int(row[0]) if row else 0


def test_a_workers_study_sessions_do_not_wait_for_the_disk_on_each_commit() -> None:
    from scalpbot.ml.shared_study import join_study

    from support.postgres import running_postgres

    with running_postgres(durable=True) as server:  # the server's own default: every commit flushed
        url = server.create_database()
        with psycopg.connect(url.replace("+psycopg", "")) as plain:
            assert plain.execute("SHOW synchronous_commit").fetchone() == ("on",)
        joined = join_study(url, "sessions", heartbeat_s=5, check=lambda study: None)
        storage = getattr(joined.study._storage, "_backend", joined.study._storage)  # optuna's cache wraps it
        assert isinstance(storage, optuna.storages.RDBStorage)
        with storage.engine.connect() as connection:
            setting = connection.exec_driver_sql("SHOW synchronous_commit").scalar_one()
        assert setting == "off"  # a trial's many small commits are not each flushed to the WAL on disk
