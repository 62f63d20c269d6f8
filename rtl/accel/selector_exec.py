"""The token selector's two executors as one: MEAN (:class:`.mean_exec.MeanExecutor`) and SELECT
(:class:`.select_exec.SelectExecutor`) in one module with one set of executor ports.

The two never run at once (the sequencer dispatches one descriptor at a time), so the top
routes one executor where it routed two: its multiplexer trees on the active executor's index
stay as deep as without the selectors (seven executors and "none" on three index bits, where the
two separate ones made nine on four), and synthesis sees MEAN's and SELECT's ``dst`` data
sources (the copied word, the means, the gathered token word) as one multiplexer instead of
MEAN's own, SELECT's and the top's extra level (docs/token_selector.md "After selshare").

Each descriptor goes to the executor of its opcode; from the accepted command to ``done`` the
ports are that executor's: its outputs are passed through, the others' handshake inputs held
low (payloads reach both).  Behaviour and cycles are the two executors' own, bit for bit and
cycle for cycle (the routing is combinational).  ``abort`` resets both.  Ports:
:func:`.ports.executor_members` plus SELECT's ``n_tail`` / ``set_live`` / ``new_n_live`` /
``new_n_tail``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import Out

from heatvit import isa
from heatvit.config import AcceleratorConfig

from .mean_exec import MeanExecutor
from ..toksel.combiner import reciprocal
from .select_exec import SelectExecutor

ROUTED = ("cmd", "src", "aux", "dst", "dma_rd", "dma_wr", "done", "error")
"""The executor ports this module shares between MEAN and SELECT (``abort`` resets both)."""


class SelectorExecutor(wiring.Component):
    """MEAN and SELECT in one executor (see the module docstring).  ``sum_lanes`` and
    ``max_heads`` go to :class:`.mean_exec.MeanExecutor` and :class:`.select_exec.SelectExecutor`."""

    IDLE_PORTS = tuple(p for p in MeanExecutor.IDLE_PORTS if p in SelectExecutor.IDLE_PORTS)
    """Ports neither executor uses (always idle): the top does not route them."""

    def __init__(self, acc: AcceleratorConfig, *, sum_lanes: int | None = None, max_heads: int | None = None):
        self.mean = MeanExecutor(acc, sum_lanes=sum_lanes)
        self.select = SelectExecutor(acc, max_heads=max_heads)
        for ex in (self.mean, self.select):      # their logic is built here, not elaborated alone
            ex._MustUse__silence = True
        self.acc = acc
        super().__init__(dict(self.select.signature.members))

    def elaborate(self, platform):
        m = Module()
        mean, sel = self.mean, self.select
        # one reciprocal for MEAN's 1/M and the score combiner's 1/(255 sum a): the active
        # executor's streams reach it
        m.submodules.recip = recip = reciprocal()
        ends = {ex: (stream.Signature(recip.i.payload.shape()).create(path=(name, "recip_i")),
                     stream.Signature(recip.o.payload.shape()).create(path=(name, "recip_o")))
                for ex, name in ((mean, "mean"), (sel, "select"))}
        # both executors' logic in this module, on their own port signals (never elaborated as
        # modules of their own)
        mean.logic(m, *ends[mean])
        sel.logic(m, *ends[sel])
        is_mean = Signal()                      # the command on offer is a MEAN
        mean_on = Signal()                      # the accepted descriptor is a MEAN
        (mi, mo), (si, so) = ends[mean], ends[sel]
        m.d.comb += [recip.i.valid.eq(Mux(mean_on, mi.valid, si.valid)),
                     recip.i.payload.eq(Mux(mean_on, mi.payload.as_value(), si.payload.as_value())),
                     mi.ready.eq(recip.i.ready & mean_on), si.ready.eq(recip.i.ready & ~mean_on),
                     mo.valid.eq(recip.o.valid & mean_on), so.valid.eq(recip.o.valid & ~mean_on),
                     mo.payload.eq(recip.o.payload), so.payload.eq(recip.o.payload),
                     recip.o.ready.eq(Mux(mean_on, mo.ready, so.ready))]
        m.d.comb += is_mean.eq(self.cmd.payload.opcode == isa.Op.MEAN)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += mean_on.eq(is_mean)
        m.d.comb += [mean.cmd.payload.eq(self.cmd.payload), sel.cmd.payload.eq(self.cmd.payload),
                     mean.cmd.valid.eq(self.cmd.valid & is_mean), sel.cmd.valid.eq(self.cmd.valid & ~is_mean),
                     self.cmd.ready.eq(Mux(is_mean, mean.cmd.ready, sel.cmd.ready))]
        mine = {p: v for p, _, v in self.signature.flatten(self)}
        flat = {id(ex): {p: (mem, v) for p, mem, v in ex.signature.flatten(ex)} for ex in (mean, sel)}
        for path, v in mine.items():
            if path[0] == "cmd" or path[0] == "abort":
                continue
            if path[0] not in ROUTED:               # SELECT's own ports
                mem, sv = flat[id(sel)][path]
                m.d.comb += (v.eq(sv) if mem.flow == Out else sv.eq(v))
                continue
            users = [(ex, on) for ex, on in ((mean, mean_on), (sel, ~mean_on))
                     if path[0] not in getattr(ex, "IDLE_PORTS", ())]
            if not users:
                continue
            mem = flat[id(users[0][0])][path][0]
            if mem.flow == Out:
                vals = [flat[id(ex)][path][1] for ex, _ in users]
                m.d.comb += v.eq(vals[0] if len(vals) == 1 else Mux(mean_on, vals[0], vals[1]))
            else:
                for ex, on in users:
                    ev = flat[id(ex)][path][1]
                    m.d.comb += ev.eq(v if path[-1] == "payload" or len(users) == 1 else v & on)
        return ResetInserter({"sync": self.abort})(m)
