"""cocotb module (``testbench/test_cycle_model_rtl.py``): one model image on
``heatvit_accel_fastsim`` run once per program of ``HEATVIT_SWEEP`` (case directory
``HEATVIT_ACCEL_CASE``: ``image.bin``, ``patches.npy``, ``programs.bin``: programs of the image's
length back to back, e.g. BEGIN's live token count swept); writes ``result.json``: per program
the CYCLES register and the descriptors' cycle records."""

import json
import os
from pathlib import Path

import cocotb
import numpy as np

from heatvit import isa
from heatvit.config import AcceleratorConfig
from heatvit.driver.accel import Accelerator
from heatvit.driver.fastsim import open_backend


@cocotb.test()
async def sweep(dut):
    acc = AcceleratorConfig.from_dict(json.loads(os.environ["HEATVIT_CONFIG"]))
    case = Path(os.environ["HEATVIT_ACCEL_CASE"])
    be = await open_backend(dut, acc, ddr_bytes=int(os.environ["HEATVIT_DDR_BYTES"]))
    drv = Accelerator(acc, be)
    await drv.check_identity()
    img = drv.load((case / "image.bin").read_bytes())
    patches = np.load(case / "patches.npy")
    size = isa.DESC_BYTES * len(img.program)
    programs = (case / "programs.bin").read_bytes()
    out = []
    for i in range(len(programs) // size):
        # the image's parameters stay; only its program (PROGRAM region) is rewritten
        be.write_mem(drv.bases["PROGRAM"], programs[i * size:(i + 1) * size])
        _, [st] = await drv.infer(patches)
        out.append({"cycles": st.cycles,
                    "layers": [[lay.index, lay.name, lay.op, lay.start, lay.end] for lay in st.layers]})
    (case / "result.json").write_text(json.dumps(out))
