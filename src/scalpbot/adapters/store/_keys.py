"""Key rules and the content ETag shared by every store.

A key is a ``/``-separated relative path of non-empty segments. A segment may not be ``.`` or ``..`` and may
not start with ``.``: the folder store keeps its temporary and lock files under such names, so forbidding them
everywhere keeps the fake, the folder and S3 interchangeable.

ETags are content hashes, so rewriting identical bytes keeps the ETag and a compare-and-swap from it still
succeeds (A-B-A): harmless when the object is the whole state, as for pointers and snapshots.
"""

from __future__ import annotations

import hashlib

from scalpbot.errors import StoreError


def check_key(key: str) -> str:
    """Return ``key`` unchanged, or raise ``StoreError`` saying why it is not a valid store key."""
    if not key:
        raise StoreError("store key is empty; use a relative path such as 'state/bot/portfolio.json'")
    if "\\" in key or "\x00" in key:
        raise StoreError(f"store key {key!r} contains a backslash or NUL; use '/' to separate segments")
    if key.startswith("/"):
        raise StoreError(f"store key {key!r} is absolute; drop the leading '/'")
    for segment in key.split("/"):
        if not segment:
            raise StoreError(f"store key {key!r} has an empty segment ('//' or a trailing '/')")
        if segment.startswith("."):
            raise StoreError(
                f"store key {key!r} has segment {segment!r}: segments may not start with '.' "
                "('..' would escape the store; other dot names are reserved for temporary and lock files)"
            )
    return key


def content_etag(data: bytes) -> str:
    """Return the lowercase hex MD5 of ``data``, which is what S3 reports for a single-part upload."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
