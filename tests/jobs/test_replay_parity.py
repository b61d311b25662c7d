"""`scalpbot replay` trades exactly what `scalpbot backtest --strategy release` trades on the same bars.

The bot runs with default settings on Binance BTC/USDT spot: the venue profile's 0.1 % taker fee, 0.00001 BTC
amount step and 5 USDT minimum notional, and no shorts - in the backtest and in the replay alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.core.venue import default_venue
from scalpbot.jobs.trading import replay
from scalpbot.state.ledger import Ledger
from scalpbot.wiring import venue_profile

from support.cli import run_cli
from support.trained import active_services as _services

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"
)

START, END = "2024-12-30T00:00:00Z", "2024-12-31T00:00:00Z"  # a held-out day (the test window)
COLUMNS = ["entry_time", "exit_time", "side", "entry_price", "exit_price", "qty", "fees", "exit_reason"]


def test_replay_makes_exactly_the_trades_of_the_backtest(
    active_release: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    store, _ = active_release
    services = _services(store)
    venue = venue_profile(services.store, services.settings, services.series())
    assert venue == default_venue("binance", "BTC/USDT")
    report = replay(
        services,
        services.series(),
        pd.Timestamp(START),
        pd.Timestamp(END),
        bot="parity",
        notifier=ConsoleNotifier(),
    )
    assert report.cycles == {"ok": 1440}
    args = (
        "--store",
        str(store),
        "backtest",
        "--strategy",
        "release",
        "--from",
        START,
        "--to",
        END,
        "--json",
    )
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    expected = pd.DataFrame(json.loads(out)["trades"])
    last_close = float(
        services.dataset.read(services.series(), pd.Timestamp(END) - pd.Timedelta("1min"), pd.Timestamp(END))[
            "close"
        ].iloc[-1]
    )
    paper = Ledger(services.store, "parity").trades(
        pd.Timestamp(START),
        pd.Timestamp(END),
        mark_price=last_close,
        mark_time=pd.Timestamp(END) - pd.Timedelta("1min"),
    )
    assert len(expected) > 20
    assert len(set(expected["exit_reason"]) & {"sl", "tp", "time", "signal"}) >= 3
    assert set(expected["side"]) == {1}  # spot: no short
    units = expected["qty"] / venue.amount_step
    assert (units - units.round()).abs().max() < 1e-9  # whole steps of 0.00001 BTC
    closed = expected.loc[expected["exit_reason"] != "open"]
    # the sale pays 0.1 % in USDT; the buy's 0.1 % is taken in BTC, so the position is the fill net of it,
    # rounded down to the step, and the entry's fee is what was bought less what is held
    fee = venue.taker_fee
    entry_fee = closed["fees"] - fee * closed["qty"] * closed["exit_price"]
    dust = (entry_fee - closed["qty"] * closed["entry_price"] * fee / (1 - fee)) / closed["entry_price"]
    assert dust.min() > -1e-12 and dust.max() < venue.amount_step / (1 - fee)
    got = paper.assign(
        entry_time=paper["entry_time"].map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")),
        exit_time=paper["exit_time"].map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")),
        exit_reason=paper["exit_reason"].astype(str),
        side=paper["side"].astype(int),
    )
    pd.testing.assert_frame_equal(
        got[COLUMNS].reset_index(drop=True),
        expected[COLUMNS].reset_index(drop=True),
        check_dtype=False,
        rtol=0,
        atol=0,
    )
    assert got["pnl"].to_numpy() == pytest.approx(expected["pnl"].to_numpy(), rel=1e-9)


def test_replaying_again_is_a_no_op(active_release: tuple[Path, str]) -> None:
    store, _ = active_release
    services = _services(store)
    before = Ledger(services.store, "parity").events()
    report = replay(services, services.series(), pd.Timestamp(START), pd.Timestamp(END), bot="parity")
    assert report.cycles == {"skipped": 1440}
    assert Ledger(services.store, "parity").events() == before
