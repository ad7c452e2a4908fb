"""Weights files in the field's checkpoint layouts -> the state_dict of one encoder.

A file is read with ``torch.load(weights_only=True)`` (plus an allow-list of harmless non-tensor types some
official training checkpoints hold, e.g. DINO's and MAE's ``args``, an ``argparse.Namespace``): pickled code
is never run. Then the layout is detected and the encoder's tensors picked out of it:

=================  ==========================================================  ==========================
layout             what the file holds                                         the encoder taken
=================  ==========================================================  ==========================
``dino``           ``{"student", "teacher", ...}`` (DINO's ``checkpoint.pth``)   ``teacher`` (DINO evaluates it)
``dinov2``         ``{"model": {"teacher.backbone.*", "student.*"}}``            ``teacher.backbone``
``jepa``           ``{"encoder", "target_encoder", "predictor", ...}`` (I-JEPA,  ``target_encoder``
                   V-JEPA, V-JEPA 2)
``mae``            ``{"model": {..., "decoder_*"}, "args", ...}``               ``model`` minus the decoder
``mocov3``         ``{"state_dict": {"module.base_encoder.*", ...}}``            ``base_encoder``
``lightning``      ``{"state_dict": ..., "pytorch-lightning_version"}`` (lightly, ``state_dict``
                   solo-learn, this harness's ``last.ckpt``)
``state_dict``     tensors only (timm / torchvision files, Barlow Twins and      the file
                   VICReg ``resnet50.pth``, ``dino_deitsmall16_pretrain.pth``)
=================  ==========================================================  ==========================

Inside the chosen mapping the key prefix (``module.``, ``backbone.``, ``module.backbone.``, ``model.backbone.``,
...) is the one under which most keys name a tensor of the target model (``--weights-prefix`` overrides it; a
backbone saved as ``nn.Sequential(*list(resnet.children())[:-1])``, lightly's documented recipe, has keys
``0.weight, 1.weight, 4.0.conv1.weight`` that are mapped to the model's children by position). Keys of
heads, projectors, predictors and decoders are dropped by name; every other key must match the model exactly,
in name and shape - a partial load is an error naming the first keys that differ, never silent.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bench.errors import BenchError

#: non-tensor types that official training checkpoints carry and that are safe to unpickle
SAFE_GLOBALS = [argparse.Namespace]
#: names of parts that are not the encoder: dropped when the target model has no such key
HEAD_NAMES = re.compile(r"^(head|heads|fc|classifier|projector|projection|projection_head|prototypes|predictor|"
                        r"decoder\w*|mask_token|fc_norm_head|dino_head|ibot_head|last_layer)(\.|$)")


@dataclass(frozen=True)
class LoadedWeights:
    """The encoder's tensors out of a weights file, and how they were found (recorded with every score)."""
    state_dict: dict[str, torch.Tensor]
    layout: str
    key: str | None       # the top-level entry taken ("teacher", "target_encoder", "state_dict", ...)
    prefix: str           # stripped from every key
    dropped: tuple[str, ...]  # head / projector / decoder keys left out
    sha256: str
    file: str


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_checkpoint(path: str | Path) -> dict:
    """The file's top-level mapping, loaded with weights_only=True (and :data:`SAFE_GLOBALS`)."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"weights file {path} does not exist")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure is one line
        text = str(e)
        found = re.search(r"GLOBAL ([\w.]+)", text)  # weights_only met a class or function: refused, never run
        if found or "Unsupported global" in text:
            raise BenchError(f"{path} holds pickled objects other than tensors and plain data (possibly code"
                             + (f": {found.group(1)}" if found else "") + "); not loaded") from None
        why = text.split("WeightsUnpickler error:", 1)[-1].strip()  # torch's own reason, past its boilerplate
        raise BenchError(f"{path} is not a PyTorch checkpoint ({type(e).__name__}: "
                         f"{why.splitlines()[0][:100] if why else 'unreadable'})") from None
    if not isinstance(obj, dict):
        raise BenchError(f"{path} holds a {type(obj).__name__}, not a state_dict or a checkpoint mapping")
    return obj


def _tensors(d) -> dict[str, torch.Tensor] | None:
    if isinstance(d, dict) and d and all(isinstance(k, str) for k in d):
        t = {k: v for k, v in d.items() if isinstance(v, torch.Tensor)}
        return t if t else None
    return None


def detect_layout(ckpt: dict, key: str | None = None) -> tuple[str, str | None, dict[str, torch.Tensor]]:
    """(layout, top-level key, tensors) of a checkpoint mapping; ``key`` forces the top-level entry."""
    if key is not None:
        if key not in ckpt:
            raise BenchError(f"--weights-key {key!r} is not in the checkpoint (it holds: {', '.join(map(str, ckpt))})")
        sd = _tensors(ckpt[key])
        if sd is None:
            raise BenchError(f"checkpoint entry {key!r} holds no tensors")
        return "custom", key, sd
    if "teacher" in ckpt and "student" in ckpt:
        return "dino", "teacher", _tensors(ckpt["teacher"]) or {}
    if "target_encoder" in ckpt:
        return "jepa", "target_encoder", _tensors(ckpt["target_encoder"]) or {}
    model = _tensors(ckpt.get("model"))
    if model is not None:
        if any(k.startswith("teacher.backbone.") for k in model):
            return "dinov2", "model", {k: v for k, v in model.items() if k.startswith("teacher.")}
        if any(k.startswith("decoder") for k in model):
            return "mae", "model", model
        return "model", "model", model
    sd = _tensors(ckpt.get("state_dict"))
    if sd is not None:
        if any(k.startswith("module.base_encoder.") for k in sd):
            return "mocov3", "state_dict", sd
        return "lightning" if "pytorch-lightning_version" in ckpt else "state_dict-entry", "state_dict", sd
    sd = _tensors(ckpt)
    if sd is not None and len(sd) == len(ckpt):
        return "state_dict", None, sd
    raise BenchError("the checkpoint has no recognisable layout (keys: " + ", ".join(list(map(str, ckpt))[:8])
                     + "); name the entry holding the encoder with --weights-key")


def _candidate_prefixes(keys) -> set[str]:
    out = {""}
    for k in keys:
        parts = k.split(".")
        for i in range(1, min(len(parts), 4)):
            out.add(".".join(parts[:i]) + ".")
    return out


def _by_position(sd: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Keys ``<i>.rest`` of an ``nn.Sequential(*children)`` -> ``<name of child i>.rest``."""
    names = [n for n, _ in model.named_children()]
    out = {}
    for k, v in sd.items():
        head, _, rest = k.partition(".")
        out[f"{names[int(head)]}.{rest}" if head.isdigit() and int(head) < len(names) and rest else k] = v
    return out


def _strip(sd: dict[str, torch.Tensor], prefix: str, model: nn.Module) -> dict[str, torch.Tensor]:
    sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if sub and all(k.split(".", 1)[0].isdigit() for k in sub):
        sub = _by_position(sub, model)
    return sub


def match_prefix(sd: dict[str, torch.Tensor], model: nn.Module, prefix: str | None = None) -> tuple[str, dict]:
    """The prefix under which the most keys of ``sd`` name a tensor of ``model`` (or the given one), and the
    stripped mapping."""
    if prefix is not None:
        sub = _strip(sd, prefix, model)
        if not sub:
            raise BenchError(f"no key of the checkpoint starts with --weights-prefix {prefix!r} (first keys: "
                             + ", ".join(list(sd)[:4]) + ")")
        return prefix, sub
    target = set(model.state_dict())
    scored = [(len(target & set(_strip(sd, p, model))), -len(p), p) for p in _candidate_prefixes(sd)]
    hits, _, best = max(scored)
    if hits == 0:
        raise BenchError(f"no key of the checkpoint matches the model (checkpoint: {', '.join(list(sd)[:3])}; model: "
                         f"{', '.join(list(target)[:3])}): wrong architecture, or give --weights-prefix")
    return best, _strip(sd, best, model)


def load_weights(model: nn.Module, path: str | Path, *, key: str | None = None,
                 prefix: str | None = None) -> LoadedWeights:
    """Load a weights file into ``model`` strictly (see the module docstring); returns how it was found."""
    layout, entry, sd = detect_layout(read_checkpoint(path), key)
    prefix, sub = match_prefix(sd, model, prefix)
    target = model.state_dict()
    dropped = tuple(sorted(k for k in sub if k not in target and HEAD_NAMES.match(k)))
    sub = {k: v for k, v in sub.items() if k not in dropped}
    missing = [k for k in target if k not in sub]
    unexpected = [k for k in sub if k not in target]
    shapes = [f"{k} {tuple(sub[k].shape)} vs {tuple(target[k].shape)}" for k in target
              if k in sub and sub[k].shape != target[k].shape]
    where = f"{path} ({layout} layout, entry {entry or '-'}, prefix {prefix!r})"
    for what, keys in (("missing from", missing), ("unexpected in", unexpected), ("of another shape in", shapes)):
        if keys:
            raise BenchError(f"{len(keys)} encoder key(s) {what} {where}: {', '.join(keys[:4])}"
                             + (" ..." if len(keys) > 4 else "") + "; check the architecture, --weights-key or "
                             "--weights-prefix")
    model.load_state_dict(sub, strict=True)
    return LoadedWeights(sub, layout, entry, prefix, dropped, file_sha256(path), Path(path).name)
