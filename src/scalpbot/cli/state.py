"""Options shared by every command and the settings they resolve to."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from scalpbot.config import Settings, load_settings
from scalpbot.errors import ConfigError
from scalpbot.ports import Notifier
from scalpbot.wiring import Services, build_notifier, build_services


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

    def read_services(self, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Services:
        """Return the services of a command that only reads: a store folder that does not exist is an error.

        (An S3 store is not checked here: its first read says whether the bucket can be reached.)
        """
        settings = self.settings(overrides)
        url = settings.store.url
        if "://" not in url and not Path(url).expanduser().is_dir():
            raise ConfigError(
                f"no store at {url}: pass --store (or set SCALPBOT_STORE) to an existing store, "
                "or create one with `scalpbot fetch`"
            )
        return build_services(settings)


def state_of(ctx: typer.Context) -> CliState:
    """Return the global options stored by the root callback."""
    state = ctx.find_root().obj
    assert isinstance(state, CliState)
    return state


@contextmanager
def reported(services: Services, job: str) -> Iterator[Notifier]:
    """Run a job's command: yield the notifier for its results; send any error with the job and symbol.

    The error goes to every configured channel except the console, where the CLI prints it itself (with the
    console the only channel, nothing more is sent and nothing is said about missing channels).
    """
    from scalpbot.adapters.notify.fanout import job_error

    settings = services.settings
    notifier = build_notifier(settings, services.store, services.clock)
    try:
        yield notifier
    except Exception as e:
        if not (settings.notify.sns_topic_arn.strip() or settings.notify.apprise_urls):
            raise
        quiet = settings.model_copy(update={"notify": settings.notify.model_copy(update={"console": False})})
        subject, message = job_error(job, settings.data.symbol, e)
        build_notifier(quiet, services.store, services.clock).notify(subject, message, level="error")
        raise
