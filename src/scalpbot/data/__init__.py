"""The stored bar dataset: partition codec and the append-only dataset over a ``Store``."""
