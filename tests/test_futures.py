"""futures-v1: the ambiguous clips, the metrics on hand-built cases, a tiny `bench futures` run, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from bench.cli import main
from bench.data.moving_shapes import BRANCHES, turning_shapes
from bench.futures import metrics as M
from bench.futures.experiment import FuturesRecord, other_clips
from bench.futures.report import futures_markdown
from bench.futures.spec import FUTURES_V1, futures_spec
from bench.errors import ConfigError

TINY = ["--set", "n_train=12", "--set", "n_test=6", "--set", "other_clips=2", "--set", "steps=3",
        "--set", "hidden=16"]


def _centre(frames: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """(T, 3, S, S) uint8 -> (T, 2) centroid of the pixels brighter than the moving shape's threshold."""
    mask = (frames.float().mean(1) - background) > 90  # the shape (>= 0.45 * 255) vs background / distractor
    ys, xs = torch.meshgrid(torch.arange(frames.shape[-1]), torch.arange(frames.shape[-1]), indexing="ij")
    w = mask.float().flatten(1)
    return torch.stack([(w * xs.flatten()).sum(1) / w.sum(1), (w * ys.flatten()).sum(1) / w.sum(1)], 1)


def test_turning_clips_share_the_past_and_diverge_after_it():
    d = turning_shapes(24, past=4, future=4, size=32, seed=3)
    assert d["past"].shape == (24, 4, 3, 32, 32) and d["futures"].shape == (24, len(BRANCHES), 4, 3, 32, 32)
    assert torch.equal(turning_shapes(24, 4, 4, 32, 3)["futures"], d["futures"])  # deterministic by seed
    assert not torch.equal(turning_shapes(24, 4, 4, 32, 4)["futures"], d["futures"])
    assert set(d["turn"].tolist()) == {0, 1}
    for i in range(24):
        bg = d["past"][i, 0].float().mean(0).min()
        past = _centre(d["past"][i], bg)
        step = (past[-1] - past[0]) / 3  # the motion per frame before the turn
        ends = [_centre(d["futures"][i, b], bg)[-1] - past[-1] for b in range(4)]  # 4 frames after the turn point
        for turn in ends[:2]:  # the turns are 90 degrees off the motion (centroids of rasterised shapes: ~0.5 px)
            assert torch.nn.functional.cosine_similarity(turn, step, dim=0).abs() < 0.2
        assert torch.allclose(ends[0], -ends[1], atol=1.0)  # left and right are opposite
        assert torch.allclose(ends[2], 4 * step, atol=1.5) and torch.allclose(ends[3], -4 * step, atol=1.5)
        assert torch.allclose(ends[0].norm(), 4 * step.norm(), atol=1.5)  # at the same speed
        diff = (d["futures"][i, 0].float() - d["futures"][i, 1].float()).abs().flatten(1).amax(1)
        assert (diff > 0).all()  # the two futures differ in every future frame


def test_gradient_energy_and_sharpness_by_hand():
    flat = torch.full((2, 3, 8, 8), 0.4)
    assert M.gradient_energy(flat).tolist() == [0.0, 0.0]
    assert M.sharpness(flat, torch.rand(2, 3, 8, 8)) == 0.0
    step = torch.zeros(1, 1, 4, 4)
    step[..., 2:] = 1.0  # one vertical edge: 4 of 12 x-differences are 1, no y-differences
    assert M.gradient_energy(step).item() == pytest.approx(4 / 12)
    blurred = torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]).expand(1, 1, 4, 4)  # the same edge as a ramp
    assert M.sharpness(blurred, step) == pytest.approx((12 * (1 / 3) ** 2 / 12) / (4 / 12))  # = 1/3


def test_blur_distances_of_the_mean_and_of_a_future():
    a, b = torch.zeros(3, 2, 3, 4, 4), torch.ones(3, 2, 3, 4, 4)
    at_mean = M.blur_distances((a + b) / 2, a, b)
    assert at_mean["to_mean"] == 0.0 and at_mean["to_nearer"] == pytest.approx(0.25)
    assert at_mean["mean_to_future"] == pytest.approx(0.25)  # MSE(a, b) / 4
    committed = M.blur_distances(b.clone(), a, b)
    assert committed["to_nearer"] == 0.0 and committed["to_mean"] == pytest.approx(0.25)


def test_retrieval_picks_the_exact_candidate_and_counts_kinds():
    cands = torch.randn(5, 6, 16)
    truth = torch.tensor([0, 1, 2, 3, 5])
    pred = cands[torch.arange(5), truth] * 3.0  # cosine ignores the scale
    assert M.retrieve_cosine(pred, cands).tolist() == truth.tolist()
    assert M.retrieve_mse(cands[torch.arange(5), truth], cands).tolist() == truth.tolist()
    kinds = BRANCHES + ("other_clip",) * 2
    rates = M.retrieval_rates(truth, kinds, happened=torch.tensor([0, 0, 0, 0, 0]))
    assert rates["plausible"] == pytest.approx(40.0) and rates["happened"] == pytest.approx(20.0)
    assert rates["straight"] == rates["reverse"] == rates["other_clip"] == pytest.approx(20.0)
    assert rates["chance_plausible"] == pytest.approx(100 * 2 / 6) and rates["chance_happened"] == pytest.approx(100 / 6)
    assert (other_clips(4, 3) != torch.arange(4)[:, None]).all()  # never a clip's own future


def test_spec_overrides_make_a_custom_id_and_bad_keys_fail():
    assert futures_spec({}) is FUTURES_V1 and futures_spec({"steps": FUTURES_V1.steps}) is FUTURES_V1
    custom = futures_spec({"steps": 7})
    assert custom.id.startswith("custom-futures-") and custom.spec_hash() != FUTURES_V1.spec_hash()
    with pytest.raises(ConfigError, match="unknown key"):
        futures_spec({"stepz": 3})
    with pytest.raises(ConfigError, match="pixel_size"):
        futures_spec({"pixel_size": 5})


@pytest.mark.slow
def test_bench_futures_writes_a_record_a_leaderboard_and_a_strip(tmp_path, capsys):
    argv = ["futures", "--encoder", "random", "--results", str(tmp_path / "res"), "--leaderboards",
            str(tmp_path / "lb"), *TINY]
    assert main([*argv, "--seed", "0"]) == 0 and main([*argv, "--seed", "1"]) == 0
    files = sorted((tmp_path / "res").rglob("*.json"))
    assert len(files) == 2
    recs = [FuturesRecord(**json.loads(p.read_text())) for p in files]
    bench_id = files[0].parent.name
    assert bench_id.startswith("custom-futures-") and {r.seed for r in recs} == {0, 1}
    for r in recs:
        assert r.spec["n_test"] == 6 and r.benchmark["spec_hash"] == futures_spec({"n_train": 12, "n_test": 6,
                                                                                   "other_clips": 2, "steps": 3,
                                                                                   "hidden": 16}).spec_hash()
        assert 0 <= r.metrics["jepa_retrieval_plausible"] <= 100 and r.metrics["chance_plausible"] == pytest.approx(100 * 2 / 6, abs=1e-4)
        assert r.metrics["pixel_sharpness"] > 0 and r.training["pixel"]["loss"] == "mse"
    assert recs[0].data == recs[1].data  # same clips for every seed
    board = (tmp_path / "lb" / bench_id / "leaderboard.md").read_text()
    assert "| random-video-vit | 2 |" in board and " ± " in board
    strips = list((tmp_path / "lb" / bench_id).glob("strip-*.png"))
    assert len(strips) == 2 and strips[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_leaderboard_refuses_mixed_specs():
    def rec(h):
        return FuturesRecord(run_id=f"r{h}", benchmark={"name": "futures", "version": 1, "spec_hash": h}, spec={},
                             encoder="random-video-vit", encoder_key="k", seed=0, data={"train": "a", "test": "b"},
                             metrics={"pixel_sharpness": 0.5}, training={})
    assert "| random-video-vit | 1 | 0.500 |" in futures_markdown([rec("x")], "futures-v1")
    with pytest.raises(Exception, match="different specs"):
        futures_markdown([rec("x"), rec("y")], "futures-v1")


def _video_run_folder(root, weights_seed: int):
    """A finished `bench train` run folder of the vjepa recipe (run.json + encoder.pt, as train_run writes them)
    whose encoder holds the weights of ``--encoder random --seed weights_seed``."""
    from bench.config import make_config
    from bench.futures.experiment import RANDOM_VIDEO_VIT
    from bench.world_model.encoders import random_backbone

    run_dir = root / "20261204T000000Z-vjepa-s0-abcdef"
    run_dir.mkdir(parents=True)
    torch.save(random_backbone(RANDOM_VIDEO_VIT, weights_seed).state_dict(), run_dir / "encoder.pt")
    (run_dir / "run.json").write_text(json.dumps({"run_id": run_dir.name, "status": "trained", "method": "vjepa",
                                                  "config": make_config("vjepa").model_dump(mode="json")}))
    return run_dir


def test_a_run_folder_encoder_is_its_saved_weights_and_is_labelled_by_its_run(tmp_path):
    from bench.futures.experiment import load_clip_encoder

    clips = turning_shapes(4, seed=0)["past"]
    random0, random1 = load_clip_encoder("random", seed=0), load_clip_encoder("random", seed=1)
    run = load_clip_encoder(str(_video_run_folder(tmp_path, weights_seed=0)), seed=1)  # --seed does not reseed it
    assert run.label == "vjepa:20261204T000000Z-vjepa-s0-abcdef" and run.key == random0.key != random1.key
    z = run(clips)
    assert torch.equal(z, random0(clips)) and not torch.allclose(z, random1(clips))


# bad input (an unknown --encoder path, an image encoder's run, an unknown --set key): the CASES table of
# tests/test_bad_input.py
