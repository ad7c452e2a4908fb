"""DDP on CPU: two processes (gloo) against one process holding the global batch.

One spawn of 2 workers computes everything (process start-up dominates the cost); the tests compare what each
rank saved with the single-process result: the SimCLR and Barlow Twins losses and their input gradients, the
DINO centre, the epoch sampler's shards, distributed feature extraction, and a 2-process ``bench.trainer.fit``
(Lightning DDP with the processes started externally, as torchrun / srun do).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
from torch import nn

WORLD = 2
GLOBAL_BATCH = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _embeddings():
    g = torch.Generator().manual_seed(0)
    return torch.randn(GLOBAL_BATCH, 16, generator=g), torch.randn(GLOBAL_BATCH, 16, generator=g)


def _images(n: int, size: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def _flat_encoder(size: int = 8, dim: int = 5) -> nn.Module:
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, dim))
    enc.embed_dim = dim
    return enc


class TinyConv(nn.Module):
    """conv-BN-ReLU-pool: any input size, BatchNorm (SyncBatchNorm under DDP)."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.embed_dim = dim
        self.net = nn.Sequential(nn.Conv2d(3, dim, 3, stride=2), nn.BatchNorm2d(dim), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.net(x)


def _dino(backbone):
    from methods.dino import DINO
    torch.manual_seed(0)
    return DINO(backbone, out_dim=16, hidden_dim=16, bottleneck_dim=8, local_crops=0)


def _dino_views():
    g = torch.Generator().manual_seed(2)
    return [torch.randn(GLOBAL_BATCH, 3, 8, 8, generator=g) for _ in range(2)]


def _fit(method, rank: int, out_dir, name: str, port: int):
    from bench.config import TrainConfig
    from bench.trainer import fit
    os.environ.update(MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), GROUP_RANK="0",
                      WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD))
    cfg = TrainConfig(method=method.name, img_size=8, batch_size=GLOBAL_BATCH, epochs=1, optimizer="sgd",
                      lr=0.1, devices=WORLD, strategy="ddp", seed=0, precision="32-true")
    images = _images(2 * GLOBAL_BATCH)
    labels = torch.arange(len(images)) % 3
    res = fit(method, images, labels, cfg, out_dir / f"{name}-rank{rank}", num_classes=3, progress=False)
    return {"encoder": {k: v.clone() for k, v in res.encoder.state_dict().items()}, "images_seen": res.images_seen,
            "views_seen": res.views_seen,
            "monitors": res.monitors, "group_left": torch.distributed.is_initialized(),
            "checkpoint": res.checkpoint}


def _worker(rank: int, ports: tuple[int, int, int], out_dir):
    import torch.distributed as dist

    from bench.trainer import EpochBatchSampler
    from methods.barlow_twins import barlow_twins_loss
    from methods.dino import DINO, update_center
    from methods.simclr import SimCLR, nt_xent_loss
    from probes.features import extract_features

    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{ports[0]}", rank=rank, world_size=WORLD)
    out: dict = {}
    z1, z2 = _embeddings()
    n = GLOBAL_BATCH // WORLD
    for name, loss_fn in (("nt_xent", lambda a, b: nt_xent_loss(a, b, 0.5)), ("barlow", barlow_twins_loss)):
        a, b = z1[rank * n:(rank + 1) * n].clone().requires_grad_(), z2[rank * n:(rank + 1) * n].clone().requires_grad_()
        loss = loss_fn(a, b)
        loss.backward()
        out[name] = (loss.detach(), a.grad, b.grad)
    dino = _dino(_flat_encoder())
    dino.training_loss([v[rank * n:(rank + 1) * n] for v in _dino_views()])
    out["dino_center"] = dino.center.clone()
    uneven = _embeddings()[0]  # rank 0 holds 3 rows, rank 1 the other 5 (masked patches differ per rank)
    row_means = uneven[:3] if rank == 0 else uneven[3:]
    out["center_uneven"] = torch.zeros(1, row_means.shape[1])
    update_center(out["center_uneven"], row_means, dino.center_momentum)
    out["sampler"] = list(EpochBatchSampler(40, GLOBAL_BATCH, seed=3))
    resumed = EpochBatchSampler(40, GLOBAL_BATCH, seed=3)
    resumed.resume_at(0, 2)
    out["sampler_resumed"] = list(resumed)
    images = _images(11)  # 11 images over 2 ranks: uneven shards
    out["features"] = extract_features(_flat_encoder(), images, img_size=8, batch_size=4, device="cpu")
    cache = out_dir / "cache"
    for i in range(2):  # the second call may hit the cache rank 0 wrote (or not, on the other rank): no hang
        out[f"features_cached{i}"] = extract_features(_flat_encoder(), images, img_size=8, batch_size=4,
                                                      device="cpu", cache_dir=cache, data_key="tiny")
    dist.destroy_process_group()
    # Lightning DDP in processes started externally (torchelastic-style environment variables)
    torch.manual_seed(0)
    out["fit_simclr"] = _fit(SimCLR(TinyConv(), proj_hidden_dim=16, proj_dim=8), rank, out_dir, "simclr", ports[1])
    torch.manual_seed(0)
    dino = DINO(TinyConv(), out_dim=16, hidden_dim=16, bottleneck_dim=8, local_crops=2)
    out["fit_dino"] = _fit(dino, rank, out_dir, "dino", ports[2])
    out["fit_dino"].update(center=dino.center.clone(),
                           teacher={k: v.clone() for k, v in dino.teacher.state_dict().items()})
    torch.save(out, out_dir / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    import torch.multiprocessing as mp
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=((_free_port(), _free_port(), _free_port()), out_dir), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nt_xent", "barlow"])
def test_gathered_loss_and_gradient_equal_the_single_process_ones(ranks, name):
    from methods.barlow_twins import barlow_twins_loss
    from methods.simclr import nt_xent_loss
    fn = {"nt_xent": lambda a, b: nt_xent_loss(a, b, 0.5), "barlow": barlow_twins_loss}[name]
    z1, z2 = (z.clone().requires_grad_() for z in _embeddings())
    loss = fn(z1, z2)
    loss.backward()
    # DDP averages the ranks' gradients: the mean of the rank losses is what is optimised (SimCLR: each rank's
    # own anchors against all 2N embeddings; Barlow Twins: every rank returns the global loss)
    assert torch.allclose(torch.stack([r[name][0] for r in ranks]).mean(), loss.detach(), atol=1e-5)
    if name == "barlow":
        assert all(torch.allclose(r[name][0], loss.detach(), atol=1e-5) for r in ranks)
    g1 = torch.cat([r[name][1] for r in ranks]) / WORLD
    g2 = torch.cat([r[name][2] for r in ranks]) / WORLD
    assert torch.allclose(g1, z1.grad, atol=1e-6) and torch.allclose(g2, z2.grad, atol=1e-6)


def test_single_process_nt_xent_is_unchanged():
    """The gathered form reduces to the original formula (fill_diagonal_ on the 2N x 2N matrix) alone."""
    from torch.nn import functional as F

    from methods.simclr import nt_xent_loss
    z1, z2 = _embeddings()
    u = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (u @ u.T / 0.2).fill_diagonal_(float("-inf"))
    n = len(z1)
    want = F.cross_entropy(logits, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
    assert torch.equal(nt_xent_loss(z1, z2, 0.2), want)


@pytest.mark.slow
def test_dino_centre_uses_the_global_batch_mean(ranks):
    dino = _dino(_flat_encoder())
    dino.training_loss(_dino_views())
    for r in ranks:
        assert torch.allclose(r["dino_center"], dino.center, atol=1e-6)


@pytest.mark.slow
def test_dino_centre_of_uneven_rows_is_the_global_row_mean(ranks):
    """Masked patches differ in number per rank: the patch centre still moves towards the mean over all rows."""
    rows = _embeddings()[0]
    want = (1 - _dino(_flat_encoder()).center_momentum) * rows.mean(0, keepdim=True)
    for r in ranks:
        assert torch.allclose(r["center_uneven"], want, atol=1e-6)


def test_sampler_shards_each_global_batch_across_ranks():
    """Explicit rank / world size; the spawned ranks (below) get theirs from torch.distributed."""
    from bench.trainer import EpochBatchSampler
    single = list(EpochBatchSampler(40, GLOBAL_BATCH, seed=3))
    shards = [list(EpochBatchSampler(40, GLOBAL_BATCH, seed=3, rank=r, world_size=WORLD)) for r in range(WORLD)]
    assert all(len(s) == len(single) for s in shards)
    for i, batch in enumerate(single):
        assert torch.equal(torch.cat([s[i] for s in shards]), batch)


@pytest.mark.slow
def test_sampler_under_ddp_is_disjoint_and_resumes(ranks):
    from bench.trainer import EpochBatchSampler
    single = list(EpochBatchSampler(40, GLOBAL_BATCH, seed=3))
    for key, expected in (("sampler", single), ("sampler_resumed", single[2:])):
        got = [r[key] for r in ranks]
        assert [len(g) for g in got] == [len(expected)] * WORLD
        for i, batch in enumerate(expected):
            assert torch.equal(torch.cat([g[i] for g in got]), batch)  # disjoint halves of the same global batch


@pytest.mark.slow
def test_distributed_features_have_every_sample_once_in_order(ranks):
    from probes.features import extract_features
    single = extract_features(_flat_encoder(), _images(11), img_size=8, batch_size=4, device="cpu")
    for r in ranks:
        for key in ("features", "features_cached0", "features_cached1"):
            assert r[key].shape == single.shape == (11, 5)
            assert torch.allclose(r[key], single, atol=1e-6), key


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fit_simclr", "fit_dino"])
def test_lightning_ddp_fit_keeps_ranks_in_sync(ranks, name):
    a, b = ranks[0][name], ranks[1][name]
    assert a["encoder"].keys() == b["encoder"].keys()
    # weights are identical; BatchNorm running statistics are each rank's own after its last step (DDP
    # broadcasts rank 0's buffers at the start of every forward; SyncBatchNorm needs GPUs)
    params = [k for k in a["encoder"] if "running_" not in k and "num_batches" not in k]
    assert params
    for k in params:
        assert torch.allclose(a["encoder"][k], b["encoder"][k], atol=1e-6), k
    views = 2 if name == "fit_simclr" else 4  # DINO: 2 global + 2 local crops
    assert a["images_seen"] == b["images_seen"] == 2 * GLOBAL_BATCH  # counts the global batch
    assert a["views_seen"] == b["views_seen"] == 2 * GLOBAL_BATCH * views
    assert a["monitors"] == b["monitors"] and a["monitors"]  # computed on gathered features: one decision
    assert not a["group_left"] and not b["group_left"]  # the process group fit made is gone after it
    assert a["checkpoint"] and not b["checkpoint"]  # rank 0 writes checkpoints
    if name == "fit_dino":
        assert torch.allclose(a["center"], b["center"], atol=1e-6)
        for k in (k for k in a["teacher"] if "running_" not in k and "num_batches" not in k):
            assert torch.allclose(a["teacher"][k], b["teacher"][k], atol=1e-6), k  # identical EMA updates


def _run_benchmark_rank(rank: int, port: int, folder: str, base: str, out_dir):
    """One process of a 2-process `bench run` as torchrun / srun start it: the library decides what this rank owns."""
    from bench.benchmarks import adhoc_benchmark
    from bench.config import make_config
    from bench.runner import run_benchmark
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      GROUP_RANK="0", WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD))
    cfg = make_config("simclr", epochs=1, batch_size=16, devices=WORLD, strategy="ddp", precision="32-true",
                      backbone_kwargs={"stem": "imagenet"}, method_kwargs={"proj_hidden_dim": 64, "proj_dim": 32})
    root = Path(base) / f"rank{rank}"  # each rank its own folders: what a rank > 0 writes would show up
    rec = run_benchmark(cfg, adhoc_benchmark(f"imagefolder:{folder}"), results_dir=root / "results",
                        runs_dir=root / "runs", cache_dir=Path(base) / "cache", progress=False, probes=("knn",))
    torch.save({"record": None if rec is None else rec.model_dump(mode="json")}, out_dir / f"run{rank}.pt")


@pytest.mark.slow
def test_run_benchmark_on_rank_above_zero_trains_but_owns_nothing(tmp_path, tiny_folder):
    """run_benchmark itself tells the ranks apart (no CLI involved): rank 0 writes the run folder and the record,
    rank 1 trains in lock-step in a temporary folder and returns None, leaving no file behind."""
    import torch.multiprocessing as mp

    from bench.benchmarks import adhoc_benchmark
    from bench.runner import load_benchmark_data
    load_benchmark_data(adhoc_benchmark(f"imagefolder:{tiny_folder}"), cache_dir=tmp_path / "cache")  # decoded once
    mp.spawn(_run_benchmark_rank, args=(_free_port(), str(tiny_folder), str(tmp_path), tmp_path), nprocs=WORLD,
             join=True)
    rank0, rank1 = (torch.load(tmp_path / f"run{r}.pt", weights_only=False)["record"] for r in range(WORLD))
    assert rank0["status"] == "ok" and rank0["epochs"] == 1 and "knn_top1" in rank0["scores"]
    assert rank0["images_seen"] == 16 * 4  # the global batch of 16, 72 images -> 4 steps (of 2 views each)
    assert len(list((tmp_path / "rank0" / "runs").glob("*/*/encoder.pt"))) == 1
    assert rank1 is None and not (tmp_path / "rank1").exists()
