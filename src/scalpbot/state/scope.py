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

from collections.abc import Iterable

from scalpbot.ports import Store
from scalpbot.state.codec import check_bot

__all__ = ["state_key", "stored_symbols", "symbol_folder", "symbol_of_folder"]


def symbol_folder(symbol: str) -> str:
    """Return the folder name of ``symbol``'s state: ``BTC/USDT`` -> ``BTC_USDT``, ``BTC/USDT:USDT`` ->
    ``BTC_USDT_USDT`` (as the bars' folders are named)."""
    return symbol.replace("/", "_").replace(":", "_")


def state_key(bot: str, name: str, symbol: str | None = None) -> str:
    """Return the key of the bot's state object ``name``; ``symbol``: that symbol's own (a bot of several)."""
    if symbol is None:
        return f"state/{check_bot(bot)}/{name}"
    return f"state/{check_bot(bot)}/symbols/{symbol_folder(symbol)}/{name}"


def symbol_of_folder(folder: str, known: Iterable[str] = ()) -> str:
    """Return the symbol whose state folder is ``folder``: one of ``known`` whose folder it is, else read back
    from the name (``BTC_USDT`` -> ``BTC/USDT``, ``BTC_USDT_USDT`` -> ``BTC/USDT:USDT``)."""
    for symbol in known:
        if symbol_folder(symbol) == folder:
            return symbol
    parts = folder.split("_")
    if len(parts) == 2:
        return f"{parts[0]}/{parts[1]}"
    if len(parts) == 3:
        return f"{parts[0]}/{parts[1]}:{parts[2]}"
    return folder


def stored_symbols(store: Store, bot: str, known: Iterable[str] = ()) -> tuple[str, ...]:
    """Return the symbols that have state of their own under ``state/{bot}/symbols/`` (a bot of several);
    empty for a bot of one symbol. ``known`` (the configuration's ``bot.symbols``) names folders first and
    comes first in its order; the others follow by folder name."""
    prefix = f"state/{check_bot(bot)}/symbols/"
    folders = {key[len(prefix) :].split("/", 1)[0] for key in store.list(prefix) if "/" in key[len(prefix) :]}
    named = tuple(known)
    symbols = [symbol_of_folder(folder, named) for folder in sorted(folders)]
    order = {symbol: i for i, symbol in enumerate(named)}
    return tuple(sorted(symbols, key=lambda symbol: order.get(symbol, len(order))))
