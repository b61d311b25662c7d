"""Brokers: the paper broker (the kernel fills) and the live ccxt broker."""
