"""The token selector's executors and COPY as one: COPY (:class:`.copy_exec.CopyExecutor`), MEAN
(:class:`.mean_exec.MeanExecutor`) and SELECT (:class:`.select_exec.SelectExecutor`) in one
module with one set of executor ports, built with the selectors (``AcceleratorConfig.selectors``;
without them the top builds the plain :class:`.copy_exec.CopyExecutor`, :attr:`SelectorExecutor.DENSE`).

The three never run at once (the sequencer dispatches one descriptor at a time), so the top
routes one executor where it would route three: its multiplexer trees on the active executor's
index have as many inputs as without the selectors (every executor input costs LUTs on each
routed bit: about 950 at the board's 64-lane words).  Inside, synthesis sees the ``dst`` data
sources of all three (the ``src`` word that COPY, MEAN's copied lanes and SELECT's gather pass
on, MEAN's means, the control unit's package word) as one multiplexer, and one
:class:`~heatvit.rtl.nonlinear.serial_recip.SerialReciprocal` serves MEAN's ``1/M`` and the
score combiner (docs/token_selector.md "After selshare").

Each descriptor goes to the executor of its opcode; from the accepted command to ``done`` the
ports are that executor's: its outputs are passed through, the others' handshake inputs held
low (payloads reach all).  Behaviour and cycles are the executors' own, bit for bit and cycle
for cycle (the routing is combinational).  ``abort`` resets all three.  Ports:
:func:`.ports.executor_members` plus SELECT's ``n_tail`` / ``set_live`` / ``new_n_live`` /
``new_n_tail``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import Out

from heatvit import isa
from heatvit.config import AcceleratorConfig

from ..toksel.combiner import PORT_RECIP_BITS, den_bits, reciprocal
from .copy_exec import CopyExecutor
from .mean_exec import MeanExecutor
from .select_exec import SelectExecutor

ROUTED = ("cmd", "src", "aux", "dst", "dma_rd", "dma_wr", "done", "error")
"""The executor ports this module shares between its executors (``abort`` resets them all)."""


class SelectorExecutor(wiring.Component):
    """COPY, MEAN and SELECT in one executor (see the module docstring).  ``sum_lanes`` and
    ``max_heads`` go to :class:`.mean_exec.MeanExecutor` and :class:`.select_exec.SelectExecutor`."""

    DENSE = CopyExecutor
    """The class the top builds for this one's non-selector opcode (COPY) without the selectors."""
    INSTANCE = "exec_select"
    """Its instance name in the top (:data:`heatvit.bench.resources.SELECTOR_MODULES`), not
    ``exec_copy``: without the selectors ``exec_copy`` is the plain COPY executor."""
    IDLE_PORTS = ("dma_rd",)
    """Ports none of the three uses (always idle): the top does not route them."""

    def __init__(self, acc: AcceleratorConfig, *, sum_lanes: int | None = None, max_heads: int | None = None):
        self.copy = CopyExecutor(acc)
        self.mean = MeanExecutor(acc, sum_lanes=sum_lanes)
        self.select = SelectExecutor(acc, max_heads=max_heads)
        for ex in (self.copy, self.mean, self.select):   # their logic is built here, not elaborated alone
            ex._MustUse__silence = True
            assert set(self.IDLE_PORTS) <= set(self._idle(ex))
        self.acc = acc
        super().__init__(dict(self.select.signature.members))

    @staticmethod
    def _idle(ex) -> tuple:
        return getattr(ex, "IDLE_PORTS", ()) + getattr(ex, "IDLE", ())

    def elaborate(self, platform):
        m = Module()
        copy, mean, sel = self.copy, self.mean, self.select
        # one reciprocal for MEAN's 1/M and the score combiner's 1/(255 sum a): the active
        # executor's streams reach it
        m.submodules.recip = recip = reciprocal(
            in_bits=max(PORT_RECIP_BITS, den_bits(sel.comb_cfg), mean.max_rows().bit_length()))
        ends = {id(ex): (stream.Signature(recip.i.payload.shape()).create(path=(name, "recip_i")),
                         stream.Signature(recip.o.payload.shape()).create(path=(name, "recip_o")))
                for ex, name in ((mean, "mean"), (sel, "select"))}
        # the three executors' logic in this module, on their own port signals (never elaborated
        # as modules of their own)
        copy.logic(m)
        mean.logic(m, *ends[id(mean)])
        sel.logic(m, *ends[id(sel)])
        m.d.comb += copy.abort.eq(self.abort)     # COPY's own abort handling (the reset below too)
        subs = ((copy, isa.Op.COPY), (mean, isa.Op.MEAN), (sel, isa.Op.SELECT))
        takes = [Signal(name=f"take_{op.name.lower()}") for _, op in subs]   # the command is for it
        ons = [Signal(name=f"on_{op.name.lower()}") for _, op in subs]       # the accepted descriptor is its
        for (ex, op), take in zip(subs, takes):
            m.d.comb += [take.eq(self.cmd.payload.opcode == op), ex.cmd.payload.eq(self.cmd.payload),
                         ex.cmd.valid.eq(self.cmd.valid & take)]
        m.d.comb += self.cmd.ready.eq(Mux(takes[0], copy.cmd.ready, Mux(takes[1], mean.cmd.ready, sel.cmd.ready)))
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [on.eq(take) for on, take in zip(ons, takes)]
        on_mean = ons[1]
        (mi, mo), (si, so) = ends[id(mean)], ends[id(sel)]
        m.d.comb += [recip.i.valid.eq(Mux(on_mean, mi.valid, si.valid)),
                     recip.i.payload.eq(Mux(on_mean, mi.payload.as_value(), si.payload.as_value())),
                     mi.ready.eq(recip.i.ready & on_mean), si.ready.eq(recip.i.ready & ~on_mean),
                     mo.valid.eq(recip.o.valid & on_mean), so.valid.eq(recip.o.valid & ~on_mean),
                     mo.payload.eq(recip.o.payload), so.payload.eq(recip.o.payload),
                     recip.o.ready.eq(Mux(on_mean, mo.ready, so.ready))]
        mine = {p: v for p, _, v in self.signature.flatten(self)}
        flat = {id(ex): {p: (mem, v) for p, mem, v in ex.signature.flatten(ex)} for ex, _ in subs}
        for path, v in mine.items():
            if path[0] in ("cmd", "abort"):
                continue
            if path[0] not in ROUTED:               # SELECT's own ports
                mem, sv = flat[id(sel)][path]
                m.d.comb += (v.eq(sv) if mem.flow == Out else sv.eq(v))
                continue
            users = [(ex, on) for (ex, _), on in zip(subs, ons) if path[0] not in self._idle(ex)]
            if not users:
                continue
            if flat[id(users[0][0])][path][0].flow == Out:
                # the active executor's value; the last user's when no other one is active
                out = flat[id(users[-1][0])][path][1]
                for ex, on in reversed(users[:-1]):
                    out = Mux(on, flat[id(ex)][path][1], out)
                m.d.comb += v.eq(out)
            else:
                for ex, on in users:
                    ev = flat[id(ex)][path][1]
                    m.d.comb += ev.eq(v if path[-1] == "payload" or len(users) == 1 else v & on)
        # dst's data as one multiplexer of the src word (COPY's, MEAN's copied lanes', SELECT's
        # gathered tokens': where the mask writes, SELECT's token word is the src word), MEAN's
        # means and the package word, on two selects (5 inputs a bit: one LUT), not the three
        # executors' own data multiplexers in a tree on the active executor
        m.d.comb += self.dst.payload.data.eq(
            Mux(ons[1] & mean.means_out, mean.means_word,
                Mux(ons[2] & sel.pkg_out, sel.pkg_word, self.src.data.payload)))
        return ResetInserter({"sync": self.abort})(m)
