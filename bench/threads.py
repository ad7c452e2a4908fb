"""Running a block of small CPU ops on one intra-op thread."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def one_cpu_thread(device: torch.device | str = "cpu"):
    """On a CPU, torch's intra-op threads set to one for the block (then restored); on another device nothing.
    For many small ops (the batched augmentation, one image's resize): every op waits for its slowest thread, so on
    2 cores shared with other processes one thread ran the SimCLR augmentation of a batch of 64 in 68 ms instead of
    875 ms (see docs/perf.md). Results are bit-identical."""
    if torch.device(device).type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
