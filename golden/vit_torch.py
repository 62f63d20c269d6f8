"""PyTorch twin of the golden ViT (optional: needs ``torch``; used by training and tests only).

Module names reproduce timm's DeiT exactly (``patch_embed.proj``, ``blocks.N.attn.qkv``,
``blocks.N.mlp.fc1``, ``norm``, ``head``), so ``state_dict()`` has timm's key names and loads
into :func:`heatvit.golden.model_io.from_state_dict` and back.  torch is imported on first use
of this module only; nothing else in heatvit imports it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .vit_config import ViTConfig


class PatchEmbed(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.dim, cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)          # (B, N, D)


class Attention(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.heads, self.head_dim = cfg.heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x, key_mask=None):
        """``key_mask`` (B, N), 1 = token present: masked keys get no attention (training with
        soft-pruned tokens, as SPViT/DynamicViT do)."""
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = (q @ k.transpose(-2, -1)) * self.head_dim ** -0.5
        if key_mask is None:
            attn = scores.softmax(-1)
        else:
            # softmax over present keys only; eps keeps a row with every key masked finite
            m = key_mask[:, None, None, :]
            e = torch.exp(scores - scores.max(-1, keepdim=True).values) * m
            attn = e / (e.sum(-1, keepdim=True) + 1e-6)
        ctx = (attn @ v).transpose(1, 2).reshape(b, n, d)
        return self.proj(ctx), attn


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

    def forward(self, x, key_mask=None):
        a, attn = self.attn(self.norm1(x), key_mask)
        x = x + a
        return x + self.mlp(self.norm2(x)), attn


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

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def embed(self, x):
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + self.pos_embed

    def head_logits(self, x):
        return self.head(self.norm(x)[:, 0])

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
