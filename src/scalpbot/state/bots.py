"""The bots of a store: those with state (a portfolio or a ledger) under ``state/{bot}/``."""

from __future__ import annotations

import difflib
import re

from scalpbot.errors import ConfigError
from scalpbot.ports import Store

__all__ = ["bot_names", "check_bot_exists"]

_BOT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def bot_names(store: Store) -> list[str]:
    """Return the names of the bots that have state (a portfolio or a ledger) in the store, sorted."""
    names = {key.split("/", 2)[1] for key in store.list("state/") if key.count("/") >= 2}
    return sorted(name for name in names if _BOT.match(name))


def check_bot_exists(store: Store, bot: str) -> str:
    """Return ``bot`` if it has state in the store; raise ``ConfigError`` with a did-you-mean otherwise."""
    known = bot_names(store)
    if bot in known:
        return bot
    close = difflib.get_close_matches(bot, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    if not known:
        raise ConfigError(
            f"no bot named '{bot}': {store.describe()} holds no bot at all (is --store or SCALPBOT_STORE right? "
            "a bot appears with its first `scalpbot replay` or `scalpbot trade`)"
        )
    raise ConfigError(f"no bot named '{bot}' in {store.describe()}{hint}; bots: {', '.join(known)}")
