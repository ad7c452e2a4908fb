"""Decoding a split in worker processes, in file order, under a progress bar with a rate.

:func:`ordered_map` runs one function per file in ``torch.utils.data.DataLoader`` worker processes (each single
threaded, results in input order, tensors passed through shared memory), so that the rows written into a cache
are the rows a single process writes, whatever the number of workers. The number follows the usable cores unless
:func:`set_decode_workers` (``--decode-workers``) fixes it; 1 decodes in this process. A DataError raised in a
worker (a corrupt file) reaches the caller as the same one-line DataError.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

from bench.data.cache import progress_iter
from bench.errors import ConfigError, DataError

__all__ = ["decode_workers", "ordered_map", "set_decode_workers"]

_requested: int | None = None


def set_decode_workers(n: int | None) -> None:
    """Fix the number of decode worker processes for this process (None: follow the usable cores)."""
    global _requested
    if n is not None and n < 1:
        raise ConfigError(f"--decode-workers must be at least 1 (got {n})")
    _requested = n


def decode_workers() -> int:
    """Decode worker processes: the number set by :func:`set_decode_workers`, else the cores this process may use."""
    if _requested is not None:
        return _requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class _Calls:
    """A map-style dataset: item i is ``fn(items[i])``, or the message of the DataError it raised."""

    def __init__(self, fn: Callable, items: Sequence):
        self.fn, self.items = fn, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        try:
            return True, self.fn(self.items[i])
        except DataError as e:  # passed on as a value: DataLoader would wrap it in a multi-line traceback
            return False, str(e)


def _unbatched(x):
    return x


def ordered_map(fn: Callable, items: Sequence, *, workers: int | None = None, description: str = "",
                progress: bool = False) -> Iterator:
    """``fn(item)`` for every item, in order, computed by ``workers`` processes (default :func:`decode_workers`;
    1: in this process). ``fn`` should return tensors (shared memory) or small values."""
    import torch
    from torch.utils.data import DataLoader

    workers = min(workers or decode_workers(), len(items))
    calls = _Calls(fn, items)
    results = _in_process(calls) if workers <= 1 else iter(DataLoader(
        calls, batch_size=None, shuffle=False, num_workers=workers, collate_fn=_unbatched, prefetch_factor=8,
        generator=torch.Generator().manual_seed(0)))
    for ok, value in progress_iter(results, description, progress, total=len(items)):
        if not ok:
            raise DataError(value)
        yield value


def _in_process(calls: _Calls) -> Iterator:
    """The calls in this process on one intra-op thread, as a worker runs them."""
    from bench.threads import one_cpu_thread
    with one_cpu_thread():
        for i in range(len(calls)):
            yield calls[i]
