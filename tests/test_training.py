"""Training: schedules, NaN handling with a failed record, collapse monitors, and real learning."""

from __future__ import annotations

import json
import math
import textwrap
import warnings

import pytest
import torch

from bench.benchmarks import get_benchmark
from bench.config import make_config
from bench.errors import TrainingError
from bench.monitors import collapse_metrics, is_collapsed
from bench.records import load_records
from bench.runner import load_benchmark_data, train_run
from bench.schedules import cosine_schedule
from bench.trainer import fit, warmup_cosine

NAN_PLUGIN = '''
import torch
from bench.augment import ViewSpec
from methods.base import Method

class Exploding(Method):
    """Trains normally for 2 steps, then the loss is NaN."""
    name = "exploding"
    views = [ViewSpec()]
    calls = 0
    def training_loss(self, views):
        Exploding.calls += 1
        scale = 1.0 if Exploding.calls <= 2 else float("nan")
        return self.backbone(views[0]).pow(2).mean() * scale
'''

ZERO_EMBEDDING_PLUGIN = '''
import torch
from bench.augment import ViewSpec
from methods.base import Method

class Constant(Method):
    name = "constant"
    views = [ViewSpec()]
    def training_loss(self, views):
        h = self.backbone(views[0])
        return {"loss": h.pow(2).mean(), "embedding": torch.ones_like(h).detach()}
'''


@pytest.fixture(scope="module")
def mini():
    bench = get_benchmark("imagenette-mini-v1")
    return bench, load_benchmark_data(bench)


def _small(data, n=256):
    """The first n training images (enough for a couple of steps)."""
    from bench.data import ImageData
    from bench.runner import BenchData
    t = data.train
    sub = ImageData(t.images[:n], t.labels[:n], t.classes, t.fingerprint, t.spec, t.split)
    return BenchData(train=sub, eval=data.eval)


def test_warmup_cosine_shape():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10, min_ratio=0.1) == pytest.approx(0.1)
    values = [warmup_cosine(s, 100, 10) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone decay after warm-up


def test_cosine_schedule_runs_from_start_to_end():
    assert cosine_schedule(0.04, 0.4, 0, 10) == pytest.approx(0.04)
    assert cosine_schedule(0.04, 0.4, 5, 10) == pytest.approx(0.22)
    assert cosine_schedule(0.04, 0.4, 10, 10) == pytest.approx(0.4) == cosine_schedule(0.04, 0.4, 12, 10)


@pytest.mark.slow
def test_weight_decay_end_schedules_the_decayed_group_only(tmp_path):
    """weight_decay_end: every step's decayed group (weights) gets the cosine wd of that step (DINO 0.04 -> 0.4);
    biases and norm weights keep 0; the key is left out of the config dump at its default (old hashes hold)."""
    from lightning.pytorch.callbacks import Callback

    from methods.simclr import SimCLR
    from bench.backbones import create_backbone

    seen = []

    class Record(Callback):
        def on_before_optimizer_step(self, trainer, module, optimizer):
            seen.append([g["weight_decay"] for g in optimizer.param_groups])

    g = torch.Generator().manual_seed(0)
    images, labels = torch.randint(0, 255, (32, 3, 16, 16), dtype=torch.uint8, generator=g), torch.arange(32) % 2
    cfg = make_config(None, method="simclr", backbone="resnet18", img_size=16, epochs=2, batch_size=8,
                      optimizer="adamw", lr=1e-3, weight_decay=0.04, weight_decay_end=0.4, online_probe=False,
                      precision="32-true")
    fit(SimCLR(create_backbone("resnet18", 16)), images, labels, cfg, tmp_path, progress=False, callbacks=[Record()])
    assert len(seen) == 8
    assert [s[0] for s in seen] == pytest.approx([cosine_schedule(0.04, 0.4, i, 8) for i in range(8)])
    assert all(s[1] == 0.0 for s in seen)
    assert "weight_decay_end" not in make_config(None, method="simclr").model_dump()
    assert make_config(None, method="simclr", weight_decay_end=0.4).model_dump()["weight_decay_end"] == 0.4


@pytest.mark.slow
def test_the_trainer_calls_on_after_backward_before_clipping_and_the_step(tmp_path):
    """Method.on_after_backward runs after every backward and before the optimiser step: a gradient it drops
    (DINO's frozen prototype layer) never reaches the step, so that parameter does not move (nor decay)."""
    from lightning.pytorch.callbacks import Callback

    from methods.simclr import SimCLR
    from bench.backbones import create_backbone

    class Frozen(SimCLR):
        def on_after_backward(self):
            self.projector[0].weight.grad = None

    seen = []

    class Record(Callback):
        def on_before_optimizer_step(self, trainer, module, optimizer):
            seen.append(module.method.projector[0].weight.grad is None)

    g = torch.Generator().manual_seed(0)
    images, labels = torch.randint(0, 255, (32, 3, 16, 16), dtype=torch.uint8, generator=g), torch.arange(32) % 2
    cfg = make_config(None, method="simclr", backbone="resnet18", img_size=16, epochs=1, batch_size=8,
                      optimizer="adamw", lr=1e-3, weight_decay=0.04, grad_clip=1.0, online_probe=False,
                      precision="32-true")
    method = Frozen(create_backbone("resnet18", 16))
    before = method.projector[0].weight.detach().clone(), method.projector[-1].weight.detach().clone()
    fit(method, images, labels, cfg, tmp_path, progress=False, callbacks=[Record()])
    assert seen == [True] * 4
    assert torch.equal(method.projector[0].weight, before[0]) and not torch.equal(method.projector[-1].weight, before[1])


def test_collapse_monitors():
    g = torch.Generator().manual_seed(0)
    healthy = collapse_metrics(torch.randn(512, 64, generator=g))
    assert healthy["feature_std"] > 0.8 and healthy["effective_rank"] > 40 and not is_collapsed(healthy)
    same_point = collapse_metrics(torch.ones(512, 64) + 1e-4 * torch.randn(512, 64, generator=g))
    assert is_collapsed(same_point)
    on_a_line = collapse_metrics(torch.randn(512, 1, generator=g) * torch.randn(1, 64, generator=g))
    assert on_a_line["effective_rank"] < 1.5 and is_collapsed(on_a_line)


@pytest.mark.slow
def test_nan_loss_fails_cleanly_with_a_failed_record(tmp_path, mini):
    bench, data = mini
    plugin = tmp_path / "exploding.py"
    plugin.write_text(textwrap.dedent(NAN_PLUGIN))
    cfg = make_config(None, method=str(plugin), epochs=1, batch_size=64, backbone_kwargs={"stem": "imagenet"})
    with pytest.raises(TrainingError, match="loss is nan at step 2.*last good weights are in") as err:
        train_run(cfg, bench, runs_dir=tmp_path / "runs", data=_small(data), results_dir=tmp_path / "results",
                  progress=False)
    (record,) = load_records(tmp_path / "results", bench.id)
    assert record.status == "failed" and "nan" in record.error and record.method == "exploding"
    (ckpt,) = (tmp_path / "runs").glob("*/*/checkpoints/last.ckpt")
    assert str(ckpt) in str(err.value)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)  # the last good step, finite weights
    assert state["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())


@pytest.mark.slow
def test_collapse_is_flagged_and_can_stop_the_run(tmp_path, mini):
    bench, data = mini
    plugin = tmp_path / "constant.py"
    plugin.write_text(textwrap.dedent(ZERO_EMBEDDING_PLUGIN))
    cfg = make_config(None, method=str(plugin), epochs=3, batch_size=128, stop_on_collapse=True,
                      backbone_kwargs={"stem": "imagenet"})
    with pytest.warns(UserWarning, match="representation collapsed at epoch 0"):
        run_dir = train_run(cfg, bench, runs_dir=tmp_path / "runs", data=_small(data), progress=False)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["train"]["collapsed"] is True
    assert info["train"]["epochs"] < 3  # stopped early


@pytest.mark.slow
@pytest.mark.parametrize("method,collapses", [("naive-siamese", True), ("simclr", False)])
def test_naive_siamese_is_flagged_as_collapsed_and_simclr_is_not(tmp_path, mini, method, collapses):
    """Two short epochs with the same optimiser settings: only the objective differs."""
    bench, data = mini
    cfg = make_config("naive_siamese", method=method, method_kwargs={}, epochs=2, batch_size=128,
                      backbone_kwargs={"stem": "imagenet"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_dir = train_run(cfg, bench, runs_dir=tmp_path / "runs", data=data, progress=False)
    info = json.loads((run_dir / "run.json").read_text())
    flagged = [str(w.message) for w in caught if "representation collapsed" in str(w.message)]
    assert info["train"]["collapsed"] is collapses and bool(flagged) is collapses, info["train"]["monitor_history"]
    last = info["train"]["monitor_history"][-1]
    if collapses:
        assert last["feature_std"] < 0.05
    else:
        assert last["feature_std"] > 0.3 and last["effective_rank"] > 20


@pytest.mark.slow
def test_trained_simclr_beats_random_init_on_knn(tmp_path, mini):
    """A method that 'trains' must learn: SimCLR after a short run beats its own random init on k-NN."""
    from bench.runner import load_encoder
    from probes.features import extract_features
    from probes.knn import knn_classify

    bench, data = mini
    cfg = make_config("simclr", epochs=8, backbone_kwargs={"stem": "imagenet"}, warmup_epochs=1)

    def knn_top1(encoder):
        kw = dict(img_size=bench.img_size, crop_pct=bench.crop_pct)
        tr, va = extract_features(encoder, data.train.images, **kw), extract_features(encoder, data.eval.images, **kw)
        scores = knn_classify(tr, data.train.labels, va, k=20, temperature=0.07, num_classes=10)
        return (scores.argmax(1) == data.eval.labels).float().mean().item() * 100

    random_run = train_run(make_config("simclr", epochs=0, backbone_kwargs={"stem": "imagenet"}), bench,
                           runs_dir=tmp_path / "runs", data=data, progress=False)
    trained_run = train_run(cfg, bench, runs_dir=tmp_path / "runs", data=data, progress=False)
    random_acc = knn_top1(load_encoder(random_run)[0])
    trained_acc = knn_top1(load_encoder(trained_run)[0])
    assert trained_acc > random_acc + 3, (trained_acc, random_acc)
    assert not math.isnan(trained_acc)


def test_bf16_on_a_cpu_without_native_bf16_warns_that_fp32_is_faster(monkeypatch):
    import bench.trainer as train
    from bench.backbones import create_backbone
    from methods import get_method
    method = get_method("simclr")(create_backbone("resnet18", 32, stem="small"))
    monkeypatch.setattr(train.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(train, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match=r"without native bfloat16.*precision=32-true"):
        train._check_execution(make_config("simclr", precision="bf16-mixed"), method)
    monkeypatch.setattr(train, "cpu_has_native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train._check_execution(make_config("simclr", precision="bf16-mixed"), method)
        monkeypatch.setattr(train, "cpu_has_native_bf16", lambda: False)
        train._check_execution(make_config("simclr", precision="32-true"), method)
