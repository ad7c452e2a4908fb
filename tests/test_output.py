"""Output when stdout is not a terminal (pytest's capture is not): whole ids, one line per epoch or probe,
nothing wrapped or truncated; warnings one `warning:` line. Plus the callback checkpoint layout."""

from __future__ import annotations

import re
import textwrap
import warnings

import pytest
import torch

from bench.cli import main
from test_training import ZERO_EMBEDDING_PLUGIN  # every image -> one embedding: collapsed from the start

EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+) loss -?\d+\.\d{3} online \d+\.\d rank \d+ std \d+\.\d{2} \d+s")
PROBE_LINE = re.compile(r"probe (knn|linear|attentive) top1 \d+\.\d \(\S+=\S+( \S+=\S+)*\) \d+s")


def test_benchmarks_and_methods_print_whole_rows(capsys):
    from bench.benchmarks import available_benchmarks
    from methods import available_methods, method_description
    assert main(["benchmarks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["benchmark", "data", "eval", "px", "headline", "description"]
    for b in available_benchmarks():
        row = next(line for line in lines if line.startswith(b.id + " "))  # the whole id, not `imagenette-mi...`
        assert row.endswith(b.description) and "…" not in row
        assert (f"{b.id} (superseded by {b.superseded_by})" in row) is bool(b.superseded_by)
    from bench.benchmarks.suites import available_suites
    n = 1 + len(available_benchmarks())  # one line per benchmark, nothing wrapped; then the suites' table
    assert lines[n].startswith("suites (") and lines[n + 1].split()[:3] == ["suite", "benchmarks", "aggregates"]
    m = n + 2 + len(available_suites())
    assert [line.split()[0] for line in lines[n + 2:m]] == [s.id for s in available_suites()]
    from bench.futures.spec import FUTURES_V1
    from bench.world_model.plan_spec import PUSH_PLAN_V1
    assert lines[m].startswith("experiments ") and lines[m + 1].split()[:3] == ["benchmark", "command", "spec_hash"]
    assert [line.split()[:4] for line in lines[m + 2:]] == [
        [FUTURES_V1.id, "bench", "futures", FUTURES_V1.spec_hash()], [PUSH_PLAN_V1.id, "bench", "plan", PUSH_PLAN_V1.spec_hash()]]
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(available_methods())
    assert lines[0].split() == ["method", "views", "trainable", "defined", "in", "description"]
    assert all(re.match(rf"{re.escape(n)} +\d+ +(yes|no \(baseline\)) +{re.escape(c.__module__)}( +\S.*)?$", line)
               and line.endswith(method_description(c))  # the whole first sentence, never cut
               for line, (n, c) in zip(lines[1:], available_methods().items()))


def test_plain_table_aligns_columns_and_keeps_long_cells(capsys):
    from bench.console import print_table
    long = "x" * 300
    print_table(("id", "state", "note"), [("a-very-long-run-id-0123456789", "[green]ok[/]", long), ("b", 3, "")],
                title="runs")
    assert capsys.readouterr().out.splitlines() == [
        "runs",
        "id                             state  note",
        f"a-very-long-run-id-0123456789  ok     {long}",
        "b                              3",
    ]


def test_messages_keep_brackets_and_never_wrap(capsys):
    from bench.console import out
    line = "simclr seed 0 [collapsed]  knn_top1=12.0  -> " + "r" * 200
    out(line)
    assert capsys.readouterr().out == line + "\n"


def test_python_warnings_print_as_one_warning_line(capsys):
    from bench.console import one_line_warnings, warn
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        one_line_warnings()
        warnings.warn("representation collapsed\n  at epoch 0", stacklevel=1)
    warn("two\nlines")
    assert capsys.readouterr().err == "warning: representation collapsed at epoch 0\nwarning: two lines\n"


def test_old_checkpoints_get_the_callbacks_states():
    from bench.callbacks import CollapseMonitor, OnlineProbe, upgrade_checkpoint
    w, b = torch.randn(3, 8), torch.randn(3)
    history = [{"feature_std": 0.5, "effective_rank": 7.0, "epoch": 0}]
    old = {"state_dict": {"method.backbone.x": torch.ones(1), "online_probe.weight": w, "online_probe.bias": b},
           "ssl_bench": {"images_seen": 10, "monitor_history": history, "train_time_s": 1.0}}
    upgrade_checkpoint(old)
    assert list(old["state_dict"]) == ["method.backbone.x"]
    assert old["ssl_bench"] == {"images_seen": 10, "train_time_s": 1.0}
    probe = OnlineProbe(8, 3)
    probe.load_state_dict(old["callbacks"]["OnlineProbe"])
    assert torch.equal(probe.probe.weight, w) and torch.equal(probe.probe.bias, b)
    monitor = CollapseMonitor()
    monitor.load_state_dict(old["callbacks"]["CollapseMonitor"])
    assert monitor.history == history
    new = {"state_dict": {"method.backbone.x": torch.ones(1)}, "ssl_bench": {"images_seen": 1},
           "callbacks": {"CollapseMonitor": {"history": []}}}
    upgrade_checkpoint(new)
    assert new == {"state_dict": {"method.backbone.x": torch.ones(1)}, "ssl_bench": {"images_seen": 1},
                   "callbacks": {"CollapseMonitor": {"history": []}}}


def _epoch_lines(out: str) -> list[re.Match]:
    return [m for m in map(EPOCH_LINE.fullmatch, out.splitlines()) if m]


@pytest.mark.slow
def test_run_prints_one_line_per_epoch_and_per_probe(tmp_path, cli_args, capsys):
    """`bench run --no-progress`: no bar, still one line per epoch; a line per probe; the record's line whole."""
    from bench.records import load_records
    argv = ["run", "--method", "simclr", "--epochs", "2", "--results", str(tmp_path / "results"), *cli_args(tmp_path)]
    assert "--no-progress" in argv
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert [(m[1], m[2]) for m in _epoch_lines(out)] == [("1", "2"), ("2", "2")]
    lines = out.splitlines()
    assert {m[1] for m in map(PROBE_LINE.fullmatch, lines) if m} == {"knn", "linear", "attentive"}
    assert any(re.fullmatch(r"features: train 72 \+ val 18 images at 32 px \.\.\.", line) for line in lines)
    (rec,) = load_records(tmp_path / "results")
    assert lines[-1].startswith("simclr seed 0 [ok]") and lines[-1].endswith(f"-> {rec.run_id}")
    assert not any(line.startswith(("Epoch ", "┏", "│")) for line in lines)  # no progress bar, no rich table


@pytest.mark.slow
def test_train_without_a_terminal_prints_epoch_lines_and_a_one_line_hint(tmp_path, tiny_folder, capsys):
    """Without --no-progress but stdout not a terminal: the same epoch lines instead of a bar; the suggested
    command stays on one line however long the run folder's path is."""
    deep = tmp_path / ("a-long-folder-name-" * 4)
    argv = ["train", "--method", "simclr", "--epochs", "1", "--batch-size", "16", "--stem", "imagenet",
            "--data", f"imagefolder:{tiny_folder}", "--cache-dir", str(tmp_path / "cache"), "--runs-dir", str(deep)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert [(m[1], m[2]) for m in _epoch_lines(out)] == [("1", "1")]
    (run_dir,) = deep.glob("*/*/")
    run = run_dir.as_posix().rstrip('/')  # the hint repeats the data options: pasted, it probes the same data
    hint = f"trained encoder saved in {run}  (evaluate: bench probe {run} --data imagefolder:{tiny_folder} " \
           f"--cache-dir {tmp_path / 'cache'})"
    assert len(hint) > 200 and hint in out.splitlines()
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert not any(k.startswith("online_probe.") for k in state["state_dict"])  # the probe is a callback now
    assert set(state["callbacks"]["OnlineProbe"]["probe"]) == {"weight", "bias"}
    assert len(state["callbacks"]["CollapseMonitor"]["history"]) == 1


@pytest.mark.slow
def test_collapse_warning_is_one_line(tmp_path, cli_args, capsys):
    plugin = tmp_path / "constant.py"
    plugin.write_text(textwrap.dedent(ZERO_EMBEDDING_PLUGIN))
    assert main(["train", "--method", str(plugin), "--epochs", "1", *cli_args(tmp_path)]) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert all(line.startswith("warning: ") for line in err), err
    (collapsed,) = [line for line in err if "collapsed" in line]
    assert collapsed.startswith("warning: representation collapsed at epoch 0: feature_std=0,")
    assert re.search(r"^epoch 1/1 loss \S+ online \S+ rank 1 std 0\.00 \d+s$", captured.out, re.M)
