"""`bench demo`'s policy (bench.demo): the random baseline first, each method with its recipe, fewer epochs for
ViTs, the ResNet stem only on ResNets, the benchmark's crop; every config checked before any data."""

from __future__ import annotations

import pytest

from bench.benchmarks import get_benchmark
from bench.demo import ALL_DEMO_METHODS, DEMO_EPOCHS, DEMO_METHODS, DEMO_VIT_EPOCHS, demo_methods, demo_runs
from bench.errors import ConfigError


def test_demo_runs_follow_the_policy():
    bench = get_benchmark("imagenette-mini-v1")
    runs = demo_runs(bench, demo_methods("all"), stem="cifar", seed=3)
    assert [r.name for r in runs] == ["random", *ALL_DEMO_METHODS]
    epochs = {r.name: r.config.epochs for r in runs}
    assert epochs == {"random": 0, "random-vit": 0, "simclr": DEMO_EPOCHS, "barlow-twins": DEMO_EPOCHS,
                      **DEMO_VIT_EPOCHS}
    for r in runs:
        assert r.config.seed == 3 and r.config.img_size == bench.img_size
        assert (r.config.backbone_kwargs.get("stem") == "cifar") == r.config.backbone.startswith("resnet")
    assert runs[2].recipe == "barlow_twins" and runs[2].config.method == "barlow-twins"
    assert {r.config.epochs for r in demo_runs(bench, DEMO_METHODS, epochs=2)} == {0, 2}
    assert demo_methods(" simclr, dino ,") == ["simclr", "dino"]


def test_an_unknown_demo_method_is_refused_before_any_data(monkeypatch):
    import bench.runner
    monkeypatch.setattr(bench.runner, "load_benchmark_data", lambda *a, **k: pytest.fail("data was loaded"))
    with pytest.raises(ConfigError, match="recipe 'simclrr' not found"):
        demo_runs(get_benchmark("imagenette-mini-v1"), ["simclrr"])
