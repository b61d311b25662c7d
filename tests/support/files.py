"""Helpers that write bar files and snapshot a folder byte for byte."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pandas as pd

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def write_csv(bars: pd.DataFrame, path: Path) -> Path:
    """Write canonical bars to ``path`` in the import schema (gzip when the name ends in ``.gz``)."""
    text = bars.to_csv(index=True, index_label="timestamp", date_format="%Y-%m-%dT%H:%M:%SZ")
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Return ``{relative path: sha256}`` of every file under ``root`` (empty when it does not exist)."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
