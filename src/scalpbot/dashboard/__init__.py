"""The operator's dashboard: a JSON API and one self-refreshing page over the store (``scalpbot serve``)."""

from scalpbot.dashboard.app import build_app

__all__ = ["build_app"]
