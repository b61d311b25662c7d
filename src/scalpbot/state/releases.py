"""Model releases in the store: immutable artifacts with checksums, and the ``current.json`` pointer.

Layout (``BASE_QUOTE`` is the symbol with ``/`` and ``:`` replaced by ``_``)::

    models/{BASE_QUOTE}/releases/{release_id}/model.keras   the model kind's own artifact, for fine-tuning
                                                            (the Keras MLP's; another kind names its own)
    models/{BASE_QUOTE}/releases/{release_id}/model.onnx    the same model for onnxruntime (execution)
    models/{BASE_QUOTE}/releases/{release_id}/manifest.json everything needed to trust and reproduce it
    models/{BASE_QUOTE}/current.json                        pointer to the release that trades

A release is written artifacts first, manifest last (create-only): a release whose manifest exists is
complete, and nothing in it is ever replaced; the files of a release without a manifest (its writer died)
are invisible and replaced by the next writer. The pointer changes only by compare-and-swap, so two concurrent
promotions cannot both win.

**Integrity.** The manifest lists every artifact's sha256 and carries a ``seal``: the sha256 of its own
canonical JSON without the seal. The pointer records the sha256 of the manifest file of the current release
and of each earlier one it can roll back to. Loading verifies all of it, so an edited or corrupted file of a
release - any artifact, or the manifest itself (its params, say) - is refused with the file named.

This module is light (no keras/torch): the execute path uses it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from scalpbot.errors import CorruptArtifactError, ModelError, ObjectNotFound, PreconditionFailed
from scalpbot.ports import Store

MANIFEST = "manifest.json"
ONNX_ARTIFACT = "model.onnx"
KERAS_ARTIFACT = "model.keras"
"""The artifact of the ``mlp`` model kind (the Keras MLP); another kind's artifact is named by the kind."""
LEGACY_MODEL_KIND = "mlp"
"""The model kind of a release whose manifest records none (written before kinds were recorded)."""
_RELEASE_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
_SEAL = "seal"
_HISTORY = 20


def pair_of(symbol: str) -> str:
    """Return the path form of a unified symbol: ``BTC/USDT`` -> ``BTC_USDT``."""
    return symbol.replace("/", "_").replace(":", "_")


def models_prefix(symbol: str) -> str:
    """Return the store prefix of a symbol's models, ending with ``/``."""
    return f"models/{pair_of(symbol)}/"


def new_release_id(created_at: datetime, content: bytes) -> str:
    """Return a sortable id: creation time (UTC, seconds) and the first 8 hex digits of the content hash."""
    stamp = created_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{hashlib.sha256(content).hexdigest()[:8]}"


def sha256_hex(data: bytes) -> str:
    """Return the sha256 of ``data`` as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class ArtifactChecksum:
    """What the manifest records of one artifact file: its sha256 (lowercase hex) and size in bytes."""

    sha256: str
    bytes: int


@dataclass(frozen=True, slots=True, eq=False)
class Manifest(Mapping[str, Any]):
    """A release's verified ``manifest.json``.

    The fields code decides on are typed: which release of which symbol, where it came from (``origin``:
    ``train``, ``online_learning`` or ``reinforcement_learning``), its ``model_kind`` (the registry name of
    its model type, :mod:`scalpbot.ml.registry`; ``mlp`` when the manifest predates the field), the feature
    spec it was trained on, its strategy ``params`` (as
    :meth:`~scalpbot.core.policy_params.StrategyParams.to_dict` wrote them), the gate's verdict, its metrics
    by window and its artifacts' checksums. Every section, those and the records kept for
    people and for reproducing the release (data window, labels, costs, venue, hyper-parameters, tuning, model,
    library versions), reads as the mapping the file holds: ``manifest["labels"]``.
    """

    release_id: str
    symbol: str
    origin: str
    model_kind: str
    created_at: str | None
    feature_spec_version: str | int | None
    params: Mapping[str, Any]
    gate: Mapping[str, Any]
    metrics: Mapping[str, Mapping[str, float | int | None]]
    artifacts: Mapping[str, ArtifactChecksum]
    document: Mapping[str, Any]

    @classmethod
    def from_document(cls, document: Mapping[str, Any], key: str) -> Manifest:
        """Return the manifest of a parsed ``manifest.json``; ``CorruptArtifactError`` naming ``key`` if malformed."""
        try:
            artifacts = {
                str(name): ArtifactChecksum(str(record["sha256"]), int(record["bytes"]))
                for name, record in _section(document, "artifacts").items()
            }
            metrics = {str(window): dict(values) for window, values in _section(document, "metrics").items()}
            spec = document.get("feature_spec_version")
            if spec is not None and not isinstance(spec, str | int):
                raise TypeError(f"feature_spec_version is a {type(spec).__name__}")
            return cls(
                release_id=str(document["release_id"]),
                symbol=str(document["symbol"]),
                origin=str(document.get("origin") or "train"),
                model_kind=str(document.get("model_kind") or LEGACY_MODEL_KIND),
                created_at=None if document.get("created_at") is None else str(document["created_at"]),
                feature_spec_version=spec,
                params=MappingProxyType(dict(_section(document, "params"))),
                gate=MappingProxyType(dict(_section(document, "gate"))),
                metrics=MappingProxyType(metrics),
                artifacts=MappingProxyType(artifacts),
                document=MappingProxyType(dict(document)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptArtifactError(f"{key} is malformed ({e!r}); the release cannot be trusted") from None

    @property
    def passed_gate(self) -> bool:
        """Return whether the promotion gate said yes to this release when it was written."""
        return self.gate.get("promote") is True

    def judged_metrics(self) -> Mapping[str, float | int | None]:
        """Return the metrics the gate judged: the test window's (train) or the recent week's (improvements)."""
        return self.metrics.get("test") or self.metrics.get("recent") or {}

    def __getitem__(self, name: str) -> Any:
        return self.document[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.document)

    def __len__(self) -> int:
        return len(self.document)


def _section(document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = document.get(name) or {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} is a {type(value).__name__}, not an object")
    return value


@dataclass(frozen=True, slots=True)
class Release:
    """A loaded release: its manifest and the artifacts asked for, each checked against the manifest."""

    release_id: str
    symbol: str
    manifest: Manifest
    artifacts: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Pointer:
    """The ``current.json`` content with the ETag needed to replace it."""

    release_id: str
    previous: tuple[str, ...]
    promoted_at: str
    reason: str
    etag: str
    manifest_sha256: Mapping[str, str] = field(default_factory=dict)
    """The sha256 of the manifest file of the current release and of each earlier one, by release id."""


class ReleaseStore:
    """Write, list, load and promote the releases of one store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def write(
        self, symbol: str, release_id: str, manifest: Mapping[str, Any], artifacts: Mapping[str, bytes]
    ) -> str:
        """Store the artifacts then the manifest (with their sha256 added); return the release id."""
        if not _RELEASE_ID.match(release_id):
            raise ModelError(f"release id {release_id!r} is not of the form YYYYMMDDTHHMMSSZ-xxxxxxxx")
        prefix = self._release_prefix(symbol, release_id)
        checksums = {
            name: {"sha256": sha256_hex(data), "bytes": len(data)} for name, data in artifacts.items()
        }
        full = {
            **{k: _plain(v) for k, v in manifest.items() if k != _SEAL},
            "release_id": release_id,
            "symbol": symbol,
            "artifacts": checksums,
        }
        full[_SEAL] = _seal_of(full)
        if self._store.head(prefix + MANIFEST) is not None:
            raise ModelError(f"release {release_id} of {symbol} exists already; a release is never rewritten")
        # Until its manifest exists a release is invisible and nothing trusts its files: an artifact left by
        # a run that died before writing the manifest is replaced.
        for name, data in artifacts.items():
            self._store.put(prefix + name, data)
        self._store.put_if_absent(prefix + MANIFEST, _dump(full))
        return release_id

    def list(self, symbol: str) -> list[str]:
        """Return the ids of complete releases (manifest written), oldest first."""
        prefix = f"{models_prefix(symbol)}releases/"
        ids = {
            key[len(prefix) :].split("/", 1)[0]
            for key in self._store.list(prefix)
            if key.endswith("/" + MANIFEST)
        }
        return sorted(ids)

    def manifest(self, symbol: str, release_id: str, *, expected_sha256: str | None = None) -> Manifest:
        """Return the verified manifest of a release.

        Raise ``ModelError`` when it is absent and ``CorruptArtifactError`` naming the file when it is not valid
        JSON, describes another release, fails its seal (edited by hand) or, with ``expected_sha256`` (the
        pointer's record), is not byte for byte the manifest that was promoted.
        """
        key = self._release_prefix(symbol, release_id) + MANIFEST
        try:
            data = self._store.get(key).data
        except ObjectNotFound:
            known = ", ".join(self.list(symbol)[-5:]) or "none"
            raise ModelError(f"no release {release_id} for {symbol} (latest: {known})") from None
        if expected_sha256 is not None and sha256_hex(data) != expected_sha256:
            raise CorruptArtifactError(
                f"{key} was changed after the release was promoted (its sha256 differs from the one "
                f"current.json recorded); the release is refused"
            )
        try:
            manifest = json.loads(data)
        except ValueError as e:
            raise CorruptArtifactError(
                f"{key} is not valid JSON ({e}); the release cannot be trusted"
            ) from None
        if not isinstance(manifest, dict) or manifest.get("release_id") != release_id:
            raise CorruptArtifactError(
                f"{key} does not describe release {release_id}; the release cannot be trusted"
            )
        seal = manifest.get(_SEAL)
        if seal != _seal_of({k: v for k, v in manifest.items() if k != _SEAL}):
            why = "has no seal (written by an older scalpbot)" if seal is None else "does not match its seal"
            raise CorruptArtifactError(
                f"{key} {why}: it was edited or corrupted after it was written; the release is refused"
            )
        return Manifest.from_document(manifest, key)

    def find(self, symbol: str, *, training_key: str, newest: int = 20) -> tuple[str, Manifest] | None:
        """Return the id and manifest of a release written by the train run ``training_key``, or ``None``.

        Only the ``newest`` releases are read (a repeated or interrupted run is among the latest); a release
        that cannot be read is passed over, and so is one the weekly step derived from a trained release
        (online learning, reinforcement learning: ``origin`` other than ``train``), which older versions wrote
        with its parent's training key.
        """
        for release_id in reversed(self.list(symbol)[-newest:]):
            try:
                manifest = self.manifest(symbol, release_id)
            except CorruptArtifactError:
                continue
            if manifest.origin == "train" and manifest.get("training_key") == training_key:
                return release_id, manifest
        return None

    def manifest_sha256(self, symbol: str, release_id: str) -> str:
        """Return the sha256 of a release's manifest file as stored (the pointer records it at promotion)."""
        key = self._release_prefix(symbol, release_id) + MANIFEST
        try:
            return sha256_hex(self._store.get(key).data)
        except ObjectNotFound:
            raise ModelError(f"no release {release_id} for {symbol}") from None

    def load(
        self,
        symbol: str,
        release_id: str,
        names: tuple[str, ...] = (ONNX_ARTIFACT,),
        *,
        manifest_sha256: str | None = None,
    ) -> Release:
        """Return the release with the named artifacts, each verified against its manifest checksum.

        ``manifest_sha256``: the manifest file's sha256 as the pointer recorded it (see :meth:`load_current`).
        """
        manifest = self.manifest(symbol, release_id, expected_sha256=manifest_sha256)
        prefix = self._release_prefix(symbol, release_id)
        artifacts: dict[str, bytes] = {}
        for name in names:
            checksum = manifest.artifacts.get(name)
            if checksum is None:
                raise CorruptArtifactError(
                    f"release {release_id} lists no checksum for {name}; it cannot be trusted"
                )
            try:
                data = self._store.get(prefix + name).data
            except ObjectNotFound:
                raise CorruptArtifactError(
                    f"release {release_id} is missing {prefix + name}; it cannot be used"
                ) from None
            if sha256_hex(data) != checksum.sha256:
                raise CorruptArtifactError(
                    f"{prefix + name} does not match its sha256 checksum in the manifest (edited or corrupted); "
                    "the release is refused"
                )
            artifacts[name] = data
        return Release(release_id, symbol, manifest, artifacts)

    def load_current(self, symbol: str, names: tuple[str, ...] = (ONNX_ARTIFACT,)) -> Release | None:
        """Return the current release verified against the pointer's manifest record; ``None`` without a pointer.

        A refused file raises ``CorruptArtifactError`` naming it, with the way back: ``scalpbot models rollback``.
        """
        pointer = self.pointer(symbol)
        if pointer is None:
            return None
        try:
            return self.load(
                symbol, pointer.release_id, names, manifest_sha256=pointer.manifest_sha256[pointer.release_id]
            )
        except CorruptArtifactError as e:
            back = (
                f"run `scalpbot models rollback` to trade {pointer.previous[0]} again"
                if pointer.previous
                else "promote a sound release with `scalpbot models promote ID` or train a new one"
            )
            raise CorruptArtifactError(f"the current release of {symbol}: {e}; {back}") from None

    def pointer(self, symbol: str) -> Pointer | None:
        """Return the current pointer, or ``None`` when no release was ever promoted."""
        key = models_prefix(symbol) + "current.json"
        try:
            stored = self._store.get(key)
        except ObjectNotFound:
            return None
        try:
            body = json.loads(stored.data)
            previous = [(str(p["release_id"]), str(p["manifest_sha256"])) for p in body["previous"]]
            release_id = str(body["release_id"])
            return Pointer(
                release_id=release_id,
                previous=tuple(r for r, _ in previous),
                promoted_at=str(body.get("promoted_at", "")),
                reason=str(body.get("reason", "")),
                etag=stored.etag,
                manifest_sha256={**dict(previous), release_id: str(body["manifest_sha256"])},
            )
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptArtifactError(
                f"{key} cannot be read ({e!r}); run `scalpbot models promote ID` to rewrite it"
            ) from None

    def promote(
        self, symbol: str, release_id: str, *, expected: Pointer | None, reason: str, now: datetime
    ) -> Pointer:
        """Point ``current.json`` at ``release_id`` if it still equals ``expected``; raise ``PreconditionFailed``.

        ``expected`` is the pointer read before deciding (``None``: there was none). The release must be complete.
        """
        digest = self.manifest_sha256(symbol, release_id)
        self.manifest(symbol, release_id, expected_sha256=digest)
        previous: tuple[str, ...] = ()
        sealed = {release_id: digest}
        if expected is not None:
            previous = (expected.release_id, *expected.previous)[:_HISTORY]
            sealed = {**{r: expected.manifest_sha256[r] for r in previous}, release_id: digest}
        promoted_at = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        key = models_prefix(symbol) + "current.json"
        data = _pointer_document(release_id, previous, sealed, promoted_at, reason)
        if expected is None:
            etag = self._store.put_if_absent(key, data)
        else:
            etag = self._store.put_if_match(key, data, expected.etag)
        return Pointer(release_id, previous, promoted_at, reason, etag, sealed)

    def rollback(self, symbol: str, *, now: datetime) -> Pointer:
        """Point ``current.json`` back at the release that was current before; raise ``ModelError`` if none."""
        current = self.pointer(symbol)
        if current is None or not current.previous:
            raise ModelError(f"{symbol} has no earlier release to roll back to")
        target, rest = current.previous[0], current.previous[1:]
        promoted_at = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        reason = f"rollback from {current.release_id}"
        sealed = {r: current.manifest_sha256[r] for r in (target, *rest)}
        self.load(symbol, target, (ONNX_ARTIFACT,), manifest_sha256=sealed[target])
        data = _pointer_document(target, rest, sealed, promoted_at, reason)
        etag = self._store.put_if_match(models_prefix(symbol) + "current.json", data, current.etag)
        return Pointer(target, rest, promoted_at, reason, etag, sealed)

    def _release_prefix(self, symbol: str, release_id: str) -> str:
        if not _RELEASE_ID.match(release_id):
            raise ModelError(f"{release_id!r} is not a release id (YYYYMMDDTHHMMSSZ-xxxxxxxx)")
        return f"{models_prefix(symbol)}releases/{release_id}/"


def _plain(value: Any) -> Any:
    """Return ``value`` with every mapping (such as :class:`~scalpbot.core.metrics.Metrics`) as a plain dict."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _dump(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, indent=2, sort_keys=True, allow_nan=False).encode()


def _seal_of(manifest: Mapping[str, Any]) -> str:
    """Return the sha256 of a manifest's canonical JSON (sorted keys, no spaces), its seal left out."""
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return sha256_hex(canonical.encode())


def _pointer_document(
    release_id: str,
    previous: tuple[str, ...],
    sealed: Mapping[str, str],
    promoted_at: str,
    reason: str,
) -> bytes:
    return _dump(
        {
            "release_id": release_id,
            "manifest_sha256": sealed[release_id],
            "previous": [{"release_id": r, "manifest_sha256": sealed[r]} for r in previous],
            "promoted_at": promoted_at,
            "reason": reason,
        }
    )


__all__ = [
    "KERAS_ARTIFACT",
    "LEGACY_MODEL_KIND",
    "MANIFEST",
    "ONNX_ARTIFACT",
    "Pointer",
    "PreconditionFailed",
    "Release",
    "ReleaseStore",
    "models_prefix",
    "new_release_id",
    "pair_of",
]
