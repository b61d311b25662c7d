"""Open the ``Store`` that a URL names: ``s3://bucket/prefix`` or a folder path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from scalpbot.adapters.store.folder import FolderStore
from scalpbot.adapters.store.s3 import S3Store
from scalpbot.errors import ConfigError
from scalpbot.ports import Store

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_EXAMPLES = "use s3://BUCKET/PREFIX (e.g. s3://my-bot-data/scalpbot) or a folder path (e.g. ./scalpbot-data)"


def open_store(url: str, endpoint_url: str | None = None, region: str | None = None) -> Store:
    """Return an ``S3Store`` for ``s3://bucket/prefix``, else a ``FolderStore`` for the path (``~`` expanded).

    ``endpoint_url`` points the S3 client at an S3-compatible server (moto, MinIO, SeaweedFS) and switches it
    to path-style addressing; ``None`` lets boto3 use AWS (or ``AWS_ENDPOINT_URL``). Nothing is contacted and
    no folder is created here: the first request or write does that. ``file:///abs/path`` is a folder too.
    """
    url = url.strip()
    if not url:
        raise ConfigError(f"store url is empty; {_EXAMPLES}")
    match = _SCHEME.match(url)
    if match is None:
        return FolderStore(Path(url).expanduser())
    scheme = match.group(1).lower()
    if scheme == "file":
        return _open_file(url)
    if scheme != "s3":
        raise ConfigError(f"store url {url!r} uses unsupported scheme {scheme!r}; {_EXAMPLES}")
    bucket, _, prefix = url[match.end() :].partition("/")
    if not bucket:
        raise ConfigError(f"store url {url!r} has no bucket; {_EXAMPLES}")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ConfigError(
            f"store url {url!r}: {bucket!r} is not a valid S3 bucket name "
            "(3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit)"
        )
    return S3Store(bucket, prefix, _s3_client(endpoint_url, region))


def _open_file(url: str) -> FolderStore:
    rest = url[len("file://") :]
    if rest.startswith("localhost/"):
        rest = rest[len("localhost") :]
    if not rest.startswith("/"):
        raise ConfigError(
            f"store url {url!r} is not an absolute file url (file:///absolute/path); {_EXAMPLES}"
        )
    return FolderStore(Path(rest))


def _s3_client(endpoint_url: str | None, region: str | None) -> S3Client:
    """Build a boto3 S3 client with bounded timeouts and standard retries; boto3 is imported lazily (slow)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=5,
        read_timeout=30,
        retries={"mode": "standard", "total_max_attempts": 5},
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
