"""Releases are immutable and checksummed; the pointer moves only by compare-and-swap."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scalpbot.adapters.store.folder import FolderStore
from scalpbot.adapters.store.memory import MemoryStore
from scalpbot.errors import CorruptArtifactError, ModelError, PreconditionFailed
from scalpbot.ports import Store
from scalpbot.releases import ONNX_ARTIFACT, ReleaseStore, new_release_id

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
SYMBOL = "BTC/USDT"


def _release(releases: ReleaseStore, payload: bytes, when: datetime = NOW) -> str:
    release_id = new_release_id(when, payload)
    return releases.write(
        SYMBOL,
        release_id,
        {"timeframe": "1m", "metrics": {"test": {"total_return": 0.01}}},
        {ONNX_ARTIFACT: payload, "model.keras": payload[::-1]},
    )


@pytest.fixture(params=["memory", "folder"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return MemoryStore() if request.param == "memory" else FolderStore(tmp_path / "store")


def test_a_written_release_loads_with_verified_artifacts(store: Store) -> None:
    releases = ReleaseStore(store)
    release_id = _release(releases, b"onnx-bytes")
    loaded = releases.load(SYMBOL, release_id)
    assert loaded.artifacts[ONNX_ARTIFACT] == b"onnx-bytes"
    assert loaded.manifest["artifacts"][ONNX_ARTIFACT]["bytes"] == len(b"onnx-bytes")
    assert store.list("models/BTC_USDT/releases/") == [
        f"models/BTC_USDT/releases/{release_id}/{name}"
        for name in ("manifest.json", "model.keras", "model.onnx")
    ]


def test_a_corrupted_artifact_is_refused_and_the_pointer_keeps_the_good_release(store: Store) -> None:
    releases = ReleaseStore(store)
    good = _release(releases, b"good")
    releases.promote(SYMBOL, good, expected=None, reason="first", now=NOW)
    bad = _release(releases, b"bad-model", NOW.replace(day=3))
    store.put(f"models/BTC_USDT/releases/{bad}/model.onnx", b"bad-modeL")
    with pytest.raises(CorruptArtifactError, match="does not match its sha256 checksum"):
        releases.load(SYMBOL, bad)
    pointer = releases.pointer(SYMBOL)
    assert pointer is not None
    assert releases.load(SYMBOL, pointer.release_id).artifacts[ONNX_ARTIFACT] == b"good"


def test_a_missing_artifact_or_manifest_is_a_clear_error(store: Store) -> None:
    releases = ReleaseStore(store)
    release_id = _release(releases, b"x")
    store.delete(f"models/BTC_USDT/releases/{release_id}/model.onnx")
    with pytest.raises(CorruptArtifactError, match="is missing model.onnx"):
        releases.load(SYMBOL, release_id)
    with pytest.raises(ModelError, match="no release 20250102T030405Z-00000000"):
        releases.load(SYMBOL, "20250102T030405Z-00000000")


def test_a_release_without_manifest_is_not_listed(store: Store) -> None:
    releases = ReleaseStore(store)
    complete = _release(releases, b"a")
    store.put("models/BTC_USDT/releases/20250101T000000Z-deadbeef/model.onnx", b"half written")
    assert releases.list(SYMBOL) == [complete]


def test_two_concurrent_promotions_from_the_same_pointer_have_exactly_one_winner(store: Store) -> None:
    releases = ReleaseStore(store)
    base = _release(releases, b"base")
    releases.promote(SYMBOL, base, expected=None, reason="first", now=NOW)
    seen = releases.pointer(SYMBOL)
    rivals = [_release(releases, f"rival-{i}".encode(), NOW.replace(hour=10 + i)) for i in range(6)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(rivals))

    def attempt(release_id: str) -> None:
        barrier.wait()
        try:
            releases.promote(SYMBOL, release_id, expected=seen, reason="race", now=NOW)
            outcomes.append(release_id)
        except PreconditionFailed:
            outcomes.append("lost")

    threads = [threading.Thread(target=attempt, args=(r,)) for r in rivals]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o != "lost"]
    assert len(winners) == 1
    pointer = releases.pointer(SYMBOL)
    assert pointer is not None
    assert (pointer.release_id, pointer.previous) == (winners[0], (base,))


def test_rollback_returns_to_the_previous_release(store: Store) -> None:
    releases = ReleaseStore(store)
    first, second = _release(releases, b"1"), _release(releases, b"2", NOW.replace(day=5))
    releases.promote(SYMBOL, first, expected=None, reason="a", now=NOW)
    releases.promote(SYMBOL, second, expected=releases.pointer(SYMBOL), reason="b", now=NOW)
    back = releases.rollback(SYMBOL, now=NOW)
    assert (back.release_id, back.previous) == (first, ())
    with pytest.raises(ModelError, match="no earlier release"):
        releases.rollback(SYMBOL, now=NOW)
