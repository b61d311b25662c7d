"""Market data sources implementing the ``MarketData`` port: ccxt exchanges and a seeded synthetic market."""
