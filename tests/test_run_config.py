"""What a run trains with: a recipe, or (a plugin without one) the benchmark's budget as `bench submit` uses;
`--backbone` over a recipe of another backbone family drops the options of the replaced one and says so; the
effective config is one line; cheap inputs are refused before any data is looked up."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.benchmarks import adhoc_benchmark, get_benchmark
from bench.cli import main
from bench.config import budget_config, make_config, run_config
from bench.errors import ConfigError
from bench.records import load_records

PLUGIN = str(Path(__file__).resolve().parents[1] / "examples" / "vicreg.py")
BID = "imagenette64-v1"


def test_a_method_without_a_recipe_trains_on_the_benchmark_budget():
    bench = get_benchmark(BID)
    resolved = run_config(bench, PLUGIN, epochs=3)
    cfg = resolved.config
    budget = bench.budget
    assert (cfg.backbone, cfg.backbone_kwargs, cfg.img_size, cfg.batch_size) == \
        (budget["backbone"], budget["backbone_kwargs"], budget["img_size"], budget["batch_size"])
    assert cfg.epochs == 3 and cfg.method == PLUGIN and resolved.recipe is None
    assert cfg == budget_config(bench, PLUGIN, None, epochs=3).config  # the rule `bench submit` uses
    assert resolved.sources["backbone"] == f"{BID} budget" and resolved.sources["epochs"] == "options"
    # a plugin's recipe that names no backbone (optimiser, hyper-parameters) goes on the budget too
    plugin_recipe = str(Path(PLUGIN).with_suffix(".yaml"))
    with_recipe = run_config(bench, PLUGIN, plugin_recipe)
    assert with_recipe.config == budget_config(bench, PLUGIN, plugin_recipe).config
    assert (with_recipe.config.backbone_kwargs, with_recipe.config.weight_decay) == ({"stem": "small"}, 1e-4)
    # a method with a recipe keeps its recipe's settings (not the budget)
    simclr = run_config(bench, "simclr")
    assert simclr.recipe == "simclr" and simclr.config == make_config("simclr")
    assert simclr.sources["lr"] == "recipe simclr"
    with pytest.raises(ConfigError, match="give --method"):
        run_config(bench)


def test_summary_is_one_line_with_where_each_value_came_from():
    line = run_config(get_benchmark(BID), PLUGIN, seed=4).summary()
    assert "\n" not in line and line.startswith(f"config: method={PLUGIN} [options] ")
    for cell in (f"backbone=resnet18(stem=small) [{BID} budget]", f"img_size=32 [{BID} budget]",
                 f"epochs=20 [{BID} budget]", f"batch=256 [{BID} budget]", "optimizer=lars [default]",
                 "lr=0.3 [default]", "seed=4 [options]"):
        assert cell in line, cell


@pytest.mark.parametrize("recipe,backbone,dropped,kept,note", [
    ("simclr", "vit_tiny", {"stem": "small"}, {},
     "note: dropped backbone_kwargs stem=small (resnet option) for vit_tiny"),
    ("random_vit", "resnet18", {"patch_size": 4, "class_token": False}, {"global_pool": "avg"},
     "note: dropped backbone_kwargs patch_size=4, class_token=False (vit options) for resnet18"),
    ("random_video", "vit_tiny", {"tubelet": 2}, {"patch_size": 8},
     "note: dropped backbone_kwargs tubelet=2 (video_vit option) for vit_tiny"),
])
def test_backbone_of_another_family_drops_the_recipes_options(recipe, backbone, dropped, kept, note):
    resolved = run_config(get_benchmark(BID), recipe=recipe, backbone=backbone)
    assert resolved.dropped == dropped and resolved.config.backbone_kwargs == kept
    assert resolved.notes() == [note]
    from bench.runner import check_config
    check_config(resolved.config)  # the backbone takes what is left


def test_same_family_and_explicit_options_are_kept():
    bench = get_benchmark(BID)
    same = run_config(bench, "simclr", backbone="resnet50")
    assert same.config.backbone_kwargs == {"stem": "small"} and same.dropped == {} and same.notes() == []
    # an option the user gives for the new backbone is theirs: not dropped, refused by name before any data
    explicit = run_config(bench, "simclr", backbone="vit_tiny", backbone_kwargs={"stem": "cifar"})
    assert explicit.config.backbone_kwargs == {"stem": "cifar"}
    from bench.runner import check_config
    with pytest.raises(ConfigError, match="backbone 'vit_tiny' \\(vit\\) takes no option 'stem'"):
        check_config(explicit.config)


@pytest.fixture
def no_data(monkeypatch):
    """Any dataset lookup fails the test: what is checked here must be checked before data."""
    import bench.runner

    def refuse(*a, **k):
        raise AssertionError("data was looked up before the cheap inputs were checked")
    monkeypatch.setattr(bench.runner, "load_benchmark_data", refuse)


@pytest.mark.parametrize("argv,needle", [
    (["run", "--method", "simclrr", "--benchmark", BID], "unknown method 'simclrr'"),
    (["run", "--method", "simclr", "--backbone", "vit_tiny", "--stem", "small"], "takes no option 'stem'"),
    (["run", "--method", "simclr", "--set", "method_kwargs.temprature=0.2"], "no hyper-parameter 'temprature'"),
    (["run", "--method", "simclr", "--backbone", "resnet19"], "unknown backbone 'resnet19'"),
    (["train", "--resume", "/no/such/run"], "cannot resume /no/such/run"),
    (["submit", "/no/such/plugin.py", "--benchmark", "imagenette-mini-v1"], "plugin file not found"),
    (["demo", "--methods", "simclrr"], "recipe 'simclrr' not found"),
])
def test_cheap_inputs_are_refused_before_any_data(argv, needle, no_data, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err, err


@pytest.mark.slow
def test_bench_run_of_a_plugin_uses_the_budget_and_prints_its_config(tmp_path, tiny_folder, capsys):
    data = f"imagefolder:{tiny_folder}"
    bench_id = adhoc_benchmark(data).id
    assert main(["run", "--method", PLUGIN, "--data", data, "--epochs", "1", "--batch-size", "16", "--stem", "imagenet",
                 "--set", "method_kwargs.proj_hidden_dim=64", "--set", "method_kwargs.proj_dim=64",
                 "--results", str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs"),
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"config: method={PLUGIN} [options] backbone=resnet18(stem=imagenet) [{bench_id} budget]")
    assert f"img_size=32 [{bench_id} budget]" in first and "epochs=1 [options]" in first and "lr=0.3 [default]" in first
    (rec,) = load_records(tmp_path / "results")
    assert rec.method == "vicreg" and rec.status == "ok" and rec.epochs == 1
    assert rec.config["backbone"] == "resnet18" and rec.config["img_size"] == 32 and rec.recipe is None


@pytest.mark.slow
def test_bench_run_with_a_vit_over_a_resnet_recipe_drops_the_stem(tmp_path, tiny_folder, capsys):
    """The issue's command: `bench run --method random --backbone vit_tiny --data imagefolder:PATH`."""
    assert main(["run", "--method", "random", "--backbone", "vit_tiny", "--data", f"imagefolder:{tiny_folder}",
                 "--results", str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs"),
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("config: method=random [options] backbone=vit_tiny [options] ")
    assert out[1] == "note: dropped backbone_kwargs stem=small (resnet option) for vit_tiny"
    (rec,) = load_records(tmp_path / "results")
    assert rec.backbone == "vit_tiny" and rec.config["backbone_kwargs"] == {} and rec.status == "ok"
