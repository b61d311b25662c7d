"""A ``Store`` in a local folder: atomic replace for every write, an OS file lock for conditional writes.

Layout: key ``a/b.json`` is the file ``ROOT/a/b.json``. Writes go to a hidden temporary file in the same
directory (``.b.json.XXXX.tmp``), are fsynced, then ``os.replace``d over the target, so a reader sees the old
or the new object, never a mix, and a killed writer leaves the old object intact plus a stray temporary file
that ``get`` and ``list`` ignore. Every write and delete holds ``fcntl.flock`` on one of 256 lock files in
``ROOT/.locks/`` (chosen by a hash of the key), which serializes create-only and compare-and-swap writes
across threads and processes on one host. POSIX only; ``flock`` is unreliable on some network file systems.

The ETag is the hex MD5 of the content, like S3's for a single-part upload; ``get`` and ``head`` read the
whole file to compute it. Empty parent directories are left behind by ``delete``. A key cannot be both an
object and a "directory" of other keys (``a`` and ``a/b``), unlike S3; writing the second raises
``StoreError``.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from scalpbot.adapters.store._keys import check_key, content_etag
from scalpbot.errors import ObjectNotFound, PreconditionFailed, StoreError
from scalpbot.ports import StoredObject

_LOCK_DIR = ".locks"
_LOCK_STRIPES = 256


class FolderStore:
    """Store objects as files under ``root``, which is created on the first write."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()

    def get(self, key: str) -> StoredObject:
        """Return the object and its ETag; raise ``ObjectNotFound`` when the key is absent."""
        data = self._read(key)
        if data is None:
            raise ObjectNotFound(f"{key!r} not found in {self.describe()}")
        return StoredObject(data=data, etag=content_etag(data))

    def head(self, key: str) -> str | None:
        """Return the object's ETag, or ``None`` when the key is absent."""
        data = self._read(key)
        return None if data is None else content_etag(data)

    def put(self, key: str, data: bytes) -> str:
        """Write unconditionally and return the new ETag."""
        path = self._path(key)
        with self._locked(key):
            return self._write(key, path, data)

    def put_if_absent(self, key: str, data: bytes) -> str:
        """Create-only write; raise ``PreconditionFailed`` when the key already exists."""
        path = self._path(key)
        with self._locked(key):
            if path.is_file():
                raise PreconditionFailed(f"{key!r} already exists in {self.describe()}")
            return self._write(key, path, data)

    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        """Compare-and-swap write; raise ``PreconditionFailed`` unless the current ETag equals ``etag``."""
        path = self._path(key)
        with self._locked(key):
            current = self._read(key)
            if current is None or content_etag(current) != etag:
                raise PreconditionFailed(
                    f"{key!r} in {self.describe()} changed or is absent (expected {etag})"
                )
            return self._write(key, path, data)

    def list(self, prefix: str = "") -> builtins.list[str]:
        """Return every key starting with ``prefix``, sorted; hidden temporary and lock files are skipped."""
        head, _, _ = prefix.rpartition("/")
        start = self.root
        if head:
            try:
                start = self.root.joinpath(*check_key(head).split("/"))
            except StoreError:
                return []  # no valid key starts with an invalid directory part
        keys: builtins.list[str] = []
        for directory, subdirs, files in os.walk(start, onerror=self._raise_walk_error):
            subdirs[:] = [name for name in subdirs if not name.startswith(".")]
            relative = Path(directory).relative_to(self.root).as_posix()
            base = "" if relative == "." else relative + "/"
            keys.extend(
                base + name for name in files if not name.startswith(".") and (base + name).startswith(prefix)
            )
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Delete the key; deleting an absent key is not an error."""
        path = self._path(key)
        with self._locked(key):
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return
            except OSError as e:
                raise StoreError(f"cannot delete {key!r} in {self.describe()}: {e.strerror}") from e

    def describe(self) -> str:
        """Return ``folder ROOT``."""
        return f"folder {self.root}"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _read(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as e:
            raise StoreError(f"cannot read {key!r} in {self.describe()}: {e.strerror}") from e

    def _write(self, key: str, path: Path, data: bytes) -> str:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
            _fsync_directory(path.parent)
        except OSError as e:
            raise StoreError(f"cannot write {key!r} in {self.describe()}: {e.strerror or e}") from e
        return content_etag(data)

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        stripe = hashlib.sha256(key.encode()).digest()[0] % _LOCK_STRIPES
        lock_path = self.root / _LOCK_DIR / f"{stripe:02x}.lock"
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"cannot open lock file {lock_path} for {key!r}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _raise_walk_error(self, error: OSError) -> None:
        if not isinstance(error, FileNotFoundError | NotADirectoryError):
            raise StoreError(f"cannot list {self.describe()}: {error.strerror}") from error


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; some file systems refuse to fsync a directory, which is harmless here."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
