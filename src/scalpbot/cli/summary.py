"""Lines the trading commands print: which release trades, and how a replayed run ended."""

from __future__ import annotations

import pandas as pd

from scalpbot.errors import ModelError
from scalpbot.jobs.services import state_symbol
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore
from scalpbot.state.release_choice import choose_release
from scalpbot.state.releases import ReleaseStore
from scalpbot.wiring import Services


def replay_summary(services: Services, bot: str, start: pd.Timestamp, end: pd.Timestamp) -> str:
    """Return ``bot X: equity E (+R% since the start), N trades (W won) entered in [start, end)``.

    The return is against the equity before the first trade of the window: the last equity minus the PnL of
    the window's trades (the open one marked at its fills so far). A bot of several symbols: the sum of its
    symbols' paper accounts.
    """
    settings = services.settings
    found = [
        PortfolioStore(services.store, bot, state_symbol(settings, symbol)).load()
        for symbol in settings.symbols
    ]
    snapshots = [stored.snapshot for stored in found if stored is not None]
    if not snapshots:
        return f"bot {bot}: no cycle ran"
    equity = sum(snapshot.equity for snapshot in snapshots)
    trades = Ledger(services.store, bot).trades(start, end)
    pnl = float(trades["pnl"].sum())
    before = equity - pnl
    change = equity / before - 1.0 if before > 0 else 0.0
    won = int((trades["pnl"] > 0).sum())
    sign = "+" if change >= 0 else ""
    text = f"{sign}{change * 100:.2f}%".replace("-0.00%", "0.00%").replace("+0.00%", "0.00%")
    return f"bot {bot}: equity {equity:,.2f} ({text}), {len(trades)} trades ({won} won)"


def release_line(services: Services, *, fallback_newest: bool = False) -> str:
    """Return which release the bot trades now (the pointer is followed: a promotion takes over next cycle).

    ``fallback_newest``: a paper run that trades the newest release while none is current.
    """
    symbol = services.settings.data.symbol
    releases = ReleaseStore(services.store)
    try:
        choice = choose_release(releases, symbol, "current")
    except ModelError as e:
        if fallback_newest and releases.list(symbol):
            newest = choose_release(releases, symbol, "newest")
            return f"trading {newest.describe()} until a release passes the gate (paper)"
        return f"warning: {e}"
    return f"trading {choice.describe()}; a newer promotion takes over at the next cycle"
