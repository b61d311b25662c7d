"""The closing line of a replay: the bot's equity, its trades and its return over the replayed window."""

from __future__ import annotations

import pandas as pd

from scalpbot.services import Services
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore


def replay_summary(services: Services, bot: str, start: pd.Timestamp, end: pd.Timestamp) -> str:
    """Return ``bot X: equity E (+R% since the start), N trades (W won) entered in [start, end)``.

    The return is against the equity before the first trade of the window: the last equity minus the PnL of
    the window's trades (the open one marked at its fills so far).
    """
    stored = PortfolioStore(services.store, bot).load()
    if stored is None:
        return f"bot {bot}: no cycle ran"
    equity = stored.snapshot.equity
    trades = Ledger(services.store, bot).trades(start, end)
    pnl = float(trades["pnl"].sum())
    before = equity - pnl
    change = equity / before - 1.0 if before > 0 else 0.0
    won = int((trades["pnl"] > 0).sum())
    sign = "+" if change >= 0 else ""
    text = f"{sign}{change * 100:.2f}%".replace("-0.00%", "0.00%").replace("+0.00%", "0.00%")
    return f"bot {bot}: equity {equity:,.2f} ({text}), {len(trades)} trades ({won} won)"
