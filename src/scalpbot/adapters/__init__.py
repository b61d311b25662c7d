"""Adapters: implementations of the ports (store, market data, broker, notifier) over real services."""
