"""The GEMM executor's wide weight stream: ``P = acc.weight_beats_per_cycle`` AXI4 read masters
(one AXI HP port each) side by side, ``P`` beats (``P * shell.data_bytes`` bytes) a cycle.

The compiler stores a GEMM's ``weights`` part striped over the ports
(:func:`heatvit.isa.stripe_weights`): ``P`` contiguous shares of ``B`` beats each, share ``p``
holding the stream's beats ``p, p + P, p + 2P, ...``.  One request ``(region, offset, beats =
B)`` on ``rd`` becomes request ``(region, offset + p * B * D, B)`` on port ``p`` (each a
:class:`.dma_ports.DmaPorts`: region bases, window and alignment checks, INCR bursts split at
4 KiB lines, errors, abort), and ``rd.data`` carries the ports' ``j``-th beats side by side
(port 0 in the low bits): the stream's ``j``-th ``P * D`` bytes, in order.  A wide beat leaves
only when every port has its beat, and every port's beat leaves with it, so the ports never get
out of step.

* ``base``: the region bases (the top's registers, as for the shell's own DMA).
* ``rd``: a :func:`.ports.dma_read` client of ``P * data_width`` bits (the GEMM executor's ``wdma``).
* ``m_axi[p]``: the ports' AXI4 masters (reads only; the write channels stay idle).
* ``abort``, ``clear``: to every port (as :class:`.dma_ports.DmaPorts`).
* ``error``: the first port's non-zero error code (an :class:`~heatvit.errors.ErrorCode`);
  ``idle``: every port quiet; ``progress``: a handshake on any port.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from heatvit.config import AcceleratorConfig

from ..shell.axi import axi4_signature
from . import ports
from .dma_ports import BASE_BITS, DmaPorts
from .ports import DmaRegion


class WeightPorts(wiring.Component):
    """See the module docstring."""

    def __init__(self, acc: AcceleratorConfig):
        if not isinstance(acc, AcceleratorConfig):
            raise TypeError(f"WeightPorts takes an AcceleratorConfig, not {acc!r}")
        if acc.weight_beats_per_cycle < 2:
            raise ValueError(f"WeightPorts needs AcceleratorConfig.weight_beats_per_cycle >= 2, "
                             f"not {acc.weight_beats_per_cycle!r} (one beat a cycle: the shell's own DMA)")
        self.acc, self.n = acc, acc.weight_beats_per_cycle
        s = acc.shell
        super().__init__({
            "base": In(data.ArrayLayout(BASE_BITS, len(DmaRegion))),
            "rd": In(ports.dma_read(self.n * s.data_width)),
            "m_axi": Out(axi4_signature(s)).array(self.n),
            "abort": In(1), "clear": In(1),
            "error": Out(8), "idle": Out(1), "progress": Out(1),
        })

    def elaborate(self, platform):
        s = self.acc.shell
        m = Module()
        dps = []
        for p in range(self.n):
            m.submodules[f"port{p}"] = dp = DmaPorts(self.acc, 1, 1)
            wiring.connect(m, wiring.flipped(self.m_axi[p]), dp.m_axi)
            m.d.comb += [dp.base.eq(self.base), dp.abort.eq(self.abort), dp.clear.eq(self.clear)]
            dps.append(dp)

        # -- the request: to every port, each at its share --------------------------------------------
        req = self.rd.req
        taken = Signal(self.n)           # ports that took the request already (they are alike)
        share = Signal(len(req.payload.offset))
        m.d.comb += share.eq(req.payload.beats << s.size_code)
        for p, dp in enumerate(dps):
            q = dp.rd[0].req
            m.d.comb += [q.payload.region.eq(req.payload.region), q.payload.beats.eq(req.payload.beats),
                         q.payload.offset.eq(req.payload.offset + share * p),
                         q.valid.eq(req.valid & ~taken[p])]
        done = Cat(*(taken[p] | dps[p].rd[0].req.ready for p in range(self.n)))
        m.d.comb += req.ready.eq(done.all())
        with m.If(req.valid & req.ready):
            m.d.sync += taken.eq(0)
        with m.Elif(req.valid):
            m.d.sync += taken.eq(done)
        with m.If(self.abort):
            m.d.sync += taken.eq(0)

        # -- the data: one beat of every port at once ---------------------------------------------------
        all_valid = Cat(*(dp.rd[0].data.valid for dp in dps)).all()
        m.d.comb += [self.rd.data.valid.eq(all_valid),
                     self.rd.data.payload.eq(Cat(*(dp.rd[0].data.payload for dp in dps)))]
        for dp in dps:
            m.d.comb += dp.rd[0].data.ready.eq(self.rd.data.ready & all_valid)
            m.d.comb += dp.wr[0].req.valid.eq(0)

        # -- status -------------------------------------------------------------------------------------
        for dp in reversed(dps):
            with m.If(dp.error != 0):
                m.d.comb += self.error.eq(dp.error)
        m.d.comb += [self.idle.eq(Cat(*(dp.idle for dp in dps)).all()),
                     self.progress.eq(Cat(*(dp.progress for dp in dps)).any())]
        return m
