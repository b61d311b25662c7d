"""Market data from a local file: CSV (optionally gzip) or Parquet, and the bundled sample.

The file uses the schema of the shared market data: ``timestamp`` (bar open time, ISO-8601 UTC such
as ``2024-01-01T00:00:00Z``, or epoch seconds, milliseconds or microseconds) then ``open, high, low, close,
volume``, optionally followed by the order-flow columns ``trades`` and ``taker_buy_volume``
(:mod:`scalpbot.core.bars`). Binance's public kline dumps are read as well: the header-less CSV of 12 columns
(open time, open, high, low, close, volume, close time, quote volume, number of trades, taker-buy base
volume, taker-buy quote volume, ignore; open times in milliseconds, in microseconds for spot files from 2025)
and the same columns under Binance's header names (``open_time ... count, taker_buy_volume ...``).
Rows are returned as read, in file order, so that validation can name the first bad row.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from scalpbot.errors import DataError

SAMPLE_FILE = "BTC_USDT-1m.csv.gz"
SAMPLE_SYMBOL = "BTC/USDT"
SAMPLE_TIMEFRAME = "1m"
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
BINANCE_KLINE_COLUMNS = (
    "timestamp",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
"""The 12 fields of a Binance kline, named as the dataset names them (open time is ``timestamp``)."""
_BINANCE_HEADER_NAMES = {"open_time": "timestamp", "count": "trades"}


def sample_path() -> Path:
    """Return the path of the bundled sample: six weeks of real Binance BTC/USDT 1m bars."""
    return Path(str(resources.files("scalpbot.sample").joinpath(SAMPLE_FILE)))


class FileMarketData:
    """Read every bar of one file; the retrieve job validates and windows them."""

    def __init__(self, path: Path, *, name: str | None = None) -> None:
        self.path = path
        self.name = name or f"file:{path}"

    def fetch_bars(
        self, symbol: str, timeframe: str, since: datetime | None, until: datetime | None
    ) -> Iterator[pd.DataFrame]:
        """Yield the whole file as one raw chunk (columns as in the file, file order)."""
        yield read_bar_file(self.path)


def read_bar_file(path: Path) -> pd.DataFrame:
    """Return the rows of a bar file with a UTC ``timestamp`` column where it parses; raise ``DataError``."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    try:
        table = _read_parquet(path) if magic == _PARQUET_MAGIC else _read_csv(path, magic)
    except (pa.ArrowException, OSError, EOFError) as e:
        raise DataError(f"{path} is truncated or not a valid bar file: {e}") from None
    frame: pd.DataFrame = table.to_pandas()
    if "timestamp" not in frame.columns and "open_time" in frame.columns:
        frame = frame.rename(columns=_BINANCE_HEADER_NAMES)
    if "volume" in frame.columns and len(frame) and frame["volume"].isna().all():
        frame["volume"] = 0.0  # venues without volume (e.g. FX quotes) leave the column empty
    if "timestamp" in frame.columns and pd.api.types.is_string_dtype(frame["timestamp"].dtype):
        digits = frame["timestamp"].str.fullmatch(r"\d+")
        if len(frame) and digits.all():  # epoch times read as text beside a value that is not a number
            frame["timestamp"] = frame["timestamp"].astype("int64")
    if "timestamp" in frame.columns and pd.api.types.is_integer_dtype(frame["timestamp"].dtype):
        largest = frame["timestamp"].abs().max()
        unit: Literal["us", "ms", "s"] = "us" if largest > 10**14 else "ms" if largest > 10**11 else "s"
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit=unit, utc=True)
    return frame


def _read_parquet(path: Path) -> pa.Table:
    return pq.read_table(path)


def _read_csv(path: Path, magic: bytes) -> pa.Table:
    compression = "gzip" if magic[:2] == _GZIP_MAGIC else None
    with pa.input_stream(str(path), compression=compression) as stream:
        first_line = stream.read(4096).split(b"\n", 1)[0]
    names = list(BINANCE_KLINE_COLUMNS) if _is_binance_kline_row(first_line) else None
    try:
        with pa.input_stream(str(path), compression=compression) as stream:
            return pacsv.read_csv(stream, read_options=pacsv.ReadOptions(column_names=names))
    except pa.ArrowInvalid as e:
        if "CSV conversion error" not in str(e) and "In CSV column" not in str(e):
            raise
    # A value that is not a number: read everything as text so validation can name the row.
    with pa.input_stream(str(path), compression=compression) as stream:
        header = pacsv.read_csv(
            stream, read_options=pacsv.ReadOptions(column_names=names, skip_rows_after_names=10**12)
        )
    text_types = {name: pa.string() for name in header.column_names}
    with pa.input_stream(str(path), compression=compression) as stream:
        return pacsv.read_csv(
            stream,
            read_options=pacsv.ReadOptions(column_names=names),
            convert_options=pacsv.ConvertOptions(column_types=text_types),
        )


def _is_binance_kline_row(line: bytes) -> bool:
    """Return whether ``line`` is a header-less Binance kline row: 12 fields, the first an integer open time."""
    fields = line.strip().split(b",")
    return len(fields) == len(BINANCE_KLINE_COLUMNS) and fields[0].isdigit()
