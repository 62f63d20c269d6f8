"""The ports every descriptor executor of the layer controller shares.

The layer controller runs one descriptor at a time.  The sequencer hands a runnable descriptor
(decoded fields, live-clipped shape: :func:`.descriptor.fields_layout`) to the executor of its
opcode; the top (``rtl/accel/top.py``) routes that executor's ports:

* ``src`` / ``aux`` (buffer reads) to the token buffers named by the descriptor's ``src`` /
  ``aux`` fields, ``dst`` (buffer writes) to the buffer named by ``dst``.  ``src`` and ``aux``
  may name the same buffer (``q @ K^T`` reads ``QKV`` twice); the top arbitrates its one read
  port and returns each word to the port that asked for it, so an executor may have commands
  outstanding on both, as long as it takes ``data`` on each port independently of the other
  (no executor may wait for ``aux`` data before taking ``src`` data, or the reverse).
* ``dma_rd`` / ``dma_wr`` to the shell's AXI4 master DMA: a request names a :class:`DmaRegion`
  (the top adds that region's base address register), a byte ``offset`` (a multiple of the
  AXI beat size, ``ShellConfig.data_bytes``) and a count of ``beats`` (``data_width`` bits
  each, little-endian: byte ``i`` of a beat is bits ``8i .. 8i+7``).  Read data comes back in
  request order.  Write data is sent after its request, ``beats`` beats with byte strobes.
* ``cmd`` in, ``done`` (one-cycle pulse) and ``error`` (:class:`~heatvit.errors.ErrorCode`,
  valid with ``done``; 0 = success) out.  ``abort`` (pulse, the sequencer's watchdog): drop
  the descriptor at once and return to idle without pulsing ``done``; the top flushes the DMA
  and the buffers' read pipelines.

An executor leaves the ports it does not use undriven (``valid`` = 0, ``ready`` = 0).  Each
port's payloads are the same for every executor, so the top's crossbar is one mux per port.
"""

from __future__ import annotations

import enum

from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from heatvit import isa
from heatvit.config import AcceleratorConfig

from .descriptor import fields_layout
from .token_buffer import ROW_BITS, WORD_BITS

OFFSET_BITS = 32
"""Width of a DMA request's byte offset into its region."""
BEATS_BITS = 24
"""Width of a DMA request's beat count."""


class DmaRegion(enum.IntEnum):
    """A DMA request's region; the top holds each base address (shell registers).  The first
    four are :class:`heatvit.isa.Region` (what descriptors name); the rest are the
    controller's own."""
    MODEL = int(isa.Region.MODEL)
    INPUT = int(isa.Region.INPUT)
    OUTPUT = int(isa.Region.OUTPUT)
    DEBUG = int(isa.Region.DEBUG)
    PROGRAM = 4
    """Descriptors, 32 bytes each at ``program + 32 * index`` (the sequencer's fetches)."""
    TRACE = 5
    """SELECT records (token counts, keep masks) at the offsets the descriptors name."""
    CYCLES = 6
    """Per-descriptor cycle records, 16 bytes each (index, opcode, start, end) in program order."""


REGION_BITS = 3


def buffer_addr() -> data.StructLayout:
    """A token-buffer word: ``row`` (token), ``word`` (column / lanes)."""
    return data.StructLayout({"row": ROW_BITS + 1, "word": WORD_BITS + 1})


def buffer_write_layout(lanes: int) -> data.StructLayout:
    """A token-buffer write: address, ``lanes`` int8 (lane 0 = the lowest column), a lane mask."""
    return data.StructLayout({**buffer_addr().members, "data": 8 * lanes, "mask": lanes})


def buffer_read(lanes: int) -> wiring.Signature:
    """A token-buffer read port (executor side): ``cmd`` out, one ``data`` word of ``lanes``
    int8 back per command, in order."""
    return wiring.Signature({
        "cmd": Out(stream.Signature(buffer_addr())),
        "data": In(stream.Signature(8 * lanes)),
    })


def buffer_write(lanes: int) -> stream.Signature:
    """A token-buffer write port (executor side, out)."""
    return stream.Signature(buffer_write_layout(lanes))


def dma_request() -> data.StructLayout:
    return data.StructLayout({"region": REGION_BITS, "offset": OFFSET_BITS, "beats": BEATS_BITS})


def dma_read(data_width: int) -> wiring.Signature:
    """A DMA read client (executor side): ``req`` out, ``req.beats`` beats of ``data`` back."""
    return wiring.Signature({
        "req": Out(stream.Signature(dma_request())),
        "data": In(stream.Signature(data_width)),
    })


def dma_write(data_width: int) -> wiring.Signature:
    """A DMA write client (executor side): ``req`` out, then ``req.beats`` beats of ``data``
    (``strb``: one bit per byte, 1 = write it)."""
    return wiring.Signature({
        "req": Out(stream.Signature(dma_request())),
        "data": Out(stream.Signature(data.StructLayout({"data": data_width,
                                                        "strb": data_width // 8}))),
    })


def executor_members(acc: AcceleratorConfig) -> dict:
    """The members of every executor's signature (add your own next to them)."""
    lanes = isa.column_align(acc)
    width = acc.shell.data_width
    return {
        "cmd": In(stream.Signature(fields_layout())),
        "done": Out(1), "error": Out(8), "abort": In(1),
        "src": Out(buffer_read(lanes)), "aux": Out(buffer_read(lanes)),
        "dst": Out(buffer_write(lanes)),
        "dma_rd": Out(dma_read(width)), "dma_wr": Out(dma_write(width)),
    }


def executor_signature(acc: AcceleratorConfig) -> wiring.Signature:
    return wiring.Signature(executor_members(acc))
