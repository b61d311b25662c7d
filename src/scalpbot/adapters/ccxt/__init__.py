"""The ccxt adapters: exchange calls (common), market data, the venue profile and the live broker.

One module per venue family (:mod:`.binance`, :mod:`.okx`) behind the :class:`~.family.Family` seam; what every
venue shares (retries, error mapping, redaction) lives in :mod:`.common`.
"""
