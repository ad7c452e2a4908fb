"""DINO (Caron et al., 2021): self-distillation with no labels.

A student sees all crops (2 global + N local), an EMA teacher only the global ones; the student
matches the teacher's centred, sharpened distribution over K prototypes on every pair of
*different* views. Teacher temperature warms up; the centre is an EMA of teacher batch means.

``patch_loss_weight > 0`` adds iBOT's masked-patch self-distillation (Zhou et al., 2022; also in
DINOv2): with probability ``mask_prob`` a global view has a fraction ~U(``mask_ratio``) of its patch
embeddings replaced by a learned mask token for the student (scattered patches, or with
``mask_shape="block"`` one rectangle); at every masked patch the student's
patch-head distribution matches the teacher's (which saw the whole view) - same view, own centre.
It trains the patch tokens themselves, which the [CLS]/pooled objective alone leaves unconstrained
(or averages together), and those tokens are what the attentive probe reads. The patch term has its
own head by default; ``shared_patch_head=True`` sends the patch tokens through the image-level head
(iBOT's and DINOv2's default config: patches are scored against the same prototypes as whole images;
the patch term keeps its own centre). As in DINOv2 the heads score the masked patches only (the
loss reads no other), so the patch term costs in proportion to the masked fraction; the patch centre
is the mean over masked patches. Before 2026-12-01 every patch went through the heads (BatchNorm
statistics and the patch centre over all patches; records carry the git sha).
``patch_target="features"`` swaps iBOT's target for data2vec's (Baevski et al., 2022): at each masked patch a
linear head regresses the teacher's output token, layer-normed without affine (I-JEPA's normalisation; data2vec
averages the top blocks' outputs), with a mean squared error - a continuous target rather than a distribution over
prototypes; no patch head, teacher or centre.

Two DINOv2 options (Oquab et al., 2023): ``centering="sinkhorn"`` replaces the EMA centre by 3
Sinkhorn-Knopp iterations over the teacher's global batch (every prototype gets an equal share of the
batch, every image a distribution) - for the iBOT patch term too, over every masked patch of the global
batch, unless ``patch_centering`` says otherwise - and
``koleo_weight > 0`` adds the KoLeo spreading term on the student's (L2-normalised) backbone features
of each global view.

Two MSN options (Assran et al., 2022): ``student_keep < 1`` lets the student see only that fraction of each
global view's patches (random, per image; the teacher sees all - cheaper steps), and ``me_max_weight > 0``
subtracts the entropy of the student's mean prediction over the batch (ME-MAX: all prototypes in use).
``region_loss_weight > 0`` adds EsViT's region-level matching term (Li et al., 2022, "Efficient Self-supervised
Vision Transformers"): every output token of every student view takes as its target the teacher's distribution at
the token of another (global) view whose backbone feature is most similar (cosine), scored through a token head of
its own (``region_head``, EMA teacher, own centre) - DINO's cross-view distillation at the level of tokens, with no
crop geometry needed. With the iBOT term on as well, a masked global view's tokens (mask token in, not the patch)
take part in the matching too.
``freeze_last_layer`` (a fraction of training; DINO's ``--freeze_last_layer 1`` is its first epoch) drops the
gradient of the heads' prototype layers over that first part, as DINO does to steady the early steps.
``blur=False`` drops the Gaussian blur from every view; ``view_overrides`` sets any other ViewSpec field on
every view (e.g. ``{jitter_p: 0.0, gray_p: 0.0, solarize_p: 0.0}``: no colour augmentation);
``global_crops_scale`` / ``local_crops_scale`` set the crops' area ranges (DINO's arguments of those names;
its defaults are (0.4, 1) and (0.05, 0.4), here (0.25, 1) and (0.05, 0.25): stronger crops, which this
package has always used; on imagenette64 the paper's defaults gave the same probe scores).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn
from torch.nn import functional as F

from bench import distributed
from bench.augment import ViewSpec
from methods import register
from methods.base import Method
from methods.ema import EMATeacher
from methods.masks import rectangles


def centred_teacher_probs(teacher_logits: torch.Tensor, center: torch.Tensor, teacher_temp: float) -> torch.Tensor:
    """DINO's teacher targets: softmax((t - c) / tau_t) over the prototypes (last axis), in fp32; ``center`` broadcasts
    against the logits (image-level (1, K), token-level (1, 1, K))."""
    return F.softmax((teacher_logits.float() - center) / teacher_temp, dim=-1)


def patch_distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, weights: torch.Tensor,
                            batch: int, center: torch.Tensor, student_temp: float = 0.1,
                            teacher_temp: float = 0.04) -> torch.Tensor:
    """iBOT's masked-patch term for scored patch rows: logits (M, K), row weights (M,) from
    ``patch_row_weights``. Per image, the mean over its masked patches of  - sum_k q[k] log p[k]  (q from the
    centred, sharpened teacher); images without a masked patch count as 0; then the mean over the batch."""
    q = centred_teacher_probs(teacher_logits, center.reshape(1, -1), teacher_temp)
    return masked_patch_cross_entropy(student_logits, q, weights, batch, student_temp)


def masked_feature_regression(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                              batch: int) -> torch.Tensor:
    """data2vec's masked-patch target (Baevski et al., 2022; I-JEPA's normalisation): the student's regression of the
    teacher's output tokens (M, D), layer-normed without affine; per image the mean over its masked patches of the
    mean squared error over channels (``patch_row_weights``), then the mean over the batch."""
    t = F.layer_norm(target.detach().float(), target.shape[-1:])
    return ((pred.float() - t).pow(2).mean(-1) * weights).sum() / batch


def masked_patch_cross_entropy(student_logits: torch.Tensor, q: torch.Tensor, weights: torch.Tensor, batch: int,
                               student_temp: float = 0.1) -> torch.Tensor:
    """sum over rows of weight * ( - sum_k q[k] log p[k] ) / batch for teacher targets q (M, K): with
    ``patch_row_weights`` that is, per image, the mean over its masked patches, then the mean over the batch."""
    ce = -(q.detach() * F.log_softmax(student_logits.float() / student_temp, dim=-1)).sum(-1)   # (M,)
    return (ce * weights).sum() / batch


def patch_rows(mask: torch.Tensor) -> torch.Tensor:
    """(B, N) bool: the patches the patch heads score - the masked ones (as DINOv2: the loss never reads the
    others, and the heads' cost then scales with the masked fraction, ~15 % of the patches by default),
    plus the first unmasked ones when fewer than 2 are masked (a BatchNorm head needs 2 rows; weight 0)."""
    masked = int(mask.sum())
    if masked >= 2:
        return mask
    rows = mask.clone().view(-1)
    rows[(~rows).nonzero()[:2 - masked].view(-1)] = True
    return rows.view_as(mask)


def patch_row_weights(mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(M,) weight of each scored row: 1 / (masked patches of its image) for a masked patch, 0 for padding."""
    return (mask.float() / mask.sum(1, keepdim=True).clamp(min=1.0))[rows]


def random_patch_mask(batch: int, n: int, prob: float, ratio: tuple[float, float], device=None) -> torch.Tensor:
    """(batch, n) bool: each image is masked with probability ``prob``; a masked image hides round(r * n)
    random patches, r ~ U(ratio) (iBOT's 'rand' mask; one vectorised draw for the batch)."""
    r = torch.empty(batch, 1, device=device).uniform_(*ratio)
    k = (r * n).round() * (torch.rand(batch, 1, device=device) < prob)
    ranks = torch.rand(batch, n, device=device).argsort(1).argsort(1)  # a random permutation rank per patch
    return ranks < k


def random_block_mask(batch: int, grid: tuple[int, int], prob: float, ratio: tuple[float, float],
                      aspect: tuple[float, float] = (0.3, 1 / 0.3), device=None) -> torch.Tensor:
    """(batch, gh*gw) bool: each image is masked with probability ``prob``; a masked image hides one h x w
    rectangle of patches covering a fraction r ~ U(ratio) of the grid, aspect h/w log-uniform in ``aspect``,
    at a random position (iBOT's 'block' mask, one block per image; vectorised over the batch). On a small
    grid a block cannot be filled in from its neighbours the way scattered single patches can."""
    gh, gw = grid
    r = torch.empty(batch, device=device).uniform_(*ratio)
    a = torch.empty(batch, device=device).uniform_(math.log(aspect[0]), math.log(aspect[1])).exp()
    h = (r * gh * gw * a).sqrt().round().clamp(1, gh)
    w = (r * gh * gw / a).sqrt().round().clamp(1, gw)
    top = (torch.rand(batch, device=device) * (gh - h + 1)).floor()
    left = (torch.rand(batch, device=device) * (gw - w + 1)).floor()
    inside = rectangles(grid, *(t.view(-1, 1, 1) for t in (top, left, h, w)))
    return inside & (torch.rand(batch, 1, device=device) < prob)


def dino_loss(student_logits: list[torch.Tensor], teacher_logits: list[torch.Tensor], center: torch.Tensor,
              student_temp: float = 0.1, teacher_temp: float = 0.04) -> torch.Tensor:
    """With q_t = softmax((t - c) / tau_t) for each teacher (global) view t and
    log p_s = log_softmax(s / tau_s) for each student view s (teacher views are the first ones):

        L = mean over pairs (t, s), s != t, of  mean_batch( - sum_k q_t[k] log p_s[k] )
    """
    q = [centred_teacher_probs(t, center, teacher_temp) for t in teacher_logits]
    return cross_view_loss(student_logits, q, student_temp)


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: torch.Tensor, teacher_temp: float, iterations: int = 3) -> torch.Tensor:
    """DINOv2's teacher targets (B, K) from logits (B, K): Q = exp(t / tau_t), then ``iterations`` rounds of
    "each prototype's total = B / K" and "each row sums to 1" over the *global* batch (gathered under DDP;
    ranks may hold different numbers of rows, as with masked patches; this rank's rows returned). Rows sum
    to 1; with enough rounds every column sums to B / K."""
    n = len(teacher_logits)
    logits, start = distributed.gather_uneven(teacher_logits.float(), with_start=True)
    q = torch.exp((logits - logits.max()) / teacher_temp) if len(logits) else logits  # the global max: removed below
    q /= q.sum()
    b, k = q.shape
    for _ in range(iterations):
        q /= q.sum(0, keepdim=True) * k
        q /= q.sum(1, keepdim=True) * b
    q *= b
    return q[start:start + n]


def mean_entropy(student_logits: list[torch.Tensor], student_temp: float = 0.1) -> torch.Tensor:
    """MSN's ME-MAX term (Assran et al., 2022): the entropy H(p_bar) of the student's mean prediction
    p_bar = mean over views and the global batch of softmax(s / tau_s); the loss subtracts it, so every
    prototype gets used (the centre only keeps one prototype from taking over)."""
    p = torch.cat([F.softmax(s.float() / student_temp, dim=-1) for s in student_logits]).mean(0)
    p = p + (distributed.all_reduce_mean(p) - p).detach()  # the global batch's mean; gradient through this rank's
    return -(p * torch.log(p.clamp_min(1e-12))).sum()


def koleo_loss(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KoLeo (Sablayrolles et al., 2019; DINOv2): -mean_i log(min_{j != i} ||x_i - x_j||) over L2-normalised
    rows of x (B, D) - pushes each feature away from its nearest neighbour in the batch."""
    x = F.normalize(x.float(), dim=-1, eps=eps)
    sim = x @ x.T
    sim.fill_diagonal_(-2.0)                       # never pick yourself
    nearest = sim.argmax(1)
    return -torch.log(F.pairwise_distance(x, x[nearest], eps=eps) + eps).mean()


def cross_view_loss(student_logits: list[torch.Tensor], teacher_probs: list[torch.Tensor],
                    student_temp: float = 0.1) -> torch.Tensor:
    """mean over (teacher view t, student view s != t) of mean_batch( - sum_k q_t[k] log_softmax(s / tau_s)[k] )."""
    q = [t.detach() for t in teacher_probs]
    log_p = [F.log_softmax(s.float() / student_temp, dim=-1) for s in student_logits]
    total, pairs = 0.0, 0
    for ti, qt in enumerate(q):
        for si, lp in enumerate(log_p):
            if si == ti:
                continue
            total = total + (-qt * lp).sum(-1).mean()
            pairs += 1
    return total / pairs


def region_matching_loss(student_tokens: list[torch.Tensor], student_logits: list[torch.Tensor],
                         teacher_tokens: list[torch.Tensor], teacher_probs: list[torch.Tensor],
                         student_temp: float = 0.1) -> torch.Tensor:
    """EsViT's region-level term. Student view s: backbone tokens (B, Ns, D) and token-head logits (B, Ns, K);
    teacher (global) view t: tokens (B, Nt, D) and target distributions (B, Nt, K); teacher views are the
    first student views. For every pair s != t and every student token i, j* = argmax_j cos(x_s[i], x_t[j])
    (same image), and the term is  mean over pairs, images, tokens of  - sum_k q_t[j*][k] log p_s[i][k]."""
    xs = [F.normalize(x.detach().float(), dim=-1) for x in student_tokens]
    log_p = [F.log_softmax(s.float() / student_temp, dim=-1) for s in student_logits]
    total, pairs = 0.0, 0
    for ti, (xt, qt) in enumerate(zip(teacher_tokens, teacher_probs)):
        xt, qt = F.normalize(xt.detach().float(), dim=-1), qt.detach()
        for si, (x, lp) in enumerate(zip(xs, log_p)):
            if si == ti:
                continue
            match = torch.bmm(x, xt.transpose(1, 2)).argmax(-1)                                   # (B, Ns)
            target = torch.gather(qt, 1, match.unsqueeze(-1).expand(-1, -1, qt.shape[-1]))      # (B, Ns, K)
            total = total + (-(target * lp).sum(-1)).mean()
            pairs += 1
    return total / pairs


class DINOHead(nn.Module):
    """MLP (GELU, optional BatchNorm) -> bottleneck -> L2-normalise -> weight-normalised linear to K
    prototypes; ``norm_last_layer`` fixes the weight-norm gain g to 1 (the paper's default for ViTs)."""

    def __init__(self, in_dim: int, out_dim: int = 4096, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 num_layers: int = 3, use_bn: bool = False, norm_last_layer: bool = True):
        super().__init__()
        layers, dim = [], in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim)] + ([nn.BatchNorm1d(hidden_dim)] if use_bn else []) + [nn.GELU()]
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        g = self.last_layer.parametrizations.weight.original0
        g.data.fill_(1.0)
        g.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


GLOBAL_CROPS_SCALE, LOCAL_CROPS_SCALE = (0.25, 1.0), (0.05, 0.25)  # the crops' area ranges (DINO's arguments)


@register
class DINO(Method):
    name = "dino"
    # 2 global crops at the run's size, 4 local crops at half size (views[0] = first global crop)
    views = [ViewSpec.byol(blur_p=1.0, solarize_p=0.0, scale=GLOBAL_CROPS_SCALE),
             ViewSpec.byol(blur_p=0.1, solarize_p=0.2, scale=GLOBAL_CROPS_SCALE)] + \
            [ViewSpec.byol(blur_p=0.5, solarize_p=0.0, scale=LOCAL_CROPS_SCALE, size_frac=0.5)] * 4

    def __init__(self, backbone, out_dim: int = 4096, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 student_temp: float = 0.1, teacher_temp: float = 0.07, warmup_teacher_temp: float = 0.04,
                 warmup_teacher_frac: float = 0.3, center_momentum: float = 0.9, ema: float = 0.996,
                 local_crops: int = 4, head_bn: bool = False, norm_last_layer: bool = True,
                 patch_loss_weight: float = 0.0, mask_prob: float = 0.5, mask_ratio=(0.1, 0.5),
                 centering: str = "ema", koleo_weight: float = 0.0, blur: bool = True,
                 me_max_weight: float = 0.0, student_keep: float = 1.0, patch_centering: str | None = None,
                 mask_shape: str = "rand", shared_patch_head: bool = False,
                 global_crops_scale=GLOBAL_CROPS_SCALE, local_crops_scale=LOCAL_CROPS_SCALE,
                 view_overrides: dict | None = None, freeze_last_layer: float = 0.0, region_loss_weight: float = 0.0,
                 patch_target: str = "prototypes"):
        super().__init__(backbone)
        if local_crops < 0:
            raise TypeError(f"local_crops must be >= 0, got {local_crops}")
        patch_centering = centering if patch_centering is None else patch_centering
        for key, value in (("centering", centering), ("patch_centering", patch_centering)):
            if value not in ("ema", "sinkhorn"):
                raise TypeError(f"{key} must be 'ema' or 'sinkhorn', got {value!r}")
        if patch_target not in ("prototypes", "features"):
            raise TypeError(f"patch_target must be 'prototypes' or 'features', got {patch_target!r}")
        if patch_target == "features" and shared_patch_head:
            raise TypeError("patch_target 'features' regresses tokens through its own linear head: no shared_patch_head")
        if mask_shape not in ("rand", "block"):
            raise TypeError(f"mask_shape must be 'rand' or 'block', got {mask_shape!r}")
        if not 0.0 <= freeze_last_layer < 1.0:
            raise TypeError(f"freeze_last_layer must be a fraction of training in [0, 1), got {freeze_last_layer}")
        if not 0.0 < student_keep <= 1.0:
            raise TypeError(f"student_keep must be in (0, 1], got {student_keep}")
        if student_keep < 1.0 and not getattr(backbone, "is_vit", False):
            raise TypeError("student_keep < 1 (MSN token dropping) needs a ViT backbone")
        if region_loss_weight > 0 and not getattr(backbone, "is_vit", False):
            raise TypeError("region_loss_weight > 0 (EsViT region matching) needs a ViT backbone")
        if student_keep < 1.0 and region_loss_weight > 0:
            raise TypeError("student_keep < 1 and region_loss_weight > 0 do not combine (the student needs every token)")
        if student_keep < 1.0 and patch_loss_weight > 0:
            raise TypeError("student_keep < 1 and patch_loss_weight > 0 do not combine (iBOT masks, MSN drops tokens)")
        self.centering, self.patch_centering, self.koleo_weight = centering, patch_centering, koleo_weight
        self.me_max_weight, self.student_keep, self.freeze_last_layer = me_max_weight, student_keep, freeze_last_layer
        for key, value in (("global_crops_scale", global_crops_scale), ("local_crops_scale", local_crops_scale)):
            if not isinstance(value, (list, tuple)) or len(value) != 2 or not 0.0 < value[0] <= value[1] <= 1.0:
                raise TypeError(f"{key} must be (low, high) with 0 < low <= high <= 1, got {value!r}")
        views = [replace(v, scale=tuple(global_crops_scale)) for v in type(self).views[:2]] + \
            [replace(type(self).views[2], scale=tuple(local_crops_scale))] * local_crops
        # blur False: no Gaussian blur on any view (at <= 64 px a 3x3 blur wipes most of a crop's detail)
        overrides = {**({} if blur else {"blur_p": 0.0}), **(view_overrides or {})}
        self.views = [v.with_overrides(overrides) for v in views]
        def new_head() -> DINOHead:  # the image-level head, and the token heads' (iBOT, region) alike
            return DINOHead(backbone.embed_dim, out_dim, hidden_dim, bottleneck_dim, use_bn=head_bn,
                            norm_last_layer=norm_last_layer)

        self.head = new_head()
        self.teacher = EMATeacher(nn.Sequential(backbone, self.head), ema)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.register_buffer("progress", torch.zeros(()))  # fraction of training done (for schedules)
        self.student_temp, self.teacher_temp, self.warmup_teacher_temp = student_temp, teacher_temp, warmup_teacher_temp
        self.warmup_teacher_frac, self.center_momentum = warmup_teacher_frac, center_momentum
        self.patch_loss_weight, self.mask_prob, self.mask_ratio = patch_loss_weight, mask_prob, tuple(mask_ratio)
        self.mask_shape, self.patch_target = mask_shape, patch_target
        if patch_loss_weight > 0:
            if not getattr(backbone, "is_vit", False):
                raise TypeError("patch_loss_weight > 0 (iBOT masked patches) needs a ViT backbone")
            self.mask_token = nn.Parameter(torch.zeros(backbone.embed_dim))
            if patch_target == "features":
                self.patch_regressor = nn.Linear(backbone.embed_dim, backbone.embed_dim)
            else:
                if not shared_patch_head:
                    self.patch_head = new_head()
                    self.patch_teacher = EMATeacher(self.patch_head, ema)
                self.register_buffer("patch_center", torch.zeros(1, 1, out_dim))
        self.shared_patch_head = shared_patch_head and patch_loss_weight > 0
        self.region_loss_weight = region_loss_weight
        if region_loss_weight > 0:
            self.region_head = new_head()
            self.region_teacher = EMATeacher(self.region_head, ema)
            self.register_buffer("region_center", torch.zeros(1, 1, out_dim))

    def current_teacher_temp(self) -> float:
        """Linear warm-up from warmup_teacher_temp to teacher_temp over the first warmup_teacher_frac of training."""
        w = min(1.0, float(self.progress) / max(self.warmup_teacher_frac, 1e-8))
        return self.warmup_teacher_temp + w * (self.teacher_temp - self.warmup_teacher_temp)

    def training_loss(self, views):
        b, globals_ = len(views[0]), torch.cat(views[:2])
        patches, tt = self.patch_loss_weight > 0, self.current_teacher_temp()
        region = self.region_loss_weight > 0
        with torch.no_grad():
            t_feats, t_patches = self._encode(self.teacher.module[0], globals_, patches or region)
            teacher_out = self.teacher.module[1](t_feats)
        mask = self._patch_mask(len(globals_), t_patches.shape[1], globals_.device) if patches else None
        # student: one backbone pass per resolution
        keep = None
        if self.student_keep < 1.0:  # MSN: the student sees a random subset of each global view's patches
            n = self.backbone.model.patch_embed.num_patches
            keep = torch.rand(len(globals_), n, device=globals_.device).argsort(1)[:, :max(1, round(self.student_keep * n))]
        feats_global, s_patches = self._encode(self.backbone, globals_, patches or region, mask, keep)
        local_tokens = None
        if len(views) > 2 and region:
            local_feats, local_tokens = self.backbone.pooled_and_patches(torch.cat(views[2:]))
            feats = [feats_global, local_feats]
        else:
            feats = [feats_global] + ([self.backbone(torch.cat(views[2:]))] if len(views) > 2 else [])
        student_out = list(self.head(torch.cat(feats)).split(b))
        if self.centering == "sinkhorn":
            loss = cross_view_loss(student_out, list(sinkhorn_knopp(teacher_out, tt).chunk(2)), self.student_temp)
        else:
            loss = dino_loss(student_out, list(teacher_out.chunk(2)), self.center, self.student_temp, tt)
            self._update_center(self.center, teacher_out)
        out = {"loss": loss, "teacher_temp": torch.tensor(tt), "embedding": feats_global[:b].detach()}
        if self.me_max_weight > 0:
            me_max = mean_entropy(student_out, self.student_temp)
            out.update(loss=out["loss"] - self.me_max_weight * me_max, me_max=me_max.detach(), dino_loss=loss.detach())
        if self.koleo_weight > 0:
            koleo = sum(koleo_loss(f) for f in feats_global.chunk(2))
            out.update(loss=out["loss"] + self.koleo_weight * koleo, koleo=koleo.detach(), dino_loss=loss.detach())
        if region:
            region_loss = self._region_loss(s_patches, local_tokens, t_patches, tt, b)
            out.update(loss=out["loss"] + self.region_loss_weight * region_loss, region_loss=region_loss.detach(),
                       cls_loss=loss.detach())
        if patches:
            rows = patch_rows(mask)  # the heads score the masked patches only
            weights, scored = patch_row_weights(mask, rows), mask[rows]
            if self.patch_target == "features":
                patch_loss = masked_feature_regression(self.patch_regressor(s_patches[rows]), t_patches[rows],
                                                       weights, len(mask))
            else:
                patch_loss = self._prototype_patch_loss(s_patches[rows], t_patches[rows], weights, scored, len(mask), tt)
            out.update(loss=out["loss"] + self.patch_loss_weight * patch_loss, cls_loss=loss.detach(),
                       patch_loss=patch_loss.detach(), masked_frac=mask.float().mean())
        return out

    def _prototype_patch_loss(self, s_rows: torch.Tensor, t_rows: torch.Tensor, weights: torch.Tensor,
                              scored: torch.Tensor, batch: int, tt: float) -> torch.Tensor:
        """iBOT's term over the scored patch rows (M, D) of student and teacher: the patch heads' distributions,
        the teacher's centred (or Sinkhorn-Knopp) and sharpened; the patch centre follows the masked rows."""
        student_head, teacher_head = ((self.head, self.teacher.module[1]) if self.shared_patch_head
                                      else (self.patch_head, self.patch_teacher.module))
        with torch.no_grad():
            teacher_patch = teacher_head(t_rows)                                                # (M, K)
        student_patch = student_head(s_rows)
        if self.patch_centering == "sinkhorn":  # over every masked patch of the global batch
            q = torch.zeros_like(teacher_patch, dtype=torch.float32)
            q[scored] = sinkhorn_knopp(teacher_patch[scored], tt)
            return masked_patch_cross_entropy(student_patch, q, weights, batch, self.student_temp)
        patch_loss = patch_distillation_loss(student_patch, teacher_patch, weights, batch,
                                             self.patch_center, self.student_temp, tt)
        self._update_center(self.patch_center, teacher_patch[scored])
        return patch_loss

    def _region_loss(self, s_global: torch.Tensor, s_local: torch.Tensor | None, t_global: torch.Tensor, tt: float,
                     b: int) -> torch.Tensor:
        """EsViT's term over the student's global (2B, N, D) and local (L*B, n, D) tokens and the teacher's global
        tokens (2B, N, D); the region centre follows the teacher's token logits."""
        d = t_global.shape[-1]
        with torch.no_grad():
            t_logits = self.region_teacher.module(t_global.reshape(-1, d)).view(*t_global.shape[:2], -1)
        q = centred_teacher_probs(t_logits, self.region_center, tt)
        student = [s_global] + ([s_local] if s_local is not None else [])
        s_logits = self.region_head(torch.cat([x.reshape(-1, d) for x in student]))
        s_logits = s_logits.split([x.shape[0] * x.shape[1] for x in student])
        s_tokens = [v for x in student for v in x.split(b)]
        s_logits = [v for x, lg in zip(student, s_logits) for v in lg.view(*x.shape[:2], -1).split(b)]
        loss = region_matching_loss(s_tokens, s_logits, list(t_global.split(b)), list(q.split(b)), self.student_temp)
        self._update_center(self.region_center, t_logits.reshape(-1, t_logits.shape[-1]))
        return loss

    def _encode(self, backbone, x: torch.Tensor, patches: bool, mask: torch.Tensor | None = None,
                keep: torch.Tensor | None = None):
        """(pooled features, patch tokens or None): with ``patches`` or ``keep`` one token pass gives both
        (``mask``ed patches replaced by the mask token; only the ``keep`` indices entering the transformer),
        else the plain forward (any backbone, ResNets included)."""
        if not patches and keep is None:
            return backbone(x), None
        return backbone.pooled_and_patches(x, keep=keep, mask=mask,
                                           mask_token=None if mask is None else self.mask_token)

    def _patch_mask(self, batch: int, n: int, device) -> torch.Tensor:
        if self.mask_shape == "block":
            grid = tuple(self.backbone.model.patch_embed.grid_size)
            return random_block_mask(batch, grid, self.mask_prob, self.mask_ratio, device=device)
        return random_patch_mask(batch, n, self.mask_prob, self.mask_ratio, device)

    @torch.no_grad()
    def _update_center(self, center: torch.Tensor, teacher_logits: torch.Tensor) -> None:
        """centre <- m * centre + (1 - m) * mean of the teacher logits (rows) over the global batch (sums and
        counts all-reduced under DDP, so ranks may hold different numbers of rows and every rank keeps the same
        centre); no rows anywhere leaves the centre as it is."""
        logits = teacher_logits.float()
        sum_count = distributed.all_reduce_mean(torch.cat([logits.sum(0), logits.new_tensor([len(logits)])]))
        batch_center = (sum_count[:-1] / sum_count[-1].clamp(min=1.0)).view_as(center)
        moved = center * self.center_momentum + batch_center * (1 - self.center_momentum)
        center.copy_(torch.where(sum_count[-1] > 0, moved, center))  # no host sync

    def on_after_backward(self) -> None:
        """DINO's ``cancel_gradients_last_layer``: over the first ``freeze_last_layer`` of training the
        prototype layers get no gradient (None: the optimiser skips them, weight decay included)."""
        if not self.freeze_last_layer or float(self.progress) >= self.freeze_last_layer:  # off: no host sync
            return
        for head in (self.head, getattr(self, "patch_head", None), getattr(self, "region_head", None)):
            if head is not None:
                for p in head.last_layer.parameters():
                    p.grad = None

    def on_step_end(self, step: int, total_steps: int) -> None:
        self.teacher.update(nn.Sequential(self.backbone, self.head), step, total_steps)
        if hasattr(self, "patch_teacher"):
            self.patch_teacher.update(self.patch_head, step, total_steps)
        if self.region_loss_weight > 0:
            self.region_teacher.update(self.region_head, step, total_steps)
        self.progress.fill_(step / max(1, total_steps))

    @property
    def encoder(self) -> nn.Module:
        return self.teacher.module[0]  # DINO evaluates the teacher backbone
