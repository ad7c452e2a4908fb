"""bench.evaluate: an external encoder scored with a benchmark's probes becomes an ordinary record (origin
external, its own leaderboard row under its name); a second evaluation of the same weights extracts nothing."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import bench
import probes.features
from bench.errors import BenchError
from bench.leaderboard import write_leaderboard
from bench.records import load_records


def test_external_encoder_record_row_and_feature_cache(tmp_path, monkeypatch):
    torch.manual_seed(0)
    src = timm.create_model("resnet18", pretrained=False, num_classes=0)
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in src.state_dict().items()},
                "pytorch-lightning_version": "2.4.0"}, tmp_path / "solo.ckpt")
    calls = []
    real = probes.features._extract
    monkeypatch.setattr(probes.features, "_extract", lambda *a, **k: calls.append(1) or real(*a, **k))
    kw = dict(weights=tmp_path / "solo.ckpt", probes=("knn", "linear"), cache_dir=tmp_path / "cache")
    rec = bench.evaluate("timm:resnet18", "imagenette-mini-v1", name="my-resnet", results_dir=tmp_path / "res", **kw)
    assert rec.origin == "external" and rec.method == "my-resnet" and rec.backbone == "resnet18"
    assert rec.model["weights"]["layout"] == "lightning" and len(rec.model["weights"]["sha256"]) == 64
    assert rec.images_seen is None and rec.epochs == 0 and rec.train_time_s == 0.0  # not invented
    assert 0 <= rec.scores["knn_top1"] <= 100 and set(rec.selected) == {"knn", "linear"}
    assert len(calls) == 3  # train and val features, LiDAR's augmented views of train images
    again = bench.evaluate("timm:resnet18", "imagenette-mini-v1", name="my-resnet", **kw)
    assert len(calls) == 3 and again.scores == rec.scores  # cache hit: no feature extracted
    assert again.estimators == rec.estimators
    assert again.config_hash == rec.config_hash
    df, _ = write_leaderboard("imagenette-mini-v1", tmp_path / "res", tmp_path / "lb", ("md",))
    assert list(df["label"]) == ["my-resnet"] and df.loc[0, "n"] == 1
    assert [r.run_id for r in load_records(tmp_path / "res")] == [rec.run_id]


def test_any_module_and_bad_input(tmp_path):
    class Tiny(nn.Module):
        def forward(self, x):
            return x.mean((2, 3))
    with pytest.warns(UserWarning, match="Tiny has no tokens .*: the attentive probe is skipped"):
        rec = bench.evaluate(Tiny(), bench.get_benchmark("imagenette-mini-v1"), probes=("knn", "attentive"),
                             cache_dir=tmp_path / "cache")
    assert rec.method == "Tiny" and rec.model["spec"].endswith("Tiny") and "attentive_top1" not in rec.scores
    assert "knn_top1" in rec.scores
    with pytest.raises(BenchError, match="not to an nn.Module given directly"):
        bench.evaluate(Tiny(), "imagenette-mini-v1", weights="x.pth")
    with pytest.raises(BenchError, match="--name"):
        bench.evaluate(Tiny(), "imagenette-mini-v1", name="a|b")


def test_bench_train_is_the_public_training_call_and_probe_reads_the_runs_benchmark(tmp_path, monkeypatch):
    """``bench.train`` (a function: the training module is bench.trainer) configures a method as ``bench run``
    does; ``probe=False`` gives the run folder, which ``bench.evaluate`` and ``bench probe`` score on the
    benchmark in its run.json when none is given."""
    import bench.trainer
    from bench.cli import main
    assert callable(bench.train) and bench.trainer.SSLModule.__name__ == "SSLModule"
    kw = dict(runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", progress=False, log=None, seed=3,
              backbone_kwargs={"stem": "imagenet"})  # a random-init resnet18, cheap at 32 px
    rec = bench.train("random", "imagenette-mini-v1", probes=("knn",), results_dir=tmp_path / "res", **kw)
    assert rec.method == "random" and rec.seed == 3 and rec.config["backbone"] == "resnet18"
    assert [r.run_id for r in load_records(tmp_path / "res")] == [rec.run_id]
    run_dir = bench.train("random", "imagenette-mini-v1", probe=False, **kw)
    assert run_dir.parent.name == "imagenette-mini-v1" and (run_dir / "encoder.pt").is_file()
    again = bench.evaluate(run_dir, probes=("knn",), cache_dir=tmp_path / "cache")  # no benchmark: the run's
    assert again.benchmark.name == "imagenette-mini" and again.origin == "trained" and again.scores == rec.scores
    import bench.runner
    seen = []  # `bench probe RUN_DIR` goes through bench.evaluate too (the full probe set: not run again here)
    monkeypatch.setattr(bench.runner, "probe_run", lambda run, b, **k: seen.append((run, b.id, k["results_dir"]))
                        or again)
    assert main(["probe", str(run_dir), "--results", str(tmp_path / "res2")]) == 0
    assert seen == [(run_dir, "imagenette-mini-v1", str(tmp_path / "res2"))]
    with pytest.raises(BenchError, match="config overrides .* go with a method name"):
        bench.train(bench.config.make_config("random"), "imagenette-mini-v1", epochs=1)
