"""`bench submit`: a one-file plugin goes from file to leaderboard rows; a broken one fails fast, names the
broken part and writes nothing."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.records import load_records

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "vicreg.py"
BID = "imagenette-mini-v1"


def test_vicreg_loss_matches_the_formula_by_hand():
    import importlib.util
    spec = importlib.util.spec_from_file_location("vicreg_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    z2 = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    # invariance: squared differences 0,1 | 0,0 | 0,1 -> mean 2/6
    # z1 and z2 columns have mean 2/3 and variance 1/3 -> std 0.57735 (+eps) -> relu(1 - std) per column
    std = (1 / 3 + 1e-4) ** 0.5
    # covariances: z1 centred (1/3,-2/3),(-2/3,1/3),(1/3,1/3) -> cov01 = (-2/9-2/9+1/9)/2 = -1/6; z2: same by symmetry
    expected = 25 * (2 / 6) + 25 * 2 * (1 - std) + 1 * 2 * (2 * (1 / 6) ** 2) / 2
    assert mod.vicreg_loss(z1, z2).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_submit_example_plugin_end_to_end(tmp_path, capsys):
    argv = ["submit", str(EXAMPLE), "--benchmark", BID, "--seeds", "2", "--epochs", "1",
            "--set", "batch_size=128", "--set", "backbone_kwargs.stem=imagenet",
            "--results", str(tmp_path / "results"), "--leaderboards", str(tmp_path / "lb"),
            "--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main(argv) == 0
    records = load_records(tmp_path / "results", BID)
    assert sorted(r.seed for r in records) == [0, 1] and {r.method for r in records} == {"vicreg"}
    assert all(r.status == "ok" and r.scores["knn_top1"] > 0 for r in records)
    from bench.leaderboard import FORMATS
    for fmt in FORMATS:
        text = (tmp_path / "lb" / BID / f"leaderboard.{fmt}").read_text()
        assert "vicreg" in text, fmt
    md = (tmp_path / "lb" / BID / "leaderboard.md").read_text()
    assert "(n=2)" in md  # both seeds in one row


BROKEN = {
    "detached loss": ('''
        def training_loss(self, views):
            with torch.no_grad():
                h = self.backbone(views[0])
            return (h * self.w).pow(2).mean()''', "no gradient reaches the backbone"),
    "NaN loss": ('''
        def training_loss(self, views):
            return self.backbone(views[0]).mean() * float("nan")''', "loss is nan on the smoke batch"),
    "non-scalar loss": ('''
        def training_loss(self, views):
            return self.backbone(views[0])''', "must return a scalar tensor"),
    "loss raises": ('''
        def training_loss(self, views):
            return self.backbone(views[0], views[0]).mean()''', "training_loss raised TypeError"),
    "encoder without embed_dim": ('''
        def training_loss(self, views):
            return self.backbone(views[0]).pow(2).mean()
        @property
        def encoder(self):
            return torch.nn.Sequential(self.backbone)''', "encoder must be an nn.Module with an int embed_dim"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_plugin_names_the_problem_and_writes_nothing(case, tmp_path, capsys):
    body, needle = BROKEN[case]
    plugin = tmp_path / "broken.py"
    plugin.write_text(textwrap.dedent('''
        import torch
        from bench.augment import ViewSpec
        from methods.base import Method

        class Broken(Method):
            name = "broken"
            views = [ViewSpec()]
            def __init__(self, backbone):
                super().__init__(backbone)
                self.w = torch.nn.Parameter(torch.ones(1))
        ''') + textwrap.indent(textwrap.dedent(body), "    ") + "\n")
    argv = ["submit", str(plugin), "--benchmark", BID, "--seeds", "1", "--epochs", "1",
            "--results", str(tmp_path / "results"), "--leaderboards", str(tmp_path / "lb"),
            "--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: method 'broken'") and needle in err and "\n" not in err, err
    assert not (tmp_path / "results").exists() and not (tmp_path / "lb").exists() and not (tmp_path / "runs").exists()
