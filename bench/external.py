"""External encoders: an architecture from timm, torchvision, a local Hugging Face folder or your own code, plus
a weights file in any of the layouts :mod:`bench.checkpoints` reads, as the encoder contract the probes take -
normalised images in (the harness normalises with ImageNet statistics), ``(B, D)`` pooled features out, and
``tokens(x) -> (B, N, D)`` (every output token: [CLS] and patch tokens, or a CNN's last feature-map cells) where
the model has them.

Specs (``bench eval --model SPEC``, ``bench.load_encoder(SPEC)``):

- ``timm:NAME`` - any timm architecture, built with ``pretrained=False`` (a tag picks its preprocessing, e.g.
  ``timm:vit_small_patch16_224.dino``); ``tokens`` = ``forward_features``;
- ``torchvision:NAME`` - ``torchvision.models.get_model(NAME, weights=None)`` with its classifier's last linear
  layer removed; ResNets and other models with ``layer4`` give their last feature map as tokens;
- ``hf:PATH`` - a local Hugging Face ``transformers`` model folder (``AutoModel``, offline; the ``hf`` extra);
  pooled = the normalised [CLS] token (what DINO / DINOv2 evaluate; ``ViTModel``'s tanh pooler is untrained in
  SSL checkpoints), the average token without one (I-JEPA), a CNN's pooled output; tokens = ``last_hidden_state``;
- ``module:callable`` / ``path/to/file.py:callable`` - a function returning an ``nn.Module`` whose forward gives
  ``(B, D)`` (and, optionally, ``tokens``).

Preprocessing: the benchmark fixes resolution and crop; the mean / std are the model's own (timm's
``pretrained_cfg``, an HF ``preprocessor_config.json``), ImageNet's for torchvision and for the official SSL
training layouts (DINO, I-JEPA, MAE, MoCo v3, DINOv2 all normalise with it), or ``mean`` / ``std`` given. A ViT
built for another resolution has its position embeddings resampled to the benchmark's (timm's
``set_input_size``; Hugging Face ViTs interpolate them in each forward pass); the encoder's ``info`` says so, and
the run record keeps ``info``.

Readout (``readout=``, ``--readout``): ``pooled`` (default) is the model's own feature; ``last4`` is DINOv2's
linear-eval feature for ViTs with a [CLS] token, ``(B, 5 D)``: the [CLS] tokens of the last 4 blocks (each after
the final norm) and the average patch token of the last one. The attentive probe reads ``tokens`` either way.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from bench.augment import IMAGENET_MEAN, IMAGENET_STD
from bench.checkpoints import load_weights
from bench.errors import BenchError
from bench.io import import_file

#: layouts of official SSL training checkpoints: their models were trained on ImageNet-normalised images
IMAGENET_LAYOUTS = {"dino", "dinov2", "jepa", "mae", "mocov3"}
KINDS = ("timm", "torchvision", "hf", "module")
PREPROCESSOR = "preprocessor_config.json"  # an HF model folder's image processor: its image_mean / image_std


class ExternalEncoder(nn.Module):
    """A frozen model in the probes' contract; re-normalises the harness's ImageNet-normalised input to the
    model's own mean / std. ``info``: spec, preprocessing, weights provenance (what the record stores)."""

    def __init__(self, model: nn.Module, pooled: Callable, tokens: Callable | None, embed_dim: int,
                 mean, std, info: dict[str, Any]):
        super().__init__()
        self.model, self._pooled, self._tokens = model, pooled, tokens
        self.embed_dim = int(embed_dim)
        self.info = info
        m, s = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        im, istd = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        # x_model = (x * istd + im - m) / s = x * scale + shift
        self.register_buffer("scale", (istd / s).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((im - m) / s).view(1, 3, 1, 1), persistent=False)
        self.identity_norm = bool(torch.allclose(m, im) and torch.allclose(s, istd))

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.identity_norm else x * self.scale.to(x.dtype) + self.shift.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._pooled(self.model, self._prep(x))

    def extra_repr(self) -> str:  # part of the feature cache's key: a readout or normalisation change is a miss
        return f"spec={self.info.get('spec')!r}, readout={self.info.get('readout')}, mean={self.info.get('mean')}, " \
               f"std={self.info.get('std')}"


class ExternalTokenEncoder(ExternalEncoder):
    """An :class:`ExternalEncoder` whose model has tokens (the attentive probe reads them); a model without
    them is a plain ExternalEncoder, which the attentive probe skips."""

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self._tokens(self.model, self._prep(x))


def parse_spec(spec: str) -> tuple[str, str]:
    """``timm:NAME`` -> ("timm", "NAME"); ``pkg.mod:fn`` and ``file.py:fn`` -> ("module", spec)."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("timm", "torchvision", "hf") and rest:
        return kind, rest
    if sep and rest and (kind.endswith(".py") or kind.replace(".", "").replace("_", "").isalnum()):
        return "module", spec
    raise BenchError(f"--model {spec!r} is not a model spec: use timm:NAME, torchvision:NAME, hf:PATH, "
                     f"module:callable or path/to/file.py:callable (or a run folder from `bench train`)")


# ---------------------------------------------------------------- builders
class Built(NamedTuple):
    """What a builder makes of a spec: the model and how to read it (each callable takes ``(model, x)``)."""
    model: nn.Module
    pooled: Callable
    tokens: Callable | None
    dim: int | None
    mean: Sequence[float]
    std: Sequence[float]
    last4: Callable | None = None  # DINOv2's linear-eval feature (ViTs with a [CLS] token and >= 4 blocks)
    img_size: int | None = None    # the resolution the model was built for, where it says


def _cat_last4(cls_tokens: list[torch.Tensor], patches: torch.Tensor) -> torch.Tensor:
    """DINOv2's linear-eval feature: the [CLS] tokens of the last 4 blocks (each after the final norm) and the
    average patch token of the last one, concatenated: ``(B, 5 D)`` (dinov2/eval/linear.py create_linear_input)."""
    return torch.cat([*cls_tokens, patches.mean(1)], dim=-1)


def _timm(name: str, kwargs: dict):
    import timm
    try:
        model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    except RuntimeError as e:  # "Unknown model (...)"
        raise BenchError(f"timm has no model {name!r} ({str(e).splitlines()[0]})") from None
    except TypeError as e:
        raise BenchError(f"timm model {name!r} rejected its arguments {kwargs}: {e}") from None
    cfg = getattr(model, "pretrained_cfg", {}) or {}

    def tokens(m, x):
        f = m.forward_features(x)
        return f.flatten(2).transpose(1, 2) if f.ndim == 4 else f

    last4 = None
    if callable(getattr(model, "get_intermediate_layers", None)) and getattr(model, "cls_token", None) is not None \
            and len(getattr(model, "blocks", ())) >= 4:
        def last4(m, x):
            outs = m.get_intermediate_layers(x, n=4, return_prefix_tokens=True, norm=True)  # [(patches, prefix)]
            return _cat_last4([prefix[:, 0] for _, prefix in outs], outs[-1][0])
    size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    return Built(model, lambda m, x: m(x), tokens, model.num_features, cfg.get("mean", IMAGENET_MEAN),
                 cfg.get("std", IMAGENET_STD), last4, int(size[0]) if size is not None else None)


def _drop_last_linear(model: nn.Module) -> int | None:
    """Replace the classifier's last nn.Linear by Identity; returns its input width."""
    for attr in ("fc", "classifier", "heads", "head"):
        part = getattr(model, attr, None)
        if isinstance(part, nn.Linear):
            setattr(model, attr, nn.Identity())
            return part.in_features
        if isinstance(part, nn.Sequential):
            for i in reversed(range(len(part))):
                if isinstance(part[i], nn.Linear):
                    width = part[i].in_features
                    part[i] = nn.Identity()
                    return width
    return None


def _torchvision(name: str, kwargs: dict):
    import torchvision
    try:
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    except ValueError as e:
        raise BenchError(f"torchvision has no model {name!r} ({e})") from None
    dim = _drop_last_linear(model)
    if dim is None:
        raise BenchError(f"torchvision model {name!r}: no classifier (fc / classifier / heads / head) to remove")
    tokens = None
    if hasattr(model, "layer4"):  # ResNet family: the last feature map's cells
        def tokens(m, x):
            for layer in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
                x = getattr(m, layer)(x)
            return x.flatten(2).transpose(1, 2)
    return Built(model, lambda m, x: m(x), tokens, dim, IMAGENET_MEAN, IMAGENET_STD)


def _hf(path: str, kwargs: dict):
    if importlib.util.find_spec("transformers") is None:
        raise BenchError('hf: models need transformers: pip install -e ".[hf]"')
    from transformers import AutoModel
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise BenchError(f"hf:{path} is not a local Hugging Face model folder (no config.json); nothing is "
                         f"downloaded")
    try:
        model = AutoModel.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except (OSError, ValueError) as e:
        raise BenchError(f"hf:{path} could not be loaded: {str(e).splitlines()[0]}") from None
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    pre = folder / PREPROCESSOR
    if pre.is_file():
        try:
            cfg = json.loads(pre.read_text())
        except ValueError as e:
            raise BenchError(f"hf:{path}: {PREPROCESSOR} is not valid JSON ({e})") from None
        mean, std = cfg.get("image_mean", mean), cfg.get("image_std", std)

    interpolate = "interpolate_pos_encoding" in inspect.signature(model.forward).parameters

    def run(m, x, **kw):  # ViT-style models interpolate their position embeddings to the input's size
        return m(pixel_values=x, **({"interpolate_pos_encoding": True} if interpolate else {}), **kw)

    embeddings = getattr(model, "embeddings", None)
    has_cls = getattr(embeddings, "cls_token", None) is not None

    def tokens(m, x):
        h = run(m, x).last_hidden_state
        return h.flatten(2).transpose(1, 2) if h.ndim == 4 else h  # CNNs: the last feature map's cells

    def pooled(m, x):
        out = run(m, x)
        h = out.last_hidden_state
        if h.ndim == 4:  # CNNs (ResNet, ConvNeXt): their pooled output, else the feature map's mean
            p = getattr(out, "pooler_output", None)
            return p.flatten(1) if p is not None else h.mean((2, 3))
        # the normalised [CLS] token (what DINO / DINOv2 evaluate; ViTModel's tanh pooler is untrained in SSL
        # checkpoints), or the average token of models without one (I-JEPA)
        return h[:, 0] if has_cls else h.mean(1)

    last4 = None
    if has_cls and callable(getattr(model, "layernorm", None)) and \
            getattr(model.config, "num_hidden_layers", 0) >= 4:
        skip = 1 + int(getattr(model.config, "num_register_tokens", 0) or 0)

        def last4(m, x):
            hidden = [m.layernorm(h) for h in run(m, x, output_hidden_states=True).hidden_states[-4:]]
            return _cat_last4([h[:, 0] for h in hidden], hidden[-1][:, skip:])
    dim = getattr(model.config, "hidden_size", None) or getattr(model.config, "hidden_sizes", [None])[-1]
    size = getattr(model.config, "image_size", None)
    return Built(model, pooled, tokens, dim, mean, std, last4, size if isinstance(size, int) else None)


def _callable(spec: str, kwargs: dict):
    target, _, attr = spec.rpartition(":")
    try:
        if target.endswith(".py"):
            path = Path(target).expanduser().resolve()
            if not path.is_file():
                raise BenchError(f"--model {spec!r}: no file {path}")
            module = import_file(path, "_bench_model")
        else:
            module = importlib.import_module(target)
    except BenchError:
        raise
    except Exception as e:  # noqa: BLE001 - a user's module failing to import is one line
        raise BenchError(f"--model {spec!r}: importing {target} failed ({type(e).__name__}: {e})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise BenchError(f"--model {spec!r}: {target} has no callable {attr!r}")
    model = fn(**kwargs)
    if not isinstance(model, nn.Module):
        raise BenchError(f"--model {spec!r} returned a {type(model).__name__}, not an nn.Module")
    tokens = (lambda m, x: m.tokens(x)) if callable(getattr(model, "tokens", None)) else None
    return Built(model, lambda m, x: m(x), tokens, getattr(model, "embed_dim", None), IMAGENET_MEAN, IMAGENET_STD)


_BUILDERS = {"timm": _timm, "torchvision": _torchvision, "hf": _hf, "module": _callable}


def _resample_vit(kind: str, built: Built, img_size: int) -> str | None:
    """ViTs built for another resolution: timm's get their position embeddings resampled, Hugging Face's
    interpolate them in every forward pass; a note for the record."""
    model = built.model
    if kind == "hf":
        return None if built.img_size in (None, img_size) else \
            f"position embeddings interpolated by the model from {built.img_size} to {img_size} px"
    embed = getattr(model, "patch_embed", None)
    size = getattr(embed, "img_size", None)
    if size is None or tuple(size) == (img_size, img_size) or not hasattr(model, "set_input_size"):
        return None
    before = tuple(embed.grid_size)
    model.set_input_size(img_size=img_size)
    return f"position embeddings resampled from a {before[0]}x{before[1]} to a " \
           f"{embed.grid_size[0]}x{embed.grid_size[1]} patch grid ({size[0]} -> {img_size} px)"


READOUTS = ("pooled", "last4")


def load_encoder(spec: str, weights: str | Path | None = None, *, img_size: int | None = None,
                 weights_key: str | None = None, weights_prefix: str | None = None, mean=None, std=None,
                 readout: str | None = None, model_kwargs: dict | None = None) -> ExternalEncoder:
    """Build ``spec``, load ``weights`` (strictly; layouts in :mod:`bench.checkpoints`), adapt a ViT to
    ``img_size`` and return the frozen encoder (eval mode). ``mean`` / ``std`` override the model's.
    ``readout``: the ``(B, D)`` feature - ``pooled`` (default: the model's own) or ``last4`` (DINOv2's linear-eval
    feature, ``(B, 5 D)``: the [CLS] tokens of the last 4 blocks and the average patch token; ViTs only)."""
    readout = readout or "pooled"
    if readout not in READOUTS:
        raise BenchError(f"--readout {readout!r}: use one of {', '.join(READOUTS)}")
    kind, target = parse_spec(spec)
    built = _BUILDERS[kind](target, dict(model_kwargs or {}))
    model, pooled, dim, m_mean, m_std = built.model, built.pooled, built.dim, built.mean, built.std
    if readout == "last4":
        if built.last4 is None:
            raise BenchError(f"--readout last4 needs a ViT with a [CLS] token and at least 4 blocks (a timm "
                             f"VisionTransformer or a Hugging Face ViT / DINOv2 model); {spec} is not one")
        pooled, dim = built.last4, None  # its width: one forward pass below
    info: dict[str, Any] = {"spec": spec, "model_kwargs": dict(model_kwargs or {}), "readout": readout}
    normalisation = "model"
    if weights is not None:
        w = load_weights(model, weights, key=weights_key, prefix=weights_prefix)
        info["weights"] = {"file": w.file, "sha256": w.sha256, "layout": w.layout, "key": w.key,
                           "prefix": w.prefix, "dropped": len(w.dropped)}
        if w.layout in IMAGENET_LAYOUTS:
            m_mean, m_std, normalisation = IMAGENET_MEAN, IMAGENET_STD, f"imagenet ({w.layout} checkpoint)"
    if mean is not None or std is not None:
        if mean is None or std is None or len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise BenchError("give both --mean and --std, three values each (std > 0)")
        m_mean, m_std, normalisation = mean, std, "given"
    elif kind == "hf" and normalisation == "model":
        normalisation = "model (preprocessor_config.json)" if (Path(target).expanduser() / PREPROCESSOR).is_file() \
            else "imagenet (no preprocessor_config.json)"
    if img_size is not None:
        note = _resample_vit(kind, built, img_size)
        if note:
            info["resampled"] = note
    if dim is None:  # a user's module without embed_dim, or the last4 readout: one forward pass tells
        with torch.no_grad():
            size = img_size or built.img_size or 224
            dim = pooled(model.eval(), torch.zeros(1, 3, size, size)).shape[-1]
    info.update(mean=[round(float(v), 6) for v in m_mean], std=[round(float(v), 6) for v in m_std],
                normalisation=normalisation, tokens=built.tokens is not None)
    cls = ExternalTokenEncoder if built.tokens is not None else ExternalEncoder
    encoder = cls(model, pooled, built.tokens, dim, m_mean, m_std, info).eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder
