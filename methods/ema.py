"""EMA teacher shared by DINO, I-JEPA and V-JEPA (BYOL / MoCo momentum encoders).

The teacher is a frozen copy of the student updated after every optimiser step as

    theta_t <- m * theta_t + (1 - m) * theta_s,   m = 1 - (1 - m0) * (cos(pi * step / total) + 1) / 2

so m rises from m0 to 1 by a cosine over training. The teacher never receives gradients.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from bench.schedules import cosine_schedule


def ema_momentum(step: int, total_steps: int, base: float) -> float:
    """Cosine schedule from ``base`` at step 0 to 1.0 at ``total_steps``."""
    return cosine_schedule(base, 1.0, step, total_steps)


class EMATeacher(nn.Module):
    """``EMATeacher(student)``: a gradient-free copy; ``update(student, step, total)`` after each step."""

    def __init__(self, student: nn.Module, base_momentum: float = 0.996):
        super().__init__()
        self.module = copy.deepcopy(student)
        self.module.requires_grad_(False)
        self.base_momentum = base_momentum

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self.module(*args, **kwargs)

    @torch.no_grad()
    def update(self, student: nn.Module, step: int, total_steps: int) -> float:
        m = ema_momentum(step, total_steps, self.base_momentum)
        t_params = list(self.module.parameters())
        s_params = [p.detach() for p in student.parameters()]
        torch._foreach_lerp_(t_params, s_params, 1.0 - m)  # t = t + (1 - m) * (s - t) = m t + (1 - m) s
        for tb, sb in zip(self.module.buffers(), student.buffers()):
            tb.copy_(sb)  # BN running stats follow the student
        return m
