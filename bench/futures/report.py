"""futures-v1 outputs: the leaderboard (mean +- std over seeds per encoder) and the PNG strip of examples."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

from bench.cells import fmt_pm
from bench.errors import BenchError
from bench.futures.experiment import FuturesRecord

#: leaderboard columns: (metric, header, format)
COLUMNS = (("pixel_sharpness", "pixel sharpness (real = 1)", 3),
           ("mean_future_sharpness", "sharpness of the mean of the 2 futures", 3),
           ("pixel_mse_to_mean", "pixel MSE to mean of futures", 5),
           ("pixel_mse_to_nearer", "pixel MSE to nearer future", 5),
           ("mean_mse_to_future", "MSE mean-of-futures to a future", 5),
           ("pixel_retrieval_plausible", "pixel NN plausible %", 1),
           ("jepa_retrieval_plausible", "jepa NN plausible %", 1),
           ("jepa_retrieval_happened", "jepa NN = what happened %", 1),
           ("jepa_retrieval_straight", "jepa NN straight %", 1),
           ("jepa_retrieval_reverse", "jepa NN reverse %", 1),
           ("jepa_retrieval_other_clip", "jepa NN other clip %", 1),
           ("chance_plausible", "chance plausible %", 1))


def load_futures_records(results_dir, bench_id: str) -> list[FuturesRecord]:
    folder = Path(results_dir) / bench_id
    return [FuturesRecord(**json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))]


def _cell(values: list[float], digits: int) -> str:
    """mean ± std (ddof 1) of one column over a row's seeds (:func:`bench.cells.fmt_pm`)."""
    if not values:
        return fmt_pm(float("nan"), float("nan"))
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return fmt_pm(statistics.fmean(values), std, digits=digits)


def futures_markdown(records: list[FuturesRecord], bench_id: str) -> str:
    """One row per (encoder, spec_hash, data): cells mean ± std over its seeds (std ddof=1), n = seeds. Records
    of one benchmark id made with different specs are refused (a changed protocol is a new version)."""
    if not records:
        raise BenchError(f"no records of {bench_id}; run `bench futures` first")
    hashes = sorted({r.benchmark["spec_hash"] for r in records})
    if len(hashes) > 1:
        raise BenchError(f"records of {bench_id} were made with different specs (spec_hash {', '.join(hashes)}); "
                         f"they cannot share a leaderboard")
    groups: dict[tuple, list[FuturesRecord]] = {}
    for r in records:
        groups.setdefault((r.encoder.split(":")[0] if r.encoder.startswith("random") else r.encoder,
                           r.data["train"][:8], r.data["test"][:8]), []).append(r)
    head = ["encoder", "n", *(h for _, h, _ in COLUMNS), "seeds"]
    lines = [f"# {bench_id}", "",
             f"spec_hash `{hashes[0]}`. Cells: mean ± std over n seeds. Pixel sharpness: gradient energy of the "
             f"pixel predictor's frames relative to the real future's; the MSE columns compare it with the mean of "
             f"the two equally likely futures and with the nearer one (the mean itself is 'MSE mean-of-futures' "
             f"from either). NN: the candidate nearest to the prediction (jepa: cosine on embeddings, pixel: MSE on "
             f"frames) among the clip's two turns, going straight, going back and other clips' futures.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (encoder, _, _), rs in groups.items():
        cells = [_cell([r.metrics[k] for r in rs if k in r.metrics], digits) for k, _, digits in COLUMNS]
        lines.append("| " + " | ".join([encoder, str(len(rs)), *cells, " ".join(str(r.seed) for r in rs)]) + " |")
    return "\n".join(lines) + "\n"


def write_futures_leaderboard(results_dir, leaderboards_dir, bench_id: str) -> Path:
    """``<leaderboards_dir>/<bench_id>/leaderboard.md`` from every record under ``<results_dir>/<bench_id>``."""
    from bench.io import atomic_write_text
    text = futures_markdown(load_futures_records(results_dir, bench_id), bench_id)
    return atomic_write_text(Path(leaderboards_dir) / bench_id / "leaderboard.md", text)


def strip_image(tensors: dict[str, torch.Tensor], scale: int = 2):
    """A PIL image, one row per example clip: the past frames | turn A | turn B | the pixel prediction |
    the candidate the JEPA prediction retrieved (columns separated by a gap; labels above)."""
    from PIL import Image, ImageDraw
    past, fut = tensors["past"], tensors["futures"]
    size = past.shape[-1]
    pixel = torch.nn.functional.interpolate(tensors["pixel"].flatten(0, 1), size=size, mode="nearest")
    pixel = (pixel * 255).round().to(torch.uint8).view(*tensors["pixel"].shape[:3], size, size)
    blocks = [("past", past), ("turn A", fut[:, 0]), ("turn B", fut[:, 1]), ("pixel MSE", pixel),
              ("jepa NN", tensors["retrieved"])]
    gap, top = 6, 12
    widths = [b.shape[1] * size for _, b in blocks]
    w, h = sum(widths) + gap * (len(blocks) - 1), top + len(past) * (size + 2)
    img = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    x = 0
    for (label, block), bw in zip(blocks, widths):
        draw.text((x + 1, 0), label, fill=(0, 0, 0))
        for row in range(len(block)):
            frames = block[row].permute(2, 0, 3, 1).reshape(size, -1, 3)  # (S, T*S, 3)
            img.paste(Image.fromarray(frames.numpy()), (x, top + row * (size + 2)))
        x += bw + gap
    return img.resize((w * scale, h * scale), Image.NEAREST) if scale != 1 else img


def write_strip(tensors: dict[str, torch.Tensor], path) -> Path:
    from bench.io import atomic_write_bytes
    import io
    buf = io.BytesIO()
    strip_image(tensors).save(buf, format="PNG", optimize=True)
    return atomic_write_bytes(path, buf.getvalue())
