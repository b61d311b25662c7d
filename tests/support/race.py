"""Run the same attempt in many threads released at once (for compare-and-swap and lease races)."""

from __future__ import annotations

import threading
from collections.abc import Callable


def race(workers: int, attempt: Callable[[int], object]) -> tuple[list[int], list[BaseException]]:
    """Run ``attempt(i)`` in ``workers`` threads released at once; return who succeeded and what others raised."""
    barrier = threading.Barrier(workers)
    winners: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            attempt(i)
        except BaseException as e:
            with lock:
                errors.append(e)
        else:
            with lock:
                winners.append(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return winners, errors
