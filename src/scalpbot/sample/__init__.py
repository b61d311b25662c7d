"""Bundled real market data so the demo and tests run offline."""
