"""AXI4-Lite slave register files: a generic one over any register map, and the shell's
(the shell's map is in :mod:`.regmap`, the whole accelerator's in ``rtl/accel/regmap.py``)."""

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from heatvit.config import GemmConfig
from heatvit.shell_config import REG_ADDR_BITS, ShellConfig

from . import regmap
from .axi import axi_lite_signature

RW_REGS = [name for name, (_, acc, _) in regmap.REGISTERS.items() if acc == "rw"]


class AxiLiteRegisters(wiring.Component):
    """AXI4-Lite slave over a register map ``registers`` (name -> ``(offset, access, meaning)``,
    access ``ro``/``rw``/``wo``): one write and one read in flight, every handshake honoured.

    Write address and data are accepted independently (either may come first); the response
    follows once both are in and is held until ``bready``.  Reads answer the cycle after the
    address handshake and hold ``rdata`` until ``rready``.  Unmapped offsets read 0 and ignore
    writes (response OKAY).  Byte strobes apply to the read/write registers.

    ``regs`` exposes every read/write register's value; ``start`` pulses for one cycle when
    register ``start_reg`` bit 0 is written with 1.  ``inputs`` (name -> width) become ``In``
    ports; :meth:`_read_values` (name -> value or int constant) says what each register reads.
    """

    def __init__(self, registers: dict, inputs: dict[str, int], start_reg: str = "CTRL"):
        self.registers, self.start_reg = registers, start_reg
        self.offset = {name: off for name, (off, _, _) in registers.items()}
        self.rw = [name for name, (_, acc, _) in registers.items() if acc == "rw"]
        super().__init__({
            "axi": In(axi_lite_signature()),
            "regs": Out(wiring.Signature({name: Out(32) for name in self.rw})),
            "start": Out(1),
            **{name: In(width) for name, width in inputs.items()},
        })

    def _read_values(self) -> dict[str, object]:
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        axi = self.axi
        word = slice(2, REG_ADDR_BITS)

        # -- writes ------------------------------------------------------------------------------
        aw_have, w_have = Signal(), Signal()
        aw_addr = Signal(REG_ADDR_BITS)
        w_data, w_strb = Signal(32), Signal(4)
        m.d.comb += [axi.awready.eq(~aw_have), axi.wready.eq(~w_have), axi.bresp.eq(0)]
        with m.If(axi.awvalid & axi.awready):
            m.d.sync += [aw_have.eq(1), aw_addr.eq(axi.awaddr)]
        with m.If(axi.wvalid & axi.wready):
            m.d.sync += [w_have.eq(1), w_data.eq(axi.wdata), w_strb.eq(axi.wstrb)]
        with m.If(axi.bvalid & axi.bready):
            m.d.sync += axi.bvalid.eq(0)
        do_write = Signal()
        m.d.comb += do_write.eq(aw_have & w_have & ~axi.bvalid)
        m.d.sync += self.start.eq(0)
        with m.If(do_write):
            m.d.sync += [aw_have.eq(0), w_have.eq(0), axi.bvalid.eq(1)]
            with m.Switch(aw_addr[word]):
                for name in self.rw:
                    with m.Case(self.offset[name] >> 2):
                        reg = getattr(self.regs, name)
                        for b in range(4):
                            with m.If(w_strb[b]):
                                m.d.sync += reg[8 * b:8 * b + 8].eq(w_data[8 * b:8 * b + 8])
                with m.Case(self.offset[self.start_reg] >> 2):
                    m.d.sync += self.start.eq(w_strb[0] & w_data[0])

        # -- reads -------------------------------------------------------------------------------
        m.d.comb += [axi.arready.eq(~axi.rvalid), axi.rresp.eq(0)]
        with m.If(axi.rvalid & axi.rready):
            m.d.sync += axi.rvalid.eq(0)
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += [axi.rvalid.eq(1), axi.rdata.eq(0)]
            with m.Switch(axi.araddr[word]):
                for name, value in self._read_values().items():
                    with m.Case(self.offset[name] >> 2):
                        if isinstance(value, int):
                            value = Const(value, 32)
                        m.d.sync += axi.rdata.eq(value)
        return m


class RegisterFile(AxiLiteRegisters):
    """The shell's registers (:mod:`.regmap`).  ``busy``/``done``/``error``/``error_flags``/
    ``cycles`` feed ``STATUS``, ``ERROR``, ``ERROR_FLAGS`` and ``CYCLES``."""

    def __init__(self, gemm: GemmConfig, shell: ShellConfig, config_id: int):
        self.gemm, self.shell, self.config_id = gemm, shell, config_id
        super().__init__(regmap.REGISTERS, {"busy": 1, "done": 1, "error": 8, "error_flags": 32,
                                            "cycles": 32})

    def _read_values(self) -> dict[str, object]:
        g, s = self.gemm, self.shell
        values = {
            "MAGIC": regmap.MAGIC_VALUE, "VERSION": regmap.VERSION_VALUE, "CONFIG_ID": self.config_id,
            "GEOMETRY": regmap.geometry(g.rows, g.cols, s.data_bytes, s.burst_len),
            "CTRL": 0, "STATUS": (self.busy | self.done << 1 | (self.error != 0) << 2 | self.error << 8),
            "ERROR": self.error, "CYCLES": self.cycles,
            "WIN_BASE_LO": s.window_base & 0xFFFF_FFFF, "WIN_BASE_HI": s.window_base >> 32,
            "WIN_SIZE_LO": s.window_size & 0xFFFF_FFFF, "WIN_SIZE_HI": s.window_size >> 32,
            "MAX_M": g.max_m, "MAX_K": g.max_k, "MAX_N": g.max_n, "ACT_WORDS": g.act_buffer_words,
            "WATCHDOG": s.watchdog_cycles, "ERROR_FLAGS": self.error_flags,
        }
        for name in self.rw:
            values[name] = getattr(self.regs, name)
        return values
