"""Action-conditioned, block-causal predictor over frozen frame embeddings (V-JEPA 2-AC style).

Frame t contributes its N frozen tokens z_t (B, N, D) plus one action token embedding a_t; the
transformer sees the sequence [z_0, a_0, z_1, a_1, ...] with a *block-causal* mask (every token of
step t attends to all tokens of steps <= t, never to later ones) and predicts z_{t+1} from the
outputs at step t's frame tokens:

    teacher forcing:  L_tf = mean_t | P(z_<=t, a_<=t)_t - z_{t+1} |_1
    rollout:          z^_1 = P(z_0, a_0);  z^_{k+1} = P(z_0, z^_1..z^_k, a_0..a_k)_k;
                      L_ro = | z^_K - z_K |_1
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from bench.backbones import sincos_pos_embed


def block_causal_mask(steps: int, tokens_per_step: int) -> torch.Tensor:
    """(L, L) bool, True = *blocked* (the convention of nn.MultiheadAttention): token i of step s
    may attend to token j of step r iff r <= s."""
    step = torch.arange(steps).repeat_interleave(tokens_per_step)
    return step[None, :] > step[:, None]


class ActionConditionedPredictor(nn.Module):
    def __init__(self, embed_dim: int, action_dim: int, dim: int = 192, depth: int = 4, heads: int = 4,
                 tokens_per_frame: int = 1, max_steps: int = 32):
        super().__init__()
        self.embed_dim, self.n = embed_dim, tokens_per_frame
        self.frame_in = nn.Linear(embed_dim, dim)
        self.action_in = nn.Linear(action_dim, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, embed_dim)
        # fixed (step, token) position embedding: tokens 0..N-1 are the frame's, token N the action
        self.register_buffer("pos", sincos_pos_embed(dim, (max_steps, tokens_per_frame + 1)).view(
            max_steps, tokens_per_frame + 1, dim), persistent=False)

    def forward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """z (B, T, N, D) frame tokens, actions (B, T, A) (the action taken after frame t) ->
        (B, T, N, D): entry t predicts frame t + 1."""
        b, t, n, _ = z.shape
        if n != self.n or actions.shape[:2] != (b, t):
            raise ValueError(f"expected z (B, T, {self.n}, D) and actions (B, T, A), got {tuple(z.shape)} and "
                             f"{tuple(actions.shape)}")
        x = torch.cat([self.frame_in(z), self.action_in(actions)[:, :, None]], dim=2) + self.pos[:t]
        x = self.blocks(x.reshape(b, t * (n + 1), -1), mask=block_causal_mask(t, n + 1).to(x.device))
        x = self.out(self.norm(x)).view(b, t, n + 1, -1)
        return x[:, :, :n]

    def rollout(self, z0: torch.Tensor, actions: torch.Tensor, cache: bool = True) -> torch.Tensor:
        """Autoregressive: z0 (B, N, D), actions (B, H, A) -> predicted frames 1..H (B, H, N, D).
        ``cache=True`` keeps each layer's keys / values of earlier steps (block-causal: they never change),
        so step k only runs its own N + 1 tokens: O(H) instead of O(H^2) work, the same result."""
        if not cache:
            frames = [z0]
            for k in range(actions.shape[1]):
                pred = self(torch.stack(frames, 1), actions[:, : k + 1])
                frames.append(pred[:, -1])
            return torch.stack(frames[1:], 1)
        kv: list = [None] * len(self.blocks.layers)
        frame, preds = z0, []
        for k in range(actions.shape[1]):
            x = torch.cat([self.frame_in(frame), self.action_in(actions[:, k])[:, None]], dim=1) + self.pos[k]
            frame = self.out(self.norm(self._cached_step(x, kv)))[:, : self.n]
            preds.append(frame)
        return torch.stack(preds, 1)

    def _cached_step(self, x: torch.Tensor, kv: list) -> torch.Tensor:
        """One step's tokens (B, N + 1, dim) through the (pre-norm) blocks, attending to the cached
        keys / values of earlier steps and to each other (the block-causal mask, incrementally)."""
        for i, layer in enumerate(self.blocks.layers):
            attn = layer.self_attn
            b, length, dim = x.shape
            q, k, v = F.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
            q, k, v = (t.view(b, length, attn.num_heads, -1).transpose(1, 2) for t in (q, k, v))
            if kv[i] is not None:
                k, v = torch.cat([kv[i][0], k], 2), torch.cat([kv[i][1], v], 2)
            kv[i] = (k, v)
            o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, length, dim)
            x = x + attn.out_proj(o)
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))
        return x

    def loss(self, z: torch.Tensor, actions: torch.Tensor, rollout_steps: int = 2) -> dict[str, torch.Tensor]:
        """z (B, T, N, D) with actions (B, T - 1, A): teacher-forcing L1 + L1 of a short rollout."""
        tf = F.l1_loss(self(z[:, :-1], actions), z[:, 1:])
        k = min(rollout_steps, actions.shape[1])
        ro = F.l1_loss(self.rollout(z[:, 0], actions[:, :k])[:, -1], z[:, k])
        return {"loss": tf + ro, "teacher_forcing": tf.detach(), "rollout": ro.detach()}
