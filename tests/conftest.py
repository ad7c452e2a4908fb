"""Fixtures shared by the test modules: a tiny image folder and the `bench` flags that run on it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image


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
