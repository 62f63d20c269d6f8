"""Buffer crossbar: the active executor's ``src`` / ``aux`` reads and ``dst`` writes to the token
buffers the descriptor names.

Ports (executor side, :mod:`.ports` payloads; ``lanes`` int8 per word):

* ``src``, ``aux`` (:func:`.ports.buffer_read`, flipped): read commands in, one data word back
  per command, in order per port.  ``src_buf`` / ``aux_buf`` (buffer ids, ``heatvit.isa.Buf``
  order = the order of ``specs``) say where each goes; they must hold still while reads are
  outstanding (the top latches them per descriptor).  Both may name the same buffer: its one
  read port is shared round-robin and each word returns to the port that asked, so each port
  takes its data independently of the other (an executor may join the two streams).
* ``dst`` (:func:`.ports.buffer_write`, flipped): writes to buffer ``dst_buf`` (always ready).
* ``bufs``: every buffer's ``rd_cmd_<name>`` / ``rd_<name>`` / ``wr_<name>``
  (:class:`.token_buffer.TokenBuffers`' signature, flipped: connect the two directly).
* ``flush`` (pulse): drop every outstanding read and buffered word (abort); commands are not
  taken in that cycle.

Each port has a return FIFO of :data:`RETURN_DEPTH` words and issues a read only when the FIFO
has room for it, so the buffers' outputs are always taken (``rd.ready`` = 1) and a port that
stalls never blocks the other: full rate per buffer (one word per cycle, shared when both ports
read one buffer).  An id past the last buffer leaves the port unconnected (``cmd.ready`` = 0).
"""

from __future__ import annotations

from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from . import ports

RETURN_DEPTH = 4
"""Words a read port may have requested and not yet taken (covers the 3-cycle round trip)."""
BUF_ID_BITS = 4


def buffers_signature(names, lanes: int) -> wiring.Signature:
    """:class:`.token_buffer.TokenBuffers`' signature (buffer side) for buffers ``names``."""
    members = {}
    for name in names:
        members[f"wr_{name}"] = In(ports.buffer_write(lanes))
        members[f"rd_cmd_{name}"] = In(stream.Signature(ports.buffer_addr()))
        members[f"rd_{name}"] = Out(stream.Signature(8 * lanes))
    return wiring.Signature(members)


class BufferCrossbar(wiring.Component):
    def __init__(self, specs: dict[str, tuple[int, int]], lanes: int):
        self.names = list(specs)
        self.lanes = lanes
        super().__init__({
            "src": In(ports.buffer_read(lanes)), "aux": In(ports.buffer_read(lanes)),
            "dst": In(ports.buffer_write(lanes)),
            "src_buf": In(BUF_ID_BITS), "aux_buf": In(BUF_ID_BITS), "dst_buf": In(BUF_ID_BITS),
            "flush": In(1),
            "bufs": In(buffers_signature(self.names, lanes)),
        })

    @classmethod
    def from_config(cls, acc) -> "BufferCrossbar":
        from heatvit import isa
        specs = {b.name.lower(): (s.rows, s.cols) for b, s in isa.token_buffers(acc).items()}
        return cls(specs, isa.column_align(acc))

    def elaborate(self, platform):
        m = Module()
        word = 8 * self.lanes
        rports = {"src": (self.src, self.src_buf), "aux": (self.aux, self.aux_buf)}
        fifo, credit, issue = {}, {}, {}
        for p, (port, _) in rports.items():
            f = fifo[p] = SyncFIFO(width=word, depth=RETURN_DEPTH)
            m.submodules[f"{p}_ret"] = ResetInserter(self.flush)(f)
            credit[p] = Signal(range(RETURN_DEPTH + 1), name=f"{p}_credit")
            issue[p] = Signal(name=f"{p}_issue")
            taken = Signal(name=f"{p}_taken")
            m.d.comb += [port.data.valid.eq(f.r_rdy), port.data.payload.eq(f.r_data),
                         f.r_en.eq(port.data.ready), taken.eq(f.r_rdy & port.data.ready)]
            with m.If(self.flush):
                m.d.sync += credit[p].eq(0)
            with m.Else():
                m.d.sync += credit[p].eq(credit[p] + issue[p] - taken)

        # Round-robin between the two ports when both ask one buffer in the same cycle.
        prefer_aux = Signal()
        for i, name in enumerate(self.names):
            rd_cmd = getattr(self.bufs, f"rd_cmd_{name}")
            rd = getattr(self.bufs, f"rd_{name}")
            wr = getattr(self.bufs, f"wr_{name}")
            want = {}
            for p, (port, buf) in rports.items():
                want[p] = Signal(name=f"{name}_want_{p}")
                m.d.comb += want[p].eq((buf == i) & port.cmd.valid & (credit[p] < RETURN_DEPTH) & ~self.flush)
            grant_aux = Signal(name=f"{name}_grant_aux")
            m.d.comb += grant_aux.eq(want["aux"] & (~want["src"] | prefer_aux))
            src_port, aux_port = rports["src"][0], rports["aux"][0]
            with m.If(grant_aux):
                m.d.comb += rd_cmd.payload.eq(aux_port.cmd.payload)
            with m.Else():
                m.d.comb += rd_cmd.payload.eq(src_port.cmd.payload)
            m.d.comb += rd_cmd.valid.eq(want["src"] | want["aux"])
            go = rd_cmd.valid & rd_cmd.ready
            with m.If(go):
                with m.If(grant_aux):
                    m.d.comb += [aux_port.cmd.ready.eq(1), issue["aux"].eq(1)]
                with m.Else():
                    m.d.comb += [src_port.cmd.ready.eq(1), issue["src"].eq(1)]
                with m.If(want["src"] & want["aux"]):
                    m.d.sync += prefer_aux.eq(~grant_aux)
            # The word in the buffer's output register belongs to the port granted last cycle.
            tag_aux = Signal(name=f"{name}_tag_aux")
            with m.If(rd_cmd.ready):
                m.d.sync += tag_aux.eq(grant_aux)
            m.d.comb += rd.ready.eq(1)
            for p, is_aux in (("src", 0), ("aux", 1)):
                with m.If(rd.valid & (tag_aux == is_aux) & (rports[p][1] == i) & ~self.flush):
                    m.d.comb += [fifo[p].w_en.eq(1), fifo[p].w_data.eq(rd.payload)]
            # -- writes ------------------------------------------------------------------------------
            m.d.comb += wr.payload.eq(self.dst.payload)
            with m.If(self.dst_buf == i):
                m.d.comb += [wr.valid.eq(self.dst.valid), self.dst.ready.eq(wr.ready)]
        return m
