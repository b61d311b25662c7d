"""Implementations of the ``Store`` port: in memory (tests), a local folder (the default) and S3.

All three share one contract (``tests/adapters/test_store_contract.py``): the same key rules, create-only and
compare-and-swap writes that raise ``PreconditionFailed`` when they lose, and sorted ``list`` by plain string
prefix. ``open_store(url)`` picks one from a URL.
"""

from scalpbot.adapters.store.factory import open_store
from scalpbot.adapters.store.folder import FolderStore
from scalpbot.adapters.store.memory import MemoryStore
from scalpbot.adapters.store.s3 import S3Store

__all__ = ["FolderStore", "MemoryStore", "S3Store", "open_store"]
