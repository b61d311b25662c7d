"""Fixtures of the job tests (defined in support.trained so that test modules can import its helpers)."""

from support.trained import active_release

__all__ = ["active_release"]
