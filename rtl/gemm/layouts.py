"""Payload layouts of the GEMM engine's streams, all derived from :class:`GemmConfig`."""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from heatvit.config import GemmConfig


def act_word(cfg: GemmConfig) -> data.ArrayLayout:
    """``rows`` activations, signed ``act_bits`` each; lane r = reduction offset r of the tile."""
    return data.ArrayLayout(signed(cfg.act_bits), cfg.rows)


def weight_word(cfg: GemmConfig) -> data.ArrayLayout:
    """``cols`` weights, signed ``weight_bits`` each; lane c = output channel offset c."""
    return data.ArrayLayout(signed(cfg.weight_bits), cfg.cols)


def out_word(cfg: GemmConfig) -> data.ArrayLayout:
    """``cols`` outputs, signed ``act_bits`` each (requantized, per-tensor output scale)."""
    return data.ArrayLayout(signed(cfg.act_bits), cfg.cols)


def acc_word(cfg: GemmConfig) -> data.ArrayLayout:
    """``cols`` accumulators, signed ``acc_bits`` each."""
    return data.ArrayLayout(signed(cfg.acc_bits), cfg.cols)


def psum_word(cfg: GemmConfig) -> data.ArrayLayout:
    """``cols`` column partial sums (one tile of ``rows`` products each)."""
    return data.ArrayLayout(signed(cfg.column_psum_bits), cfg.cols)


def tile_count_bits(cfg: GemmConfig) -> int:
    """Width of a count of weight tiles, 0 .. max_k_tiles * max_n_tiles."""
    return (cfg.max_k_tiles * cfg.max_n_tiles).bit_length()


def command(cfg: GemmConfig) -> data.StructLayout:
    """One GEMM: M x K times K x N (all unsigned).  ``sparse`` = 1: static block sparsity, the
    engine walks the ``tiles`` descriptor stream and the weight stream holds ``tiles`` (the
    number of non-zero weight tiles) tiles; ``sparse`` = 0: dense, ``tiles`` is ignored."""
    return data.StructLayout({"m": unsigned(cfg.m_bits), "k": unsigned(cfg.k_bits),
                              "n": unsigned(cfg.n_bits), "sparse": unsigned(1),
                              "tiles": unsigned(tile_count_bits(cfg))})


def tile_desc(cfg: GemmConfig) -> data.StructLayout:
    """One beat of a sparse GEMM's tile stream (:func:`heatvit.golden.tile_descriptors`): the
    non-zero weight tile ``(kt, current N tile)``, ``last`` on the last one of its N tile;
    ``empty`` = 1 stands for an N tile with no non-zero tile (``kt`` ignored, ``last`` = 1)."""
    return data.StructLayout({"kt": unsigned(max(1, (cfg.max_k_tiles - 1).bit_length())),
                              "last": unsigned(1), "empty": unsigned(1)})


def act_load(cfg: GemmConfig) -> data.StructLayout:
    """A write of one activation-buffer word (address ``kt * M + m``)."""
    return data.StructLayout({"addr": unsigned(cfg.act_addr_bits), "data": act_word(cfg)})


def channel_params(cfg: GemmConfig) -> data.StructLayout:
    """Requantization parameters of one output channel (see golden/requant.py)."""
    return data.StructLayout({"bias": signed(cfg.bias_bits), "mult": unsigned(cfg.mult_bits),
                              "shift": unsigned(cfg.shift_bits)})


def param_load(cfg: GemmConfig) -> data.StructLayout:
    """A write of channel ``channel``'s requantization parameters."""
    return data.StructLayout({"channel": unsigned(cfg.n_bits), "params": channel_params(cfg)})


def out_beat(cfg: GemmConfig) -> data.StructLayout:
    """One output row of ``cols`` lanes; ``last`` marks the final beat of the GEMM."""
    return data.StructLayout({"data": out_word(cfg), "last": unsigned(1)})


def row_tag(cfg: GemmConfig) -> data.StructLayout:
    """Bookkeeping that travels beside an activation row through the array."""
    return data.StructLayout({
        "valid": unsigned(1),
        "m": unsigned(max(1, (cfg.max_m - 1).bit_length())),
        "nt": unsigned(max(1, (cfg.max_n_tiles - 1).bit_length())),
        "first_k": unsigned(1),    # first reduction tile: start from zero
        "last_k": unsigned(1),     # last reduction tile: send to the output stage
        "lanes": unsigned(max(1, cfg.cols.bit_length())),  # output lanes < N in this tile
        "final": unsigned(1),      # the very last output row of the GEMM
    })


def raw_tag(cfg: GemmConfig) -> data.StructLayout:
    """Tag of a raw accumulator row: token ``m``, N tile ``nt``, ``last`` row of the GEMM (the
    same layout as :func:`heatvit.rtl.accel.epilogue.row_tag`)."""
    return data.StructLayout({"m": unsigned(max(1, (cfg.max_m - 1).bit_length())),
                              "nt": unsigned(max(1, (cfg.max_n_tiles - 1).bit_length())),
                              "last": unsigned(1)})


def raw_beat(cfg: GemmConfig) -> data.StructLayout:
    """One raw accumulator row of the raw-mode engine: ``acc`` (:func:`acc_word`), ``tag``
    (:func:`raw_tag`)."""
    return data.StructLayout({"acc": acc_word(cfg), "tag": raw_tag(cfg)})
