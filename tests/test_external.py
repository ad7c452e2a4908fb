"""External encoders: checkpoints in the field's layouts (built here from random-init models of the right
architecture) load through bench.load_encoder and give the source model's features; malformed ones are one
clear line."""

from __future__ import annotations

import argparse

import pytest
import timm
import torch
import torchvision
from torch import nn

import bench
from bench.errors import BenchError

VIT = dict(img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=2)  # a small ViT, timm's key names
X = torch.randn(3, 3, 32, 32)


def vit(seed: int, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **{**VIT, **kw}).eval()


def resnet(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None).eval()


def prefixed(sd: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in sd.items()}


def same_features(encoder, source: nn.Module, x=X) -> None:
    with torch.no_grad():
        got, want = encoder.model(x), source(x)
    assert (got - want).abs().max().item() < 1e-5


def test_raw_timm_state_dict_and_a_released_backbone_file(tmp_path):
    """A timm state_dict (dino_deitsmall16_pretrain.pth is one: ViT keys, no head) and a torchvision ResNet
    without its fc (Barlow Twins' / VICReg's resnet50.pth)."""
    src = vit(1)
    torch.save(src.state_dict(), tmp_path / "vit.pth")
    enc = bench.load_encoder("timm:vit_tiny_patch16_224", tmp_path / "vit.pth", model_kwargs=VIT)
    same_features(enc, src)
    assert enc.info["weights"]["layout"] == "state_dict" and enc.info["weights"]["prefix"] == ""
    rn = resnet(2)
    torch.save({k: v for k, v in rn.state_dict().items() if not k.startswith("fc.")}, tmp_path / "resnet50.pth")
    enc = bench.load_encoder("torchvision:resnet18", tmp_path / "resnet50.pth")
    rn.fc = nn.Identity()
    same_features(enc, rn)
    assert enc.tokens(X).shape == (3, 1, 512)  # the last feature map's cells (1x1 at 32 px)


def test_lightning_checkpoints_of_lightly_and_solo_learn(tmp_path):
    """lightly's documented backbone nn.Sequential(*list(resnet.children())[:-1]) saves keys backbone.0.weight ...;
    solo-learn's backbone.conv1.weight ...; both beside projector / classifier heads."""
    rn = resnet(3)
    seq = nn.Sequential(*list(rn.children())[:-1])
    state = {**prefixed(seq.state_dict(), "backbone."), "projection_head.layers.0.weight": torch.randn(8, 512)}
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.4.0", "epoch": 3}, tmp_path / "lightly.ckpt")
    enc = bench.load_encoder("torchvision:resnet18", tmp_path / "lightly.ckpt")
    with torch.no_grad():
        assert (enc(X) - seq(X).flatten(1)).abs().max() < 1e-5
    assert enc.info["weights"]["layout"] == "lightning" and enc.info["weights"]["prefix"] == "backbone."
    torch.manual_seed(4)
    tm = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()
    state = {**prefixed(tm.state_dict(), "backbone."), "projector.0.weight": torch.randn(8, 512),
             "classifier.weight": torch.randn(10, 512), "classifier.bias": torch.zeros(10)}
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.1.0"}, tmp_path / "solo.ckpt")
    same_features(bench.load_encoder("timm:resnet18", tmp_path / "solo.ckpt"), tm)


def test_dino_checkpoint_evaluates_the_teacher(tmp_path):
    student, teacher = vit(5), vit(6)
    ckpt = {"student": {**prefixed(student.state_dict(), "module.backbone."),
                        "module.head.mlp.0.weight": torch.randn(8, 48)},
            "teacher": {**prefixed(teacher.state_dict(), "backbone."), "head.last_layer.weight_g": torch.ones(4, 1)},
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}, "epoch": 7,
            "args": argparse.Namespace(arch="vit_small", patch_size=16)}  # DINO's args: allowed, never code
    torch.save(ckpt, tmp_path / "checkpoint.pth")
    enc = bench.load_encoder("timm:vit_tiny_patch16_224", tmp_path / "checkpoint.pth", model_kwargs=VIT)
    same_features(enc, teacher)
    assert enc.info["weights"]["layout"] == "dino" and enc.info["weights"]["key"] == "teacher"
    assert enc.info["normalisation"].startswith("imagenet")  # DINO trained on ImageNet-normalised images
    enc = bench.load_encoder("timm:vit_tiny_patch16_224", tmp_path / "checkpoint.pth", model_kwargs=VIT,
                             weights_key="student")
    same_features(enc, student)


def test_dinov2_mae_and_mocov3_training_checkpoints(tmp_path):
    teacher, student = vit(7), vit(8)
    torch.save({"model": {**prefixed(teacher.state_dict(), "teacher.backbone."),
                          **prefixed(student.state_dict(), "student.backbone."),
                          "teacher.dino_head.mlp.0.weight": torch.randn(4, 48)}, "iteration": 10},
               tmp_path / "dinov2.pth")
    same_features(bench.load_encoder("timm:vit_tiny_patch16_224", tmp_path / "dinov2.pth", model_kwargs=VIT), teacher)
    mae = vit(9)
    torch.save({"model": {**mae.state_dict(), "mask_token": torch.zeros(1, 1, 32),
                          "decoder_embed.weight": torch.randn(32, 48), "decoder_pred.weight": torch.randn(192, 32)},
                "args": argparse.Namespace(model="mae_vit_base_patch16"), "epoch": 1}, tmp_path / "mae.pth")
    enc = bench.load_encoder("timm:vit_tiny_patch16_224", tmp_path / "mae.pth", model_kwargs=VIT)
    same_features(enc, mae)
    assert enc.info["weights"]["layout"] == "mae" and enc.info["weights"]["dropped"] == 3
    base, momentum = vit(10), vit(11)
    torch.save({"state_dict": {**prefixed(base.state_dict(), "module.base_encoder."),
                               "module.base_encoder.head.0.weight": torch.randn(8, 48),
                               **prefixed(momentum.state_dict(), "module.momentum_encoder."),
                               "module.predictor.0.weight": torch.randn(8, 8)}, "arch": "vit_small", "epoch": 3},
               tmp_path / "mocov3.pth.tar")
    enc = bench.load_encoder("timm:vit_tiny_patch16_224", tmp_path / "mocov3.pth.tar", model_kwargs=VIT)
    same_features(enc, base)
    assert enc.info["weights"]["prefix"] == "module.base_encoder."


def test_dino_resnet_teacher_and_mocov3_resnet(tmp_path):
    """DINO's ResNet teacher has batch norms, so DINO wraps it in DDP: its keys are ``module.backbone.*`` too;
    MoCo v3's ResNet keeps its projector as ``base_encoder.fc.*`` (dropped) beside the momentum encoder."""
    student, teacher = resnet(15), resnet(16)
    for m in (student, teacher):
        m.fc = nn.Identity()
    torch.save({"student": {**prefixed(student.state_dict(), "module.backbone."),
                            "module.head.mlp.0.weight": torch.randn(8, 512)},
                "teacher": {**prefixed(teacher.state_dict(), "module.backbone."),
                            "module.head.last_layer.weight_v": torch.randn(4, 8)},
                "epoch": 1, "args": argparse.Namespace(arch="resnet50")}, tmp_path / "dino_rn.pth")
    enc = bench.load_encoder("torchvision:resnet18", tmp_path / "dino_rn.pth")
    same_features(enc, teacher)
    assert enc.info["weights"]["prefix"] == "module.backbone." and enc.info["weights"]["key"] == "teacher"
    base, momentum = resnet(17), resnet(18)
    projector = nn.Sequential(nn.Linear(512, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 8))
    base.fc, momentum.fc = projector, projector
    torch.save({"state_dict": {**prefixed(base.state_dict(), "module.base_encoder."),
                               **prefixed(momentum.state_dict(), "module.momentum_encoder."),
                               "module.predictor.0.weight": torch.randn(8, 8)}, "arch": "resnet50"},
               tmp_path / "mocov3_rn.pth.tar")
    enc = bench.load_encoder("torchvision:resnet18", tmp_path / "mocov3_rn.pth.tar")
    base.fc = nn.Identity()
    same_features(enc, base)
    assert enc.info["weights"]["layout"] == "mocov3" and enc.info["weights"]["dropped"] == 9  # fc.0 (2), fc.1 BN (5), fc.3 (2)


@pytest.mark.parametrize("prefix", ["module.", "module.backbone."])  # I-JEPA / V-JEPA 2
def test_jepa_checkpoint_evaluates_the_target_encoder(tmp_path, prefix):
    kw = {**VIT, "class_token": False, "global_pool": "avg"}  # I-JEPA's ViT: no [CLS], average pooling
    context, target = vit(12, class_token=False, global_pool="avg"), vit(13, class_token=False, global_pool="avg")
    torch.save({"encoder": prefixed(context.state_dict(), prefix),
                "predictor": {"module.predictor_embed.weight": torch.randn(8, 48)},
                "target_encoder": prefixed(target.state_dict(), prefix), "opt": {}, "epoch": 2, "lr": 1e-3},
               tmp_path / "ijepa.pth.tar")
    enc = bench.load_encoder("timm:vit_tiny_patch16_224", tmp_path / "ijepa.pth.tar", model_kwargs=kw)
    same_features(enc, target)
    assert enc.info["weights"]["key"] == "target_encoder" and enc.tokens(X).shape == (3, 16, 48)


def test_vit_at_another_resolution_resamples_positions_and_says_so(tmp_path):
    src = vit(14, img_size=64)
    torch.save(src.state_dict(), tmp_path / "vit64.pth")
    enc = bench.load_encoder("timm:vit_tiny_patch16_224", tmp_path / "vit64.pth", img_size=32,
                             model_kwargs={**VIT, "img_size": 64})
    assert enc(X).shape == (3, 48) and "8x8 to a 4x4 patch grid (64 -> 32 px)" in enc.info["resampled"]


def test_normalisation_follows_the_model_or_is_given():
    """The harness feeds ImageNet-normalised images; an encoder whose model expects mean 0.5 / std 0.5 (timm's
    augreg ViTs) gets them re-normalised: model input = (x * std_in + mean_in - 0.5) / 0.5."""
    enc = bench.load_encoder("timm:vit_tiny_patch16_224", model_kwargs=VIT)
    assert enc.info["mean"] == [0.5, 0.5, 0.5] and not enc.identity_norm
    x01 = torch.rand(2, 3, 32, 32)
    im, istd = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (x01 - im) / istd
    with torch.no_grad():
        assert (enc(x) - enc.model((x01 - 0.5) / 0.5)).abs().max() < 1e-5
    given = bench.load_encoder("timm:vit_tiny_patch16_224", model_kwargs=VIT, mean=(0.485, 0.456, 0.406),
                               std=(0.229, 0.224, 0.225))
    assert given.identity_norm and given.info["normalisation"] == "given"


def _manual_last4(vit_model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """DINOv2's linear-eval input computed by hand: run the blocks one by one, final norm after each of the
    last four, their [CLS] tokens and the last one's average patch token."""
    m = vit_model
    h = m.norm_pre(m._pos_embed(m.patch_embed(x)))
    normed = []
    for blk in m.blocks:
        h = blk(h)
        normed.append(m.norm(h))
    return torch.cat([t[:, 0] for t in normed[-4:]] + [normed[-1][:, 1:].mean(1)], dim=-1)


def test_readout_last4_is_dinov2s_linear_eval_feature(tmp_path):
    src = vit(19, depth=5)
    torch.save(src.state_dict(), tmp_path / "vit.pth")
    enc = bench.load_encoder("timm:vit_tiny_patch16_224", tmp_path / "vit.pth", model_kwargs={**VIT, "depth": 5},
                             readout="last4", img_size=32)
    with torch.no_grad():
        x = enc._prep(X)  # the model's own normalisation (timm's vit_tiny: mean = std = 0.5)
        got, want, pooled = enc(X), _manual_last4(src, x), src(x)
    assert enc.embed_dim == 5 * 48 and got.shape == (3, 240) and (got - want).abs().max() < 1e-5
    assert (got[:, 3 * 48:4 * 48] - pooled).abs().max() < 1e-5  # the last block's [CLS] is the pooled feature
    assert enc.info["readout"] == "last4" and enc.tokens(X).shape == (3, 17, 48)  # tokens unchanged
    assert "readout=last4" in repr(enc)  # part of the feature cache's key: pooled and last4 never share an entry
    with pytest.raises(BenchError, match="--readout last4 needs a ViT"):
        bench.load_encoder("torchvision:resnet18", readout="last4")
    with pytest.raises(BenchError, match="--readout last4 needs a ViT"):  # I-JEPA's ViTs have no [CLS]
        bench.load_encoder("timm:vit_tiny_patch16_224", model_kwargs={**VIT, "depth": 4, "class_token": False,
                                                                      "global_pool": "avg"}, readout="last4")


def _hf_folder(tmp_path, kind: str):
    """A random-init small ViT / DINOv2 saved by save_pretrained with its image processor (nothing downloaded)."""
    tf = pytest.importorskip("transformers", reason="hf: specs need transformers (pip install -e '.[hf]')")
    torch.manual_seed(20)
    shape = dict(image_size=32, patch_size=8, num_hidden_layers=4, hidden_size=48, num_attention_heads=2)
    if kind == "vit":
        model = tf.ViTModel(tf.ViTConfig(intermediate_size=96, **shape))
    else:
        model = tf.Dinov2Model(tf.Dinov2Config(mlp_ratio=2, **shape))
    folder = tmp_path / kind
    model.eval().save_pretrained(folder)
    tf.ViTImageProcessor(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]).save_pretrained(folder)
    return model, folder


@pytest.mark.parametrize("kind", ["vit", "dinov2"])
def test_hf_folder_loads_offline_with_its_normalisation(tmp_path, kind):
    source, folder = _hf_folder(tmp_path, kind)
    enc = bench.load_encoder(f"hf:{folder}", img_size=32)
    assert enc.info["mean"] == [0.5, 0.5, 0.5] and enc.info["std"] == [0.5, 0.5, 0.5]
    assert enc.info["normalisation"] == "model (preprocessor_config.json)" and "resampled" not in enc.info
    x01 = torch.rand(2, 3, 32, 32)
    im, istd = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        out = source(pixel_values=(x01 - 0.5) / 0.5, output_hidden_states=True)  # the model's own preprocessing
        got, tokens = enc((x01 - im) / istd), enc.tokens((x01 - im) / istd)
        last4 = bench.load_encoder(f"hf:{folder}", readout="last4")((x01 - im) / istd)
    assert (got - out.last_hidden_state[:, 0]).abs().max() < 1e-5  # the normalised [CLS] token
    assert (tokens - out.last_hidden_state).abs().max() < 1e-5 and tokens.shape == (2, 17, 48)
    normed = [source.layernorm(h) for h in out.hidden_states[-4:]]
    want = torch.cat([h[:, 0] for h in normed] + [normed[-1][:, 1:].mean(1)], dim=-1)
    assert last4.shape == (2, 240) and (last4 - want).abs().max() < 1e-5
    assert "interpolated by the model from 32 to 64 px" in bench.load_encoder(f"hf:{folder}", img_size=64).info[
        "resampled"]


def test_own_module_callable(tmp_path):
    (tmp_path / "mine.py").write_text(
        "import torch\nfrom torch import nn\n"
        "def build(width=8):\n    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Conv2d(3, width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())\n")
    enc = bench.load_encoder(f"{tmp_path / 'mine.py'}:build", img_size=32, model_kwargs={"width": 6})
    assert enc.embed_dim == 6 and enc(X).shape == (3, 6) and not hasattr(enc, "tokens")


class _Code:  # pickled as a custom class: weights_only refuses it
    pass


@pytest.mark.parametrize("case, match", [
    ("missing", "does not exist"),
    ("text", "not a PyTorch checkpoint: Unsupported operand"),
    ("code", "holds pickled objects other than tensors and plain data"),
    ("wrong architecture", "no key of the checkpoint matches the model"),
    ("wrong prefix", "no key of the checkpoint starts with --weights-prefix 'nope.'"),
    ("partial", r"1 encoder key\(s\) missing from .*blocks.1.mlp.fc2.bias"),
    ("shape", r"of another shape in .*pos_embed"),
])
def test_malformed_weights_are_one_clear_line(tmp_path, case, match):
    path, kw = tmp_path / "w.pth", {}
    if case == "text":
        path.write_text("not a checkpoint")
    elif case == "code":
        torch.save({"model": _Code()}, path)
    elif case == "wrong architecture":
        torch.save(resnet(0).state_dict(), path)
    elif case == "wrong prefix":
        torch.save(prefixed(vit(0).state_dict(), "backbone."), path)
        kw = {"weights_prefix": "nope."}
    elif case == "partial":
        sd = vit(0).state_dict()
        del sd["blocks.1.mlp.fc2.bias"]
        torch.save(sd, path)
    elif case == "shape":
        torch.save(vit(0, img_size=64).state_dict(), path)
    with pytest.raises(BenchError, match=match):
        bench.load_encoder("timm:vit_tiny_patch16_224", path, model_kwargs=VIT, **kw)


@pytest.mark.parametrize("spec, match", [("timm:no_such_net", "timm has no model 'no_such_net'"),
                                         ("torchvision:no_such_net", "torchvision has no model"),
                                         ("resnet18", "is not a model spec"),
                                         ("hf:/nonexistent/folder", "hf:|transformers")])
def test_bad_model_specs(spec, match):
    with pytest.raises(BenchError, match=match):
        bench.load_encoder(spec)
