"""The run lease on the memory and folder stores: one holder under contention, expiry takeover, owner-only release."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scalpbot.adapters.clock import FixedClock
from scalpbot.adapters.store import FolderStore, MemoryStore
from scalpbot.errors import ConfigError, ScalpbotError, StoreError
from scalpbot.ports import Store
from scalpbot.state.lease import LeaseHeld, LeaseLost, RunLease

from support.race import race

T0 = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
TTL = timedelta(minutes=5)
KEY = "state/bot/lease.json"
RACERS = 8


@pytest.fixture(params=["memory", "folder"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Return each local kind of store, empty."""
    return MemoryStore() if request.param == "memory" else FolderStore(tmp_path / "store")


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


def lease(store: Store, clock: FixedClock, owner: str) -> RunLease:
    return RunLease(store, "bot", clock, TTL, owner=owner)


def holder(store: Store) -> str:
    return str(json.loads(store.get(KEY).data)["owner"])


def test_acquire_writes_the_owner_and_expiry(store: Store, clock: FixedClock) -> None:
    info = lease(store, clock, "run-a").acquire()

    assert info.owner == "run-a"
    assert info.expires_at == T0 + TTL
    assert json.loads(store.get(KEY).data) == {
        "v": 1,
        "owner": "run-a",
        "acquired_at": "2024-03-01T10:00:00.000000Z",
        "expires_at": "2024-03-01T10:05:00.000000Z",
    }


def test_a_held_lease_refuses_another_run_and_says_who_and_until_when(
    store: Store, clock: FixedClock
) -> None:
    lease(store, clock, "run-a").acquire()
    clock.advance(TTL - timedelta(microseconds=1))

    with pytest.raises(LeaseHeld, match="held by 'run-a' until 2024-03-01T10:05:00") as caught:
        lease(store, clock, "run-b").acquire()

    assert caught.value.owner == "run-a" and caught.value.expires_at == T0 + TTL
    assert isinstance(caught.value, StoreError) and isinstance(caught.value, ScalpbotError)


def test_exactly_one_of_many_concurrent_runs_gets_the_lease(store: Store, clock: FixedClock) -> None:
    leases = [lease(store, clock, f"run-{i}") for i in range(RACERS)]

    winners, errors = race(RACERS, lambda i: leases[i].acquire())

    assert len(winners) == 1
    assert len(errors) == RACERS - 1 and all(isinstance(e, LeaseHeld) for e in errors)
    assert holder(store) == f"run-{winners[0]}"
    assert [x.held for x in leases].count(True) == 1


def test_an_expired_lease_is_taken_over(store: Store, clock: FixedClock) -> None:
    stale = lease(store, clock, "crashed")
    stale.acquire()
    clock.advance(TTL)

    info = lease(store, clock, "next").acquire()

    assert info.owner == "next" and info.expires_at == T0 + 2 * TTL
    assert holder(store) == "next"


def test_of_many_takers_of_an_expired_lease_exactly_one_wins(store: Store, clock: FixedClock) -> None:
    lease(store, clock, "crashed").acquire()
    clock.advance(TTL + timedelta(seconds=1))
    leases = [lease(store, clock, f"taker-{i}") for i in range(RACERS)]

    winners, errors = race(RACERS, lambda i: leases[i].acquire())

    assert len(winners) == 1
    assert all(isinstance(e, LeaseHeld) and e.owner == f"taker-{winners[0]}" for e in errors)
    assert holder(store) == f"taker-{winners[0]}"


def test_release_deletes_our_lease_and_frees_it(store: Store, clock: FixedClock) -> None:
    mine = lease(store, clock, "run-a")
    mine.acquire()

    assert mine.release() is True
    assert store.head(KEY) is None and not mine.held
    assert mine.release() is False
    lease(store, clock, "run-b").acquire()


def test_release_never_touches_a_lease_taken_over_by_another_run(store: Store, clock: FixedClock) -> None:
    slow = lease(store, clock, "slow")
    slow.acquire()
    clock.advance(TTL * 2)
    lease(store, clock, "next").acquire()

    assert slow.release() is False
    assert holder(store) == "next"


def test_a_lease_that_was_never_acquired_releases_nothing(store: Store, clock: FixedClock) -> None:
    lease(store, clock, "run-a").acquire()

    assert lease(store, clock, "run-b").release() is False
    assert holder(store) == "run-a"


def test_the_context_manager_releases_on_exit_and_on_error(store: Store, clock: FixedClock) -> None:
    with lease(store, clock, "run-a") as held:
        assert held.held and holder(store) == "run-a"
    assert store.head(KEY) is None

    with pytest.raises(RuntimeError, match="boom"), lease(store, clock, "run-b"):
        raise RuntimeError("boom")
    assert store.head(KEY) is None


def test_the_context_manager_does_not_enter_while_another_run_holds_it(
    store: Store, clock: FixedClock
) -> None:
    lease(store, clock, "run-a").acquire()
    entered = False

    with pytest.raises(LeaseHeld), lease(store, clock, "run-b"):
        entered = True

    assert not entered and holder(store) == "run-a"


def test_renew_extends_our_lease_and_fails_once_it_was_taken_over(store: Store, clock: FixedClock) -> None:
    mine = lease(store, clock, "run-a")
    mine.acquire()
    clock.advance(timedelta(minutes=4))
    assert mine.renew().expires_at == T0 + timedelta(minutes=9)
    clock.advance(timedelta(minutes=4, seconds=59))
    with pytest.raises(LeaseHeld):
        lease(store, clock, "run-b").acquire()

    clock.advance(timedelta(seconds=1))
    lease(store, clock, "run-b").acquire()
    with pytest.raises(LeaseLost, match="taken over"):
        mine.renew()
    assert not mine.held


def test_acquiring_again_extends_our_own_lease(store: Store, clock: FixedClock) -> None:
    mine = lease(store, clock, "run-a")
    mine.acquire()
    clock.advance(timedelta(minutes=1))

    assert mine.acquire().expires_at == T0 + timedelta(minutes=6)


def test_an_unreadable_lease_is_treated_as_expired(store: Store, clock: FixedClock) -> None:
    store.put(KEY, b"not json")

    assert lease(store, clock, "run-a").acquire().owner == "run-a"


def test_the_default_owner_is_unique_per_lease(store: Store, clock: FixedClock) -> None:
    first, second = RunLease(store, "bot", clock, TTL), RunLease(store, "bot", clock, TTL)

    assert first.owner != second.owner
    first.acquire()
    with pytest.raises(LeaseHeld, match=first.owner):
        second.acquire()


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-1), 60])
def test_a_ttl_that_is_not_a_positive_timedelta_is_a_config_error(
    store: Store, clock: FixedClock, ttl: object
) -> None:
    with pytest.raises(ConfigError, match="ttl"):
        RunLease(store, "bot", clock, ttl)  # type: ignore[arg-type]
