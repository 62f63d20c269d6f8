"""Payload layouts of the token-selector control unit's streams, derived from :class:`TokSelConfig`."""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from heatvit.toksel_config import TOKEN_BITS, TokSelConfig

ERROR_BITS = 8
"""Width of the result's error code (:class:`heatvit.errors.ErrorCode` values)."""


def command(cfg: TokSelConfig, chunks: bool = False) -> data.StructLayout:
    """One selector stage: ``n_tokens`` tokens (class token first), of which the last ``n_tail``
    are earlier package tokens (always kept); keep a token iff its score > ``threshold``.
    ``chunks=True`` (a unit with run-time token width): also ``chunks``, the token words per
    token of this stage, 1 .. ``cfg.chunks``."""
    fields = {"n_tokens": unsigned(cfg.count_bits), "n_tail": unsigned(cfg.count_bits),
              "threshold": unsigned(cfg.score_bits)}
    if chunks:
        fields["chunks"] = unsigned(cfg.chunks.bit_length())
    return data.StructLayout(fields)


def score(cfg: TokSelConfig) -> data.StructLayout:
    """A token's combined keep score, UQ0.score_bits (probability ``score / 2**score_bits``)."""
    return data.StructLayout({"score": unsigned(cfg.score_bits)})


def token_word(cfg: TokSelConfig) -> data.ArrayLayout:
    """``lanes`` int8 channels of one token (one activation-buffer word)."""
    return data.ArrayLayout(signed(TOKEN_BITS), cfg.lanes)


def write_beat(cfg: TokSelConfig, positions: bool = False, data_field: bool = True) -> data.StructLayout:
    """A dense-buffer write: word ``addr = chunk * N' + position``; ``last`` on the final write.
    ``positions=True`` (a unit with run-time token width): ``chunk`` and ``pos`` (the address's
    two parts, for a buffer addressed by token row and column) instead of ``addr``.
    ``data_field=False`` (a unit whose user has the data: ``TokenSelectorUnit(pkg_port=True)``):
    no ``data``."""
    if positions:
        addr = {"chunk": unsigned(max(1, (cfg.chunks - 1).bit_length())), "pos": unsigned(cfg.count_bits)}
    else:
        addr = {"addr": unsigned(cfg.addr_bits)}
    return data.StructLayout({**addr, **({"data": token_word(cfg)} if data_field else {}), "last": unsigned(1)})


def result(cfg: TokSelConfig) -> data.StructLayout:
    """The stage's outcome: new token count, new always-kept tail, kept input tokens, error code."""
    return data.StructLayout({"n_tokens": unsigned(cfg.count_bits), "n_tail": unsigned(cfg.count_bits),
                              "n_kept": unsigned(cfg.count_bits), "error": unsigned(ERROR_BITS)})


def entry(cfg: TokSelConfig) -> data.StructLayout:
    """Per-token state kept between the score phase and the gather phase."""
    return data.StructLayout({"keep": unsigned(1), "weight": unsigned(cfg.score_bits)})
