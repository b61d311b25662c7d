"""An in-memory ``Store`` for tests: thread-safe, same key rules and ETags as the real stores."""

from __future__ import annotations

import threading

from scalpbot.adapters.store._keys import check_key, content_etag
from scalpbot.errors import ObjectNotFound, PreconditionFailed
from scalpbot.ports import StoredObject


class MemoryStore:
    """Keep objects in a dict guarded by one lock; ETags are the MD5 hex of the content."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> StoredObject:
        """Return the object and its ETag; raise ``ObjectNotFound`` when the key is absent."""
        check_key(key)
        with self._lock:
            data = self._objects.get(key)
        if data is None:
            raise ObjectNotFound(f"{key!r} not found in {self.describe()}")
        return StoredObject(data=data, etag=content_etag(data))

    def head(self, key: str) -> str | None:
        """Return the object's ETag, or ``None`` when the key is absent."""
        check_key(key)
        with self._lock:
            data = self._objects.get(key)
        return None if data is None else content_etag(data)

    def put(self, key: str, data: bytes) -> str:
        """Write unconditionally and return the new ETag."""
        check_key(key)
        data = bytes(data)
        with self._lock:
            self._objects[key] = data
        return content_etag(data)

    def put_if_absent(self, key: str, data: bytes) -> str:
        """Create-only write; raise ``PreconditionFailed`` when the key already exists."""
        check_key(key)
        data = bytes(data)
        with self._lock:
            if key in self._objects:
                raise PreconditionFailed(f"{key!r} already exists in {self.describe()}")
            self._objects[key] = data
        return content_etag(data)

    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        """Compare-and-swap write; raise ``PreconditionFailed`` unless the current ETag equals ``etag``."""
        check_key(key)
        data = bytes(data)
        with self._lock:
            current = self._objects.get(key)
            if current is None or content_etag(current) != etag:
                raise PreconditionFailed(
                    f"{key!r} in {self.describe()} changed or is absent (expected {etag})"
                )
            self._objects[key] = data
        return content_etag(data)

    def list(self, prefix: str = "") -> list[str]:
        """Return every key starting with ``prefix``, sorted."""
        with self._lock:
            return sorted(key for key in self._objects if key.startswith(prefix))

    def delete(self, key: str) -> None:
        """Delete the key; deleting an absent key is not an error."""
        check_key(key)
        with self._lock:
            self._objects.pop(key, None)

    def describe(self) -> str:
        """Return ``memory``."""
        return "memory"
