"""Which release a command means: ``current``, ``latest``, ``newest`` or an id (a unique prefix is enough).

* ``current`` (the default): the release ``current.json`` points at, the one that trades.
* ``latest``: the newest release that passed the promotion gate (promoted by the gate, or by hand).
* ``newest``: the newest release written, whatever the gate said (a candidate).
* an id or a prefix of one, e.g. ``20250101T0000`` or the full ``20250101T000000Z-50e4457a``.

Release ids start with their UTC creation time, so "newest" is the last id in sort order. Light: the execute
path may use it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from scalpbot.errors import ModelError
from scalpbot.state.releases import Manifest, ReleaseStore

__all__ = ["ALIASES", "ReleaseChoice", "choose_release", "release_origin"]

ALIASES = ("current", "latest", "newest")
"""The names :func:`choose_release` accepts besides ids and prefixes."""


@dataclass(frozen=True, slots=True)
class ReleaseChoice:
    """The release a selector resolved to and how, for the line every command prints (``describe``)."""

    release_id: str
    selector: str
    how: str

    def describe(self) -> str:
        """Return e.g. ``release 20250101T000000Z-50e4457a (current: promoted by the gate)``."""
        return f"release {self.release_id} ({self.how})"


def choose_release(releases: ReleaseStore, symbol: str, selector: str | None) -> ReleaseChoice:
    """Return the release ``selector`` names for ``symbol``; ``ModelError`` says what exists when none fits."""
    wanted = (selector or "current").strip()
    written = releases.list(symbol)
    if not written:
        raise ModelError(f"no release of {symbol} exists yet; run `scalpbot train` first")
    pointer = releases.pointer(symbol)
    if wanted == "current":
        if pointer is None:
            raise ModelError(
                f"no release of {symbol} is current: none has passed the promotion gate yet. "
                f"Backtest or replay it with --release newest (the newest candidate, {written[-1]}); "
                "`scalpbot models promote ID` makes a release current for trading"
            )
        return ReleaseChoice(pointer.release_id, wanted, f"current: {pointer.reason or 'promoted'}")
    if wanted == "newest":
        return ReleaseChoice(written[-1], wanted, "newest written, gate not required")
    if wanted == "latest":
        promoted = {pointer.release_id, *pointer.previous} if pointer is not None else set()
        for release_id in reversed(written):
            if release_id in promoted or releases.manifest(symbol, release_id).passed_gate:
                return ReleaseChoice(release_id, wanted, "newest that passed the gate")
        raise ModelError(
            f"no release of {symbol} has passed the promotion gate; "
            f"use --release newest for the newest candidate ({written[-1]})"
        )
    matches = [release_id for release_id in written if release_id.startswith(wanted)]
    if len(matches) == 1:
        return ReleaseChoice(matches[0], wanted, "chosen by id")
    if len(matches) > 1:
        shown = ", ".join(matches[-5:])
        raise ModelError(
            f"release prefix '{wanted}' matches {len(matches)} releases ({shown}); give more of the id"
        )
    close = difflib.get_close_matches(wanted, [*ALIASES, *written], n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ModelError(
        f"no release of {symbol} matches '{wanted}'{hint}; use current, latest, newest or an id "
        f"(newest: {written[-1]}); `scalpbot models list` shows them all"
    )


def release_origin(manifest: Manifest) -> str:
    """Return where a release came from: ``train``, ``online`` (online learning) or ``rl`` (reinforcement)."""
    return {"online_learning": "online", "reinforcement_learning": "rl"}.get(manifest.origin, manifest.origin)
