"""Where the benchmarks read bars: ``--file``, else the 2024 BTC/USDT 1m year when a checkout has it beside it.

A fresh clone has no such folder; each script then says what it uses instead (the bundled six-week sample, or
a synthetic series of the size it needs).
"""

from __future__ import annotations

from pathlib import Path

from scalpbot.adapters.marketdata.files import sample_path

SHARED_YEAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "BTC_USDT-1m-2024.csv.gz"


def year_or_none() -> Path | None:
    """Return the shared 2024 year when present, else ``None``."""
    return SHARED_YEAR if SHARED_YEAR.exists() else None


def year_or_sample() -> Path:
    """Return the shared 2024 year when present, else the bundled sample (six weeks of real 1m bars)."""
    return year_or_none() or sample_path()
