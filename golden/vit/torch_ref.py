"""PyTorch twin of the golden ViT (optional: needs ``torch``; used by training and tests only).

Module names reproduce timm's DeiT exactly (``patch_embed.proj``, ``blocks.N.attn.qkv``,
``blocks.N.mlp.fc1``, ``norm``, ``head``), so ``state_dict()`` has timm's key names and loads
into :func:`heatvit.golden.vit.model.from_state_dict` and back.  torch is imported on first use
of this module only; nothing else in heatvit imports it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import ViTConfig


# -- fake quantization (quantization-aware training) --------------------------------------------

def fake_quant(x, scale: float, bits: int = 8):
    """``x`` rounded to the signed ``bits`` grid of ``scale`` the way the golden model's host and
    requantizer round (half away from zero, saturating), with a straight-through gradient."""
    v = x / scale
    lim = (1 << (bits - 1)) - 1
    q = torch.clamp(torch.trunc(v + torch.copysign(torch.full_like(v, 0.5), v)), -lim - 1, lim)
    return x + (q * scale - x).detach()


class FakeQuant:
    """The golden int8 scheme (:mod:`heatvit.golden.vit.quantize`) as fake quantization of the
    torch twin, for quantization-aware training: every Linear's weight rounded to int8 with one
    scale per output channel (``max |w_row| / 127``); every tensor the integer forward holds
    (the float forward's stage names: ``patches``, ``embed``, ``blocks.I.norm1``,
    ``blocks.I.attn.q`` .. ``ctx``, ``proj``, ``res1``, ``norm2``, ``mlp.fc1`` (16 bits),
    ``mlp.gelu``, ``mlp.fc2``, ``out``, ``norm``, ``logits``; the softmax probabilities at their
    fixed scale) rounded at its scale in ``scales`` (``QuantizedViT.scales`` of the model's
    post-training quantization).  Not modelled: the integer LayerNorm / softmax / GELU
    approximations, the bias rounding, the token selectors' own quantization.  Set it with
    :func:`set_fake_quant`."""

    def __init__(self, scales: dict):
        self.scales = scales

    def act(self, name: str, x, bits: int = 8):
        return fake_quant(x, self.scales[name], bits)

    @staticmethod
    def weight(w):
        flat = w.reshape(w.shape[0], -1)
        s = flat.detach().abs().amax(1).clamp_min(1e-12) / 127
        return fake_quant(flat, s[:, None]).reshape(w.shape)


def set_fake_quant(model, fq: FakeQuant | None) -> None:
    """Switch the fake quantization of a :class:`VisionTransformer` (and its blocks) on (``fq``)
    or off (None)."""
    model.fq = fq
    for i, blk in enumerate(model.blocks):
        blk.fq = blk.attn.fq = fq
        blk.prefix = blk.attn.prefix = f"blocks.{i}."


def _act(fq, name: str, x, bits: int = 8):
    return x if fq is None else fq.act(name, x, bits)


def _linear(lin: nn.Linear, x, fq):
    return lin(x) if fq is None else F.linear(x, fq.weight(lin.weight), lin.bias)


class PatchEmbed(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.dim, cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x, fq=None):
        w = self.proj.weight if fq is None else fq.weight(self.proj.weight)
        return F.conv2d(x, w, self.proj.bias, stride=self.proj.stride).flatten(2).transpose(1, 2)   # (B, N, D)


class Attention(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.heads, self.head_dim = cfg.heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.fq, self.prefix = None, ""

    def forward(self, x, key_mask=None):
        """``key_mask`` (B, N), 1 = token present: masked keys get no attention (training with
        soft-pruned tokens, as SPViT/DynamicViT do)."""
        b, n, d = x.shape
        fq, p = self.fq, self.prefix + "attn."
        qkv = _linear(self.qkv, x, fq).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = _act(fq, p + "q", qkv[0]), _act(fq, p + "k", qkv[1]), _act(fq, p + "v", qkv[2])
        scores = (q @ k.transpose(-2, -1)) * self.head_dim ** -0.5
        if key_mask is None:
            attn = scores.softmax(-1)
        else:
            # softmax over present keys only; eps keeps a row with every key masked finite
            m = key_mask[:, None, None, :]
            e = torch.exp(scores - scores.max(-1, keepdim=True).values) * m
            attn = e / (e.sum(-1, keepdim=True) + 1e-6)
        attn = _act(fq, p + "softmax", attn)
        ctx = _act(fq, p + "ctx", (attn @ v).transpose(1, 2).reshape(b, n, d))
        return _act(fq, p + "proj", _linear(self.proj, ctx, fq)), attn


class Mlp(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.dim, cfg.hidden)
        self.fc2 = nn.Linear(cfg.hidden, cfg.dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.mlp = Mlp(cfg)
        self.fq, self.prefix = None, ""

    def forward(self, x, key_mask=None):
        fq, p, mlp = self.fq, self.prefix, self.mlp
        a, attn = self.attn(_act(fq, p + "norm1", self.norm1(x)), key_mask)
        x = _act(fq, p + "res1", x + a)
        h = _act(fq, p + "mlp.fc1", _linear(mlp.fc1, _act(fq, p + "norm2", self.norm2(x)), fq), 16)
        m = _act(fq, p + "mlp.fc2", _linear(mlp.fc2, _act(fq, p + "mlp.gelu", F.gelu(h)), fq))
        return _act(fq, p + "out", x + m), attn


class VisionTransformer(nn.Module):
    """timm-compatible DeiT backbone (no distillation token)."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.randn(1, cfg.num_tokens, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.head = nn.Linear(cfg.dim, cfg.num_classes)
        self.apply(self._init)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.fq = None
        """:class:`FakeQuant` when quantization-aware (:func:`set_fake_quant`), else None."""

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def embed(self, x):
        fq = self.fq
        x = self.patch_embed(_act(fq, "patches", x), fq)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        if fq is None:
            return torch.cat([cls, x], dim=1) + self.pos_embed
        # the integer model: patch embedding and position rounded apart, the class row at once
        pos = self.pos_embed
        x = fq.act("embed", fq.act("patch_embed", x) + fq.act("pos", pos[:, 1:]))
        return torch.cat([fq.act("embed", cls + pos[:, :1]), x], dim=1)

    def head_logits(self, x):
        return _act(self.fq, "logits", _linear(self.head, _act(self.fq, "norm", self.norm(x))[:, 0], self.fq))

    def forward(self, x):
        x = self.embed(x)
        for blk in self.blocks:
            x, _ = blk(x)
        return self.head_logits(x)


def from_numpy_state_dict(cfg: ViTConfig, weights: dict) -> VisionTransformer:
    """A :class:`VisionTransformer` holding the given timm-named float32 arrays."""
    model = VisionTransformer(cfg)
    model.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()}, strict=True)
    return model.eval()


# -- token selectors (training) ---------------------------------------------------------------

class TokenSelector(nn.Module):
    """HeatViT/SPViT token selector on (B, N, D) tokens with a presence mask ``policy`` (B, N).

    Per head h on its channel slice x_h (head_dim channels), with per-head weights:
    LayerNorm -> Linear(dh, dh) -> GELU; first half of the channels local, second half averaged
    over present tokens (global); Linear(dh, dh/2) -> GELU -> Linear(dh/2, dh/4) -> GELU ->
    Linear(dh/4, 2) -> softmax gives t[n, h] = (keep, prune).  Head weights: per-token channel
    mean of each head's slice -> Linear(H, max(1, H//2)) -> GELU -> Linear(., H) -> sigmoid = a[n, h].
    Keep probabilities: sum_h a t / sum_h a (column 0 = keep).
    """

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        h, dh = cfg.heads, cfg.head_dim
        if dh % 4:
            raise ValueError(f"TokenSelector: head_dim = {dh}; allowed multiples of 4")
        self.heads, self.dh = h, dh
        self.norm_weight = nn.Parameter(torch.ones(h, dh))
        self.norm_bias = nn.Parameter(torch.zeros(h, dh))
        self.eps = cfg.eps
        dims = [(dh, dh), (dh, dh // 2), (dh // 2, dh // 4), (dh // 4, 2)]
        self.w = nn.ParameterList(nn.Parameter(torch.randn(h, o, i) * i ** -0.5) for i, o in dims)
        self.b = nn.ParameterList(nn.Parameter(torch.zeros(h, o)) for i, o in dims)
        hh = max(1, h // 2)
        self.head_fc1 = nn.Linear(h, hh)
        self.head_fc2 = nn.Linear(hh, h)

    def forward(self, x, policy):
        """Returns keep probabilities (B, N) and the per-token (keep, prune) scores (B, N, 2)."""
        b, n, d = x.shape
        xh = x.reshape(b, n, self.heads, self.dh).transpose(1, 2)            # (B, H, N, dh)
        y = F.layer_norm(xh, (self.dh,), eps=self.eps) * self.norm_weight[None, :, None] + self.norm_bias[None, :, None]
        y = F.gelu(torch.einsum("bhnk,hok->bhno", y, self.w[0]) + self.b[0][None, :, None])
        half = self.dh // 2
        p = policy[:, None, :, None]
        glob = (y[..., half:] * p).sum(2, keepdim=True) / p.sum(2, keepdim=True).clamp_min(1e-6)
        y = torch.cat([y[..., :half], glob.expand(-1, -1, n, -1)], -1)
        for i in (1, 2, 3):
            y = torch.einsum("bhnk,hok->bhno", y, self.w[i]) + self.b[i][None, :, None]
            if i < 3:
                y = F.gelu(y)
        t = y.softmax(-1)                                                   # (B, H, N, 2)
        a = torch.sigmoid(self.head_fc2(F.gelu(self.head_fc1(xh.mean(-1).transpose(1, 2)))))  # (B, N, H)
        score = (a.transpose(1, 2)[..., None] * t).sum(1) / a.sum(-1)[..., None]
        return score[..., 0], score


class PrunedViT(nn.Module):
    """Backbone + token selectors before ``plan.blocks``, trained with masks (batched).

    Each selector's hard Gumbel-softmax decision (training; or the threshold rule with a
    straight-through gradient, ``decision = "threshold"``) or ``keep > threshold`` decision (eval)
    multiplies the presence mask; pruned tokens stop being attended to, and one package token
    per selector (the keep-score weighted average of the tokens it pruned) is appended, as in
    HeatViT.  Returns logits, the mean keep ratio of each stage (over the patch tokens) and the
    final tokens with their mask.
    """

    def __init__(self, backbone: VisionTransformer, plan):
        super().__init__()
        self.backbone, self.plan = backbone, plan
        self.selectors = nn.ModuleList(TokenSelector(backbone.cfg) for _ in plan.blocks)
        self.tau = 1.0
        self.threshold = 0.5
        self.decision = "gumbel"
        """Training decisions: "gumbel" (hard Gumbel-softmax samples) or "threshold" (the
        inference rule ``keep_p > threshold`` with a straight-through gradient)."""
        self.expected: list = []
        """Per stage, after a forward pass: the expected kept fraction of the original patches
        (keep probabilities of the tokens present before the stage)."""

    def forward(self, x):
        bb = self.backbone
        x = bb.embed(x)
        b, n = x.shape[:2]
        n_patch = n - 1
        policy = torch.ones(b, n, device=x.device)
        patch = torch.zeros(b, n, device=x.device)
        patch[:, 1:] = 1                         # which slots are original patch tokens
        ratios = []
        self.expected = []
        for i, blk in enumerate(bb.blocks):
            if i in self.plan.blocks:
                s = self.plan.blocks.index(i)
                keep_p, score = self.selectors[s](x, policy)
                if self.training and self.decision == "gumbel":
                    dec = F.gumbel_softmax(torch.log(score.clamp_min(1e-8)), tau=self.tau, hard=True)[..., 0]
                else:                    # inference: keep when the combined keep score > threshold
                    dec = (keep_p > self.threshold).float()
                    if self.training:    # "threshold": the inference decision, straight-through gradient
                        dec = dec + keep_p - keep_p.detach()
                self.expected.append((keep_p * policy * patch).sum(1) / n_patch)
                dec = torch.where(patch > 0, dec, torch.ones_like(dec))         # class/package tokens stay
                pruned = policy * (1 - dec) * patch
                policy = policy * dec
                w = pruned * keep_p
                pkg = (w[..., None] * x).sum(1, keepdim=True) / w.sum(1, keepdim=True)[..., None].clamp_min(1e-6)
                x = torch.cat([x, pkg], 1)
                policy = torch.cat([policy, (pruned.sum(1, keepdim=True) > 0).float()], 1)
                patch = torch.cat([patch, torch.zeros(b, 1, device=x.device)], 1)
                ratios.append((policy * patch).sum(1) / n_patch)
            x, _ = blk(x, policy if self.plan.blocks and i >= self.plan.blocks[0] else None)
        return bb.head_logits(x), ratios, x, policy
