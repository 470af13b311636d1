"""One way to fan work out over the machine's cores.

Workers start from a fork server, not by forking the caller: the caller may be a
test or a bot process that has imported TensorFlow and its threads, and a plain
fork of such a process can deadlock.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
# Below this many items the pool's start-up costs more than it saves.
MIN_ITEMS_FOR_POOL = 16


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def parallel_map(
    fn: Callable[[T], R], items: Sequence[T], workers: int | None = None, min_items: int = MIN_ITEMS_FOR_POOL
) -> list[R]:
    """``[fn(x) for x in items]`` in order, on up to ``workers`` processes."""
    workers = min(workers or default_workers(), len(items))
    if workers <= 1 or len(items) < min_items:
        return [fn(item) for item in items]
    chunksize = max(1, min(64, len(items) // (workers * 8)))
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(fn, items, chunksize=chunksize))


def chunks(items: Iterable[T], count: int) -> list[list[T]]:
    """Deal ``items`` round-robin into ``count`` lists."""
    dealt: list[list[T]] = [[] for _ in range(count)]
    for index, item in enumerate(items):
        dealt[index % count].append(item)
    return dealt
