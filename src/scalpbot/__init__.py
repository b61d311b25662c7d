"""scalpbot: a scalping trading bot for 1-minute bars.

The public surface is small: :func:`scalpbot.core.backtest.frame.backtest`, the settings loader
:func:`scalpbot.config.load_settings` and the error tree in :mod:`scalpbot.errors`.
"""

__version__ = "0.1.0"
