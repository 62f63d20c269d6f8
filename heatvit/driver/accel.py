"""Host driver of the whole accelerator (``rtl/accel/top.py``): load a model image, run images.

``Accelerator(config, backend)``: ``load(image_bytes)`` validates the image (``heatvit compile``;
:func:`heatvit.compiler.read_image`: truncated, damaged, wrong version or compiled for another
config -> :class:`~heatvit.compiler.ImageError`), places its regions in the back end's memory
and writes it; ``await infer(patches)`` runs one program per image and returns
``(logits, stats)``.  The back end is any :class:`heatvit.driver.core.Backend` (registers,
memory, ``pause``): :class:`heatvit.driver.fastsim.FastSimBackend` on ``heatvit_accel_fastsim``
(:mod:`heatvit.sim.accel_top`) or the board's.

Regions (bases in the :mod:`heatvit.rtl.accel.regmap` registers): ``MODEL`` = the image,
``PROGRAM`` = ``MODEL`` + its program offset, ``INPUT`` (int8 patches at the image's stride,
:func:`heatvit.compiler.interpret.pack_input`), ``OUTPUT`` (logits), ``DEBUG`` (a debug build's
layer results), ``TRACE`` (SELECT records of a pruned program) and ``CYCLES`` (one 16-byte
record per descriptor: index, opcode, start, end).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from heatvit import isa
from heatvit.config import AcceleratorConfig
from heatvit.errors import HardwareError
from heatvit.rtl.accel import regmap

ALIGN = isa.DDR_ALIGN


@dataclass
class Layer:
    """One executed descriptor's cycle record (cycles since the job's start)."""
    index: int
    name: str
    op: str
    start: int
    end: int

    @property
    def cycles(self) -> int:
        return self.end - self.start


@dataclass
class Stats:
    """One image's run: ``cycles`` (the ``CYCLES`` register: start to done), ``layers`` (every
    descriptor's record), ``tokens_per_block`` (tokens entering each block, from the SELECT
    records of a pruned program; the dense count otherwise), ``debug`` (the DEBUG region's bytes
    of a debug build)."""
    cycles: int
    layers: list[Layer]
    tokens_per_block: list[int]
    trace: object = None
    debug: bytes = b""
    extra: dict = field(default_factory=dict)

    def per_layer(self) -> dict[str, int]:
        """Cycles per layer name (descriptors of one layer summed, e.g. a GEMM's row chunks)."""
        out: dict[str, int] = {}
        for lay in self.layers:
            out[lay.name] = out.get(lay.name, 0) + lay.cycles
        return out


class Accelerator:
    """See the module docstring.  ``max_polls``: ``pause`` calls to wait for a job (None:
    forever)."""

    def __init__(self, config: AcceleratorConfig, backend=None, *, max_polls: int | None = 1000):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"Accelerator takes an AcceleratorConfig, not {config!r}")
        self.acc, self.backend, self.max_polls = config, backend, max_polls
        self.image = None
        self.bases: dict[str, int] = {}

    # -- registers ------------------------------------------------------------------------------
    async def read(self, name: str) -> int:
        return await self.backend.read_reg(regmap.OFFSET[name])

    async def write(self, name: str, value: int) -> None:
        await self.backend.write_reg(regmap.OFFSET[name], value)

    async def check_identity(self) -> None:
        """The hardware is this driver's accelerator, built for this config."""
        magic = await self.read("MAGIC")
        if magic != regmap.MAGIC_VALUE:
            raise RuntimeError(f"no heatvit accelerator here: MAGIC = {magic:#010x}, expected "
                               f"{regmap.MAGIC_VALUE:#010x}")
        cid = await self.read("CONFIG_ID")
        if cid != isa.config_id(self.acc):
            raise RuntimeError(f"the accelerator was built for config id {cid:#010x}, not this config's "
                               f"{isa.config_id(self.acc):#010x} ({self.acc.digest()})")

    # -- model ----------------------------------------------------------------------------------
    def _alloc(self, nbytes: int) -> int:
        addr = self.backend.alloc(max(nbytes, 1) + ALIGN)
        return -(-addr // ALIGN) * ALIGN

    def load(self, model_image: bytes):
        """Validate ``model_image`` for this config and write it to the back end's memory; the
        parsed :class:`~heatvit.compiler.ModelImage`."""
        from heatvit.compiler import ImageError, read_image
        if not isinstance(model_image, (bytes, bytearray, memoryview)):
            raise TypeError(f"model_image must be the bytes of a `heatvit compile` image, not "
                            f"{type(model_image).__name__}")
        blob = bytes(model_image)
        img = read_image(blob, None)
        if img.digest != self.acc.digest():
            raise ImageError(f"model image was compiled for config {img.digest}, but this accelerator is "
                             f"{self.acc.digest()}: recompile it with `heatvit compile --config ...` for this "
                             f"config")
        img = read_image(blob, self.acc)
        if self.backend is None:
            raise RuntimeError("Accelerator.load: no back end (pass backend= to Accelerator)")
        sizes = {"MODEL": len(blob), "INPUT": img.input["bytes"], "OUTPUT": img.output["bytes"],
                 "DEBUG": img.debug["bytes"], "TRACE": img.trace["bytes"],
                 "CYCLES": regmap.CYCLE_RECORD_BYTES * len(img.program)}
        self.bases = {r: self._alloc(n) for r, n in sizes.items()}
        self.bases["PROGRAM"] = self.bases["MODEL"] + img.header["program_offset"]
        self.sizes = sizes
        self.backend.write_mem(self.bases["MODEL"], blob)
        self.image = img
        self._bases_written = False
        return img

    # -- running --------------------------------------------------------------------------------
    async def _write_bases(self) -> None:
        for r in regmap.REGIONS:
            lo, hi = regmap.base_registers(r)
            await self.write(lo, self.bases[r] & 0xFFFF_FFFF)
            await self.write(hi, self.bases[r] >> 32)
        self._bases_written = True

    async def run(self, input_bytes: bytes) -> dict:
        """One job on the INPUT bytes: the status registers (raises ``HardwareError`` naming the
        failing descriptor on an error)."""
        if self.image is None:
            raise RuntimeError("Accelerator.run before load()")
        img = self.image
        if len(input_bytes) != img.input["bytes"]:
            raise ValueError(f"input must be {img.input['bytes']} bytes, not {len(input_bytes)}")
        be = self.backend
        be.write_mem(self.bases["INPUT"], bytes(input_bytes))
        for r in ("OUTPUT", "TRACE", "CYCLES"):
            if self.sizes[r]:
                be.write_mem(self.bases[r], bytes(self.sizes[r]))
        if not self._bases_written:
            await self._write_bases()
        await self.write("CTRL", 1)
        polls = 0
        while True:
            status = await self.read("STATUS")
            if status & regmap.STATUS_DONE:
                break
            polls += 1
            if self.max_polls is not None and polls > self.max_polls:
                raise TimeoutError(f"accelerator not done after {self.max_polls} polls (STATUS {status:#x})")
            await be.pause()
        regs = {name: await self.read(name) for name in ("ERROR", "ERROR_INDEX", "CYCLES", "N_LIVE", "DESCRIPTORS")}
        if regs["ERROR"]:
            i = regs["ERROR_INDEX"]
            names = img.memory_map.get("descriptors", [])
            where = f"descriptor {i}" + (f" ({names[i]['op']} {names[i]['name']})" if i < len(names) else "")
            err = HardwareError(regs["ERROR"], f"{where}, after {regs['DESCRIPTORS']} descriptors")
            err.index = i
            raise err
        return regs

    def cycle_records(self, count: int) -> list[Layer]:
        blob = self.backend.read_mem(self.bases["CYCLES"], regmap.CYCLE_RECORD_BYTES * count)
        names = self.image.memory_map.get("descriptors", [])
        out = []
        for j in range(count):
            i, op, start, end = struct.unpack_from("<4I", blob, regmap.CYCLE_RECORD_BYTES * j)
            try:
                op_name = isa.Op(op).name
            except ValueError:
                op_name = f"UNKNOWN_{op}"
            out.append(Layer(i, names[i]["name"] if i < len(names) else "", op_name, start, end))
        return out

    async def infer(self, patches) -> tuple[np.ndarray, list[Stats]]:
        """``patches``: int8 patches of one image ``(rows, cols)`` or of several ``(B, rows,
        cols)`` (host-quantized: :func:`heatvit.compiler.models.patches`).  Returns the int8
        logits ``(B, classes)`` and one :class:`Stats` per image."""
        from heatvit.compiler import interpret
        from heatvit.compiler import trace as trace_mod
        if self.image is None:
            raise RuntimeError("Accelerator.infer before load()")
        img = self.image
        p = np.asarray(patches)
        if p.ndim == 2:
            p = p[None]
        want = (img.input["rows"], img.input["cols"])
        if p.ndim != 3 or p.shape[1:] != want:
            raise ValueError(f"patches must have shape (B, {want[0]}, {want[1]}) or {want}, got {p.shape}")
        logits, stats = [], []
        for one in p:
            regs = await self.run(interpret.pack_input(img, one))
            be = self.backend
            logits.append(interpret.unpack_output(img, be.read_mem(self.bases["OUTPUT"], self.sizes["OUTPUT"])))
            tr = None
            tokens = [img.trace["tokens"]] * img.trace["blocks"]
            if self.sizes["TRACE"]:
                tr = trace_mod.read(img, be.read_mem(self.bases["TRACE"], self.sizes["TRACE"]))
                tokens = tr.tokens_per_block
            debug = be.read_mem(self.bases["DEBUG"], self.sizes["DEBUG"]) if self.sizes["DEBUG"] else b""
            stats.append(Stats(regs["CYCLES"], self.cycle_records(regs["DESCRIPTORS"]), tokens, tr, debug,
                               {"n_live": regs["N_LIVE"]}))
        return np.stack(logits), stats
