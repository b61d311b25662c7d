"""Every job's error reaches the configured channels with the job, the symbol and a short cause."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from support.cli import run_cli as run


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, object]]]]:
    received: list[dict[str, object]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"json://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_a_failing_job_is_notified_with_job_symbol_and_cause_and_results_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], webhook: tuple[str, list[dict[str, object]]]
) -> None:
    url, received = webhook
    (tmp_path / "scalpbot.toml").write_text(f'[notify]\nconsole = false\napprise_urls = ["{url}"]\n')
    (tmp_path / "bad.csv").write_text(
        "timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,1,0.5,1,1,1\n"
    )
    code, _, err = run(capsys, "fetch", "--source", f"file:{tmp_path / 'bad.csv'}")
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert received[-1]["title"] == "scalpbot retrieve failed for BTC/USDT: DataError"
    assert "job: retrieve" in str(received[-1]["message"])
    assert "inconsistent bar" in str(received[-1]["message"])
    assert run(capsys, "fetch", "--source", "sample")[0] == 0
    assert str(received[-1]["title"]).startswith("retrieve binance BTC/USDT 1m")


def test_notify_test_reports_the_channels_as_json_without_their_urls(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    webhook: tuple[str, list[dict[str, object]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, received = webhook
    monkeypatch.setenv("SCALPBOT_NOTIFY__APPRISE_URLS", json.dumps([url]))
    code, out, err = run(capsys, "--store", str(tmp_path / "store"), "notify-test", "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["channels"] == {"console": True, "sns": False, "apprise_urls": 1}
    assert url not in out and len(received) == 1
