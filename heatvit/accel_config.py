"""Configuration of the token buffers: the on-chip BRAM that holds a ViT's activations between layers.

The layer controller (issue 11) keeps every activation of a forward pass on chip in a few
token-major int8 buffers (:mod:`heatvit.isa` lists them and their roles).  Their sizes follow
from three numbers, held here; :class:`heatvit.config.AcceleratorConfig` composes this section
as ``buffers``.  Left out, it is derived from the other sections (the DeiT-T/S/B sizes at 224 px,
clipped to what the GEMM engine and the nonlinear units accept); given explicitly, a buffer
larger than a unit that must process it is an error naming both limits (:func:`check_against`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .validate import check_int as _check_int


@dataclass(frozen=True)
class BufferConfig:
    """Geometry of the token buffers (every buffer is token-major int8)."""

    max_tokens: int = 197
    """Rows of every token buffer: the largest token count (class token included; 197 = DeiT at
    224 px with 16 px patches)."""
    max_dim: int = 768
    """Width of the residual-stream buffers: the largest embedding dimension D (DeiT-B)."""
    max_hidden: int = 3072
    """Width of the MLP hidden buffer (also the patch buffer): the largest MLP width, patch
    length ``in_chans * patch**2`` and class count."""

    def __post_init__(self):
        own = "BufferConfig"
        _check_int(own, "max_tokens", self.max_tokens, 2, 4096)
        _check_int(own, "max_dim", self.max_dim, 1, 8192)
        _check_int(own, "max_hidden", self.max_hidden, 1, 65535)

    def to_dict(self) -> dict:
        import dataclasses
        return dataclasses.asdict(self)


def derived(gemm, nonlinear, toksel) -> BufferConfig:
    """The default section for the given unit sections: :class:`BufferConfig`'s defaults clipped
    to the largest sizes the units accept."""
    d = BufferConfig()
    return BufferConfig(
        max_tokens=max(2, min(d.max_tokens, nonlinear.max_tokens, toksel.max_tokens, gemm.max_k, gemm.max_n)),
        max_dim=min(d.max_dim, nonlinear.max_dim, gemm.max_k, gemm.max_n),
        max_hidden=min(d.max_hidden, gemm.max_k, gemm.max_n))


def check_against(buf: BufferConfig, gemm, nonlinear, toksel) -> None:
    """Raise ``ValueError`` if a buffer holds more than a unit that processes it can take."""
    limits = [
        ("max_tokens", buf.max_tokens, "nonlinear.max_tokens", nonlinear.max_tokens),  # softmax rows
        ("max_tokens", buf.max_tokens, "toksel.max_tokens", toksel.max_tokens),
        ("max_tokens", buf.max_tokens, "gemm.max_n", gemm.max_n),                      # q.k^T: N = tokens
        ("max_tokens", buf.max_tokens, "gemm.max_k", gemm.max_k),                      # attn.v: K = tokens
        ("max_dim", buf.max_dim, "nonlinear.max_dim", nonlinear.max_dim),              # LayerNorm rows
        ("max_dim", buf.max_dim, "gemm.max_k", gemm.max_k),
        ("max_dim", buf.max_dim, "gemm.max_n", gemm.max_n),
        ("max_hidden", buf.max_hidden, "gemm.max_k", gemm.max_k),                      # fc2: K = hidden
        ("max_hidden", buf.max_hidden, "gemm.max_n", gemm.max_n),                      # fc1: N = hidden
    ]
    for name, value, other, limit in limits:
        if value > limit:
            raise ValueError(f"AcceleratorConfig: buffers.{name} = {value} exceeds {other} = {limit}; "
                             f"allowed [1, {limit}]")
