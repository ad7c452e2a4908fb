"""bench.cpu_bf16: bf16 autocast computed by the fp32 kernels gives what bf16 kernels give, and fit uses it."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from torch.nn import functional as F

from bench.cpu_bf16 import FastCPUBF16

HEAVY_OPS = {
    "mm": lambda a, b, c: torch.mm(a[0], b[0].T),
    "addmm": lambda a, b, c: torch.addmm(c[0, 0], a[0], b[0].T),
    "bmm": lambda a, b, c: torch.bmm(a, b.transpose(1, 2)),
    "baddbmm": lambda a, b, c: torch.baddbmm(c, a, b.transpose(1, 2)),
    "conv2d": lambda a, b, c: F.conv2d(a[None], b[:, None, :3, :3].expand(-1, 2, -1, -1).contiguous()),
    "sdpa": lambda a, b, c: F.scaled_dot_product_attention(a[None], b[None], b[None]),
}


def _operands(integer: bool):
    g = torch.Generator().manual_seed(0)
    if integer:  # small integers: every product and partial sum is exact in fp32, so results must match exactly
        make = lambda *shape: torch.randint(-8, 9, shape, generator=g).to(torch.bfloat16)  # noqa: E731
    else:
        make = lambda *shape: torch.randn(*shape, generator=g).to(torch.bfloat16)  # noqa: E731
    return make(2, 24, 16), make(2, 20, 16), make(2, 24, 20)


@pytest.mark.parametrize("op", sorted(HEAVY_OPS))
def test_widened_op_equals_the_bf16_kernel(op):
    fn = HEAVY_OPS[op]
    for integer in (True, False):
        a, b, c = _operands(integer)
        native = fn(a, b, c)
        with FastCPUBF16() as mode:
            fast = fn(a, b, c)
        assert mode.calls >= 1 and fast.dtype == native.dtype == torch.bfloat16
        if integer and op != "sdpa":  # exact arithmetic: bit-identical
            assert torch.equal(fast, native), op
        else:  # rounding differs only by the order of the fp32 sums: within bf16's own resolution
            torch.testing.assert_close(fast, native, rtol=1.6e-2, atol=1e-2)


def test_other_ops_and_fp32_tensors_pass_through():
    x = torch.randn(8, 8)
    with FastCPUBF16() as mode:
        y = torch.mm(x, x) + F.gelu(x.bfloat16()).float()
    assert mode.calls == 0 and y.dtype == torch.float32


def test_vit_step_under_autocast_matches_native_bf16_and_widens_the_backward():
    from bench.backbones import create_backbone
    torch.manual_seed(0)
    model = create_backbone("vit_tiny", 16, patch_size=4, class_token=False, global_pool="avg")
    x = torch.randn(4, 3, 16, 16)

    def step(mode):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16), mode:
            loss = model(x).float().pow(2).mean()
            forward_calls = getattr(mode, "calls", 0)
            loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()], forward_calls

    loss_native, grads_native, _ = step(contextlib.nullcontext())
    mode = FastCPUBF16()
    loss_fast, grads_fast, forward_calls = step(mode)
    assert forward_calls > 0 and mode.calls > forward_calls  # the backward's matrix products are widened too
    torch.testing.assert_close(loss_fast, loss_native, rtol=2e-2, atol=1e-3)
    for g_fast, g_native in zip(grads_fast, grads_native):
        assert g_fast.dtype == torch.float32  # master weights and their gradients stay fp32
        # elementwise within bf16 noise: compare the gradient's direction per tensor
        cos = F.cosine_similarity(g_fast.flatten(), g_native.flatten(), dim=0)
        assert cos > 0.98, cos


@pytest.mark.slow
def test_fit_uses_it_for_bf16_on_a_cpu_without_native_bf16(tmp_path, tiny_folder, monkeypatch):
    import bench.trainer as train
    from bench.benchmarks import adhoc_benchmark
    from bench.config import make_config
    from bench.runner import train_run

    used = []

    class Recording(FastCPUBF16):
        def __exit__(self, *exc):
            used.append(self.calls)
            return super().__exit__(*exc)

    monkeypatch.setattr(train, "FastCPUBF16", Recording)
    monkeypatch.setattr(train, "cpu_has_native_bf16", lambda: False)
    bench = adhoc_benchmark(f"imagefolder:{tiny_folder}")
    for precision in ("32-true", "bf16-mixed"):
        cfg = make_config("simclr", epochs=1, batch_size=24, precision=precision, backbone_kwargs={"stem": "imagenet"})
        with contextlib.nullcontext() if precision == "32-true" else pytest.warns(UserWarning, match="native bfloat16"):
            run_dir = train_run(cfg, bench, runs_dir=tmp_path / precision, progress=False, cache_dir=tmp_path / "c")
        assert (run_dir / "encoder.pt").exists()
        (segment,) = json.loads((run_dir / "run.json").read_text())["train"]["segments"]
        assert segment.get("cpu_bf16") == ("widened" if precision == "bf16-mixed" else None)  # provenance
    assert len(used) == 1 and used[0] > 0  # only the bf16 run, and its convolutions went through the fp32 kernels
