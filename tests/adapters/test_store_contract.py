"""One contract for every ``Store``: memory, folder and S3 (moto server) must behave the same.

The last sections hold what only one adapter can show: the folder store across processes and after a crash,
and the S3 store's prefix and error translation.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import threading
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from scalpbot.adapters.store import FolderStore, MemoryStore, S3Store
from scalpbot.errors import ObjectNotFound, PreconditionFailed, StoreError
from scalpbot.ports import Store, StoredObject

from support.race import race

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

RACERS = 8
BINARY = bytes(range(256)) * 4


@pytest.fixture(params=["memory", "folder", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Return each kind of store, empty."""
    if request.param == "memory":
        return MemoryStore()
    if request.param == "folder":
        return FolderStore(tmp_path / "store")
    s3_store: S3Store = request.getfixturevalue("s3_store")
    return s3_store


@pytest.fixture
def unused_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- reading and writing ------------------------------------------------------------------------------------


def test_put_then_get_returns_the_same_bytes_and_the_etag_put_returned(store: Store) -> None:
    etag = store.put("models/BTC_USDT/model.onnx", BINARY)

    stored = store.get("models/BTC_USDT/model.onnx")

    assert stored.data == BINARY
    assert stored.etag == etag


def test_empty_content_round_trips(store: Store) -> None:
    etag = store.put("empty", b"")

    assert store.get("empty").data == b""
    assert store.head("empty") == etag


def test_head_returns_the_current_etag_or_none_for_a_missing_key(store: Store) -> None:
    first = store.put("state/bot/portfolio.json", b"{}")
    second = store.put("state/bot/portfolio.json", b'{"cash": 1}')

    assert second != first
    assert store.head("state/bot/portfolio.json") == second
    assert store.head("state/bot/missing.json") is None


def test_get_of_a_missing_key_raises_object_not_found(store: Store) -> None:
    store.put("a/present", b"x")

    with pytest.raises(ObjectNotFound):
        store.get("a/absent")
    with pytest.raises(ObjectNotFound):
        store.get("a")


def test_put_overwrites_an_existing_object(store: Store) -> None:
    store.put("k", b"old")
    store.put("k", b"new")

    assert store.get("k").data == b"new"


@pytest.mark.parametrize(
    "key", ["", "/etc/passwd", "../outside", "a/../../b", "a//b", "a/", "./a", ".locks/00.lock"]
)
def test_keys_that_are_not_plain_relative_paths_are_rejected(store: Store, key: str) -> None:
    with pytest.raises(StoreError) as caught:
        store.put(key, b"x")

    assert not isinstance(caught.value, PreconditionFailed | ObjectNotFound)
    assert store.list() == []


# --- create-only --------------------------------------------------------------------------------------------


def test_create_only_put_creates_a_missing_key(store: Store) -> None:
    etag = store.put_if_absent("state/bot/lease.json", b"run-1")

    assert store.get("state/bot/lease.json") == StoredObject(data=b"run-1", etag=etag)


def test_create_only_put_fails_when_the_key_exists_and_keeps_the_content(store: Store) -> None:
    etag = store.put_if_absent("state/bot/lease.json", b"run-1")

    with pytest.raises(PreconditionFailed):
        store.put_if_absent("state/bot/lease.json", b"run-2")

    assert store.get("state/bot/lease.json").data == b"run-1"
    assert store.head("state/bot/lease.json") == etag


# --- compare-and-swap ---------------------------------------------------------------------------------------


def test_compare_and_swap_succeeds_with_the_current_etag(store: Store) -> None:
    etag = store.put("models/BTC_USDT/current.json", b"release-1")

    new_etag = store.put_if_match("models/BTC_USDT/current.json", b"release-2", etag)

    assert store.get("models/BTC_USDT/current.json").data == b"release-2"
    assert store.head("models/BTC_USDT/current.json") == new_etag


def test_compare_and_swap_fails_with_a_stale_etag_and_keeps_the_content(store: Store) -> None:
    stale = store.put("models/BTC_USDT/current.json", b"release-1")
    store.put("models/BTC_USDT/current.json", b"release-2")

    with pytest.raises(PreconditionFailed):
        store.put_if_match("models/BTC_USDT/current.json", b"release-3", stale)

    assert store.get("models/BTC_USDT/current.json").data == b"release-2"


def test_compare_and_swap_fails_when_the_key_is_absent(store: Store) -> None:
    etag = store.put("gone", b"x")
    store.delete("gone")

    with pytest.raises(PreconditionFailed):
        store.put_if_match("gone", b"y", etag)

    assert store.head("gone") is None


# --- list and delete ----------------------------------------------------------------------------------------


def test_list_returns_sorted_nested_keys_under_a_prefix(store: Store) -> None:
    keys = [
        "data/binance/BTC_USDT/1m/2024-01-02.parquet",
        "data/binance/BTC_USDT/1m/2024-01-01.parquet",
        "data/binance/ETH_USDT/1m/2024-01-01.parquet",
        "models/BTC_USDT/current.json",
    ]
    for key in keys:
        store.put(key, b"x")

    assert store.list("data/binance/") == sorted(keys[:3])
    assert store.list() == sorted(keys)
    assert store.list("reports/") == []


def test_list_matches_a_prefix_that_is_not_a_directory_boundary(store: Store) -> None:
    for key in ["data/binance/a", "data/bitstamp/b", "data/coinbase/c", "data/bi"]:
        store.put(key, b"x")

    assert store.list("data/bi") == ["data/bi", "data/binance/a", "data/bitstamp/b"]
    assert store.list("data/binance/a") == ["data/binance/a"]


def test_delete_removes_the_key_and_is_idempotent(store: Store) -> None:
    store.put("state/bot/lease.json", b"run-1")
    store.put("state/bot/portfolio.json", b"{}")

    store.delete("state/bot/lease.json")
    store.delete("state/bot/lease.json")
    store.delete("never/existed")

    assert store.head("state/bot/lease.json") is None
    assert store.list("state/") == ["state/bot/portfolio.json"]


# --- concurrency --------------------------------------------------------------------------------------------


def test_concurrent_compare_and_swap_from_one_etag_has_exactly_one_winner(store: Store) -> None:
    etag = store.put("state/bot/portfolio.json", b"start")  # unlike every racer's: ETags are content hashes

    winners, errors = race(RACERS, lambda i: store.put_if_match("state/bot/portfolio.json", b"v%d" % i, etag))

    assert len(winners) == 1
    assert len(errors) == RACERS - 1
    assert all(isinstance(e, PreconditionFailed) for e in errors), errors
    assert store.get("state/bot/portfolio.json").data == b"v%d" % winners[0]


def test_concurrent_create_only_puts_have_exactly_one_winner(store: Store) -> None:
    winners, errors = race(RACERS, lambda i: store.put_if_absent("state/bot/lease.json", b"run-%d" % i))

    assert len(winners) == 1
    assert all(isinstance(e, PreconditionFailed) for e in errors), errors
    assert store.get("state/bot/lease.json").data == b"run-%d" % winners[0]


def test_concurrent_increments_that_retry_on_conflict_lose_no_update(store: Store) -> None:
    store.put("counter", b"0")

    def increment_three_times(_: int) -> None:
        for _ in range(3):
            increment(store, "counter")

    _, errors = race(4, increment_three_times)

    assert errors == []
    assert store.get("counter").data == b"12"


def test_a_reader_never_sees_a_half_written_object(store: Store) -> None:
    versions = [bytes([n]) * 200_000 for n in (1, 2)]
    store.put("big", versions[0])
    done = threading.Event()

    def write() -> None:
        for i in range(10):
            store.put("big", versions[i % 2])
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    seen = set()
    while not done.is_set():
        seen.add(store.get("big").data)
    writer.join()

    assert seen <= set(versions)


def increment(store: Store, key: str) -> None:
    """Add one to the decimal counter at ``key``, re-reading and retrying whenever another writer won."""
    while True:
        current = store.get(key)
        try:
            store.put_if_match(key, b"%d" % (int(current.data) + 1), current.etag)
            return
        except PreconditionFailed:
            continue


# --- folder store only: other processes and crashes ---------------------------------------------------------

PROCESSES = 4
INCREMENTS = 5
WON, LOST = 0, 3


def _swap_then_increment_in_process(root: str, etag: str, barrier: Barrier, i: int) -> None:
    """Race one compare-and-swap from ``etag``, add ``INCREMENTS`` to the counter, exit ``WON`` or ``LOST``.

    Runs in a spawned process; the exit code carries the result so that no queue is needed.
    """
    store = FolderStore(Path(root))
    barrier.wait(timeout=30)
    try:
        store.put_if_match("state/bot/portfolio.json", b"process-%d" % i, etag)
        won = True
    except PreconditionFailed:
        won = False
    for _ in range(INCREMENTS):
        increment(store, "counter")
    sys.exit(WON if won else LOST)


def _crash_during_put(root: str) -> None:
    """Write a new version and be killed after the temporary file is complete but before it is renamed."""
    os.replace = lambda *_args, **_kwargs: os.kill(os.getpid(), signal.SIGKILL)
    FolderStore(Path(root)).put("state/bot/portfolio.json", b"new")


@pytest.mark.slow
def test_folder_store_compare_and_swap_across_processes_has_one_winner_and_loses_no_update(
    tmp_path: Path,
) -> None:
    store = FolderStore(tmp_path)
    etag = store.put("state/bot/portfolio.json", b"v0")
    store.put("counter", b"0")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    processes = [
        context.Process(target=_swap_then_increment_in_process, args=(str(tmp_path), etag, barrier, i))
        for i in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)

    codes = [-1 if process.exitcode is None else process.exitcode for process in processes]  # -1: hung
    assert sorted(codes) == [WON] + [LOST] * (PROCESSES - 1)
    assert store.get("state/bot/portfolio.json").data == b"process-%d" % codes.index(WON)
    assert store.get("counter").data == b"%d" % (INCREMENTS * PROCESSES)


def test_folder_store_crash_before_rename_leaves_the_previous_object_readable_and_listed(
    tmp_path: Path,
) -> None:
    store = FolderStore(tmp_path)
    etag = store.put("state/bot/portfolio.json", b"old")
    crashing = multiprocessing.get_context("spawn").Process(target=_crash_during_put, args=(str(tmp_path),))
    crashing.start()
    crashing.join(timeout=60)

    leftovers = [p for p in (tmp_path / "state" / "bot").iterdir() if p.name != "portfolio.json"]
    assert crashing.exitcode == -signal.SIGKILL
    assert [p.read_bytes() for p in leftovers] == [b"new"]
    assert store.get("state/bot/portfolio.json").data == b"old"
    assert store.list() == ["state/bot/portfolio.json"]
    store.put_if_match("state/bot/portfolio.json", b"after", etag)  # the dead writer holds no lock
    assert store.get("state/bot/portfolio.json").data == b"after"


def test_folder_store_writes_nothing_outside_its_root(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "root")

    with pytest.raises(StoreError):
        store.put("../escaped", b"x")
    store.put("inside/key", b"x")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]
    assert (tmp_path / "root" / "inside" / "key").read_bytes() == b"x"


def test_folder_store_creates_its_root_on_the_first_write_only(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "later")

    assert store.list() == []
    assert store.head("k") is None
    assert not (tmp_path / "later").exists()
    store.put("k", b"x")
    assert (tmp_path / "later" / "k").is_file()


def test_folder_store_etag_is_the_md5_of_the_content(tmp_path: Path) -> None:
    assert FolderStore(tmp_path).put("k", b"hello") == "5d41402abc4b2a76b9719d911017c592"


# --- S3 store only: prefix and error translation ------------------------------------------------------------


def test_s3_store_keeps_objects_under_its_prefix_and_lists_keys_relative_to_it(
    s3_client: S3Client, s3_bucket: str
) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="other/x", Body=b"x")
    store = S3Store(s3_bucket, "/bots/alpha/", s3_client)
    store.put("state/lease.json", b"x")

    raw = [item["Key"] for item in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert sorted(raw) == ["bots/alpha/state/lease.json", "other/x"]
    assert store.list() == ["state/lease.json"]
    assert store.describe() == f"s3://{s3_bucket}/bots/alpha"


def test_s3_store_reports_a_missing_bucket_as_store_error_naming_bucket_and_key(s3_client: S3Client) -> None:
    store = S3Store("no-such-bucket", "p", s3_client)

    with pytest.raises(StoreError, match="s3://no-such-bucket/p/k") as caught:
        store.put("k", b"x")

    assert not isinstance(caught.value, PreconditionFailed | ObjectNotFound)


def test_s3_store_reports_an_unreachable_endpoint_as_store_error_without_credentials(
    unused_port: int,
) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{unused_port}",
        config=Config(connect_timeout=1, read_timeout=1, retries={"total_max_attempts": 1}),
    )
    store = S3Store("bucket", "", client)

    with pytest.raises(StoreError, match="s3://bucket/k") as caught:
        store.get("k")

    assert "testing-secret" not in str(caught.value)
    assert "EndpointConnectionError" in str(caught.value)


@pytest.mark.parametrize(
    ("operation", "code", "status", "expected"),
    [
        ("put_object", "ConditionalRequestConflict", 409, PreconditionFailed),
        ("put_object", "PreconditionFailed", 412, PreconditionFailed),
        ("put_object", "InternalError", 500, StoreError),
        ("put_object", "AccessDenied", 403, StoreError),
    ],
)
def test_s3_store_translates_compare_and_swap_errors_by_code(
    s3_client: S3Client, operation: str, code: str, status: int, expected: type[StoreError]
) -> None:
    store = S3Store("bucket", "p", s3_client)
    with Stubber(s3_client) as stubber:
        stubber.add_client_error(operation, service_error_code=code, http_status_code=status)

        with pytest.raises(StoreError, match="s3://bucket/p/k") as caught:
            store.put_if_match("k", b"x", "etag")

    assert type(caught.value) is expected


def test_s3_store_head_reports_access_denied_as_store_error_not_as_absent(s3_client: S3Client) -> None:
    store = S3Store("bucket", "", s3_client)
    with Stubber(s3_client) as stubber:
        stubber.add_client_error("head_object", service_error_code="403", http_status_code=403)

        with pytest.raises(StoreError, match="s3://bucket/k"):
            store.head("k")
