"""Shared fixtures: the bundled real bars, and an isolated working directory and environment."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.marketdata.files import read_bar_file, sample_path
from scalpbot.core.bars import validate_bars


@pytest.fixture(scope="session")
def sample_bars() -> pd.DataFrame:
    """Return the bundled six weeks of real Binance BTC/USDT 1m bars, validated."""
    return validate_bars(read_bar_file(sample_path()), "1m", source="sample")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test in its own folder with no SCALPBOT_* variables from the outer environment."""
    for name in list(os.environ):
        if name.upper().startswith("SCALPBOT"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return
