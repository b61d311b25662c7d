"""A real, throwaway PostgreSQL server for tests and benchmarks: initdb a cluster in a temporary folder, serve it
on a free loopback port, hand out fresh databases, stop it and delete the folder at the end.

The binaries are Debian's ``postgresql`` package (``make postgres`` installs it when it can): ``initdb`` and
``postgres`` are looked up on ``PATH``, then in ``/usr/lib/postgresql/<version>/bin`` (Debian keeps them off
``PATH``), ``/usr/local/bin`` and ``/usr/local/pgsql/bin``. Without them the tests that need a server skip and
say why.

PostgreSQL refuses to run as root: as root, the cluster folder is owned by, and the server runs as, the
unprivileged ``nobody`` user. The folder is then made with ``mkdtemp`` under ``/tmp`` (pytest's folders are
private to their owner, so ``nobody`` could not reach them). The unix socket lives in the cluster
folder; clients connect over TCP on 127.0.0.1.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

BINARIES = ("initdb", "postgres")
_SEARCHED = "PATH, /usr/lib/postgresql/*/bin, /usr/local/bin and /usr/local/pgsql/bin"
_UNPRIVILEGED = "nobody"


def find_bin_dir() -> Path | None:
    """Return the folder holding ``initdb`` and ``postgres`` (the newest Debian version first), or ``None``."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    candidates += [Path(p) for p in versions]
    candidates += [Path("/usr/local/bin"), Path("/usr/local/pgsql/bin")]
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in BINARIES):
            return folder
    return None


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One running server; ``url(database)`` is an SQLAlchemy URL for the psycopg driver."""

    def __init__(self, bin_dir: Path, *, durable: bool = False) -> None:
        self.bin_dir = bin_dir
        self.durable = durable
        as_root = os.geteuid() == 0  # then under /tmp: a TMPDIR private to root would shut ``nobody`` out
        self.root = Path(tempfile.mkdtemp(prefix="scalpbot-pg-", dir="/tmp" if as_root else None))
        self.data = self.root / "data"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._as: dict[str, Any] = {}
        if as_root:
            user = pwd.getpwnam(_UNPRIVILEGED)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def _run(self, *args: str) -> None:
        done = subprocess.run(args, capture_output=True, text=True, cwd=self.root, **self._as)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def start(self, timeout: float = 30.0) -> None:
        """Create the cluster, start the server on a free port and return once it accepts connections."""
        self._run(
            str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        for attempt in range(3):
            self.port = _free_port()
            options = ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
            log = (self.root / "server.log").open("ab")
            self._process = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-h", "127.0.0.1", "-k", str(self.root), "-c", "max_connections=200",
                 *([] if self.durable else options)],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.root, **self._as,
            )  # fmt: skip
            log.close()
            if self._wait_ready(timeout):
                return
            self.stop()
            if attempt == 2:
                raise RuntimeError(f"PostgreSQL did not start: {self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        import psycopg

        deadline = time.monotonic() + timeout
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.1)
        return False

    @property
    def pid(self) -> int | None:
        """Return the server's process id while it runs."""
        return None if self._process is None else self._process.pid

    def log_tail(self, chars: int = 2000) -> str:
        """Return the end of the server's log."""
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def dsn(self, database: str) -> str:
        """Return a libpq connection string for ``database``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def url(self, database: str) -> str:
        """Return the SQLAlchemy URL (psycopg 3 driver) of ``database``: an Optuna ``storage``."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create a database (a fresh random name by default) and return its SQLAlchemy URL."""
        import psycopg

        name = name or f"db_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown: SIGINT, then SIGKILL after 20 s)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def remove(self) -> None:
        """Stop the server and delete its folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def running_postgres(*, durable: bool = False) -> Iterator[PostgresServer]:
    """Yield a started server; stop it and delete its cluster at the end. ``RuntimeError`` without binaries.

    ``durable``: keep PostgreSQL's default fsync and synchronous commit (tests turn them off for speed).
    """
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError(f"PostgreSQL's initdb and postgres are not in {_SEARCHED}; run `make postgres`")
    server = PostgresServer(bin_dir, durable=durable)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Yield one PostgreSQL server for the session; skip when its binaries are missing."""
    if find_bin_dir() is None:
        pytest.skip(
            f"PostgreSQL server binaries (initdb, postgres) are not in {_SEARCHED} and could not be installed "
            "(`make postgres` installs Debian's postgresql package as root or through sudo)"
        )
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """Return the SQLAlchemy URL of a fresh, empty database on the session's server."""
    return postgres_server.create_database()
