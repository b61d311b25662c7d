"""Options shared by every command and the settings they resolve to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from scalpbot.config import Settings, load_settings
from scalpbot.services import Services, build_services


@dataclass(frozen=True, slots=True)
class CliState:
    """Global options: ``--config``, ``--store`` and ``--verbose``."""

    config: Path | None
    store: str | None
    verbose: bool

    def settings(self, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Settings:
        """Return the settings with this command's options over the file and environment."""
        merged: dict[str, dict[str, Any]] = {s: dict(kv) for s, kv in (overrides or {}).items()}
        if self.store is not None:
            merged.setdefault("store", {})["url"] = self.store
        return load_settings(self.config, merged)

    def services(self, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Services:
        """Return the services built from :meth:`settings`."""
        return build_services(self.settings(overrides))


def state_of(ctx: typer.Context) -> CliState:
    """Return the global options stored by the root callback."""
    state = ctx.find_root().obj
    assert isinstance(state, CliState)
    return state
