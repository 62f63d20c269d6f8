"""pytest driver: the accelerator shell (AXI4-Lite registers + AXI4 DMA + GEMM engine).

The DUT is the thin Verilog top Vivado packages (``aclk``/``aresetn``/``s_axi_*``/``m_axi_*``)
around the exported Amaranth core, driven by cocotbext-axi models through heatvit.driver.
"""

import json
from pathlib import Path

import pytest

from heatvit.config import AcceleratorConfig, GemmConfig
from heatvit.rtl.shell.wrapper import TOP_NAME, export
from heatvit.shell_config import ShellConfig
from heatvit.sim.runner import run_testbench

_GEMM_4x4 = GemmConfig(rows=4, cols=4, act_buffer_words=512, max_m=64, max_k=512, max_n=64,
                       weight_fifo_depth=8, out_fifo_depth=4)
_GEMM_16x16 = GemmConfig(rows=16, cols=16, act_buffer_words=512, max_m=64, max_k=1024, max_n=128,
                         weight_fifo_depth=32, out_fifo_depth=16)
_GEMM_8x4 = GemmConfig(rows=8, cols=4, act_buffer_words=512, max_m=64, max_k=1024, max_n=64,
                       weight_fifo_depth=16, out_fifo_depth=8)
# A 256 KiB DMA window that does not start at 0, so addresses below it exist in the model.
_WINDOW = dict(window_base=0x1_0000, window_size=0x4_0000, addr_width=32, watchdog_cycles=3000)

SHELL_CONFIGS = {
    # AXI beats wider than engine words: split reads, gathered writes with a partial last beat.
    "4x4-w64": AcceleratorConfig(gemm=_GEMM_4x4, clock_mhz=250.0,
                                 shell=ShellConfig(data_width=64, burst_len=8, **_WINDOW)),
    # Beats as wide as engine words; parameter records gathered from two beats.
    "4x4-w32": AcceleratorConfig(gemm=_GEMM_4x4, shell=ShellConfig(data_width=32, burst_len=4, **_WINDOW)),
    # 128-bit beats (the ZCU102 default) over a non-square array.
    "8x4-w128": AcceleratorConfig(gemm=_GEMM_8x4, shell=ShellConfig(data_width=128, burst_len=16, **_WINDOW)),
    # The default's array and bus width (engine words = AXI beats), small buffers.
    "16x16-w128": AcceleratorConfig(gemm=_GEMM_16x16, shell=ShellConfig(data_width=128, burst_len=16,
                                                                        read_outstanding=4, **_WINDOW)),
}
# Verilator builds take ~30-60 s each on a quiet 2-core machine; Icarus compiles in seconds.
SHELL_RUNS = [("4x4-w32", "icarus"), ("4x4-w64", "icarus"), ("8x4-w128", "verilator"),
              ("16x16-w128", "verilator")]


def run_shell(name: str, sim: str, *, module: str = "tb_shell", env: dict | None = None,
              testcase: str | None = None):
    acc = SHELL_CONFIGS[name]
    core, top = export(acc)
    extra = {"HEATVIT_CONFIG": json.dumps(acc.to_dict()), **(env or {})}
    return run_testbench(core + "\n" + top, toplevel=TOP_NAME, test_module=module,
                         test_dir=Path(__file__).parent / "shell", sim=sim, env=extra, tag=name,
                         testcase=testcase)


@pytest.mark.parametrize("name,sim", SHELL_RUNS, ids=[f"{n}-{s}" for n, s in SHELL_RUNS])
def test_shell(name, sim):
    run_shell(name, sim)


# -- no simulator needed -------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,needle", [
    ({"data_width": 48}, "data_width"), ({"data_width": 256}, "data_width"),
    ({"burst_len": 0}, "burst_len"), ({"burst_len": 257}, "burst_len"),
    ({"window_base": 0x800}, "window_base"), ({"window_size": 0}, "window_size"),
    ({"window_size": 0x1800}, "window_size"), ({"addr_width": 32, "window_size": 1 << 33}, "window_size"),
    ({"watchdog_cycles": 10}, "watchdog_cycles"), ({"reg_base": 0xA000_0100}, "reg_base"),
    ({"id_width": 0}, "id_width"), ({"read_outstanding": True}, "read_outstanding"),
])
def test_shell_config_rejects(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        ShellConfig(**kwargs)


def test_shell_section_roundtrip(tmp_path):
    """The shell is a section of AcceleratorConfig: one JSON file, one digest."""
    from heatvit.presets import load_config
    acc = SHELL_CONFIGS["4x4-w64"]
    assert AcceleratorConfig.from_dict(json.loads(json.dumps(acc.to_dict()))) == acc
    assert acc.digest() != AcceleratorConfig(gemm=acc.gemm, clock_mhz=acc.clock_mhz).digest()
    with pytest.raises(ValueError, match="unknown keys"):
        AcceleratorConfig.from_dict({**acc.to_dict(), "shell": {**acc.shell.to_dict(), "bogus": 1}})
    with pytest.raises(ValueError, match="shell must be a ShellConfig"):
        AcceleratorConfig(shell={"data_width": 64})
    with pytest.raises(ValueError, match="act_bits"):
        acc.shell.check_gemm(GemmConfig(act_bits=6))
    # A config file written before the shell was a section loads with the default shell.
    old = acc.to_dict()
    del old["shell"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = load_config(tmp_path / "old.json")
    assert loaded.shell == ShellConfig() and loaded.gemm == acc.gemm
    # So does the old two-part heatvit_config.json of a Vivado project.
    (tmp_path / "blob.json").write_text(json.dumps({"accelerator": old, "shell": acc.shell.to_dict()}))
    assert load_config(tmp_path / "blob.json") == acc
    (tmp_path / "bad.json").write_text(json.dumps({**old, "shell": {"data_width": 48}}))
    with pytest.raises(ValueError, match="bad.json.*data_width"):
        load_config(tmp_path / "bad.json")


def test_docs_register_table_matches_regmap():
    from heatvit.rtl.shell import regmap
    doc = (Path(__file__).parents[1] / "docs" / "shell.md").read_text()
    assert regmap.markdown_table() in doc, "docs/shell.md's register table is stale"
    offsets = [off for off, _, _ in regmap.REGISTERS.values()]
    assert len(set(offsets)) == len(offsets) and all(o % 4 == 0 and o < 0x1000 for o in offsets)


def test_driver_images_and_host_checks():
    """The DDR images the driver writes are the golden packing orders, byte for byte."""
    import numpy as np
    from heatvit import golden
    from heatvit.driver import GemmDriver
    from heatvit.driver.core import image_sizes

    acc = SHELL_CONFIGS["8x4-w128"]
    cfg = acc.gemm

    class Mem:
        def __init__(self):
            self.mem, self.next = {}, 0x1000

        def alloc(self, n):
            addr, self.next = self.next, self.next + -(-n // 16) * 16
            return addr

        def write_mem(self, addr, data):
            self.mem[addr] = bytes(data)

    rng = np.random.default_rng(1)
    m, k, n = 5, 13, 6
    a = rng.integers(-128, 128, (m, k))
    w = rng.integers(-128, 128, (k, n))
    bias, mult, shift = rng.integers(-1000, 1000, n), rng.integers(0, 1 << 16, n), rng.integers(0, 40, n)
    be = Mem()
    job = GemmDriver(be, acc).load(a, w, bias, mult, shift)
    sizes = image_sizes(acc, m, k, n)
    assert {b: len(be.mem[getattr(job.buffers, b)]) for b in ("act", "wgt", "prm")} == \
        {b: sizes[b] for b in ("act", "wgt", "prm")}
    assert np.array_equal(np.frombuffer(be.mem[job.buffers.act], np.int8).reshape(-1, cfg.rows),
                          golden.pack_activations(cfg, a))
    assert np.array_equal(np.frombuffer(be.mem[job.buffers.wgt], np.int8).reshape(-1, cfg.cols),
                          golden.pack_weights(cfg, w))
    rec = np.frombuffer(be.mem[job.buffers.prm], "<u8")
    assert np.array_equal((rec & 0xFFFFFFFF).astype(np.uint32).view(np.int32), bias)
    assert np.array_equal((rec >> 32) & 0xFFFFFF, mult) and np.array_equal(rec >> 56, shift)
    with pytest.raises(ValueError, match="a"):
        GemmDriver(be, acc).load(a + 200, w, bias, mult, shift)
    with pytest.raises(ValueError, match="K dimensions"):
        GemmDriver(be, acc).load(a, w[:-1], bias, mult, shift)


def test_board_backend_with_fake_pynq(tmp_path, monkeypatch):
    """The PYNQ back end against a stand-in ``pynq`` module: overlay, MMIO base, buffer copies,
    identity check (the board itself is out of reach here)."""
    import sys
    import types

    import numpy as np
    from heatvit.driver.board import open_board
    from heatvit.rtl.shell import regmap

    acc = SHELL_CONFIGS["8x4-w128"]
    shell = acc.shell
    regs = {regmap.OFFSET["MAGIC"]: regmap.MAGIC_VALUE,
            regmap.OFFSET["CONFIG_ID"]: regmap.config_id(acc.digest())}
    seen = {}

    class Buf(np.ndarray):
        def flush(self):
            seen["flush"] = True

        def invalidate(self):
            seen["invalidate"] = True

    def allocate(shape, dtype):
        buf = np.zeros(shape, dtype).view(Buf)
        buf.physical_address = 0x1000_0000 + 0x10_0000 * len(seen.setdefault("bufs", []))
        seen["bufs"].append(buf)
        return buf

    class MMIO:
        def __init__(self, base, length):
            seen["mmio"] = (base, length)

        def read(self, off):
            return regs.get(off, 0)

        def write(self, off, value):
            regs[off] = value

    fake = types.SimpleNamespace(Overlay=lambda path: seen.setdefault("overlay", path), MMIO=MMIO,
                                 allocate=allocate)
    monkeypatch.setitem(sys.modules, "pynq", fake)
    (tmp_path / "heatvit_config.json").write_text(json.dumps(acc.to_dict()))
    drv = open_board(tmp_path / "heatvit.bit")
    assert seen["overlay"] == str(tmp_path / "heatvit.bit") and seen["mmio"] == (shell.reg_base, 0x1000)
    a = np.ones((3, 9), np.int64)
    job = drv.load(a, np.ones((9, 5), np.int64), 0, 1, 0)
    assert seen["flush"] and job.buffers.act % shell.data_bytes == 0
    from heatvit import golden
    act_image = golden.pack_activations(acc.gemm, a).astype(np.int8).tobytes()
    assert bytes(seen["bufs"][0][:len(act_image)]) == act_image   # buffers allocated act first
    regs[regmap.OFFSET["STATUS"]] = 0
    regs[regmap.OFFSET["ERROR"]] = 17
    with pytest.raises(Exception, match="ADDRESS_OUT_OF_WINDOW"):
        drv.run(job)
    assert regs[regmap.OFFSET["M"]] == 3 and regs[regmap.OFFSET["CTRL"]] == 1
    regs[regmap.OFFSET["CONFIG_ID"]] = 0
    with pytest.raises(RuntimeError, match="CONFIG_ID"):
        open_board(tmp_path / "heatvit.bit")


def test_resource_counting(tmp_path):
    """heatvit.bench.resources: yosys 0.23's stat JSON (with its stray hierarchy text) -> counts."""
    from heatvit.bench import resources as r
    (tmp_path / "stat.json").write_text("""{
   "modules": {
      "\\\\top.pe_0_0": {"num_cells_by_type": {"DSP48E2": 1, "FDRE": 40, "LUT2": 2}}
   },
       top      1
         top.pe_0_0      4
      "design": {
         "num_cells_by_type": {"DSP48E2": 5, "FDRE": 170, "FDSE": 2, "LUT2": 9, "LUT6": 3,
                               "RAM64M8": 2, "RAMB36E2": 3, "RAMB18E2": 3, "MUXF7": 4}
      }
}
""")
    (tmp_path / "yosys.log").write_text("End of script. CPU: user 12.50s system 0.50s\n")
    res = r.summarize(tmp_path, 20.0)
    assert res["resources"] == {"DSP48E2": 5, "LUT": 12 + 16, "LUT_as_memory": 16, "FF": 172, "BRAM36": 4.5}
    assert res["per_pe"]["FF"] == 40 and res["synth_cpu_seconds"] == 13.0 and res["fits"]
    pred = r.predict(res, 2, 2, 4, 4)
    assert pred["DSP48E2"] == 16 * 1 + (5 - 4) * 2
