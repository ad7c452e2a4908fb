"""The few collectives the methods, the trainer and the probes share; every one is a no-op in a single process.

They ask ``torch.distributed`` at call time, so the same code runs alone, under Lightning's DDP (which
initialises the process group) or in a ``torchrun`` script. Global batches are concatenated in rank order:
with the trainer's sampler (rank r holds the r-th contiguous slice of each global batch) that is the
single-process batch order.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def launch_rank() -> int:
    """This process's global rank as its launcher announced it, before any process group exists: torchrun
    (``RANK``), SLURM ``srun`` with several tasks (``SLURM_PROCID``), Lightning's DDP launcher (``NODE_RANK``,
    ``LOCAL_RANK`` of the processes it starts). 0 for a plain process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"])
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"])
    local, node = int(env.get("LOCAL_RANK", "0")), int(env.get("NODE_RANK", env.get("GROUP_RANK", "0")))
    return 0 if local == 0 and node == 0 else 1 + local + node  # only "0 or not" is meaningful here


def is_worker_rank(world_size: int) -> bool:
    """True in a process of rank > 0 (as its launcher announced it) of a run of ``world_size`` > 1 processes: it
    trains in lock-step with rank 0, which alone owns the run folder, the encoder and the record."""
    return world_size > 1 and launch_rank() != 0


def _comm_device(x: torch.Tensor) -> torch.device:
    # NCCL moves CUDA tensors only; gloo both
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else x.device


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's rows (a reduce-scatter)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), len(x)
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every backend has all_reduce (gloo has no reduce_scatter)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather(x: torch.Tensor) -> torch.Tensor:
    """(n, ...) on each rank -> (world_size * n, ...) in rank order, differentiable: each rank's input gets the
    sum of the gradients all ranks' losses send it, so with DDP's gradient averaging a loss computed on the
    gathered batch trains like the single-process loss on the global batch. Identity in a single process.
    Every rank must pass the same n."""
    return _GatherWithGrad.apply(x) if is_distributed() else x


@torch.no_grad()
def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over ranks (no gradient); ``x`` itself in a single process."""
    if not is_distributed():
        return x
    y = x.detach().to(_comm_device(x), copy=True)
    dist.all_reduce(y)
    return (y / dist.get_world_size()).to(x.device)


def all_true(flag: bool) -> bool:
    """True only if ``flag`` is true on every rank (a collective: every rank must call it)."""
    if not is_distributed():
        return flag
    t = torch.tensor([int(flag)], device=_comm_device(torch.empty(0)))
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


@torch.no_grad()
def gather_uneven(x: torch.Tensor, with_start: bool = False):
    """(n_r, ...) on rank r -> (sum of n_r, ...) concatenated in rank order, no gradient; the n_r may differ
    (padded to the largest for the collective, the padding dropped). Returned on ``x``'s device; with
    ``with_start`` also where this rank's rows begin in it."""
    if not is_distributed():
        return (x, 0) if with_start else x
    dev = _comm_device(x)
    sizes = torch.zeros(dist.get_world_size(), dtype=torch.long, device=dev)
    sizes[dist.get_rank()] = len(x)
    dist.all_reduce(sizes)
    sizes = sizes.tolist()
    padded = torch.zeros((max(sizes), *x.shape[1:]), dtype=x.dtype, device=dev)
    padded[:len(x)] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    out = torch.cat([p[:n] for p, n in zip(parts, sizes)]).to(x.device)
    return (out, sum(sizes[:dist.get_rank()])) if with_start else out


def shard_bounds(n: int) -> tuple[int, int]:
    """[start, stop) of this rank's contiguous share of n items (sizes differ by at most one; none repeated)."""
    r, w = rank(), world_size()
    return n * r // w, n * (r + 1) // w
