"""Run configs: numbers are validated before any work - a NaN / infinite / negative lr or weight decay, or a seed
outside what the RNGs take, is one clear line (exit 2), never a NaN checkpoint or a traceback."""

from __future__ import annotations

import pytest

from bench.cli import main
from bench.config import make_config
from bench.errors import ConfigError


@pytest.mark.parametrize("override, match", [
    ({"lr": float("nan")}, "'lr': must be a finite number > 0 \\(got nan\\)"),
    ({"lr": float("inf")}, "'lr': must be a finite number > 0"),
    ({"lr": -0.1}, "'lr': must be a finite number > 0"),
    ({"weight_decay": float("nan")}, "'weight_decay': must be a finite number >= 0"),
    ({"weight_decay_end": -1.0}, "'weight_decay_end': must be a finite number >= 0"),
    ({"grad_clip": 0.0}, "'grad_clip': must be a finite number > 0"),
    ({"seed": -5}, "'seed': must be in 0 .. 2\\*\\*32 - 1"),
    ({"seed": 2**40}, "'seed': must be in 0 .. 2\\*\\*32 - 1"),
])
def test_bad_numbers_are_refused(override, match):
    with pytest.raises(ConfigError, match=match):
        make_config("simclr", **override)


@pytest.mark.parametrize("argv", [["--lr", "nan"], ["--lr", "-1"], ["--set", "weight_decay=.inf"], ["--seed", "-5"]])
def test_bad_numbers_on_the_command_line_are_one_line_before_any_data(tmp_path, capsys, argv):
    rc = main(["run", "--method", "simclr", "--data", f"imagefolder:{tmp_path / 'absent'}", "--results",
               str(tmp_path / "r"), "--runs-dir", str(tmp_path / "runs"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: bad config value") and err.count("\n") == 1
    assert not (tmp_path / "runs").exists() and not (tmp_path / "r").exists()
