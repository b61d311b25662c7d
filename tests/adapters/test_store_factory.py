"""``open_store`` turns a URL into the right store, and refuses bad URLs with a message that says what to use."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalpbot.adapters.store import FolderStore, S3Store, open_store
from scalpbot.adapters.store.s3 import require_conditional_writes
from scalpbot.errors import ConfigError

from support.moto_server import MotoServer


def test_an_s3_url_opens_an_s3_store_that_writes_under_the_prefix(
    moto_server: MotoServer, s3_bucket: str
) -> None:
    store = open_store(f"s3://{s3_bucket}/bots/alpha", endpoint_url=moto_server.endpoint_url)
    store.put("state/lease.json", b"run-1")

    assert isinstance(store, S3Store)
    assert store.describe() == f"s3://{s3_bucket}/bots/alpha"
    assert open_store(f"s3://{s3_bucket}", endpoint_url=moto_server.endpoint_url).list() == [
        "bots/alpha/state/lease.json"
    ]


def test_the_s3_client_has_bounded_timeouts_standard_retries_and_the_given_endpoint_and_region() -> None:
    store = open_store("s3://bucket/p", endpoint_url="http://127.0.0.1:9", region="eu-west-1")

    assert isinstance(store, S3Store)
    client = store._client
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.region_name == "eu-west-1"
    settings = vars(client.meta.config)  # botocore-stubs do not declare these attributes
    assert settings["retries"] == {"mode": "standard", "total_max_attempts": 5}
    assert (settings["connect_timeout"], settings["read_timeout"]) == (5, 30)
    assert settings["s3"] == {"addressing_style": "path"}


def test_opening_an_s3_store_contacts_nothing() -> None:
    store = open_store("s3://bucket/p", endpoint_url="http://127.0.0.1:9")

    assert store.describe() == "s3://bucket/p"


def test_a_folder_path_opens_a_folder_store_with_home_expanded_and_created_on_first_write(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))

    store = open_store("~/scalpbot-data")

    assert isinstance(store, FolderStore)
    assert store.root == tmp_path / "scalpbot-data"
    assert not store.root.exists()
    store.put("k", b"x")
    assert (tmp_path / "scalpbot-data" / "k").read_bytes() == b"x"


def test_a_file_url_opens_a_folder_store(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/data")

    assert isinstance(store, FolderStore)
    assert store.root == tmp_path / "data"


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("", "is empty"),
        ("s3://", "has no bucket"),
        ("s3:///prefix", "has no bucket"),
        ("gs://bucket/prefix", "unsupported scheme 'gs'"),
        ("https://example.com/data", "unsupported scheme 'https'"),
        ("s3://Not_A_Bucket/prefix", "not a valid S3 bucket name"),
        ("file://relative/path", "file:///absolute/path"),
    ],
)
def test_a_bad_url_raises_config_error_that_says_what_to_use(url: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=hint) as caught:
        open_store(url)

    assert "s3://" in str(caught.value)


@pytest.mark.parametrize("version", ["1.35.69", "1.34.162", "0.9"])
def test_a_botocore_without_conditional_writes_is_refused_with_config_error(version: str) -> None:
    with pytest.raises(ConfigError, match=f"botocore {version} cannot make S3 conditional writes"):
        require_conditional_writes(version)


@pytest.mark.parametrize("version", ["1.35.70", "1.36.0rc1", "1.44.8", "2.0.0"])
def test_a_botocore_with_conditional_writes_is_accepted(version: str) -> None:
    require_conditional_writes(version)
