"""One date vocabulary: ISO-8601 dates and zoned date-times; anything else is refused with one line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scalpbot.cli.dates import parse_range, parse_time
from scalpbot.errors import ConfigError

from support.cli import run_cli
from support.files import snapshot


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-12-30", datetime(2024, 12, 30, tzinfo=UTC)),
        ("2024-12-30T12:00Z", datetime(2024, 12, 30, 12, tzinfo=UTC)),
        ("2024-12-30T12:00:00Z", datetime(2024, 12, 30, 12, tzinfo=UTC)),
        ("2024-12-30 12:00:00+00:00", datetime(2024, 12, 30, 12, tzinfo=UTC)),
        ("2024-12-30T13:30:00.250+01:30", datetime(2024, 12, 30, 12, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_iso_dates_and_zoned_times_are_read_as_utc(text: str, expected: datetime) -> None:
    parsed = parse_time(text, "--since")
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == timedelta(0)
    assert parsed.tzinfo in (UTC, UTC)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("01/12/2024", "is not an ISO-8601 date or time"),
        ("now", "is not an ISO-8601 date or time"),
        ("2024", "is not an ISO-8601 date or time"),
        ("Dec 8 2024", "is not an ISO-8601 date or time"),
        ("2024-12-30T12:00", "has no time zone (add Z for UTC)"),
        ("2024-13-01", "is not a valid date"),
        ("20241230", "is not an ISO-8601 date or time"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ("fetch", "--source", "sample", "--from"),
        ("trades", "--from"),
        ("backtest", "--from"),
        ("replay", "--to", "2025-01-01", "--from"),
        ("data", "export", "--out", "x.csv", "--from"),
        ("train", "--to"),
        ("monitor", "--to"),
    ],
)
def test_each_command_refuses_a_non_iso_date_with_one_line_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: tuple[str, ...], text: str, why: str
) -> None:
    code, _, err = run_cli(capsys, "--store", str(tmp_path / "store"), *command, text)
    assert code == 1
    line = err.strip()
    assert "\n" not in line
    assert line.startswith(f"error: {command[-1]} {text!r} {why}")
    assert line.endswith("use an ISO-8601 date or UTC time, e.g. 2024-12-30 or 2024-12-30T12:00:00Z")
    assert snapshot(tmp_path / "store") == {}


@pytest.mark.parametrize(
    "command",
    [
        ("replay", "--from", "2024-12-31", "--to", "2024-12-30"),
        ("backtest", "--from", "2024-12-31", "--to", "2024-12-31"),
        ("trades", "--since", "2024-12-31", "--until", "2024-12-30"),
        ("fetch", "--source", "sample", "--from", "2024-12-31", "--to", "2024-12-30"),
        ("data", "export", "--out", "x.csv", "--from", "2024-12-31", "--to", "2024-12-30"),
        ("run", "--replay", "2024-12-31", "2024-12-30"),
    ],
)
def test_a_range_that_ends_before_it_starts_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: tuple[str, ...]
) -> None:
    code, _, err = run_cli(capsys, "--store", str(tmp_path / "store"), *command)
    assert code == 1
    assert "is not before" in err and "swap them" in err and err.count("\n") == 1
    assert snapshot(tmp_path / "store") == {}


def test_parse_range_accepts_an_ordered_or_open_range() -> None:
    assert parse_range("2024-12-30", None) == (datetime(2024, 12, 30, tzinfo=UTC), None)
    assert parse_range(None, None) == (None, None)
    with pytest.raises(ConfigError, match="--from 2024-12-30 is not before --to 2024-12-30"):
        parse_range("2024-12-30", "2024-12-30")


def test_models_list_shows_a_release_with_an_unreadable_manifest_and_the_others(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, active_release: tuple[Path, str]
) -> None:
    import shutil

    store = tmp_path / "store"
    shutil.copytree(active_release[0] / "models", store / "models")
    releases = sorted((store / "models/BTC_USDT/releases").iterdir())
    assert len(releases) >= 2
    (releases[0] / "manifest.json").write_text("{not json")
    code, out, err = run_cli(capsys, "--store", str(store), "models", "list", "--json")
    assert code == 0, err
    rows = {row["release_id"]: row for row in json.loads(out)["releases"]}
    assert "is not valid JSON" in rows[releases[0].name]["refused"]
    assert "metrics" in rows[releases[-1].name]
    code, out, err = run_cli(capsys, "--store", str(store), "models", "list")
    assert code == 0, err  # the table still renders
