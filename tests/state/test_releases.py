"""Releases are immutable and checksummed; the pointer moves only by compare-and-swap."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scalpbot.adapters.store.folder import FolderStore
from scalpbot.adapters.store.memory import MemoryStore
from scalpbot.errors import CorruptArtifactError, ModelError, PreconditionFailed
from scalpbot.ports import Store
from scalpbot.state.releases import ONNX_ARTIFACT, ReleaseStore, new_release_id

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
    with pytest.raises(CorruptArtifactError, match="is missing models/BTC_USDT/releases/.*/model.onnx"):
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


def _edit_manifest(store: Store, release_id: str, edit: dict[str, object], *, reseal: bool = False) -> str:
    """Rewrite a release's manifest by hand as an operator would; ``reseal`` also recomputes its seal."""
    import hashlib
    import json

    key = f"models/BTC_USDT/releases/{release_id}/manifest.json"
    manifest = json.loads(store.get(key).data)
    manifest.update(edit)
    if reseal:
        body = {k: v for k, v in manifest.items() if k != "seal"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        manifest["seal"] = hashlib.sha256(canonical.encode()).hexdigest()
    store.put(key, json.dumps(manifest, indent=2).encode())
    return key


@pytest.mark.parametrize("name", ["manifest.json", "model.onnx", "model.keras"])
def test_editing_any_file_of_the_current_release_is_refused_with_the_file_named_and_the_way_back(
    store: Store, name: str
) -> None:
    releases = ReleaseStore(store)
    first = _release(releases, b"first")
    releases.promote(SYMBOL, first, expected=None, reason="first", now=NOW)
    second = _release(releases, b"second", NOW.replace(day=3))
    releases.promote(SYMBOL, second, expected=releases.pointer(SYMBOL), reason="better", now=NOW)
    key = f"models/BTC_USDT/releases/{second}/{name}"
    if name == "manifest.json":
        _edit_manifest(store, second, {"params": {"entry_threshold": 0.0}})
    else:
        store.put(key, store.get(key).data + b"!")
    with pytest.raises(CorruptArtifactError) as refused:
        releases.load_current(SYMBOL, ("model.onnx", "model.keras"))
    message = str(refused.value)
    assert key in message
    assert f"run `scalpbot models rollback` to trade {first} again" in message
    back = releases.rollback(SYMBOL, now=NOW)
    current = releases.load_current(SYMBOL)
    assert current is not None
    assert (back.release_id, current.artifacts[ONNX_ARTIFACT]) == (first, b"first")


def test_a_resealed_manifest_edit_is_still_refused_through_the_pointer(store: Store) -> None:
    releases = ReleaseStore(store)
    release_id = _release(releases, b"model")
    releases.promote(SYMBOL, release_id, expected=None, reason="first", now=NOW)
    key = _edit_manifest(store, release_id, {"params": {"tp_mult": 9.0}}, reseal=True)
    assert releases.load(SYMBOL, release_id).manifest["params"] == {"tp_mult": 9.0}  # self-consistent
    with pytest.raises(CorruptArtifactError, match=f"{key} was changed after the release was promoted"):
        releases.load_current(SYMBOL)


def test_an_edited_manifest_of_a_release_that_is_not_current_is_refused(store: Store) -> None:
    releases = ReleaseStore(store)
    release_id = _release(releases, b"model")
    key = _edit_manifest(store, release_id, {"params": {"entry_threshold": 0.0}})
    with pytest.raises(CorruptArtifactError, match=f"{key} does not match its seal"):
        releases.load(SYMBOL, release_id)
    with pytest.raises(CorruptArtifactError, match="does not match its seal"):
        releases.promote(SYMBOL, release_id, expected=None, reason="by hand", now=NOW)
    assert releases.pointer(SYMBOL) is None


def test_a_manifest_reads_typed_and_as_the_mapping_the_file_holds(store: Store) -> None:
    releases = ReleaseStore(store)
    release_id = _release(releases, b"onnx-bytes")

    manifest = releases.manifest(SYMBOL, release_id)

    assert (manifest.release_id, manifest.symbol, manifest.origin) == (release_id, SYMBOL, "train")
    assert manifest.artifacts[ONNX_ARTIFACT].sha256 == hashlib.sha256(b"onnx-bytes").hexdigest()
    assert manifest.artifacts[ONNX_ARTIFACT].bytes == len(b"onnx-bytes")
    assert manifest.judged_metrics() == {"total_return": 0.01} and not manifest.passed_gate
    assert manifest["timeframe"] == "1m" and dict(manifest)["symbol"] == SYMBOL


def test_a_sealed_manifest_whose_sections_have_the_wrong_shape_is_corrupt(store: Store) -> None:
    releases = ReleaseStore(store)
    release_id = new_release_id(NOW, b"x")
    releases.write(SYMBOL, release_id, {"gate": ["promote"]}, {ONNX_ARTIFACT: b"x"})

    with pytest.raises(CorruptArtifactError, match="gate is a list"):
        releases.manifest(SYMBOL, release_id)


def test_the_manifest_records_the_model_kind_and_an_older_manifest_without_one_reads_as_mlp() -> None:
    releases = ReleaseStore(MemoryStore())
    older = _release(releases, b"keras-era")
    newer = releases.write(
        SYMBOL,
        new_release_id(NOW.replace(day=3), b"logreg"),
        {"timeframe": "1m", "model_kind": "logreg"},
        {ONNX_ARTIFACT: b"logreg", "model.npz": b"weights"},
    )
    assert "model_kind" not in releases.manifest(SYMBOL, older)
    assert releases.manifest(SYMBOL, older).model_kind == "mlp"
    assert releases.manifest(SYMBOL, newer).model_kind == "logreg"
    assert releases.load(SYMBOL, newer, (ONNX_ARTIFACT, "model.npz")).artifacts["model.npz"] == b"weights"


def test_a_train_run_finds_its_own_release_and_not_one_the_weekly_step_derived_with_its_key(
    store: Store,
) -> None:
    """Online and reinforcement learning releases of earlier versions copied their parent's training key; a
    rerun of that train finds the release train wrote, not the newer derived one."""
    releases = ReleaseStore(store)
    trained = releases.write(
        SYMBOL,
        new_release_id(NOW, b"trained"),
        {"timeframe": "1m", "training_key": "k1"},
        {ONNX_ARTIFACT: b"trained"},
    )
    releases.write(
        SYMBOL,
        new_release_id(datetime(2025, 1, 9, tzinfo=UTC), b"tuned"),
        {"timeframe": "1m", "training_key": "k1", "origin": "reinforcement_learning"},
        {ONNX_ARTIFACT: b"tuned"},
    )
    found = releases.find(SYMBOL, training_key="k1")
    assert found is not None and found[0] == trained and found[1].origin == "train"
    assert releases.find(SYMBOL, training_key="k2") is None
