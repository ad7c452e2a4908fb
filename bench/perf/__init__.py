"""``bench perf``: one run measures the harness's speed against the issue's targets and writes a JSON report.

    harness training step   >= 0.95 x a bare PyTorch loop (same model, optimiser, augmentation)
    20-probe linear grid    <= 2.5 x the time of one probe
    all of a benchmark's probes (+ few-shot, estimators) <= 2 x its feature extraction (random-init encoder)
    faiss k-NN              faster than brute-force torch k-NN (50k x 50k, 384-d)

the harness's step against a conventional pipeline (``--only pipeline``: torchvision ImageFolder + per-sample
transforms in DataLoader workers, same model, batch, precision and augmentations; see :mod:`bench.perf.pipeline`):

    harness step                     >= 1.2 x the conventional pipeline's images/s

plus the data path alone (``--only data``: decode images/s with 1 and N worker processes, cached-split load time
against its size, the uint8 -> views throughput; see :mod:`bench.perf.data_path`):

    decode with one worker per core  > 1.2 x one worker
    opening an 8x larger cached split <= 2 x the time (flat in the size) A benchmark, not a test: numbers depend on the machine and on
whatever else runs on it (the report keeps the load average before and after).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, fields, replace
from datetime import datetime, timezone
from pathlib import Path

from bench.perf.measure import QUICK, PerfOptions

__all__ = ["PerfOptions", "QUICK", "SECTIONS", "TARGETS", "run_perf", "perf_table", "write_report"]

SECTIONS = ("train", "data", "pipeline", "probe", "knn")

#: ratio name -> (section, key, comparison, bound)
TARGETS = {
    "harness_vs_bare": ("train", "harness_vs_bare", ">=", 0.95),
    "grid20_vs_grid1": ("probe", "grid20_vs_grid1", "<=", 2.5),
    "probes_vs_extraction": ("probe", "probes_vs_extraction", "<=", 2.0),
    "faiss_speedup": ("knn", "faiss_speedup", ">", 1.0),
    "harness_vs_conventional": ("pipeline", "harness_vs_conventional", ">=", 1.2),
    "decode_speedup": ("data", "decode_speedup", ">", 1.2),
    "load_large_vs_small": ("data", "load_large_vs_small", "<=", 2.0),
}


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _env() -> dict:
    import lightning
    import torch

    from probes.knn import faiss
    return {"python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__,
            "faiss": getattr(faiss, "__version__", None), "device": "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available()
            else "cpu", "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "machine": platform.machine()}


def run_perf(opts: PerfOptions | None = None, sections=SECTIONS, log=print) -> dict:
    """Run the chosen sections; returns the report (options, environment, per-section numbers, ratios)."""
    from bench.perf import data_path, measure, pipeline
    opts = opts or PerfOptions()
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        from bench.errors import ConfigError
        raise ConfigError(f"unknown perf section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    report: dict = {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "options": asdict(opts),
                    "env": _env(), "loadavg_start": _loadavg()}
    runners = {"train": measure.train_step, "data": data_path.data_section,
               "pipeline": pipeline.pipeline_section, "probe": measure.probe_section,
               "knn": measure.knn}
    start = time.perf_counter()
    for name in SECTIONS:
        if name in sections:
            log(f"perf: {name} ...")
            t = time.perf_counter()
            report[name] = runners[name](opts)
            report[name]["wall_s"] = time.perf_counter() - t
    report["loadavg_end"] = _loadavg()
    report["wall_s"] = time.perf_counter() - start
    report["ratios"] = {}
    for ratio, (section, key, op, bound) in TARGETS.items():
        if section in report:
            value = report[section][key]
            met = value >= bound if op == ">=" else value <= bound if op == "<=" else value > bound
            report["ratios"][ratio] = {"value": value, "target": f"{op} {bound}", "met": bool(met)}
    return report


def options_from(quick: bool = False, **overrides) -> PerfOptions:
    """PerfOptions: defaults, then the --quick sizes, then explicit (not None) overrides."""
    opts = replace(PerfOptions(), **QUICK) if quick else PerfOptions()
    known = {f.name for f in fields(PerfOptions)}
    return replace(opts, **{k: v for k, v in overrides.items() if v is not None and k in known})


def perf_table(report: dict) -> dict:
    """The report as ``bench.console.print_table`` keyword arguments (headers, rows, title): one row per
    measurement, the three target ratios last."""
    rows: list[tuple[str, str, str]] = []
    if "train" in report:
        t = report["train"]
        what = f"{t['method']} {t['backbone']} {t['img_size']}px, batch {t['batch_size']}, {t['timed_steps']} steps"
        rows.append(("harness step", f"{t['harness_images_per_s']:.1f} img/s", f"{t['harness_step_ms']:.0f} ms/step; {what}"))
        rows.append(("bare PyTorch loop", f"{t['bare_images_per_s']:.1f} img/s", f"{t['bare_step_ms']:.0f} ms/step"))
    if "data" in report:
        d = report["data"]
        rows.append(("data pipeline", f"{d['images_per_s']:.0f} img/s",
                     f"{d['views_per_s']:.0f} views/s (uint8 -> {d['views_per_image']} kornia views)"))
        dec = d["decode"]
        for w in dec["workers"]:
            rows.append((f"decode, {w} worker{'s' if w > 1 else ''}", f"{dec['images_per_s'][str(w)]:.0f} img/s",
                         f"{dec['images']} JPEGs 500x375 ({dec['jpeg_kb']:.0f} kB) -> {dec['size']} px cache"
                         + ("" if w == 1 else f"; rows identical: {dec['identical_rows']}")))
        if "streaming" in d:
            st, w = d["streaming"], d["streaming"]["workers"]
            rows.append(("stream: pack", f"{st['pack_images_per_s']:.0f} img/s",
                         f"the same JPEGs' bytes into one indexed byte file, {w} worker{'s' if w > 1 else ''}"))
            rows.append(("stream: evaluation rows", f"{st['eval_images_per_s']:.0f} img/s",
                         f"decoded per batch -> {dec['size']} px; identical to the cached rows: {st['identical_rows']}"))
            rows.append(("stream: training views", f"{st['train_images_per_s']:.0f} img/s",
                         f"2 RandomResizedCrops from the full image -> {st['train_view_px']} px, DataLoader workers"))
        for e in d["cache_load"]["entries"]:
            rows.append((f"open cached split, {e['mib']:.0f} MiB", f"{1000 * e['load_s']:.1f} ms",
                         f"{e['rows']} rows; a whole-file sha256 takes {1000 * e['full_sha256_s']:.0f} ms"))
    if "pipeline" in report:
        p = report["pipeline"]
        what = f"{p['method']} {p['backbone']} {p['img_size']}px from {p['source_px']}px JPEGs, batch {p['batch_size']}"
        rows.append(("harness step (uint8 cache)", f"{p['harness_images_per_s']:.1f} img/s",
                     f"{p['harness_step_ms']:.0f} ms/step; {what}; batched augmentation "
                     f"{p['profile']['augment_ms_per_batch']:.0f} ms/batch"))
        if "streamed_images_per_s" in p:
            rows.append(("harness step (streamed)", f"{p['streamed_images_per_s']:.1f} img/s",
                         f"{1000 * min(p['streamed_s']) / p['timed_steps']:.0f} ms/step; JPEGs decoded per batch in "
                         f"{p['conventional_workers']} workers, crops from the full image; "
                         f"{p['streamed_vs_conventional']:.2f}x the conventional pipeline"))
        rows.append(("conventional pipeline", f"{p['conventional_images_per_s']:.1f} img/s",
                     f"{p['conventional_step_ms']:.0f} ms/step; ImageFolder + per-sample v2 transforms, "
                     f"{p['conventional_workers']} workers"))
        c = p["cpu_s_per_image"]
        rows.append(("CPU time per image", f"{1000 * c['harness']:.0f} / {1000 * c['conventional']:.0f} ms",
                     "harness / conventional, workers included (the work done, whatever share of busy cores each got)"))
    if "probe" in report:
        p = report["probe"]
        rows.append(("linear probe, 1 member", f"{p['grid1_s']:.2f} s",
                     f"{p['samples']} x {p['dim']}, {p['classes']} classes, {p['epochs']} epochs"))
        rows.append(("linear probe, 20-member grid", f"{p['grid20_s']:.2f} s", "one batched model"))
        images = " + ".join(f"{k} {v}" for k, v in p["images"].items())
        rows.append((f"{p['benchmark']}: extraction", f"{p['extraction_s']:.1f} s",
                     f"{p['encoder']}, {images} images (" + ", ".join(
                         f"{k} {p['seconds'][k]:.1f} s" for k in ("features", "tokens") if k in p["seconds"]) + ")"))
        for name, sec in p["seconds"].items():
            if name not in ("features", "tokens"):
                rows.append((f"{p['benchmark']}: {name}", f"{sec:.1f} s",
                             "label-free, incl. LiDAR's view extraction" if name == "estimators" else "whole grid"))
    if "knn" in report:
        k = report["knn"]
        rows.append(("k-NN faiss", f"{k['faiss_s']:.2f} s",
                     f"{k['train']} x {k['queries']}, {k['dim']}-d, k={k['k']}"))
        rows.append(("k-NN brute-force torch", f"{k['brute_force_s']:.2f} s",
                     f"top-1 agreement {100 * k['top1_agreement']:.1f} %"))
    for name, r in report.get("ratios", {}).items():
        rows.append((f"[bold]{name}[/]", f"[bold]{r['value']:.2f}[/]",
                     f"target {r['target']}: " + ("[green]met[/]" if r["met"] else "[red]not met[/]")))
    title = "bench perf" + (f"  (load average {report['loadavg_start']} -> {report['loadavg_end']})"
                            if report.get("loadavg_start") else "")
    return {"headers": ("measurement", "value", "detail"), "rows": rows, "title": title}


def write_report(report: dict, path: str | Path) -> Path:
    from bench.io import atomic_write_json
    return atomic_write_json(path, report)
