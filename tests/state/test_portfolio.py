"""The portfolio snapshot on the memory and folder stores: lossless round trips and compare-and-swap."""

from __future__ import annotations

import dataclasses
import json
import math
import threading
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalpbot.adapters.store import FolderStore, MemoryStore
from scalpbot.core.execution import Position
from scalpbot.core.risk import RiskState, initial_risk_state
from scalpbot.errors import CorruptArtifactError, DataError, PreconditionFailed
from scalpbot.ports import Store
from scalpbot.state.codec import position_from_dict, position_to_dict
from scalpbot.state.portfolio import (
    PortfolioSnapshot,
    PortfolioStore,
    risk_state_from_dict,
    risk_state_to_dict,
)

T0 = pd.Timestamp("2024-03-01 10:00", tz="UTC")


@pytest.fixture(params=["memory", "folder"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Return each local kind of store, empty."""
    return MemoryStore() if request.param == "memory" else FolderStore(tmp_path / "store")


def snapshot(equity: float = 10_000.0, **changes: object) -> PortfolioSnapshot:
    base = PortfolioSnapshot(
        last_bar_time=T0,
        equity=equity,
        risk=initial_risk_state(equity, T0),
        position=Position(
            side=-1,
            qty=0.125,
            entry_price=50_123.45,
            entry_time=T0 - pd.Timedelta(minutes=3),
            sl_price=50_400.0,
            tp_price=-math.inf,
            max_hold=30,
            entry_client_id="sb0123456789abcdef0123456789abcd",
        ),
        open_orders=("sbsl", "sbtp"),
        release_id="20240301T000000Z-abc",
        last_fill_time=T0 - pd.Timedelta(minutes=3),
        recorded_fills=("sbentry:entry",),
        extra={"note": "ok", "counts": [1, 2]},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_load_before_the_first_save_returns_none(store: Store) -> None:
    assert PortfolioStore(store, "bot").load() is None


def test_a_saved_snapshot_loads_back_equal_with_its_etag(store: Store) -> None:
    portfolio = PortfolioStore(store, "bot")
    etag = portfolio.save(snapshot(), None)

    loaded = portfolio.load()

    assert loaded is not None
    assert loaded.snapshot == snapshot()
    assert loaded.etag == etag == store.head("state/bot/portfolio.json")


def test_a_snapshot_written_with_its_recorded_fills_in_extra_reads_them_as_the_field(store: Store) -> None:
    portfolio = PortfolioStore(store, "bot")
    portfolio.save(snapshot(), None)
    document = json.loads(store.get(portfolio.key).data)
    document["extra"]["recorded_fills"] = document.pop("recorded_fills")
    store.put(portfolio.key, json.dumps(document).encode())

    loaded = portfolio.load()

    assert loaded is not None and loaded.snapshot == snapshot()


def test_the_first_save_is_create_only(store: Store) -> None:
    portfolio = PortfolioStore(store, "bot")
    portfolio.save(snapshot(), None)

    with pytest.raises(PreconditionFailed, match="re-read"):
        portfolio.save(snapshot(equity=1.0), None)


def test_a_save_on_a_stale_etag_loses_and_a_re_read_wins(store: Store) -> None:
    portfolio = PortfolioStore(store, "bot")
    portfolio.save(snapshot(), None)
    first, second = portfolio.load(), portfolio.load()
    assert first is not None and second is not None

    portfolio.save(dataclasses.replace(first.snapshot, equity=10_100.0), first.etag)
    with pytest.raises(PreconditionFailed, match="another run saved first"):
        portfolio.save(dataclasses.replace(second.snapshot, equity=9_900.0), second.etag)

    fresh = portfolio.load()
    assert fresh is not None and fresh.snapshot.equity == 10_100.0
    portfolio.save(dataclasses.replace(fresh.snapshot, equity=9_900.0), fresh.etag)
    assert portfolio.load().snapshot.equity == 9_900.0  # type: ignore[union-attr]


def test_concurrent_read_modify_write_loses_no_update(store: Store) -> None:
    portfolio = PortfolioStore(store, "bot")
    portfolio.save(snapshot(equity=0.0, extra={"n": 0}), None)
    workers, rounds = 4, 5
    barrier = threading.Barrier(workers)

    def work() -> None:
        barrier.wait()
        for _ in range(rounds):
            while True:
                current = portfolio.load()
                assert current is not None
                n = current.snapshot.extra["n"] + 1
                try:
                    portfolio.save(dataclasses.replace(current.snapshot, extra={"n": n}), current.etag)
                    break
                except PreconditionFailed:
                    continue

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert portfolio.load().snapshot.extra["n"] == workers * rounds  # type: ignore[union-attr]


def test_a_snapshot_without_a_position_round_trips(store: Store) -> None:
    portfolio = PortfolioStore(store, "bot")
    empty = snapshot(position=None, open_orders=(), release_id=None, last_fill_time=None, last_bar_time=None)
    portfolio.save(empty, None)
    assert portfolio.load().snapshot == empty  # type: ignore[union-attr]


times = st.datetimes(
    min_value=pd.Timestamp("2000-01-01").to_pydatetime(), max_value=pd.Timestamp("2100-01-01").to_pydatetime()
).map(lambda t: pd.Timestamp(t, tz="UTC"))
finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    risk=st.builds(
        RiskState,
        day=st.dates(min_value=date(2000, 1, 1)),
        day_start_equity=finite,
        peak_equity=finite,
        last_equity=finite,
        consecutive_losses=st.integers(0, 1000),
        cooldown_until=st.none() | times,
        halted=st.booleans(),
        halt_reason=st.text(min_size=1),
        halted_at=st.none() | times,
    ),
    position=st.builds(
        Position,
        side=st.sampled_from([-1, 1]),
        qty=finite,
        entry_price=finite,
        entry_time=times,
        sl_price=st.floats(allow_nan=False),
        tp_price=st.floats(allow_nan=False),
        max_hold=st.integers(0, 10_000),
        entry_client_id=st.text(min_size=1),
    ),
)
def test_risk_state_and_position_round_trip_exactly(risk: RiskState, position: Position) -> None:
    risk_back = risk_state_from_dict(json.loads(json.dumps(risk_state_to_dict(risk), allow_nan=False)))
    position_back = position_from_dict(json.loads(json.dumps(position_to_dict(position), allow_nan=False)))

    assert risk_back == risk
    assert position_back == position


def test_a_corrupt_or_newer_snapshot_is_a_corrupt_artifact(store: Store) -> None:
    portfolio = PortfolioStore(store, "bot")
    store.put(portfolio.key, b'{"v": 1, "equity": 1.0}')
    with pytest.raises(CorruptArtifactError, match="malformed"):
        portfolio.load()
    store.put(portfolio.key, b'{"v": 2}')
    with pytest.raises(CorruptArtifactError, match="upgrade"):
        portfolio.load()
    store.put(portfolio.key, b"\x00garbage")
    with pytest.raises(CorruptArtifactError, match="not valid JSON"):
        portfolio.load()


def test_values_that_cannot_be_json_are_refused_before_writing(store: Store) -> None:
    portfolio = PortfolioStore(store, "bot")
    with pytest.raises(DataError, match="equity"):
        portfolio.save(snapshot(equity=math.nan), None)
    with pytest.raises(DataError, match="credential"):
        portfolio.save(snapshot(extra={"api_key": "k"}), None)
    open_position = snapshot().position
    assert open_position is not None
    with pytest.raises(DataError, match="NaN"):
        portfolio.save(snapshot(position=dataclasses.replace(open_position, qty=math.nan)), None)
    assert portfolio.load() is None
