"""Where the state of one symbol of a bot lives: one set of keys per symbol when the bot trades several.

A bot of one symbol (``bot.symbols`` unset or one symbol) keeps the keys it always had, so stores written
before symbols were listed keep working unchanged::

    state/{bot}/lease.json  portfolio.json  paper.json

A bot of several symbols gives each symbol its own run lease, portfolio snapshot and paper account, so the
cycles of two symbols never contend for one object::

    state/{bot}/symbols/{BASE_QUOTE[_SETTLE]}/lease.json  portfolio.json  paper.json

The ledger (``state/{bot}/ledger/``: events of such a bot carry their ``symbol``), the portfolio risk budget
(``portfolio_risk.json``) and the cycle timing stay one per bot.
"""

from __future__ import annotations

from scalpbot.state.codec import check_bot

__all__ = ["state_key", "symbol_folder"]


def symbol_folder(symbol: str) -> str:
    """Return the folder name of ``symbol``'s state: ``BTC/USDT`` -> ``BTC_USDT``, ``BTC/USDT:USDT`` ->
    ``BTC_USDT_USDT`` (as the bars' folders are named)."""
    return symbol.replace("/", "_").replace(":", "_")


def state_key(bot: str, name: str, symbol: str | None = None) -> str:
    """Return the key of the bot's state object ``name``; ``symbol``: that symbol's own (a bot of several)."""
    if symbol is None:
        return f"state/{check_bot(bot)}/{name}"
    return f"state/{check_bot(bot)}/symbols/{symbol_folder(symbol)}/{name}"
