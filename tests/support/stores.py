"""A store wrapper that counts operations and can fail after a number of writes (a crash stand-in)."""

from __future__ import annotations

from scalpbot.errors import StoreError
from scalpbot.ports import Store, StoredObject


class Crash(StoreError):
    """Raised in place of the write that a killed process never made."""


class RecordingStore:
    """Delegate to ``inner``; count reads and writes; raise ``Crash`` once ``fail_after_writes`` is reached."""

    def __init__(self, inner: Store, fail_after_writes: int | None = None) -> None:
        self.inner = inner
        self.fail_after_writes = fail_after_writes
        self.reads: list[str] = []
        self.writes: list[str] = []
        self.lists = 0

    def _write(self, key: str) -> None:
        if self.fail_after_writes is not None and len(self.writes) >= self.fail_after_writes:
            raise Crash(f"simulated crash before writing {key}")
        self.writes.append(key)

    def get(self, key: str) -> StoredObject:
        self.reads.append(key)
        return self.inner.get(key)

    def head(self, key: str) -> str | None:
        return self.inner.head(key)

    def put(self, key: str, data: bytes) -> str:
        self._write(key)
        return self.inner.put(key, data)

    def put_if_absent(self, key: str, data: bytes) -> str:
        self._write(key)
        return self.inner.put_if_absent(key, data)

    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        self._write(key)
        return self.inner.put_if_match(key, data, etag)

    def list(self, prefix: str = "") -> list[str]:
        self.lists += 1
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self._write(key)
        self.inner.delete(key)

    def describe(self) -> str:
        return f"recording {self.inner.describe()}"
