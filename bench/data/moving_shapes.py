"""moving-shapes: a procedural video dataset and an action-driven environment (deterministic by seed).

**Clips.** One coloured shape (square, disc or triangle) moves with a constant speed along one of
four directions (right, left, down, up) on a dark background with a static distractor blob,
bouncing off the borders. Labels: ``shape`` (3 classes) and ``direction`` (4 classes, the initial
direction of motion). Everything is rendered with batched tensor ops:

    clips, labels = moving_shapes(n=1000, frames=8, size=32, seed=0)   # uint8 (N, T, 3, S, S)

As a dataset spec (``bench run --benchmark moving-shapes-v1`` or ``--data moving-shapes[:n_train=N,n_val=M]``):
4000 train clips (seed 0) and 1000 val clips (seed 1) by default, frames and size set by the benchmark.

**Turning clips** (futures-v1): :func:`turning_shapes` - the shape turns left or right at random after
the past frames; every branch (both turns, straight on, back) is rendered from the same state.

**Environment** (for world models and planning): :class:`PushEnv` - an agent (a disc) whose
2-D position is moved by actions ``a in [-1, 1]^2`` (``pos += max_step * a``, clipped to the
frame). ``render`` draws states as frames, ``rollout`` turns a start state and an action
sequence into states, ``random_episodes`` records (frames, actions, states) for training.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch

from bench.errors import DataError

SHAPES = ("square", "disc", "triangle")
DIRECTIONS = ("right", "left", "down", "up")
_DIR_VEC = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])  # (dx, dy) per direction
_RENDER_CHUNK = 512  # clips rendered at once (bounds the float temporaries; the result does not depend on it)


@dataclass
class VideoData:
    """Clips uint8 (N, T, 3, S, S) with integer label columns (each (N,)) and their class names."""

    clips: torch.Tensor
    labels: dict[str, torch.Tensor]
    classes: dict[str, list[str]]
    spec: str
    split: str

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256(self.clips.contiguous().numpy().tobytes())
        for k in sorted(self.labels):
            h.update(k.encode() + self.labels[k].numpy().tobytes())
        return h.hexdigest()


def _shape_masks(kind: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, r: torch.Tensor, size: int) -> torch.Tensor:
    """(N, S, S) bool masks of shapes ``kind`` (index into SHAPES) centred at (cx, cy) with radius r;
    all arguments are (N,) tensors, or (N, T) for per-frame positions (then the result is (N, T, S, S))."""
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    dx = coords.view(*([1] * cx.ndim), 1, size) - cx[..., None, None]
    dy = coords.view(*([1] * cy.ndim), size, 1) - cy[..., None, None]
    r = r[..., None, None]
    kind = kind[..., None, None]
    square = (dx.abs() <= r) & (dy.abs() <= r)
    disc = dx * dx + dy * dy <= r * r
    triangle = (dy >= -r) & (dy <= r) & (dx.abs() <= (dy + r) / 2)  # apex up, base at the bottom
    return torch.where(kind == 0, square, torch.where(kind == 1, disc, triangle))


def _bounce(start: torch.Tensor, vel: torch.Tensor, frames: int, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Positions (N, T) of points starting at ``start`` with velocity ``vel`` reflecting inside [lo, hi]."""
    t = torch.arange(frames, dtype=torch.float32)
    span = (hi - lo)[:, None]
    raw = (start - lo)[:, None] + vel[:, None] * t  # unfolded path, then fold into [0, span]
    folded = torch.remainder(raw, 2 * span)
    return lo[:, None] + torch.where(folded > span, 2 * span - folded, folded)


def moving_shapes(n: int, frames: int = 8, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``n`` clips (uint8 (n, frames, 3, size, size)) and labels ``{"shape", "direction"}``; a pure
    function of its arguments (balanced labels: clip i has shape i % 3 and direction (i // 3) % 4,
    then the order is shuffled)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=g)
    shape = idx % len(SHAPES)
    direction = (idx // len(SHAPES)) % len(DIRECTIONS)
    r = size * (0.12 + 0.06 * torch.rand(n, generator=g))
    speed = size * (0.04 + 0.05 * torch.rand(n, generator=g))
    lo, hi = r, size - r
    cx0 = lo + (hi - lo) * torch.rand(n, generator=g)
    cy0 = lo + (hi - lo) * torch.rand(n, generator=g)
    vx, vy = (_DIR_VEC[direction] * speed[:, None]).unbind(1)
    cx, cy = _bounce(cx0, vx, frames, lo, hi), _bounce(cy0, vy, frames, lo, hi)
    colour = 0.45 + 0.55 * torch.rand(n, 3, generator=g)
    background = 0.15 * torch.rand(n, 3, generator=g)
    # a static distractor blob, dimmer than the moving shape
    dcx, dcy = size * torch.rand(n, generator=g), size * torch.rand(n, generator=g)
    return _render(shape, cx, cy, r, colour, background, dcx, dcy, size), {"shape": shape, "direction": direction}


def _render(shape, cx, cy, r, colour, background, dcx, dcy, size: int) -> torch.Tensor:
    """uint8 (N, T, 3, S, S) clips: shape ``shape`` (N,) of radius r (N,) and colour (N, 3) at positions cx, cy
    (N, T) over a background (N, 3) with a static distractor disc at (dcx, dcy) (N,)."""
    n, frames = cx.shape
    clips = torch.empty(n, frames, 3, size, size, dtype=torch.uint8)
    for i in range(0, n, _RENDER_CHUNK):  # rendered in chunks: float temporaries stay small for large n
        c = slice(i, i + _RENDER_CHUNK)
        m = len(shape[c])
        dmask = _shape_masks(torch.ones(m, dtype=torch.long), dcx[c], dcy[c], size * 0.1 * torch.ones(m), size)
        mask = _shape_masks(shape[c, None].expand(-1, frames), cx[c], cy[c], r[c, None].expand(-1, frames), size)
        video = background[c, None, :, None, None].expand(m, frames, 3, size, size).clone()
        video = torch.where(dmask[:, None, None], 0.35 * torch.ones(1), video)
        video = torch.where(mask[:, :, None], colour[c, None, :, None, None], video)
        clips[c] = (video * 255).round().clamp(0, 255).to(torch.uint8)
    return clips


#: the futures of a turning clip, in this order: the two turns (equally likely given the past), then two a
#: clip with this past never has (going straight on, going back)
BRANCHES = ("turn_left", "turn_right", "straight", "reverse")


def turning_shapes(n: int, past: int = 4, future: int = 4, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """``n`` moving-shapes clips whose future is ambiguous: the shape moves along one of the four directions
    for ``past`` frames; after the last past frame it turns left or right (90 degrees, p = 0.5 each), so both
    futures are equally likely given the past. Every branch is rendered from the same state, so the
    counterfactual future exists beside the one that happened:

    - ``past``: uint8 (n, past, 3, S, S), the frames up to the turn (shared by every branch);
    - ``futures``: uint8 (n, 4, future, 3, S, S), the frames after it for each of :data:`BRANCHES`
      (0, 1: the two plausible turns; 2, 3: straight on, back: impossible);
    - ``turn``: (n,) 0 or 1, the branch that happened; ``shape``, ``direction``: (n,) labels as in
      :func:`moving_shapes`.

    The turn point lies far enough from the borders that no branch bounces. A pure function of the arguments."""
    g = torch.Generator().manual_seed(seed)
    shape = torch.randint(len(SHAPES), (n,), generator=g)
    direction = torch.randint(len(DIRECTIONS), (n,), generator=g)
    turn = torch.randint(2, (n,), generator=g)
    r = size * (0.09 + 0.03 * torch.rand(n, generator=g))
    reach = max(past - 1, future) * size * 0.07  # the farthest a branch travels from the turn point
    speed = size * (0.05 + 0.02 * torch.rand(n, generator=g))
    lo, hi = r + reach, size - r - reach
    if bool((lo >= hi).any()):
        raise DataError(f"turning clips of {past} + {future} frames do not fit in {size} px; use fewer frames")
    turn_x = lo + (hi - lo) * torch.rand(n, generator=g)
    turn_y = lo + (hi - lo) * torch.rand(n, generator=g)
    colour = 0.45 + 0.55 * torch.rand(n, 3, generator=g)
    background = 0.15 * torch.rand(n, 3, generator=g)
    dcx, dcy = size * torch.rand(n, generator=g), size * torch.rand(n, generator=g)
    v = _DIR_VEC[direction] * speed[:, None]  # (n, 2)
    left = torch.stack([v[:, 1], -v[:, 0]], 1)  # 90 degrees counter-clockwise on screen (y points down)
    branch_v = torch.stack([left, -left, v, -v], 1)  # (n, 4, 2) in BRANCHES order
    t_past = torch.arange(past, dtype=torch.float32) - (past - 1)  # ..., -1, 0: the last past frame is the turn
    t_fut = torch.arange(1, future + 1, dtype=torch.float32)
    pos_past = torch.stack([turn_x, turn_y], 1)[:, None] + v[:, None] * t_past[None, :, None]  # (n, P, 2)
    pos_fut = torch.stack([turn_x, turn_y], 1)[:, None, None] + branch_v[:, :, None] * t_fut[None, None, :, None]
    pos = torch.cat([pos_past, pos_fut.flatten(1, 2)], 1)  # (n, P + 4F, 2): the past, then each branch's future
    clips = _render(shape, pos[..., 0], pos[..., 1], r, colour, background, dcx, dcy, size)
    return {"past": clips[:, :past], "futures": clips[:, past:].reshape(n, len(BRANCHES), future, 3, size, size),
            "turn": turn, "shape": shape, "direction": direction}


def load_moving_shapes(split: str, n_train: int = 4000, n_val: int = 1000, frames: int = 8,
                       size: int = 32) -> VideoData:
    """The ``moving-shapes`` splits: train and val come from different seeds (never the same clip)."""
    if split not in ("train", "val"):
        raise DataError(f"dataset 'moving-shapes' has no split {split!r} (found: train, val)")
    n, seed = (n_train, 0) if split == "train" else (n_val, 1)
    clips, labels = moving_shapes(n, frames, size, seed)
    return VideoData(clips, labels, {"shape": list(SHAPES), "direction": list(DIRECTIONS)}, "moving-shapes", split)


def parse_spec(spec: str) -> dict[str, int]:
    """``moving-shapes[:n_train=N,n_val=M]`` -> keyword arguments of :func:`load_moving_shapes`."""
    name, _, opts = spec.partition(":")
    if name != "moving-shapes":
        raise DataError(f"not a moving-shapes spec: {spec!r}")
    out = {}
    for item in filter(None, (o.strip() for o in opts.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in ("n_train", "n_val") or not value.isdigit() or int(value) < 1:
            raise DataError(f"bad moving-shapes option {item!r} in {spec!r}: use moving-shapes:n_train=N,n_val=M "
                            f"(positive integers)")
        out[key] = int(value)
    return out


def load_moving_shapes_split(spec: str, split: str, frames: int = 8, size: int = 32,
                             label: str | None = "direction"):
    """One split of a ``moving-shapes[:...]`` spec as a :class:`bench.data.video_folder.ClipData` whose
    ``labels`` are the ``label`` column (default ``direction``) and whose ``label_sets`` hold both columns.
    Rendered on the fly (seconds; a pure function of the spec, frames and size, so nothing is cached)."""
    from bench.data.video_folder import ClipData
    data = load_moving_shapes(split, frames=frames, size=size, **parse_spec(spec))
    label = label or "direction"
    if label not in data.labels:
        raise DataError(f"moving-shapes has no label column {label!r} (found: {', '.join(data.labels)})")
    sets = {k: (data.labels[k], data.classes[k]) for k in data.labels}
    return ClipData(images=data.clips, labels=sets[label][0], classes=sets[label][1], fingerprint=data.fingerprint,
                    spec=spec, split=split, label_sets=sets)


class PushEnv:
    """A disc agent on a size x size frame; state = (x, y) in pixels, action in [-1, 1]^2."""

    def __init__(self, size: int = 32, max_step: float = 3.0, radius: float = 3.0):
        self.size, self.max_step, self.radius = size, max_step, radius

    def clip_state(self, state: torch.Tensor) -> torch.Tensor:
        return state.clamp(self.radius, self.size - self.radius)

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(..., 2) states and actions -> next states."""
        return self.clip_state(state + self.max_step * action.clamp(-1, 1))

    def rollout(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """state (B, 2), actions (B, H, 2) -> states (B, H + 1, 2) including the start."""
        states = [state]
        for t in range(actions.shape[1]):
            states.append(self.step(states[-1], actions[:, t]))
        return torch.stack(states, 1)

    def render(self, states: torch.Tensor) -> torch.Tensor:
        """(..., 2) states -> uint8 (..., 3, S, S) frames: a bright disc on a dark grid background."""
        lead = states.shape[:-1]
        flat = states.reshape(-1, 2)
        disc = _shape_masks(torch.ones(len(flat), dtype=torch.long), flat[:, 0], flat[:, 1],
                            torch.full((len(flat),), self.radius), self.size)
        coords = torch.arange(self.size)
        grid = ((coords[:, None] % 8 == 0) | (coords[None, :] % 8 == 0)).float() * 0.15  # static landmarks
        frame = torch.stack([grid, grid, grid + 0.1])[None].expand(len(flat), -1, -1, -1).clone()
        frame = torch.where(disc[:, None], torch.tensor([1.0, 0.8, 0.2])[None, :, None, None], frame)
        return (frame * 255).round().to(torch.uint8).reshape(*lead, 3, self.size, self.size)

    def random_states(self, n: int, generator: torch.Generator) -> torch.Tensor:
        lo, hi = self.radius, self.size - self.radius
        return lo + (hi - lo) * torch.rand(n, 2, generator=generator)

    def random_episodes(self, n: int, horizon: int, seed: int = 0) -> dict[str, torch.Tensor]:
        """``n`` episodes of ``horizon`` random actions: frames uint8 (n, H+1, 3, S, S), actions (n, H, 2),
        states (n, H+1, 2). Actions are smooth (a random walk), so episodes travel, not jitter."""
        g = torch.Generator().manual_seed(seed)
        start = self.random_states(n, g)
        steps = 0.5 * torch.randn(n, horizon, 2, generator=g)
        actions = (torch.cumsum(steps, 1) / math.sqrt(horizon) + 0.5 * torch.randn(n, 1, 2, generator=g)).clamp(-1, 1)
        states = self.rollout(start, actions)
        return {"frames": self.render(states), "actions": actions, "states": states}
