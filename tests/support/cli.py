"""Run the command line in this process as a user would, and capture what it printed."""

from __future__ import annotations

import pytest

from scalpbot.cli.app import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``scalpbot ARGS``; return the exit status, stdout and stderr."""
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
