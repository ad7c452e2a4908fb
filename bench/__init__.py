"""ssl-bench: benchmark harness for self-supervised visual representation learning.

The public Python API (imported lazily, so ``import bench`` stays cheap)::

    import bench
    encoder = bench.load_encoder("timm:resnet18", weights="ckpt.pth")   # any encoder, any checkpoint layout
    benchmark = bench.get_benchmark("imagenette-mini-v1")
    record = bench.evaluate(encoder, benchmark, name="my-resnet", results_dir="results")   # probes -> a record
    run = bench.evaluate_suite(encoder, "transfer-v1", datasets_root="~/data", results_dir="results")  # a record each
    record = bench.train("simclr", "imagenette-mini-v1", epochs=2, results_dir="results")  # train + probe

(the Lightning training code itself is the module ``bench.trainer``).
"""

from __future__ import annotations

__version__ = "0.1.0"

_API = {"load_encoder": "bench.external", "evaluate": "bench.scoring", "get_benchmark": "bench.benchmarks",
        "evaluate_suite": "bench.suite_runner", "get_suite": "bench.benchmarks.suites", "train": "bench.runner"}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
