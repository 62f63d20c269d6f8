"""Icarus runs of the accelerator: the cause of its first-GEMM hang, and a tiny whole program.

Icarus 11 applies a Verilog declaration's initial value without an event, so an ``always @*``
block of yosys' Verilog writer whose inputs never change (an idle executor's ``cmd.ready =
state == IDLE``, a dense GEMM's sparse-tile flags) never ran and kept its outputs X; the
accelerator stalled in its first GEMM until the watchdog's TIMEOUT.
:func:`heatvit.sim.runner.icarus_fixes` runs every such block once at time 0.  Kept tiny: a
4 x 4 array, the micro ViT of test_accel_top (one block: 5 GEMMs)."""

import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from heatvit.sim.runner import export_verilog, run_cocotb, simulator_available

pytestmark = pytest.mark.skipif(not simulator_available("icarus"), reason="iverilog not installed")
HERE = Path(__file__).parent


class Idle(wiring.Component):
    """``state`` leaves 0 only on ``go``; ``ready``, ``busy``, ``code``: combinational of it."""
    go: In(1)
    ready: Out(1)
    busy: Out(1)
    code: Out(4)

    def elaborate(self, platform):
        m = Module()
        state = Signal(2)
        with m.If(self.go):
            m.d.sync += state.eq(state + 1)
        with m.Switch(state):
            with m.Case(0):
                m.d.comb += [self.ready.eq(1), self.code.eq(5)]
            with m.Default():
                m.d.comb += [self.busy.eq(1), self.code.eq(state)]
        return m


def test_icarus_idle_comb_outputs():
    """Fails without the time-0 trigger (ready, busy, code stay X on Icarus)."""
    run_cocotb(verilog=export_verilog(Idle(), "idle"), toplevel="idle", test_module="tb_idle",
               test_dir=HERE / "icarus", sim="icarus")


def test_accel_micro_vit_icarus(tmp_path):
    """The micro ViT (dense) through the fast-sim top (accelerator + HDL DDR model) on Icarus:
    logits bit-exact with heatvit.compiler.interpret.  Hung in its first GEMM (TIMEOUT at
    descriptor 2, patch_embed) before the time-0 trigger."""
    sys.path.insert(0, str(HERE))
    from test_accel_top import micro_vit, tiny_acc

    from heatvit.compiler import interpret, read_image
    from heatvit.sim.accel_run import run
    from heatvit.sim.runner import pick_seed
    seed = pick_seed()
    acc = tiny_acc()
    blob, inp = micro_vit(acc, seed)
    img = read_image(blob, acc)
    want = interpret.unpack_output(img, interpret.run(img, acc, inp).output)
    rng = np.random.default_rng(seed)
    patches = rng.integers(-128, 128, (img.input["rows"], img.input["cols"]))
    assert interpret.pack_input(img, patches) == inp
    res = run(acc, blob, patches[None], np.asarray(want).reshape(1, -1), tmp_path, sim="icarus",
              ddr_bytes=acc.shell.window_size, tag="micro-vit")
    im = res["images"][0]
    assert im["bit_exact"], f"seed {seed}: logits {im['logits']} != {np.asarray(want).ravel().tolist()}"
    assert im["cycles"] > 0
