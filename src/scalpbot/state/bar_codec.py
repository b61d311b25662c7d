"""Encode and decode one bar partition as Parquet or CSV bytes.

Both formats hold the schema of the shared market data files: ``timestamp`` (UTC bar open time;
Parquet ``timestamp[ms, UTC]``, CSV ISO-8601 with ``Z``) then float64 ``open, high, low, close, volume``,
then the float64 order-flow columns ``trades, taker_buy_volume`` only when the bars hold them (NaN where a bar
has none; see :mod:`scalpbot.core.bars`). A partition without order flow is encoded exactly as before the
columns existed. Encoding is deterministic, so the same bars always give the same bytes.
"""

from __future__ import annotations

import io
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from scalpbot.core.bars import BAR_COLUMNS, ORDER_FLOW_COLUMNS, order_flow_columns
from scalpbot.errors import CorruptArtifactError

Format = Literal["parquet", "csv"]
EXTENSIONS: dict[Format, str] = {"parquet": ".parquet", "csv": ".csv"}

_NS_UTC = pa.timestamp("ns", tz="UTC")
_SCHEMA = pa.schema(
    [("timestamp", pa.timestamp("ms", tz="UTC"))] + [(name, pa.float64()) for name in BAR_COLUMNS]
)
_FULL_SCHEMA = pa.schema(
    [*_SCHEMA, *((name, pa.float64()) for name in ORDER_FLOW_COLUMNS)]
)  # the widest partition: what a CSV's columns are read as


def _schema(columns: tuple[str, ...]) -> pa.Schema:
    return pa.schema([_FULL_SCHEMA.field(name) for name in ("timestamp", *columns)])


def encode_bars(bars: pd.DataFrame, fmt: Format) -> bytes:
    """Return the bytes of one partition of canonical bars (see ``scalpbot.core.bars``)."""
    columns = (*BAR_COLUMNS, *order_flow_columns(bars))
    if fmt == "parquet":
        open_ns = pd.DatetimeIndex(bars.index).as_unit("ns").asi8
        stamps = pa.array(open_ns, type=_NS_UTC).cast(_SCHEMA.field("timestamp").type)
        table = pa.Table.from_arrays(
            [stamps] + [pa.array(bars[name].to_numpy(dtype="float64")) for name in columns],
            schema=_schema(columns),
        )
        sink = io.BytesIO()
        # Dictionary encoding buys nothing on float prices and doubles the write time.
        pq.write_table(table, sink, compression="zstd", use_dictionary=False)
        return sink.getvalue()
    text = bars.loc[:, list(columns)].to_csv(
        index=True, index_label="timestamp", date_format="%Y-%m-%dT%H:%M:%SZ", lineterminator="\n"
    )
    return text.encode()


def decode_bars(data: bytes, fmt: Format, *, key: str) -> pd.DataFrame:
    """Return the canonical bar frame held in ``data``; raise ``CorruptArtifactError`` naming ``key``."""
    try:
        if fmt == "parquet":
            table = pq.read_table(io.BytesIO(data))
        else:
            options = pacsv.ConvertOptions(column_types=_FULL_SCHEMA)
            table = pacsv.read_csv(io.BytesIO(data), convert_options=options)
        columns = (*BAR_COLUMNS, *(c for c in ORDER_FLOW_COLUMNS if c in table.column_names))
        table = table.select(["timestamp", *columns]).cast(_schema(columns))
    except (pa.ArrowException, KeyError, ValueError) as e:
        raise CorruptArtifactError(
            f"stored partition {key} cannot be read ({e}); restore it from a backup or delete it and re-fetch"
        ) from e
    frame: pd.DataFrame = table.to_pandas()
    frame.index = pd.DatetimeIndex(frame.pop("timestamp").dt.as_unit("ns"), name="timestamp")
    return frame
