"""The fetch and data commands, run through the console entry point as a user would."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from support.cli import run_cli
from support.files import snapshot, write_csv


def show_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    code, out, err = run_cli(capsys, *args, "data", "show", "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert isinstance(payload, dict)
    return payload


def test_fetching_a_file_reports_exactly_its_bars_and_again_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sample_bars: pd.DataFrame
) -> None:
    source = write_csv(sample_bars, tmp_path / "btc.csv.gz")
    assert run_cli(capsys, "fetch", "--source", f"file:{source}")[0] == 0
    summary = show_json(capsys)
    assert (summary["bars"], summary["first"], summary["last"], summary["gaps"]) == (
        60_480,
        "2024-11-20T00:00:00Z",
        "2024-12-31T23:59:00Z",
        0,
    )
    before = snapshot(tmp_path / "scalpbot-data")
    code, out, _ = run_cli(capsys, "fetch", "--source", f"file:{source}")
    assert code == 0 and "0 new bars stored, 60480 already stored" in out
    assert snapshot(tmp_path / "scalpbot-data") == before


def test_an_overlapping_later_window_adds_only_the_new_bars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sample_bars: pd.DataFrame
) -> None:
    first = write_csv(sample_bars.iloc[:20_000], tmp_path / "a.csv")
    later = write_csv(sample_bars.iloc[15_000:30_000], tmp_path / "b.csv")
    assert run_cli(capsys, "fetch", "--source", f"file:{first}")[0] == 0
    code, out, _ = run_cli(capsys, "fetch", "--source", f"file:{later}")
    assert code == 0 and "10000 new bars stored, 5000 already stored" in out
    assert show_json(capsys)["bars"] == 30_000


def test_the_bundled_sample_imports_offline(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "fetch", "--source", "sample")[0] == 0
    code, out, _ = run_cli(capsys, "data", "show")
    assert code == 0 and "60,480" in out and "2024-12-31T23:59:00Z" in out


@pytest.mark.parametrize(
    ("args", "wanted"),
    [(("--symbol", "BTC/USDX"), "binance BTC/USDX 1m"), (("--exchange", "binanse"), "binanse BTC/USDT 1m")],
)
def test_showing_a_series_that_is_not_stored_names_the_ones_that_are(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], wanted: str
) -> None:
    assert run_cli(capsys, "fetch", "--source", "sample")[0] == 0
    code, out, err = run_cli(capsys, "data", "show", *args)
    message = " ".join(err.split())
    assert code == 1 and out == "" and f"no bars of {wanted} are stored" in message
    assert "(did you mean binance BTC/USDT 1m?); stored: binance BTC/USDT 1m" in message


def _corrupt(kind: str, bars: pd.DataFrame, path: Path) -> Path:
    raw = bars.reset_index()
    if kind == "unsorted":
        raw = raw.iloc[[0, 2, 1, *range(3, len(raw))]]
    elif kind == "duplicate":
        raw = raw.iloc[[0, 1, 1, *range(2, len(raw))]]
    elif kind == "high-below-low":
        raw.loc[7, "high"] = raw.loc[7, "low"] - 1
    elif kind == "nan":
        raw.loc[9, "close"] = float("nan")
    elif kind == "missing-column":
        raw = raw.drop(columns=["low"])
    raw.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    if kind == "truncated-gzip":
        payload = gzip.compress(path.read_bytes())
        path = path.with_suffix(".csv.gz")
        path.write_bytes(payload[: len(payload) // 2])
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("unsorted", "row 3 (2024-12-20T00:01:00Z): timestamp is earlier than the previous row's"),
        ("duplicate", "row 3 (2024-12-20T00:01:00Z): timestamp repeats the previous row's"),
        ("high-below-low", "row 8 (2024-12-20T00:07:00Z): inconsistent bar"),
        ("nan", "row 10 (2024-12-20T00:09:00Z): close is missing (NaN)"),
        ("missing-column", "missing column(s) low"),
        ("truncated-gzip", "is truncated or not a valid bar file"),
    ],
)
def test_bad_input_ends_non_zero_with_one_line_and_leaves_the_store_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sample_bars: pd.DataFrame, kind: str, message: str
) -> None:
    assert run_cli(capsys, "fetch", "--source", "sample")[0] == 0
    before = snapshot(tmp_path / "scalpbot-data")
    bad = _corrupt(kind, sample_bars.iloc[43_200:46_000], tmp_path / "bad.csv")
    code, _out, err = run_cli(capsys, "fetch", "--source", f"file:{bad}")
    assert code == 1
    assert err.strip().startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert snapshot(tmp_path / "scalpbot-data") == before


def test_verbose_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "fetch", "--source", f"file:{tmp_path / 'empty.csv'}")
    assert code == 1 and "Traceback" not in err and "no such file" in err
    (tmp_path / "empty.csv").write_text("timestamp,open\n2024-01-01T00:00:00Z,1\n")
    code, _, err = run_cli(capsys, "--verbose", "fetch", "--source", f"file:{tmp_path / 'empty.csv'}")
    assert code == 1 and "Traceback" in err and "missing column(s) high, low, close, volume" in err


def test_export_writes_the_import_schema_that_fetch_reads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sample_bars: pd.DataFrame
) -> None:
    assert run_cli(capsys, "fetch", "--source", "sample")[0] == 0
    for fmt in ("csv", "parquet"):
        out_file = tmp_path / f"out.{fmt}"
        code, _, err = run_cli(
            capsys,
            "data",
            "export",
            "--format",
            fmt,
            "--out",
            str(out_file),
            "--from",
            "2024-12-01",
            "--to",
            "2024-12-02T00:00:00Z",
        )
        assert code == 0, err
        assert (
            run_cli(capsys, "--store", str(tmp_path / fmt), "fetch", "--source", f"file:{out_file}")[0] == 0
        )
        assert show_json(capsys, "--store", str(tmp_path / fmt))["bars"] == 1440


def test_config_show_prints_json_with_secrets_redacted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCALPBOT_EXCHANGE__SECRET", "hunter2")
    code, out, _ = run_cli(capsys, "--store", "s3://bucket/p", "config", "show")
    shown = json.loads(out)
    assert (
        code == 0 and shown["store"]["url"] == "s3://bucket/p" and shown["exchange"]["secret"] == "********"
    )
    assert "hunter2" not in out


def test_a_bad_option_value_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "data", "show", "--timeframe", "1min")
    assert code == 1 and "timeframe '1min' is not supported (did you mean '1m'?)" in err


def test_order_flow_is_shown_and_a_mixed_series_exports_and_reads_back_as_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sample_bars: pd.DataFrame
) -> None:
    from scalpbot.adapters.store.folder import FolderStore
    from scalpbot.state.dataset import BarDataset, SeriesId

    from support.order_flow import with_order_flow

    plain = write_csv(sample_bars.iloc[:2000], tmp_path / "plain.csv")
    flow = write_csv(with_order_flow(sample_bars.iloc[2000:5000]), tmp_path / "flow.csv")
    for source in (plain, flow):
        assert run_cli(capsys, "fetch", "--source", f"file:{source}")[0] == 0
    assert show_json(capsys)["order_flow_bars"] == 3000
    code, out, _ = run_cli(capsys, "data", "show")
    assert code == 0 and "3,000 bars with trades and taker-buy volume" in out
    series = SeriesId("binance", "BTC/USDT", "1m")
    stored = BarDataset(FolderStore(tmp_path / "scalpbot-data")).read(series)
    for fmt in ("csv", "parquet"):
        out_file = tmp_path / f"mixed.{fmt}"
        assert run_cli(capsys, "data", "export", "--format", fmt, "--out", str(out_file))[0] == 0
        copy = tmp_path / f"copy-{fmt}"
        assert run_cli(capsys, "--store", str(copy), "fetch", "--source", f"file:{out_file}")[0] == 0
        pd.testing.assert_frame_equal(BarDataset(FolderStore(copy)).read(series), stored, check_freq=False)
