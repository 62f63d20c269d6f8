"""The accelerator shell: registers + DMA + the GEMM engine, with AXI4-Lite and AXI4 ports."""

from amaranth.hdl import Cat, Const, Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from heatvit.config import AcceleratorConfig
from heatvit.errors import ErrorCode

from ..gemm import GemmEngine
from . import regmap
from .axi import axi4_signature, axi_lite_signature
from .dma import DmaReader, DmaWriter, connect_axi
from .gearbox import Gearbox
from .regs import RegisterFile

BENIGN_ERRORS = (ErrorCode.START_WHILE_BUSY,)
"""Codes after which the job's results are still valid; any other code replaces them in ERROR."""


def shape_error(m: Module, gemm, mm, kk, nn) -> Signal:
    """The GEMM engine's shape check (rtl/gemm/engine.py, same order) on 32-bit register values.

    The shell runs it before loading anything, on the full register width, so an oversized
    value can never be truncated into a valid-looking one.
    """
    code = Signal(8)
    # Only used once M <= max_m and K <= max_k, so the narrow fields are exact there.
    kt = Signal(range(gemm.max_k_tiles + 1))
    words = Signal(gemm.m_bits + len(kt))
    m.d.comb += [kt.eq((kk[:gemm.k_bits] + (gemm.rows - 1)) >> (gemm.rows - 1).bit_length()),
                 words.eq(kt * mm[:gemm.m_bits])]
    with m.If((mm == 0) | (kk == 0) | (nn == 0)):
        m.d.comb += code.eq(ErrorCode.ZERO_DIMENSION)
    with m.Elif(mm > gemm.max_m):
        m.d.comb += code.eq(ErrorCode.M_TOO_LARGE)
    with m.Elif(kk > gemm.max_k):
        m.d.comb += code.eq(ErrorCode.K_TOO_LARGE)
    with m.Elif(nn > gemm.max_n):
        m.d.comb += code.eq(ErrorCode.N_TOO_LARGE)
    with m.Elif(words > gemm.act_buffer_words):
        m.d.comb += code.eq(ErrorCode.ACT_BUFFER_OVERFLOW)
    return code


class AcceleratorShell(wiring.Component):
    """AXI shell around the GEMM engine (see docs/shell.md for the register map and DDR formats).

    Ports: ``s_axi`` (AXI4-Lite slave, 12-bit addresses, 32-bit data), ``m_axi`` (AXI4 master,
    ``acc.shell.data_width`` / ``addr_width``), ``irq`` (level: the last job is done).

    A job (``CTRL.start``): check the shape and the four buffers (aligned to the beat size,
    inside the DMA window), read the N parameter records into the engine, read the activation
    image into its buffer, issue the command, then stream the weights in and the outputs out
    concurrently.  ``STATUS.done`` rises after the last write response.
    """

    def __init__(self, acc: AcceleratorConfig):
        if not isinstance(acc, AcceleratorConfig):
            raise TypeError(f"AcceleratorShell takes an AcceleratorConfig, not {acc!r}")
        shell = acc.shell
        shell.check_gemm(acc.gemm)
        self.acc, self.shell, self.gemm = acc, shell, acc.gemm
        super().__init__({
            "s_axi": In(axi_lite_signature()),
            "m_axi": Out(axi4_signature(shell)),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        g, s = self.gemm, self.shell
        R, C = g.rows, g.cols
        m = Module()

        m.submodules.regs = regs = RegisterFile(g, s, regmap.config_id(self.acc.digest()))
        wiring.connect(m, wiring.flipped(self.s_axi), regs.axi)
        m.submodules.reader = rd = DmaReader(s)
        m.submodules.writer = wr = DmaWriter(s)

        eng_rst = Signal()
        m.submodules.engine = eng = ResetInserter(eng_rst)(GemmEngine(g))
        rd_clear = Signal()
        m.submodules.prm_gb = prm_gb = ResetInserter(rd_clear)(Gearbox(s.data_width, 8 * regmap.PARAM_RECORD_BYTES))
        m.submodules.act_gb = act_gb = ResetInserter(rd_clear)(Gearbox(s.data_width, 8 * R))
        m.submodules.wgt_gb = wgt_gb = ResetInserter(rd_clear)(Gearbox(s.data_width, 8 * C))
        m.submodules.out_gb = out_gb = ResetInserter(eng_rst)(Gearbox(8 * C, s.data_width))

        # -- AXI4 master pins ------------------------------------------------------------------
        connect_axi(m, self.m_axi, rd, wr, s)

        # -- job registers, latched at start -------------------------------------------------------
        r = regs.regs
        mm, kk, nn = Signal(32), Signal(32), Signal(32)
        addr = {b: Signal(64, name=f"{b}_addr") for b in regmap.BUFFERS}
        err = Signal(8)
        flags = Signal(32)
        done = Signal()
        cycles = Signal(32)
        m.d.comb += [regs.error.eq(err), regs.error_flags.eq(flags), regs.done.eq(done),
                     regs.cycles.eq(cycles), self.irq.eq(done)]

        # Errors (docs/shell.md, "Errors"): every raised code sets its bit in ``flags``; ``err``
        # keeps the first one, except that START_WHILE_BUSY (the only code after which the
        # results are still valid) gives way to the first code that is not benign.
        raised = []   # (pulse, code) per place an error can be raised, resolved after the FSM

        def set_error(code):
            hit = Signal(name=f"raise_{len(raised)}")
            m.d.comb += hit.eq(1)
            raised.append((hit, code))

        # Sizes (valid once the shape passed its check).
        m_n = Signal(range(g.max_m + 1))
        n_n = Signal(range(g.max_n + 1))
        kt = Signal(range(g.max_k_tiles + 1))
        nt = Signal(range(g.max_n_tiles + 1))
        act_words = Signal(range(g.act_buffer_words + 1))
        wgt_words = Signal(range(g.max_k_tiles * g.max_n_tiles * R + 1))
        out_words = Signal(range(g.max_n_tiles * g.max_m + 1))
        nbytes = {"prm": Signal(40, name="prm_bytes"), "act": Signal(40, name="act_bytes"),
                  "wgt": Signal(48, name="wgt_bytes"), "out": Signal(40, name="out_bytes")}
        beats = {b: Signal(32, name=f"{b}_beats") for b in regmap.BUFFERS}
        for b in regmap.BUFFERS:
            m.d.comb += beats[b].eq((nbytes[b] + (s.data_bytes - 1)) >> s.size_code)
        last_bytes = Signal(range(s.data_bytes + 1))
        m.d.comb += last_bytes.eq(nbytes["out"] - ((beats["out"] - 1) << s.size_code))
        m.d.comb += wr.last_strb.eq((Const(1, s.data_bytes + 1) << last_bytes) - 1)

        code = shape_error(m, g, mm, kk, nn)
        bad_align = Signal()
        bad_window = Signal()
        m.d.comb += bad_align.eq(Cat(*(addr[b][:s.size_code] != 0 for b in regmap.BUFFERS)).any()
                                 if s.size_code else 0)
        outside = []
        for b in regmap.BUFFERS:
            outside.append(addr[b] + nbytes[b] > s.window_end)
            if s.window_base:
                outside.append(addr[b] < s.window_base)
        m.d.comb += bad_window.eq(Cat(*outside).any())

        # -- data paths ----------------------------------------------------------------------------
        cnt = Signal(32)
        prm = prm_gb.o.payload.data
        sel = Signal(range(3))   # 0 params, 1 activations, 2 weights
        for i, gb in enumerate((prm_gb, act_gb, wgt_gb)):
            m.d.comb += [gb.i.payload.data.eq(rd.data.payload.data), gb.i.valid.eq(rd.data.valid & (sel == i))]
        with m.Switch(sel):
            for i, gb in enumerate((prm_gb, act_gb, wgt_gb)):
                with m.Case(i):
                    m.d.comb += rd.data.ready.eq(gb.i.ready)
        # Words past the end of a buffer (the tail of its last beat) are taken and dropped.
        pl = eng.param_load
        m.d.comb += [
            pl.payload.channel.eq(cnt), pl.payload.params.bias.eq(prm[0:32]),
            pl.payload.params.mult.eq(prm[32:56]), pl.payload.params.shift.eq(prm[56:64]),
            pl.valid.eq(prm_gb.o.valid & (cnt < n_n)),
            prm_gb.o.ready.eq(pl.ready | (cnt >= n_n)),
            eng.act_load.payload.addr.eq(cnt), eng.act_load.payload.data.eq(act_gb.o.payload.data),
            eng.act_load.valid.eq(act_gb.o.valid & (cnt < act_words)),
            act_gb.o.ready.eq(eng.act_load.ready | (cnt >= act_words)),
            eng.weights.payload.eq(wgt_gb.o.payload.data),
            eng.weights.valid.eq(wgt_gb.o.valid & (cnt < wgt_words)),
            wgt_gb.o.ready.eq(eng.weights.ready | (cnt >= wgt_words)),
            eng.cmd.payload.m.eq(m_n), eng.cmd.payload.k.eq(kk), eng.cmd.payload.n.eq(n_n),
            out_gb.i.payload.data.eq(eng.out.payload.data), out_gb.i.payload.last.eq(eng.out.payload.last),
            out_gb.i.valid.eq(eng.out.valid), eng.out.ready.eq(out_gb.i.ready),
            wr.data.payload.eq(out_gb.o.payload), wr.data.valid.eq(out_gb.o.valid),
            out_gb.o.ready.eq(wr.data.ready),
        ]
        taken = Signal()
        m.d.comb += taken.eq((pl.valid & pl.ready) | (eng.act_load.valid & eng.act_load.ready)
                             | (eng.weights.valid & eng.weights.ready))
        with m.If(taken):
            m.d.sync += cnt.eq(cnt + 1)

        def read(buf, phase):
            m.d.comb += [rd.start.eq(1), rd.addr.eq(addr[buf]), rd.beats.eq(beats[buf]), rd_clear.eq(1)]
            m.d.sync += [sel.eq(phase), cnt.eq(0)]

        # -- watchdog ------------------------------------------------------------------------------
        quiet = Signal(range(s.watchdog_cycles + 1))
        progress = Signal()
        m.d.comb += progress.eq(rd.progress | wr.progress | taken | (eng.out.valid & eng.out.ready))
        timeout = Signal()
        m.d.comb += timeout.eq(quiet == s.watchdog_cycles - 1)
        with m.If(progress):
            m.d.sync += quiet.eq(0)
        with m.Elif(~timeout):
            m.d.sync += quiet.eq(quiet + 1)

        def watch():
            with m.If(timeout):
                set_error(ErrorCode.TIMEOUT)
                m.next = "DRAIN"
        m.d.comb += rd.flush.eq(rd_clear)

        # -- job sequencer -------------------------------------------------------------------------
        busy = Signal()
        m.d.comb += regs.busy.eq(busy)
        with m.FSM(name="job") as fsm:
            # (a continuous assignment: Icarus never runs an `always @*` whose inputs never change)
            m.d.comb += busy.eq(~fsm.ongoing("IDLE"))
            with m.State("IDLE"):
                m.d.sync += quiet.eq(0)
                with m.If(regs.start):
                    m.d.comb += [eng_rst.eq(1), rd.clear.eq(1), wr.clear.eq(1)]
                    m.d.sync += [err.eq(0), flags.eq(0), done.eq(0), cycles.eq(0),
                                 mm.eq(r.M), kk.eq(r.K), nn.eq(r.N)]
                    for b, (lo, hi) in regmap.BUFFERS.items():
                        m.d.sync += addr[b].eq(Cat(getattr(r, lo), getattr(r, hi)))
                    m.next = "CHECK_SHAPE"
            with m.State("CHECK_SHAPE"):
                with m.If(code != 0):
                    set_error(code)
                    m.next = "FINISH"
                with m.Else():
                    m.d.sync += [m_n.eq(mm), n_n.eq(nn),
                                 kt.eq((kk + (R - 1)) >> (R - 1).bit_length()),
                                 nt.eq((nn + (C - 1)) >> (C - 1).bit_length())]
                    m.next = "SIZES"
            with m.State("SIZES"):
                m.d.sync += [
                    act_words.eq(kt * m_n), wgt_words.eq(nt * kt * R), out_words.eq(nt * m_n),
                    nbytes["prm"].eq(n_n * regmap.PARAM_RECORD_BYTES),
                    nbytes["act"].eq(kt * m_n * R), nbytes["wgt"].eq(nt * kt * R * C),
                    nbytes["out"].eq(nt * m_n * C),
                ]
                m.next = "CHECK_BUFFERS"
            with m.State("CHECK_BUFFERS"):
                with m.If(bad_align):
                    set_error(ErrorCode.UNALIGNED_ADDRESS)
                    m.next = "FINISH"
                with m.Elif(bad_window):
                    set_error(ErrorCode.ADDRESS_OUT_OF_WINDOW)
                    m.next = "FINISH"
                with m.Else():
                    read("prm", 0)
                    m.next = "PARAMS"
            with m.State("PARAMS"):
                watch()
                with m.If((cnt == n_n) & rd.idle):
                    read("act", 1)
                    m.next = "ACTS"
            with m.State("ACTS"):
                watch()
                with m.If((cnt == act_words) & rd.idle):
                    m.next = "CMD"
            with m.State("CMD"):
                m.d.comb += eng.cmd.valid.eq(1)
                with m.If(eng.cmd.ready):
                    read("wgt", 2)
                    m.d.comb += [wr.start.eq(1), wr.addr.eq(addr["out"]), wr.beats.eq(beats["out"]),
                                 wr.flush.eq(1)]
                    m.next = "STREAM"
            with m.State("STREAM"):
                with m.If(eng.error != 0):
                    set_error(eng.error)
                    m.next = "DRAIN"
                with m.Elif((cnt == wgt_words) & rd.idle & wr.idle):
                    m.next = "FINISH"
                with m.Else():
                    watch()
            with m.State("DRAIN"):
                m.d.comb += [rd.abort.eq(1), wr.abort.eq(1), eng_rst.eq(1), rd_clear.eq(1)]
                with m.If(rd.idle & wr.idle):
                    m.next = "FINISH"
            with m.State("FINISH"):
                m.d.sync += done.eq(1)
                m.next = "IDLE"

        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(regs.start):
                set_error(ErrorCode.START_WHILE_BUSY)
            with m.If(rd.error):
                set_error(ErrorCode.AXI_READ_ERROR)
            with m.If(wr.error):
                set_error(ErrorCode.AXI_WRITE_ERROR)

        # Resolve this cycle's raised codes: benign ones first, so that a code that is not benign
        # raised in the same cycle wins; none of them is raised in the cycle a start clears both.
        bits = Const(0, 32)
        for hit, code in raised:
            bits = bits | (hit.replicate(32) & (Const(1, 32) << code))
        with m.If(Cat(hit for hit, _ in raised).any()):
            m.d.sync += flags.eq(flags | bits)
        for benign in (True, False):
            for hit, code in raised:
                if (isinstance(code, int) and code in BENIGN_ERRORS) != benign:
                    continue
                replaceable = err == 0
                if not benign:
                    for b in BENIGN_ERRORS:
                        replaceable |= err == b
                with m.If(hit & replaceable):
                    m.d.sync += err.eq(code)
        return m
