"""Debian yosys (0.23) ``synth_xilinx -family xcup`` runs shared by the benchmarks.

Not a benchmark itself (the leading underscore keeps :func:`heatvit.bench.available` from
listing it).  ``LUTRAM_LUTS`` is how many LUTs each LUT-RAM/SRL primitive occupies, so every
bench counts LUTs the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

LUTRAM_LUTS = {"RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM32M": 4,
               "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "RAM32X1S": 1, "RAM64X1S": 1,
               "RAM128X1S": 2, "RAM256X1S": 4, "SRL16E": 1, "SRLC32E": 1}


def available() -> bool:
    return shutil.which("yosys") is not None


def version() -> str:
    return subprocess.run(["yosys", "-V"], capture_output=True, text=True).stdout.strip()


def cell_counts(component, top: str, *, timeout: int = 1800) -> dict[str, int]:
    """Cells by type after ``synth_xilinx -family xcup`` of ``component`` exported as ``top``."""
    from heatvit.sim.runner import export_verilog
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"{top}.v"
        src.write_text(export_verilog(component, top))
        stat = Path(tmp) / "stat.txt"
        script = f"read_verilog {src}; synth_xilinx -family xcup -top {top}; tee -q -o {stat} stat"
        subprocess.run(["yosys", "-q", "-p", script], check=True, capture_output=True, text=True,
                       timeout=timeout)
        return {k: int(v) for k, v in re.findall(r"^\s+(\w+)\s+(\d+)\s*$", stat.read_text(), re.M)}


REGISTERED = "t:FD* t:SRL* t:RAMB* t:DSP48E2 t:BUFG*"
"""Cells whose outputs are registered: ``ltp`` counts every cell it passes, so these are deleted
before it runs and its longest path is then register to register (or port to register)."""


def logic_levels(component, top: str, *, platform=None, timeout: int = 3600) -> dict:
    """Longest combinational path of ``component`` exported as ``top``: ``synth_xilinx -family
    xcup -noiopad -flatten``, the registered cells (:data:`REGISTERED`) deleted, then ``ltp
    -noff``.  Returns the path's cell count, its LUTs (the LUT levels), its carry-chain cells,
    its other cells (MUXF7/8, LUT-RAM reads), the cells in path order, the design's cell counts
    and yosys' wall seconds.  The ports count as registers (each component's inputs and
    outputs are registered by its neighbours in the designs that use it)."""
    from heatvit.sim.runner import export_verilog
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / f"{top}.v").write_text(export_verilog(component, top, platform=platform))
        script = (f"read_verilog {top}.v; synth_xilinx -family xcup -noiopad -flatten -top {top}; "
                  f"tee -q -o stat.txt stat; delete {REGISTERED}; "
                  f"tee -q -o luts.txt select -list t:LUT*; tee -q -o ltp.txt ltp -noff")
        t0 = time.monotonic()
        res = subprocess.run(["yosys", "-q", "-p", script], cwd=work, capture_output=True, text=True,
                             timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"yosys failed on {top} ({res.returncode}):\n{res.stderr[-2000:]}")
        seconds = time.monotonic() - t0
        cells = {k: int(v) for k, v in re.findall(r"^\s+(\w+)\s+(\d+)\s*$", (work / "stat.txt").read_text(), re.M)}
        path = longest_path((work / "ltp.txt").read_text(), (work / "luts.txt").read_text())
    return {**path, "cells_total": cells, "synth_seconds": round(seconds, 1)}


def longest_path(ltp: str, luts: str) -> dict:
    """``ltp -noff``'s report -> its length in cells, how many are LUTs (``luts``: the output of
    ``select -list t:LUT*``), carry-chain cells and others, and the cells in order."""
    found = re.search(r"length=(\d+)", ltp)
    if found is None:                       # no combinational cell left at all
        return {"cells": 0, "luts": 0, "carry": 0, "other": 0, "path": []}
    lut_names = {ln.strip().split("/")[-1] for ln in luts.splitlines() if ln.strip()}
    via = re.findall(r"\(via (\S+)\)", ltp)
    kinds = ["LUT" if v in lut_names else ("CARRY" if "carry" in v.lower() else "other") for v in via]
    return {"cells": int(found.group(1)), "luts": kinds.count("LUT"), "carry": kinds.count("CARRY"),
            "other": kinds.count("other"), "path": via}


# -- hierarchical synthesis --------------------------------------------------------------------------

def drop_zero_inits(verilog: str) -> str:
    """``verilog`` without its all-zero memory initialisers (``initial`` blocks of ``mem[i] =
    0;`` lines, one per word, as Amaranth writes ``init=[]`` memories).  On the FPGA every block
    RAM, LUT-RAM and flip-flop starts at 0 unless told otherwise, so the netlist is the same
    device; yosys' front end, though, turns each line into a cell (126,772 of them, 11.4 MB of
    Verilog at the default config: the front end alone ran for minutes)."""
    from heatvit.sim.runner import ZERO_INIT_BLOCK
    return ZERO_INIT_BLOCK.sub("", verilog)


_MODULE = re.compile(r"^module (\\?\S+?)\s*\((.*?)^endmodule\n?", re.S | re.M)
_INSTANCE = re.compile(r"^  (\\?\S+)\s+(\\?\S+)\s*\($", re.M)
_PORT_DECL = re.compile(r"^  (?:input|output|inout)\b[^\n]*;$", re.M)
_NUMBERED = re.compile(r"\\\S*\$\d\S*")
"""An escaped identifier with a generated number (``\\$12``, ``\\port$18530$0``)."""


def split_modules(verilog: str) -> dict[str, tuple[str, list[str]]]:
    """Module name -> (its Verilog text, the names of the modules it instantiates, one entry
    per instance).  Primitives (``DSP48E2``) are not modules here: they stay cells."""
    bodies = {m.group(1): m.group(0) for m in _MODULE.finditer(verilog)}
    return {name: (text, [t for t, _ in _INSTANCE.findall(text) if t in bodies])
            for name, text in bodies.items()}


def module_keys(mods: dict[str, tuple[str, list[str]]]) -> dict[str, str]:
    """A key per module: the SHA-256 of its text with its own name, the order of its port list
    (connections are by name), its children's names (as their keys) and Amaranth's generated
    names (escaped identifiers with a number: ``\\$12``, ``\\port$18530$0``; renamed in order of
    appearance) made neutral.  Modules with the same key have the same logic (Amaranth writes one module
    per instance: 256 identical PEs, identical token buffers), so each key is synthesized once."""
    keys: dict[str, str] = {}

    def key(name: str) -> str:
        if name not in keys:
            text, children = mods[name]
            header, body = text.split(";", 1)       # the port list's order is the parent's
            ports = sorted(p.strip() for p in header[header.index("(") + 1:header.rindex(")")].split(","))
            text = f"module MODULE ({', '.join(ports)});{body}"
            for child in sorted(set(children), key=len, reverse=True):
                text = text.replace(child + " ", f"CHILD_{key(child)} ")
            seen: dict[str, int] = {}
            text = _NUMBERED.sub(lambda m: f"\\${seen.setdefault(m.group(0), len(seen))}", text)
            keys[name] = hashlib.sha256(text.encode()).hexdigest()[:24]
        return keys[name]

    for name in mods:
        key(name)
    return keys


def _stub(name: str, text: str) -> str:
    """A blackbox with ``name``'s ports (the parent's synthesis sees only its pins)."""
    header = text[:text.index(";") + 1]
    return "(* blackbox *)\n" + header + "\n" + "\n".join(_PORT_DECL.findall(text)) + "\nendmodule\n"


SYNTH = "synth_xilinx -family xcup -noiopad"
"""The synthesis command of every resource figure (no I/O buffers: the accelerator is a core
inside the ZCU102 design, its ports are not pins)."""


def _synth_module(name: str, mods: dict, work: Path, timeout: int, *, top: bool) -> dict:
    """``SYNTH`` of module ``name`` alone, its children as blackboxes: its own cells by type
    (children excluded) and yosys' wall and CPU seconds.  ``top``: the design's top module (the
    only one whose clock input gets a BUFG, as in a run of the whole design)."""
    text, children = mods[name]
    work.mkdir(parents=True, exist_ok=True)
    src = work / "m.v"
    src.write_text(text + "".join(_stub(c, mods[c][0]) for c in dict.fromkeys(children)))
    plain = name[1:] if name.startswith("\\") else name
    script = (f"read_verilog m.v; {SYNTH}{'' if top else ' -noclkbuf'} -top {_yosys_name(plain)}; "
              f"tee -q -o stat.txt stat")
    wall, cpu = run_logged(script, work, f"module {name}", timeout=timeout)
    child_types = {c[1:] if c.startswith("\\") else c for c in children}
    cells = {k: int(v) for k, v in re.findall(r"^\s+(\S+)\s+(\d+)\s*$", (work / "stat.txt").read_text(), re.M)
             if k.lstrip("\\") not in child_types}
    return {"cells": cells, "wall_s": round(wall, 2), "cpu_s": None if cpu is None else round(cpu, 2)}


def log_cpu_seconds(log: str) -> float | None:
    """yosys' CPU seconds (user + system) from its log's last ``CPU:`` line, None if it has none."""
    cpu = re.findall(r"CPU: user ([\d.]+)s system ([\d.]+)s", log)
    return sum(map(float, cpu[-1])) if cpu else None


def run_logged(script: str, work: Path, what: str, timeout: int | None = None) -> tuple[float, float | None]:
    """yosys ``-p script`` in ``work`` at :data:`NICE`, its log in ``work/yosys.log``: the wall
    and CPU seconds (:func:`log_cpu_seconds`); a failure raises with the log's path and stderr's end."""
    t0 = time.monotonic()
    res = subprocess.run([*niced(), "yosys", "-q", "-l", "yosys.log", "-p", script], cwd=work,
                         capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"yosys failed on {what} ({res.returncode}); see {work / 'yosys.log'}:\n"
                           f"{res.stderr[-2000:]}")
    return time.monotonic() - t0, log_cpu_seconds((work / "yosys.log").read_text())


NICE = 5
"""Long yosys runs share the machine: they run at this niceness (not more, if the caller is
already niced)."""


def niced() -> list[str]:
    """A ``nice`` prefix that brings a child process to :data:`NICE` (nothing if already there)."""
    more = NICE - os.nice(0)
    return ["nice", "-n", str(more)] if more > 0 else []


def _yosys_name(name: str) -> str:
    """A module name for a yosys command line: escaped names (dots) need a backslash."""
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", name) else "\\" + name


def cache_dir() -> Path:
    """Per-module results of :func:`hier_cell_counts`: ``HEATVIT_YOSYS_CACHE``, else
    ``build/yosys-cache`` (a measurement cache: an entry is keyed by the module's Verilog and
    the tool, so a changed module is synthesized again)."""
    from heatvit.sim.runner import build_root
    return Path(os.environ.get("HEATVIT_YOSYS_CACHE", build_root() / "yosys-cache"))


def _design(verilog: str, top: str):
    """``(modules, keys, instances per module, key -> first module of that key, top)`` of a
    design; the top's key is its own (only the top's clock gets a BUFG)."""
    mods = split_modules(drop_zero_inits(verilog))
    if top not in mods:
        raise ValueError(f"top module {top!r} is not in the Verilog (modules: {len(mods)})")
    keys = module_keys(mods)
    keys[top] += "-top"
    counts: dict[str, int] = {}

    def walk(name: str):
        counts[name] = counts.get(name, 0) + 1
        for c in mods[name][1]:
            walk(c)

    walk(top)
    todo: dict[str, str] = {}
    for name in counts:
        todo.setdefault(keys[name], name)
    return mods, keys, counts, todo, top


def hier_cell_counts(verilog: str, top: str, *, cache: Path | None = None, jobs: int = 1,
                     timeout: int = 3600, log=None, also: tuple[tuple[str, str], ...] = ()) -> dict:
    """Hierarchical ``SYNTH`` of ``verilog`` (top module ``top``): every distinct module
    (:func:`module_keys`) synthesized once on its own, its children as blackboxes, and its cells
    counted once per instance.  yosys does not flatten by default, so this is what one run of
    the whole design does module by module (no optimization across module boundaries), without
    synthesizing 256 identical PEs 256 times; :func:`heatvit.bench.resources` checks the two
    agree on a small configuration.  Results are cached per module key in ``cache``
    (:func:`cache_dir`).  Returns the cells by type, the instance count, the distinct module
    count, how many were synthesized now, and yosys' wall/CPU seconds (those run now, and all
    of them as first measured).  ``also``: more ``(verilog, top)`` designs whose missing modules
    are synthesized in the same pool (e.g. the build without selectors, which shares most
    modules), so a later call for them finds every module cached."""
    cache = cache_dir() if cache is None else Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    stamp = hashlib.sha256(f"{version()}\n{SYNTH}\nnoclkbuf below the top".encode()).hexdigest()[:8]
    designs = [_design(v, t) for v, t in ((verilog, top), *also)]
    mods, keys, counts, todo, _ = designs[0]
    results: dict[str, dict] = {}
    missing: dict[str, tuple] = {}
    for d in designs:
        for k, name in d[3].items():
            f = cache / f"{k}-{stamp}.json"
            if f.exists():
                results[k] = json.loads(f.read_text())
            elif k not in missing:
                missing[k] = (k, name, d[0], name == d[4])
    # largest first so the long ones start early
    order = sorted(missing.values(), key=lambda x: -len(x[2][x[1]][0]))

    def run(item):
        k, name, ms, is_top = item
        with tempfile.TemporaryDirectory(prefix="heatvit-yosys-") as tmp:
            r = _synth_module(name, ms, Path(tmp), timeout, top=is_top)
        r["module"] = name
        (cache / f"{k}-{stamp}.json").write_text(json.dumps(r))
        if log:
            log(f"  {name}: {r['wall_s']:.0f} s wall, {r['cpu_s']} s CPU")
        return k, r

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for k, r in pool.map(run, order):
            results[k] = r
    missing_here = [k for k in todo if k in missing]
    cells: dict[str, int] = {}
    for name, n in counts.items():
        for t, v in results[keys[name]]["cells"].items():
            cells[t] = cells.get(t, 0) + n * v
    return {"cells": dict(sorted(cells.items())), "instances": sum(counts.values()), "modules": len(todo),
            "synthesized_now": len(missing_here), "wall_s_now": round(time.monotonic() - t0, 1),
            "cpu_s_now": round(sum(results[k]["cpu_s"] or 0 for k in missing_here), 1),
            "cpu_s_all": round(sum(results[k]["cpu_s"] or 0 for k in todo), 1),
            "per_module": {name: {"instances": n, "cells": results[keys[name]]["cells"]}
                           for name, n in counts.items()}}
