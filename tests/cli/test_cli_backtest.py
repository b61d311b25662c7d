"""``scalpbot backtest`` on stored bars: metrics table, JSON with metrics and trades, clear errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from scalpbot.core.backtest.frame import backtest
from scalpbot.core.strategies import sma_cross_signals
from scalpbot.core.venue import default_venue

from support.cli import run_cli as run

METRIC_NAMES = {
    "total_return", "win_rate", "risk_reward", "max_drawdown", "return_on_capital", "sharpe", "sortino",
    "profit_factor", "expectancy", "trades", "exposure", "avg_hold_bars", "fees_paid",
}  # fmt: skip


@pytest.fixture
def stored_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "fetch", "--source", "sample")[0] == 0


@pytest.mark.usefixtures("stored_sample")
def test_json_holds_the_metrics_and_the_same_trades_as_the_library(
    capsys: pytest.CaptureFixture[str], sample_bars: pd.DataFrame
) -> None:
    code, out, err = run(
        capsys, "backtest", "--symbol", "BTC/USDT", "--from", "2024-12-02", "--to", "2024-12-05",
        "--sl", "0.002", "--tp", "0.004", "--max-hold", "30", "--sma-length", "30", "--json",
    )  # fmt: skip
    assert code == 0, err
    payload = json.loads(out)
    assert set(payload["metrics"]) == METRIC_NAMES
    window = sample_bars.loc["2024-12-02":"2024-12-04"]
    spot = default_venue("binance", "BTC/USDT")  # nothing fetched: the offline Binance spot profile
    signals = sma_cross_signals(window, length=30, sl=0.002, tp=0.004, max_hold=30)
    expected = backtest(window, signals, fee=spot.taker_fee, rules=spot.order_rules())
    assert len(payload["trades"]) == len(expected.trades) > 10
    first = payload["trades"][0]
    assert set(first) == {
        "entry_time", "exit_time", "side", "entry_price", "exit_price", "qty", "pnl", "fees", "exit_reason",
    }  # fmt: skip
    assert first["entry_time"] == expected.trades["entry_time"].iloc[0].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert first["pnl"] == pytest.approx(float(expected.trades["pnl"].iloc[0]), rel=1e-12)
    assert {t["exit_reason"] for t in payload["trades"]} <= {"sl", "tp", "time", "signal", "open"}
    assert payload["metrics"]["total_return"] == pytest.approx(expected.metrics["total_return"], rel=1e-12)


@pytest.mark.usefixtures("stored_sample")
def test_the_table_lists_every_metric(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "backtest", "--from", "2024-12-10", "--to", "2024-12-11")
    assert code == 0
    assert all(name in out for name in METRIC_NAMES)


@pytest.mark.usefixtures("stored_sample")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "sma-cros"], "unknown strategy 'sma-cros' (did you mean 'sma-cross'?)"),
        (["--sl", "-0.1"], "invalid setting backtest.sl"),
        (["--from", "2030-01-01"], "0 bars of binance BTC/USDT 1m stored in that window"),
        (["--from", "yesterday-ish"], "--from 'yesterday-ish' is not an ISO-8601 date or time"),
    ],
)
def test_bad_options_end_with_one_clear_line(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run(capsys, "backtest", *args)
    assert code == 1
    assert message in err
    assert len(err.strip().splitlines()) == 1
