"""Bad input -> one clear line on stderr, exit code 2, no traceback, nothing written.

Each case builds its own broken input under tmp_path and runs the `bench` CLI in-process.
`python tests/test_bad_input.py` prints the table of inputs and messages (the reliability report).
"""

from __future__ import annotations

import errno
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench.cli import main

PLUGIN_HEAD = '''
import torch
from bench.augment import ViewSpec
from methods.base import Method
'''


def _folder(root: Path, n: int = 4, size: int = 32, classes=("a", "b"), val_classes=None) -> Path:
    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for c in (val_classes if split == "val" and val_classes is not None else classes):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = torch.randint(0, 255, (size, size, 3), generator=g, dtype=torch.uint8).numpy()
                Image.fromarray(arr).save(root / split / c / f"{i}.png")
    return root


def _plugin(tmp: Path, body: str) -> str:
    path = tmp / "plugin.py"
    path.write_text(PLUGIN_HEAD + textwrap.dedent(body))
    return str(path)


def _data(tmp: Path) -> list[str]:
    return ["--data", f"imagefolder:{_folder(tmp / 'ok')}"]


def _run(tmp: Path, *extra: str) -> list[str]:
    return ["run", "--runs-dir", str(tmp / "runs"), "--results", str(tmp / "results"),
            "--cache-dir", str(tmp / "cache"), "--no-progress", *extra]


def corrupt_image(tmp):
    root = _folder(tmp / "ds")
    (root / "train" / "a" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return _run(tmp, "--method", "simclr", "--data", f"imagefolder:{root}")


def truncated_streamed_jpeg(tmp):
    """A JPEG whose header reads but whose pixels are cut short, on the streaming path (--cache-budget 0): packing
    takes it, the first training batch that decodes it stops the run with one line naming it."""
    root = _folder(tmp / "ds")
    for png in sorted((root / "train").rglob("*.png")):
        Image.open(png).save(png.with_suffix(".jpg"), quality=90)
        png.unlink()
    jpg = root / "train" / "a" / "1.jpg"
    data = jpg.read_bytes()
    jpg.write_bytes(data[:int(len(data) * 0.7)])
    return _run(tmp, "--method", "simclr", "--data", f"imagefolder:{root}", "--cache-budget", "0", "--epochs", "1",
                "--batch-size", "4", "--img-size", "16", "--stem", "imagenet", "--decode-workers", "1")


def empty_class(tmp):
    root = _folder(tmp / "ds")
    (root / "train" / "c_empty").mkdir()
    return _run(tmp, "--method", "simclr", "--data", f"imagefolder:{root}")


def no_val_split(tmp):
    root = _folder(tmp / "ds")
    for p in (root / "val").rglob("*.png"):
        p.unlink()
    for d in sorted((root / "val").iterdir()):
        d.rmdir()
    (root / "val").rmdir()
    return _run(tmp, "--method", "simclr", "--data", f"imagefolder:{root}")


def image_smaller_than_crop(tmp):
    root = _folder(tmp / "ds", size=8)
    return _run(tmp, "--method", "simclr", "--data", f"imagefolder:{root}")


def float_image_out_of_range(tmp):
    root = _folder(tmp / "ds")
    Image.new("F", (32, 32), 300.0).save(root / "train" / "b" / "odd.tif")  # no defined 8-bit scale
    return _run(tmp, "--method", "simclr", "--data", f"imagefolder:{root}")


def class_missing_from_val(tmp):
    root = _folder(tmp / "ds", classes=("a", "b", "c"), val_classes=("a", "c"))  # c's labels would shift onto b's
    return _run(tmp, "--method", "random", "--stem", "imagenet", "--data", f"imagefolder:{root}")


def class_only_in_val(tmp):
    root = _folder(tmp / "ds", classes=("a", "b"), val_classes=("a", "b", "d"))
    return _run(tmp, "--method", "random", "--stem", "imagenet", "--data", f"imagefolder:{root}")


def one_class_only(tmp):
    root = _folder(tmp / "ds", classes=("a",))
    return _run(tmp, "--method", "random", "--stem", "imagenet", "--data", f"imagefolder:{root}")


def bad_yaml_recipe(tmp):
    (tmp / "r.yaml").write_text("method: simclr\nlr: [0.1,\n")
    return _run(tmp, "--method", "simclr", "--recipe", str(tmp / "r.yaml"), *_data(tmp))


def recipe_unknown_key(tmp):
    (tmp / "r.yaml").write_text("method: simclr\nlearning_rate: 0.1\n")
    return _run(tmp, "--method", "simclr", "--recipe", str(tmp / "r.yaml"), *_data(tmp))


def recipe_not_a_mapping(tmp):
    (tmp / "r.yaml").write_text("- simclr\n- 0.1\n")
    return _run(tmp, "--method", "simclr", "--recipe", str(tmp / "r.yaml"), *_data(tmp))


def plugin_missing_file(tmp):
    return _run(tmp, "--method", str(tmp / "nope.py"), *_data(tmp))


def plugin_without_method(tmp):
    return _run(tmp, "--method", _plugin(tmp, "x = 1\n"), *_data(tmp))


def plugin_syntax_error(tmp):
    return _run(tmp, "--method", _plugin(tmp, "class Broken(Method:\n    pass\n"), *_data(tmp))


def plugin_bad_init(tmp):
    return _run(tmp, "--method", _plugin(tmp, '''
        class BadInit(Method):
            name = "bad-init"
            views = [ViewSpec()]
            def __init__(self):
                super().__init__(None)
            def training_loss(self, views):
                return views[0].mean()
    '''), *_data(tmp))


def plugin_non_scalar_loss(tmp):
    return _run(tmp, "--method", _plugin(tmp, '''
        class Vector(Method):
            name = "vector-loss"
            views = [ViewSpec()]
            def training_loss(self, views):
                return self.backbone(views[0]).mean(0)
    '''), "--epochs", "1", "--batch-size", "4", "--stem", "imagenet", *_data(tmp))


def plugin_nan_loss(tmp):
    return _run(tmp, "--method", _plugin(tmp, '''
        class Nan(Method):
            name = "nan-loss"
            views = [ViewSpec()]
            def training_loss(self, views):
                return self.backbone(views[0]).mean() * float("nan")
    '''), "--epochs", "1", "--batch-size", "4", "--stem", "imagenet", *_data(tmp))


def out_of_disk(tmp, monkeypatch):
    import bench.io

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(bench.io.os, "replace", full)
    return _run(tmp, "--method", "random", "--backbone", "resnet18", "--stem", "imagenet", *_data(tmp))


class _Evil:
    """Unpickling this would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def _interrupted_run(tmp: Path, ckpt_bytes: bytes | None = None, obj=None) -> list[str]:
    import json

    from bench.config import make_config
    run = tmp / "run"
    (run / "checkpoints").mkdir(parents=True)
    cfg = make_config("simclr", epochs=2, batch_size=4, backbone_kwargs={"stem": "imagenet"})
    (run / "run.json").write_text(json.dumps({"run_id": "r", "method": "simclr", "config": cfg.model_dump(mode="json"),
                                              "status": "running", "train": {}}))
    if obj is not None:
        torch.save(obj, run / "checkpoints" / "last.ckpt")
    else:
        (run / "checkpoints" / "last.ckpt").write_bytes(ckpt_bytes)
    return ["train", "--resume", str(run), "--cache-dir", str(tmp / "cache"), "--no-progress", *_data(tmp)]


def _trained_run(tmp: Path, encoder: bytes | None = None, obj=None, run_id: str = "r") -> list[str]:
    """A finished run folder (run.json says trained) whose encoder.pt holds ``encoder`` bytes or ``obj``."""
    import json

    from bench.config import make_config
    run = tmp / "run"
    run.mkdir(parents=True)
    cfg = make_config("random", backbone_kwargs={"stem": "imagenet"})
    (run / "run.json").write_text(json.dumps({"run_id": run_id, "method": "random", "status": "trained",
                                              "config": cfg.model_dump(mode="json"), "train": {}}))
    if obj is not None:
        torch.save(obj, run / "encoder.pt")
    else:
        (run / "encoder.pt").write_bytes(encoder)
    return ["probe", str(run), "--results", str(tmp / "results"), "--cache-dir", str(tmp / "cache"), *_data(tmp)]


def _futures_with_an_image_run(tmp: Path) -> list[str]:
    """``bench futures --encoder`` a finished run whose encoder is a resnet18 (futures-v1 embeds clips)."""
    from bench.config import make_config
    from bench.runner import build_method
    state = build_method(make_config("random", backbone_kwargs={"stem": "imagenet"})).encoder.state_dict()
    _trained_run(tmp, obj=state)
    return ["futures", "--encoder", str(tmp / "run"), "--results", str(tmp / "results")]


def _resume_with_run_id(tmp: Path, run_id: str) -> list[str]:
    import json
    argv = _interrupted_run(tmp, obj={"epoch": 0})
    info = json.loads((tmp / "run" / "run.json").read_text())
    (tmp / "run" / "run.json").write_text(json.dumps({**info, "run_id": run_id}))
    return argv


def checkpoint_changed_after_save(tmp):
    """A checkpoint saved with its sha256, then 4 KiB of it flipped (a disk or copy error): still loadable data."""
    from bench.io import atomic_torch_save
    argv = _interrupted_run(tmp, obj={"epoch": 0})
    path = tmp / "run" / "checkpoints" / "last.ckpt"
    atomic_torch_save({"epoch": 0, "w": torch.zeros(4096)}, path, checksum=True)
    data = bytearray(path.read_bytes())
    data[-6000:-1904] = bytes(b ^ 0xFF for b in data[-6000:-1904])  # inside the tensor's bytes
    path.write_bytes(bytes(data))
    return argv


def _leaderboard(tmp: Path, benchmark_id: str) -> list[str]:
    return ["leaderboard", benchmark_id, "--results", str(tmp / "results"), "--out", str(tmp / "lb")]


def _eval_weights(tmp: Path, weights=None, *extra: str, model: str = "timm:resnet18") -> list[str]:
    """``bench eval --model MODEL --weights tmp/w.pth``; ``weights``: bytes written as the file, an object
    torch.save'd, or None (no file)."""
    path = tmp / "w.pth"
    if isinstance(weights, bytes):
        path.write_bytes(weights)
    elif weights is not None:
        torch.save(weights, path)
    return ["eval", "--model", model, "--weights", str(path), "--benchmark", "imagenette-mini-v1", "--results",
            str(tmp / "results"), "--cache-dir", str(tmp / "cache"), *extra]


def _resnet18_state(drop: str | None = None, prefix: str = "") -> dict:
    import timm
    sd = timm.create_model("resnet18", pretrained=False, num_classes=0).state_dict()
    return {prefix + k: v for k, v in sd.items() if k != drop}


def _vit_state() -> dict:
    import timm
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, patch_size=8,
                             depth=1, embed_dim=48, num_heads=2).state_dict()


def _encoder_file(tmp: Path) -> str:
    path = tmp / "enc.py"
    path.write_text("import torch\n\ndef make():\n    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), "
                    "torch.nn.Flatten())\n")
    return f"{path}:make"


def _eval(tmp: Path, *extra: str) -> list[str]:
    return ["eval", "--model", _encoder_file(tmp), "--results", str(tmp / "results"), "--cache-dir",
            str(tmp / "cache"), *extra]


def no_datasets_root(tmp, monkeypatch):
    monkeypatch.delenv("BENCH_DATASETS_ROOT", raising=False)
    return _eval(tmp, "--benchmark", "cifar10-v1")


def incomplete_cifar(tmp):
    (tmp / "tv" / "cifar-10-batches-py").mkdir(parents=True)
    (tmp / "tv" / "cifar-10-batches-py" / "batches.meta").write_bytes(b"x")
    return _eval(tmp, "--benchmark", "cifar10-v1", "--datasets-root", str(tmp / "tv"))


CASES = {
    # name: (argv or builder(tmp[, monkeypatch]), text the one-line message must contain)
    "unknown method": (lambda t: _run(t, "--method", "simclrr"), "unknown method 'simclrr'"),
    "unknown benchmark": (lambda t: _run(t, "--method", "simclr", "--benchmark", "imagenette-v9"),
                          "unknown benchmark 'imagenette-v9'"),
    "unknown dataset": (lambda t: _run(t, "--method", "simclr", "--data", "imagenete-mini"), "imagenette-mini"),
    "unknown data scheme": (lambda t: _run(t, "--method", "simclr", "--data", "s3://bucket/x"), "s3://bucket/x"),
    "unknown config key": (lambda t: _run(t, "--method", "simclr", "--set", "epochz=3"),
                           "unknown config key 'epochz' (did you mean 'epochs'?)"),
    "invalid config value": (lambda t: _run(t, "--method", "simclr", "--set", "batch_size=-1"), "batch_size"),
    "--set without =": (lambda t: _run(t, "--method", "simclr", "--set", "epochs3"), "KEY=VALUE"),
    "unknown method kwarg": (lambda t: _run(t, "--method", "simclr", "--set", "method_kwargs.temprature=0.2",
                                            *_data(t)), "no hyper-parameter 'temprature' (did you mean 'temperature'?)"),
    "unknown backbone": (lambda t: _run(t, "--method", "simclr", "--backbone", "resnet19", *_data(t)), "resnet19"),
    "unknown recipe": (lambda t: _run(t, "--method", "simclr", "--recipe", "simclrr"), "recipe 'simclrr' not found"),
    "malformed recipe YAML": (bad_yaml_recipe, "r.yaml"),
    "recipe with unknown key": (recipe_unknown_key, "learning_rate"),
    "recipe not a mapping": (recipe_not_a_mapping, "r.yaml"),
    "missing data folder": (lambda t: _run(t, "--method", "simclr", "--data", "imagefolder:/no/such/dir"),
                            "does not exist"),
    "missing data root": (lambda t: _run(t, "--method", "simclr", "--benchmark", "imagenette64-v1",
                                         "--data-root", str(t / "nowhere")), "nowhere"),
    "no decode workers": (lambda t: _run(t, "--method", "simclr", "--decode-workers", "0"), "--decode-workers must be"),
    "negative cache budget": (lambda t: _run(t, "--method", "simclr", "--cache-budget", "-1"), "--cache-budget must be"),
    "truncated JPEG, streamed": (truncated_streamed_jpeg, "1.jpg: OSError: image file is truncated"),
    "cache verify of a missing folder": (lambda t: ["cache", "verify", "--cache-dir", str(t / "nocache")],
                                         "nocache does not exist"),
    "perf --cache-rows not a pair": (lambda t: ["perf", "--only", "data", "--cache-rows", "100",
                                                "--out", str(t / "p.json")], "--cache-rows expects two whole numbers"),
    "corrupt image": (corrupt_image, "1.png: not a readable image file"),
    "empty class folder": (empty_class, "c_empty"),
    "missing val split": (no_val_split, "val"),
    "image smaller than the crop": (image_smaller_than_crop, "8x8 px, smaller than"),
    "float image outside [0, 1]": (float_image_out_of_range, "odd.tif: float pixels outside"),
    "plugin file missing": (plugin_missing_file, "nope.py"),
    "plugin without a Method": (plugin_without_method, "plugin.py"),
    "plugin syntax error": (plugin_syntax_error, "plugin.py"),
    "plugin with a wrong __init__": (plugin_bad_init, "__init__"),
    "plugin non-scalar loss": (plugin_non_scalar_loss, "scalar"),
    "plugin NaN loss": (plugin_nan_loss, "loss is nan"),
    "out of disk": (out_of_disk, "No space left on device; free some space"),
    "resume from a truncated checkpoint": (lambda t: _interrupted_run(t, b"PK\x03\x04 cut short"),
                                           "not a readable data-only checkpoint"),
    "resume from a checkpoint with pickled code": (lambda t: _interrupted_run(t, obj={"x": _Evil(t / "pwned")}),
                                                   "not a readable data-only checkpoint"),
    "probe a missing run": (lambda t: ["probe", str(t / "no-run")], "no-run"),
    "resume a missing run": (lambda t: ["train", "--resume", str(t / "no-run")], "no-run"),
    "leaderboard without records": (lambda t: ["leaderboard", "imagenette-mini-v1", "--results", str(t / "none")],
                                    "no records"),
    # class lists: the eval split carries exactly the train split's classes
    "class missing from val": (class_missing_from_val, "the val split's classes differ from the train split's "
                                                       "(missing from val: b)"),
    "class only in val": (class_only_in_val, "(only in val: d)"),
    "dataset with one class": (one_class_only, "has 1 class (a) in its train split: probes need at least 2"),
    # odd command-line values
    "--set malformed YAML value": (lambda t: _run(t, "--method", "simclr", "--set", "epochs=[1,"),
                                   "--set 'epochs=[1,': the value '[1,' is not valid YAML"),
    "negative --seed": (lambda t: _run(t, "--method", "simclr", "--seed", "-5"), "'seed': must be in 0 .. 2**32 - 1"),
    "huge --seed": (lambda t: _run(t, "--method", "simclr", "--seed", str(2**40)), "'seed': must be in 0 .. 2**32 - 1"),
    "--set dotted key over a scalar hyper-parameter": (
        lambda t: _run(t, "--method", "simclr", "--set", "method_kwargs.temperature.x=1"),
        "hyper-parameter 'temperature' is a single value (default 0.2), got dict {'x': 1}"),
    "--set dotted key over a value set before": (
        lambda t: _run(t, "--method", "simclr", "--set", "method_kwargs.temperature=0.5", "--set",
                       "method_kwargs.temperature.x=1"),
        "method_kwargs.temperature is a single value (0.5), not a mapping of keys"),
    # run folders and checkpoints
    "probe an encoder.pt with pickled code": (lambda t: _trained_run(t, obj={"x": _Evil(t / "pwned")}),
                                              "holds pickled objects other than tensors and plain data"),
    "probe an empty encoder.pt": (lambda t: _trained_run(t, b""), "encoder.pt is not a readable data-only checkpoint "
                                                                  "(the file is empty)"),
    "probe a run.json with a traversal run_id": (lambda t: _trained_run(t, obj={}, run_id="../../x"),
                                                 "has run_id '../../x', not a plain file name"),
    "resume a run.json with a traversal run_id": (lambda t: _resume_with_run_id(t, "../x"),
                                                  "has run_id '../x', not a plain file name"),
    "resume from a checkpoint changed after its save": (checkpoint_changed_after_save,
                                                        "is not the one saved beside it in last.ckpt.sha256"),
    # leaderboard ids name folders: never a path
    "leaderboard of a ../ benchmark id": (lambda t: _leaderboard(t, "../results/imagenette-mini-v1"),
                                          "benchmark id '../results/imagenette-mini-v1' is not a plain name"),
    "leaderboard of an absolute benchmark id": (lambda t: _leaderboard(t, str(t / "results" / "imagenette-mini-v1")),
                                                "is not a plain name"),
    "eval: weights file missing": (lambda t: _eval_weights(t), "w.pth does not exist"),
    "eval: weights not a checkpoint": (lambda t: _eval_weights(t, b"not a checkpoint"),
                                       "w.pth is not a readable data-only checkpoint (not a PyTorch checkpoint"),
    "eval: weights with pickled code": (lambda t: _eval_weights(t, {"state_dict": {"x": _Evil(t / "pwned")}}),
                                        "holds pickled objects other than tensors and plain data"),
    "eval: weights of another architecture": (lambda t: _eval_weights(t, _vit_state()),
                                              "no key of the checkpoint matches the model"),
    "eval: wrong --weights-prefix": (lambda t: _eval_weights(t, _resnet18_state(prefix="backbone."),
                                                             "--weights-prefix", "module."),
                                     "no key of the checkpoint starts with --weights-prefix"),
    "eval: weights missing an encoder key": (lambda t: _eval_weights(t, _resnet18_state(drop="layer4.1.bn2.bias")),
                                             "1 encoder key(s) missing from"),
    "eval: unknown model": (lambda t: _eval_weights(t, model="timm:resnet19"), "timm has no model 'resnet19'"),
    "eval: --readout last4 on a CNN": (lambda t: _eval_weights(t, _resnet18_state(), "--readout", "last4"),
                                       "--readout last4 needs a ViT"),
    "eval: a run folder with --weights": (lambda t: ["eval", str(t), "--weights", "w.pth"], "go with --model"),
    "transfer dataset not under the datasets root": (lambda t: _eval(t, "--benchmark", "dtd-v1", "--datasets-root",
                                                                     str(t)), "dtd/dtd/images"),
    "incomplete CIFAR-10 folder": (incomplete_cifar, "cifar-10-batches-py/data_batch_1 and 5 more"),
    "no datasets root": (no_datasets_root, "no datasets root is set; pass --datasets-root"),
    "unknown torchvision dataset": (lambda t: _eval(t, "--data", "tv:cifar11"), "did you mean 'cifar10'?"),
    "suite with datasets missing": (lambda t: _eval(t, "--suite", "transfer-small-v1", "--datasets-root", str(t)),
                                    "suite transfer-small-v1 lacks 6 of its 6 datasets (flowers102-v1"),
    "unknown suite": (lambda t: _eval(t, "--suite", "transfr-v1"), "unknown suite 'transfr-v1'"),
    "perf: unknown probe benchmark": (lambda t: ["perf", "--only", "probe", "--probe-benchmark", "imagenette-mini-v9",
                                                 "--out", str(t / "perf.json")], "unknown benchmark 'imagenette-mini-v9'"),
    "--allow-missing without --suite": (lambda t: _eval(t, "--benchmark", "dtd-v1", "--allow-missing"),
                                        "--allow-missing goes with --suite"),
    "futures with an unknown encoder path": (lambda t: ["futures", "--encoder", str(t / "no-run"), "--results",
                                                        str(t / "results")], "neither 'random' nor a run folder"),
    "futures with an image encoder's run": (_futures_with_an_image_run, "not a video backbone (video_vit_*)"),
    "futures with an unknown setting": (lambda t: ["futures", "--encoder", "random", "--set", "stepz=3", "--results",
                                                   str(t / "results")], "--set stepz: unknown key"),
    "suite leaderboard without records": (lambda t: ["leaderboard", "transfer-v1", "--results", str(t / "none")],
                                          "no records of any transfer-v1 benchmark"),
}


def _argv(name, tmp, monkeypatch):
    build, _ = CASES[name]
    return build(tmp, monkeypatch) if build.__code__.co_argcount == 2 else build(tmp)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_clear_line_and_writes_no_record(name, tmp_path, monkeypatch, capsys):
    argv = _argv(name, tmp_path, monkeypatch)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert CASES[name][1] in err, err
    assert not (tmp_path / "pwned").exists()  # nothing from a checkpoint was executed
    ok_records = [p for p in (tmp_path / "results").rglob("*.json") if '"status": "ok"' in p.read_text()]
    assert not ok_records  # a failure may leave a 'failed' record, never a leaderboard row


if __name__ == "__main__":  # the reliability table: input -> message
    import contextlib
    import io
    import tempfile

    class _Patch:
        def __init__(self):
            self.undo = []

        def setattr(self, obj, attr, value):
            self.undo.append((obj, attr, getattr(obj, attr)))
            setattr(obj, attr, value)

    print("| bad input | message |\n|---|---|")
    for case in CASES:
        patch, err = _Patch(), io.StringIO()
        with tempfile.TemporaryDirectory() as d, contextlib.redirect_stderr(err), \
                contextlib.redirect_stdout(io.StringIO()):  # the config lines a run prints before it fails
            code = main(_argv(case, Path(d), patch))
        for obj, attr, value in patch.undo:
            setattr(obj, attr, value)
        msg = err.getvalue().strip().splitlines()[-1].replace(d, "TMP") if err.getvalue().strip() else ""
        print(f"| {case} | `{msg}` (exit {code}) |")
