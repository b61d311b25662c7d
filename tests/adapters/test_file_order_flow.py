"""The file importer reads Binance's kline dumps (12 columns, with or without Binance's header) and CSVs with named
order-flow columns; files without them import as OHLCV only."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.marketdata.files import read_bar_file
from scalpbot.core.bars import ORDER_FLOW_COLUMNS, validate_bars
from scalpbot.errors import DataError

# The first rows of Binance's public dump BTCUSDT-1m-2017-08-17.csv, as published (no header).
DUMP = """\
1502942400000,4261.48000000,4261.48000000,4261.48000000,4261.48000000,1.77518300,1502942459999,7564.90685084,3,0.07518300,320.39085084,0
1502942460000,4261.48000000,4261.48000000,4261.48000000,4261.48000000,0.00000000,1502942519999,0.00000000,0,0.00000000,0.00000000,0
1502942520000,4280.56000000,4280.56000000,4280.56000000,4280.56000000,0.26107400,1502942579999,1117.54292144,2,0.26107400,1117.54292144,0
1502942580000,4261.48000000,4261.48000000,4261.48000000,4261.48000000,0.01200800,1502942639999,51.17185184,3,0.01200800,51.17185184,0
1502944080000,4266.29000000,4266.29000000,4261.32000000,4266.29000000,2.96313200,1502944139999,12632.73381531,8,1.18313100,5047.57995399,0
"""
BINANCE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore\n"
)


def _bars(path: Path) -> pd.DataFrame:
    return validate_bars(read_bar_file(path), "1m", source=path.name)


def _check_dump(bars: pd.DataFrame) -> None:
    assert list(bars.columns) == ["open", "high", "low", "close", "volume", *ORDER_FLOW_COLUMNS]
    assert bars.index[0] == pd.Timestamp("2017-08-17T04:00:00Z")
    assert bars.index[-1] == pd.Timestamp("2017-08-17T04:28:00Z")
    assert bars["trades"].tolist() == [3.0, 0.0, 2.0, 3.0, 8.0]
    assert bars["taker_buy_volume"].tolist() == [0.075183, 0.0, 0.261074, 0.012008, 1.183131]
    assert bars["volume"].iloc[0] == 1.775183


def test_a_binance_dump_without_header_imports_with_order_flow(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1m-2017-08-17.csv"
    path.write_text(DUMP)
    _check_dump(_bars(path))


def test_a_gzipped_dump_with_binance_header_names_imports_alike(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1m-2017-08-17.csv.gz"
    path.write_bytes(gzip.compress((BINANCE_HEADER + DUMP).encode()))
    _check_dump(_bars(path))


def test_a_dump_with_microsecond_open_times_imports_alike(tmp_path: Path) -> None:
    rows = [line.split(",") for line in DUMP.splitlines()]
    path = tmp_path / "BTCUSDT-1m-2025.csv"
    path.write_text("".join(",".join([r[0] + "000", *r[1:6], r[6] + "999", *r[7:]]) + "\n" for r in rows))
    _check_dump(_bars(path))


def test_a_csv_with_named_order_flow_columns_keeps_them(tmp_path: Path, sample_bars: pd.DataFrame) -> None:
    path = tmp_path / "flow.csv"
    frame = sample_bars.iloc[:10].assign(trades=7.0, taker_buy_volume=lambda b: b["volume"] / 2)
    frame.to_csv(path, index_label="timestamp", date_format="%Y-%m-%dT%H:%M:%SZ")
    bars = _bars(path)
    pd.testing.assert_frame_equal(bars, frame, check_freq=False)


def test_a_plain_ohlcv_file_imports_without_order_flow(sample_bars: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    sample_bars.iloc[:10].to_csv(path, index_label="timestamp", date_format="%Y-%m-%dT%H:%M:%SZ")
    assert list(_bars(path).columns) == ["open", "high", "low", "close", "volume"]


def test_a_dump_row_that_is_not_a_number_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    lines = DUMP.splitlines()
    fields = lines[2].split(",")
    fields[8] = "many"
    lines[2] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"row 3 \(2017-08-17T04:02:00Z\): trades 'many' is not a number"):
        _bars(path)
