"""A ``Store`` in an S3 bucket (or an S3-compatible server) with conditional writes.

Create-only puts send ``If-None-Match: *`` and compare-and-swap puts send ``If-Match: "ETAG"``; S3 decides
atomically, so the race is settled by the server. ETags are returned without the surrounding quotes S3 puts
on them, so for single-part uploads they equal the folder store's (hex MD5 of the content). Conditional writes
need botocore >= 1.35.70, checked when the store is built. A missing key reads as 403 rather than 404 when the
caller lacks ``s3:ListBucket``; that surfaces as ``StoreError``, not ``ObjectNotFound``.

botocore retries a conditional put whose response was lost; if the first attempt had landed, the retry loses
to it and raises ``PreconditionFailed``. Callers that must know re-read the object and compare its content.
"""

from __future__ import annotations

import builtins
import re
from typing import TYPE_CHECKING, NoReturn

import botocore
from botocore.exceptions import BotoCoreError, ClientError

from scalpbot.adapters.store._keys import check_key
from scalpbot.errors import ConfigError, ObjectNotFound, PreconditionFailed, StoreError
from scalpbot.ports import StoredObject

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIN_BOTOCORE = (1, 35, 70)
_NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404"})
_LOST_RACE = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


class S3Store:
    """Store objects under ``s3://bucket/prefix/`` with a boto3 S3 client; keys are relative to the prefix."""

    def __init__(self, bucket: str, prefix: str, client: S3Client) -> None:
        require_conditional_writes(botocore.__version__)
        if not bucket:
            raise ConfigError("S3 bucket name is empty; pass the bucket of s3://BUCKET/PREFIX")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._client = client

    def get(self, key: str) -> StoredObject:
        """Return the object and its ETag; raise ``ObjectNotFound`` when the key is absent."""
        name = self._name(key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=name)
            data = response["Body"].read()
        except (ClientError, BotoCoreError) as e:
            self._raise(e, "get", key)
        return StoredObject(data=data, etag=_unquote(response["ETag"]))

    def head(self, key: str) -> str | None:
        """Return the object's ETag, or ``None`` when the key is absent."""
        name = self._name(key)
        try:
            response = self._client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as e:
            if _code(e) in _NOT_FOUND:
                return None
            self._raise(e, "head", key)
        except BotoCoreError as e:
            self._raise(e, "head", key)
        return _unquote(response["ETag"])

    def put(self, key: str, data: bytes) -> str:
        """Write unconditionally and return the new ETag."""
        name = self._name(key)
        try:
            response = self._client.put_object(Bucket=self.bucket, Key=name, Body=data)
        except (ClientError, BotoCoreError) as e:
            self._raise(e, "put", key)
        return _unquote(response["ETag"])

    def put_if_absent(self, key: str, data: bytes) -> str:
        """Create-only write; raise ``PreconditionFailed`` when the key already exists."""
        name = self._name(key)
        try:
            response = self._client.put_object(Bucket=self.bucket, Key=name, Body=data, IfNoneMatch="*")
        except (ClientError, BotoCoreError) as e:
            self._raise(e, "create-only put", key)
        return _unquote(response["ETag"])

    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        """Compare-and-swap write; raise ``PreconditionFailed`` unless the current ETag equals ``etag``."""
        name = self._name(key)
        try:
            response = self._client.put_object(Bucket=self.bucket, Key=name, Body=data, IfMatch=_quote(etag))
        except ClientError as e:
            if _code(e) in _NOT_FOUND:  # S3 answers 404 when the object to compare against is gone
                raise PreconditionFailed(f"{key!r} is absent from {self.describe()} (expected {etag})") from e
            self._raise(e, "compare-and-swap put", key)
        except BotoCoreError as e:
            self._raise(e, "compare-and-swap put", key)
        return _unquote(response["ETag"])

    def list(self, prefix: str = "") -> builtins.list[str]:
        """Return every key starting with ``prefix``, sorted."""
        keys: builtins.list[str] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix
            )
            for page in pages:
                keys.extend(item["Key"][len(self.prefix) :] for item in page.get("Contents", []))
        except (ClientError, BotoCoreError) as e:
            self._raise(e, "list", prefix)
        return sorted(key for key in keys if key)

    def delete(self, key: str) -> None:
        """Delete the key; deleting an absent key is not an error."""
        name = self._name(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=name)
        except ClientError as e:
            if _code(e) not in _NOT_FOUND:
                self._raise(e, "delete", key)
        except BotoCoreError as e:
            self._raise(e, "delete", key)

    def describe(self) -> str:
        """Return ``s3://bucket/prefix``."""
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _raise(self, error: ClientError | BotoCoreError, operation: str, key: str) -> NoReturn:
        """Translate a botocore error; messages name the bucket and key, never credentials."""
        where = f"s3://{self.bucket}/{self.prefix}{key}"
        if isinstance(error, ClientError):
            code = _code(error)
            if code in _NOT_FOUND:
                raise ObjectNotFound(f"{where} not found") from error
            if code in _LOST_RACE or _status(error) == 412:
                raise PreconditionFailed(
                    f"{operation} of {where} lost: {code} (re-read and retry)"
                ) from error
            message = error.response.get("Error", {}).get("Message", "")
            raise StoreError(f"S3 {operation} of {where} failed: {code} {message}".rstrip()) from error
        raise StoreError(f"S3 {operation} of {where} failed: {type(error).__name__}: {error}") from error


def require_conditional_writes(version: str) -> None:
    """Raise ``ConfigError`` when this botocore is too old to send ``If-Match`` on ``put_object``."""
    parts = [
        int(match.group()) if (match := re.match(r"\d+", part)) else 0 for part in version.split(".")[:3]
    ]
    if tuple(parts) < MIN_BOTOCORE:
        wanted = ".".join(map(str, MIN_BOTOCORE))
        raise ConfigError(
            f"botocore {version} cannot make S3 conditional writes (If-Match needs >= {wanted}); "
            f"install boto3>={wanted} (the AWS Lambda runtime's bundled boto3 may be older: ship your own)"
        )


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _quote(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _unquote(etag: str) -> str:
    return etag.strip('"')
