"""Fixtures shared by the test modules: a tiny image folder and the `bench` flags that run on it, and the
``needs_imagenette64`` mark.

A test that reads the real imagenette64 (under the data root: ``--data-root`` / ``$BENCH_DATA_ROOT`` /
``../shared/datasets``) is marked ``@pytest.mark.needs_imagenette64``: it is skipped, with the reason, where
the data is absent (a fresh clone). Every other test runs with ``$BENCH_DATA_ROOT`` pointing to a folder that
does not exist, as on a fresh clone, whatever the machine holds: a test that needs the data but lacks the
mark fails everywhere, also where the data is present, so the mark cannot be forgotten unnoticed (and
``.ci/run`` need only rerun the marked tests with the data hidden)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from PIL import Image

NO_IMAGENETTE64 = ("imagenette64 is not under the data root (a fresh clone has none): build it with "
                   "`bench data prepare imagenette64 SOURCE` or set BENCH_DATA_ROOT to the folder holding it")


@functools.cache
def imagenette64_present() -> bool:
    """Whether the data root the loaders find (the environment the tests started in) holds imagenette64."""
    from bench.data import dataset_root
    from bench.errors import DataError
    try:
        dataset_root("imagenette64")
    except DataError:
        return False
    return True


@pytest.fixture(autouse=True)
def _data_root_only_where_marked(request, monkeypatch, tmp_path_factory):
    """``needs_imagenette64`` tests: skipped without the data. All others: no data root (see the module doc)."""
    if request.node.get_closest_marker("needs_imagenette64"):
        if not imagenette64_present():
            pytest.skip(NO_IMAGENETTE64)
        return
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path_factory.getbasetemp() / "no-data-root"))


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """3 classes told apart by colour, 24 train / 6 val images each, 32 px."""
    root = tmp_path_factory.mktemp("tiny")
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 24), ("val", 6)):
        for c, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
            (root / split / f"class{c}").mkdir(parents=True)
            for i in range(n):
                noise = torch.randint(-30, 30, (32, 32, 3), generator=g)
                arr = (torch.tensor(colour) + noise).clamp(0, 255).to(torch.uint8).numpy()
                Image.fromarray(arr).save(root / split / f"class{c}" / f"{i}.png")
    return root


@pytest.fixture
def cli_args(tiny_folder):
    """``cli_args(base)``: the `bench` flags for a fast run on ``tiny_folder``, cache and runs under ``base``."""
    def args(base: Path) -> list[str]:
        return ["--data", f"imagefolder:{tiny_folder}", "--cache-dir", str(base / "cache"),
                "--runs-dir", str(base / "runs"), "--batch-size", "16", "--stem", "imagenet", "--no-progress"]
    return args


@pytest.fixture
def train_steps():
    """``train_steps(method, views, steps, lr=2e-3)``: that many AdamW steps of ``method.training_loss(views)``
    on the same views (torch seeded with the step number first, as the trainer seeds each step; the method's
    ``on_step_end`` after each); returns the losses."""
    def run(method, views, steps: int, lr: float = 2e-3) -> list[float]:
        opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=lr)
        losses = []
        for step in range(steps):
            torch.manual_seed(step)
            loss = method.training_loss(views)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            method.on_step_end(step, steps)
            losses.append(loss.item())
        return losses
    return run
