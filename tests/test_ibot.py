"""iBOT on DINO: registration, the masked-patch term against a hand-written loop (alone and inside the method), the
mask token on the student only, the patch heads scoring the masked patches only, the random masks."""

from __future__ import annotations

import math

import pytest
import torch

import methods.ibot as ibot_module
from bench.augment import ViewAugmenter
from bench.backbones import create_backbone
from methods.dino import DINO
from methods.ibot import IBOT, patch_distillation_loss, patch_row_weights, random_patch_mask


def reference_patch_loss(s, t, mask, center, st, tt):
    """Per image, the mean over its masked patches of - sum_k q[k] log p[k]; unmasked images 0; mean over images.
    s, t: (B, N, K) student / teacher patch logits, center (K,)."""
    per_image = []
    for b in range(len(mask)):
        ces = []
        for n in range(mask.shape[1]):
            if not mask[b, n]:
                continue
            q = [math.exp((float(t[b, n, k]) - float(center[k])) / tt) for k in range(t.shape[-1])]
            e = [math.exp(float(s[b, n, k]) / st) for k in range(s.shape[-1])]
            ces.append(-sum(q[k] / sum(q) * math.log(e[k] / sum(e)) for k in range(len(q))))
        per_image.append(sum(ces) / len(ces) if ces else 0.0)
    return sum(per_image) / len(per_image)


def _ibot(**kw):
    torch.manual_seed(0)
    kw = dict(out_dim=64, hidden_dim=64, bottleneck_dim=32, head_bn=True, local_crops=1, mask_prob=1.0,
              mask_ratio=(0.25, 0.25)) | kw
    return IBOT(create_backbone("vit_tiny", 32, patch_size=8, global_pool="avg", class_token=False), **kw)


def _views(m, n=4):
    return ViewAugmenter(m.views, 32)(torch.randint(0, 255, (n, 3, 32, 32), dtype=torch.uint8))


def test_ibot_is_registered_and_built_from_its_recipe_with_dinos_options():
    from bench.config import make_config
    from bench.errors import ConfigError
    from bench.runner import build_method
    from methods import available_methods, get_method
    assert get_method("ibot") is IBOT and available_methods()["ibot"] is IBOT and issubclass(IBOT, DINO)
    cfg = make_config("ibot", backbone_kwargs={"patch_size": 8, "class_token": False, "global_pool": "avg"})
    assert cfg.method == "ibot" and cfg.method_kwargs["patch_loss_weight"] == 1.0
    m = build_method(cfg)
    assert isinstance(m, IBOT) and m.koleo_weight == 0.1 and m.patch_loss_weight == 1.0
    assert len(m.views) == 4 and m.head.last_layer.out_features == m.patch_head.last_layer.out_features == 1024
    # an unknown option names ibot's own and DINO's hyper-parameters (followed through **dino_options)
    with pytest.raises(ConfigError, match=r"method 'ibot' has no hyper-parameter 'mask_shape'.*mask_ratio.*koleo_weight"):
        build_method(make_config("ibot", method_kwargs={"mask_shape": "block"}))
    with pytest.raises(TypeError, match="ViT"):
        IBOT(create_backbone("resnet18", 32))


def test_patch_distillation_loss_matches_reference():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(3, 4, 5, generator=g, dtype=torch.float64), torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    center = torch.randn(1, 1, 5, generator=g, dtype=torch.float64) * 0.1
    mask = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=torch.bool)
    ours = patch_distillation_loss(s[mask], t[mask], patch_row_weights(mask, mask), 3, center, 0.1, 0.04)
    assert ours.item() == pytest.approx(reference_patch_loss(s, t, mask, center.flatten(), 0.1, 0.04), rel=1e-6)


def test_ibot_patch_loss_is_the_formula_on_the_masked_patches(monkeypatch):
    """Inside the method: the patch heads score exactly the masked patches (DINOv2's way), and patch_loss is the
    hand-computed term of those logits with the patch centre before this step's update; the centre then moves."""
    m = _ibot(mask_ratio=(0.1, 0.5), mask_prob=0.5)
    m.patch_center.normal_(0, 0.1)
    center = m.patch_center.flatten().clone()
    seen = {}
    m.patch_head.register_forward_hook(lambda mod, inp, out: seen.update(student=out.detach()))
    m.patch_teacher.module.register_forward_hook(lambda mod, inp, out: seen.update(teacher=out))
    real = ibot_module.random_patch_mask
    monkeypatch.setattr(ibot_module, "random_patch_mask", lambda *a, **k: seen.setdefault("mask", real(*a, **k)))
    out = m.training_loss(_views(m, 6))
    mask = seen["mask"]
    assert mask.shape == (12, 16) and 2 <= int(mask.sum()) and len(seen["student"]) == int(mask.sum())
    s, t = (torch.zeros(12, 16, 64, dtype=torch.float64) for _ in range(2))
    s[mask], t[mask] = seen["student"].double(), seen["teacher"].double()
    want = reference_patch_loss(s, t, mask, center, m.student_temp, m.current_teacher_temp())
    assert out["patch_loss"].item() == pytest.approx(want, rel=1e-5)
    assert out["masked_frac"].item() == pytest.approx(mask.float().mean().item())
    assert not torch.equal(m.patch_center.flatten(), center)


def test_mask_token_enters_the_student_only():
    """The same step with another mask token: the teacher's patch tokens do not change (it sees whole views),
    the student's masked ones do."""
    inputs = []
    for token in (0.0, 1.0):
        m = _ibot(mask_prob=0.5)
        m.mask_token.data.fill_(token)
        rows = {}
        m.patch_head.register_forward_hook(lambda mod, inp, out: rows.update(student=inp[0]))
        m.patch_teacher.module.register_forward_hook(lambda mod, inp, out: rows.update(teacher=inp[0]))
        torch.manual_seed(1)
        views = _views(m)
        m.training_loss(views)
        inputs.append(rows)
    assert torch.equal(inputs[0]["teacher"], inputs[1]["teacher"])
    assert not torch.allclose(inputs[0]["student"], inputs[1]["student"])
    m.eval()
    with torch.no_grad():  # the teacher's tokens are those of the unmasked global views
        _, whole = m.teacher.module[0].pooled_and_patches(torch.cat(views[:2]))
    assert any(torch.allclose(inputs[1]["teacher"][0], row, atol=1e-5) for row in whole.flatten(0, 1))


def test_ibot_with_fewer_than_two_masked_patches_scores_zero_and_keeps_the_centre(monkeypatch):
    """A BatchNorm head needs 2 rows: zero-weight padding rows; the term is 0 and the patch centre stays."""
    m = _ibot()
    rows = []
    for head in (m.patch_head, m.patch_teacher.module):
        head.register_forward_hook(lambda mod, inp, out: rows.append(len(inp[0])))
    views = _views(m, 6)
    out = m.training_loss(views)
    assert rows == [12 * 4, 12 * 4] and out["patch_loss"] > 0  # 12 global views, 4 of 16 patches masked each
    monkeypatch.setattr(ibot_module, "random_patch_mask", lambda b, n, *a, **k: torch.zeros(b, n, dtype=torch.bool))
    m.patch_center.fill_(0.5)
    out = m.training_loss(views)
    out["loss"].backward()
    assert rows[2:] == [2, 2] and out["patch_loss"].item() == 0 and bool((m.patch_center == 0.5).all())


def test_ibot_trains_the_mask_token_and_patch_head_on_the_student_only():
    m = _ibot(out_dim=128, bottleneck_dim=256, koleo_weight=0.1)
    out = m.training_loss(_views(m))
    assert out["masked_frac"].item() == pytest.approx(0.25)
    # ~uniform prototypes at init: each term is about log K
    assert out["dino_loss"].item() == pytest.approx(math.log(128), rel=0.15)
    assert out["patch_loss"].item() == pytest.approx(math.log(128), rel=0.15)
    total = out["dino_loss"].item() + out["patch_loss"].item() + 0.1 * out["koleo"].item()
    assert out["loss"].item() == pytest.approx(total, rel=1e-6)
    out["loss"].backward()
    assert m.mask_token.grad.abs().sum() > 0 and m.patch_head.mlp[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.teacher.parameters()) and all(p.grad is None for p in m.patch_teacher.parameters())
    before = m.patch_teacher.module.mlp[0].weight.clone()
    with torch.no_grad():
        m.patch_head.mlp[0].weight.add_(1.0)
    m.on_step_end(0, 10)  # the patch head's own EMA teacher follows it
    assert not torch.equal(before, m.patch_teacher.module.mlp[0].weight)


def test_random_patch_mask_counts():
    torch.manual_seed(0)
    m = random_patch_mask(2000, 64, prob=0.5, ratio=(0.1, 0.5))
    counts = m.sum(1)
    masked = counts > 0
    assert 0.45 < masked.float().mean() < 0.55                       # about half the images are masked
    assert counts[masked].min() >= round(0.1 * 64) and counts.max() <= round(0.5 * 64)
    assert not random_patch_mask(8, 64, prob=0.0, ratio=(0.1, 0.5)).any()


def test_backbone_mask_token_replaces_only_masked_patches():
    torch.manual_seed(0)
    bb = create_backbone("vit_tiny", 32, patch_size=8, class_token=True, global_pool="token").eval()
    x = torch.randn(2, 3, 32, 32)
    full = bb.tokens(x, prefix=True)
    assert torch.allclose(bb.pool(full), bb(x), atol=1e-6)                 # one pass gives pooled + tokens
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, 5] = True
    token = torch.zeros(bb.embed_dim)
    emb = bb.model.patch_embed(x).flatten(1, 2)
    assert not torch.allclose(emb[0, 5], token)
    masked = bb.tokens(x, prefix=True, mask=mask, mask_token=token)
    assert torch.equal(masked[1], full[1])                                 # an unmasked image is untouched
    assert not torch.allclose(masked[0], full[0])
    with pytest.raises(TypeError, match="not a ViT"):
        create_backbone("resnet18", 32).tokens(x, mask=mask, mask_token=token)
