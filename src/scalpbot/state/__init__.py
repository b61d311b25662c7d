"""The bot's state in the store: the append-only ledger, the portfolio snapshot and the run lease.

Everything here is I/O over the :class:`~scalpbot.ports.Store` port, with the keys of ARCHITECTURE.md's
storage layout::

    state/{bot}/ledger/{yyyy}/{mm}/{dd}/{ts}-{event_id}.json   immutable events, create-only (ledger)
    state/{bot}/portfolio.json                                 snapshot, compare-and-swap on ETag (portfolio)
    state/{bot}/lease.json                                     run lease, create-only with expiry (lease)

Objects are canonical JSON (sorted keys, finite floats, times ISO-8601 UTC with microseconds). Nothing here
holds a secret: payloads with credential-like keys are refused.
"""

from __future__ import annotations
