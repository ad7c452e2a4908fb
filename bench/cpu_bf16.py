"""bfloat16 autocast at fp32 speed on CPUs without native bfloat16 (AVX2, AVX512 without BF16 / AMX).

There PyTorch runs bf16 matrix products with scalar reference kernels, ~7x slower than fp32 (a 4096x192 @
192x576 linear: 334 ms vs 47 ms on a 2-core AVX2 AMD EPYC), so a ``bf16-mixed`` recipe trains ~10x slower than
fp32. The products of two bf16 numbers (8-bit significands) are exact in fp32 (24 bits), so a bf16 matrix
product accumulated in fp32 - what native bf16 GEMM units (AMX, AVX512-BF16, tensor cores) compute - is the
fp32 kernel applied to the bf16 values, rounded to bf16 at the end. ``FastCPUBF16`` does exactly that for the
heavy ops autocast hands bf16 tensors to (matrix products, convolutions, attention, forward and backward):
each bf16 argument is widened to fp32 (exact), the fp32 kernel runs, and every output is rounded to the
dtype the bf16 kernel would have returned. Everything else (casts, element-wise ops) runs as before. The
result equals a native bf16 kernel's up to the order of the fp32 summation, which differs between native
kernels too. Used by ``bench.trainer.fit`` for bf16 precision on such CPUs.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

__all__ = ["FastCPUBF16", "WIDENED_OPS"]

_aten = torch.ops.aten
WIDENED_OPS = frozenset(getattr(_aten, name).default for name in (
    "mm", "addmm", "bmm", "baddbmm", "convolution", "convolution_backward",
    "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention_for_cpu_backward",
) if hasattr(_aten, name))  # the flash-attention pair exists only in recent PyTorch builds


def _is_cpu_bf16(x) -> bool:
    return isinstance(x, torch.Tensor) and x.dtype == torch.bfloat16 and x.device.type == "cpu"


class FastCPUBF16(TorchDispatchMode):
    """While active, the ops in ``WIDENED_OPS`` that receive CPU bfloat16 tensors compute in fp32 and round
    their outputs to the dtypes the bf16 kernel returns (found on meta tensors, so no output changes type).
    ``calls`` counts the widened calls (for tests and diagnostics)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in WIDENED_OPS or not any(_is_cpu_bf16(a) for a in (*args, *kwargs.values())):
            return func(*args, **kwargs)
        self.calls += 1
        meta = func(*tree_map(_to_meta, args), **tree_map(_to_meta, kwargs))  # the bf16 kernel's output dtypes
        out = func(*tree_map(_widen, args), **tree_map(_widen, kwargs))
        return _round_like(out, meta)


def _to_meta(x):
    return x.to("meta") if isinstance(x, torch.Tensor) else x


def _widen(x):
    return x.float() if _is_cpu_bf16(x) else x


def _round_like(out, meta):
    if isinstance(out, torch.Tensor):
        return out.to(meta.dtype) if out.dtype != meta.dtype else out
    if isinstance(out, (tuple, list)):
        return type(out)(_round_like(o, m) for o, m in zip(out, meta))
    return out
