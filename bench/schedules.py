"""Per-step schedules shared by the trainer (lr, weight decay) and the methods (EMA momentum)."""

from __future__ import annotations

import math


def cosine_schedule(start: float, end: float, step: int, total: int) -> float:
    """``start`` at step 0 to ``end`` at ``total`` by a half cosine (DINO's / I-JEPA's ``cosine_scheduler``);
    held at ``end`` after ``total``."""
    progress = min(1.0, step / max(1, total))
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float = 0.0) -> float:
    """lr multiplier: linear warm-up over ``warmup`` steps, then cosine to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / warmup
    return cosine_schedule(1.0, min_ratio, step - warmup, total - warmup)
