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
    and yosys' wall seconds; and ``endpoint_levels`` / ``endpoint_path`` / ``endpoint_source``:
    :func:`netlist_depth` of the same netlist (every endpoint, a LUT-RAM's write data not counted
    as a path to its read data, which ``ltp`` does count).  The ports count as registers (each
    component's inputs and outputs are registered by its neighbours in the designs that use it)."""
    from heatvit.sim.runner import export_verilog
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / f"{top}.v").write_text(export_verilog(component, top, platform=platform))
        script = (f"read_verilog {top}.v; synth_xilinx -family xcup -noiopad -flatten -top {top}; "
                  f"tee -q -o stat.txt stat; delete {REGISTERED}; "
                  f"tee -q -o luts.txt select -list t:LUT*; tee -q -o ltp.txt ltp -noff; write_json net.json")
        t0 = time.monotonic()
        res = subprocess.run(["yosys", "-q", "-p", script], cwd=work, capture_output=True, text=True,
                             timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"yosys failed on {top} ({res.returncode}):\n{res.stderr[-2000:]}")
        seconds = time.monotonic() - t0
        cells = {k: int(v) for k, v in re.findall(r"^\s+(\w+)\s+(\d+)\s*$", (work / "stat.txt").read_text(), re.M)}
        path = longest_path((work / "ltp.txt").read_text(), (work / "luts.txt").read_text())
        walk = netlist_depth(json.loads((work / "net.json").read_text()), top)
    return {**path, "endpoint_levels": walk["levels"], "endpoint_path": walk["path"],
            "endpoint_source": walk.get("source"), "cells_total": cells, "synth_seconds": round(seconds, 1)}


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


ROM_LOGIC_PORTS = 8
"""A ROM (an initialised memory never written) with more read ports than this is marked
``rom_style = "logic"``, see :func:`many_port_roms_as_logic`."""

_MEM_DECL = re.compile(r"^(  )(reg (?:\[\d+:0\] )?(\\?\S+) \[\d+:0\];)$", re.M)


def many_port_roms_as_logic(verilog: str) -> str:
    """``verilog`` with ``(* rom_style = "logic" *)`` on every ROM of more than
    :data:`ROM_LOGIC_PORTS` read ports (the nonlinear units share one coefficient ROM between
    their lanes: GELU's has 16).  yosys 0.23's ``memory_libmap`` tries every assignment of a
    memory's read ports to its RAM kinds, time and memory doubling per port: on a 32 x 88-bit
    ROM 7.5 s of CPU at 4 ports, 9.0 s at 8, 15.4 s and 291 MB at 10, and at GELU's 16 ports
    > 11 GB before it was stopped.  At 4, 8 and 10 ports it chose logic (a LUT5 and a
    flip-flop per bit and port) for these ROMs; the attribute takes that choice directly (the
    same cells at 10 ports, checked in the tests) and 16 ports take 12 s."""
    def module(m: re.Match) -> str:
        text = m.group(0)

        def decl(d: re.Match) -> str:
            name = re.escape(d.group(3))
            reads = len(re.findall(rf"<= {name}\[", text))
            writes = len(re.findall(rf"^\s*{name}\[[^\]]*\](?:\[[^\]]*\])? <=", text, re.M))
            marked = text[:d.start()].rstrip().endswith('(* rom_style = "logic" *)')
            rom = not marked and writes == 0 and re.search(rf"^\s*{name}\[\d+\] = ", text, re.M)
            if rom and reads > ROM_LOGIC_PORTS:
                return f'{d.group(1)}(* rom_style = "logic" *)\n{d.group(1)}{d.group(2)}'
            return d.group(0)

        return _MEM_DECL.sub(decl, text)

    return _MODULE.sub(module, verilog)


def prepare(verilog: str) -> str:
    """Exported Verilog as every resource run reads it: :func:`drop_zero_inits`, then
    :func:`many_port_roms_as_logic`."""
    return many_port_roms_as_logic(drop_zero_inits(verilog))


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


_ONE_LINE = re.compile(r"^  (?:assign|wire|reg) [^\n]*;$")


def _canonical_order(text: str) -> str:
    """``text`` with every run of consecutive one-line ``assign``/``wire``/``reg`` statements
    sorted (by the line with its generated names made neutral, then the line): the Verilog
    writer orders these by its internal hashes, which differ between exports of designs that
    differ elsewhere (the same softmax unit came out with its assignments in another order with
    and without the selectors).  Their order means nothing; always blocks and instances keep
    theirs."""
    out: list[str] = []
    run: list[str] = []
    for line in text.splitlines() + [None]:
        if line is not None and _ONE_LINE.match(line):
            run.append(line)
            continue
        out += sorted(run, key=lambda ln: (_NUMBERED.sub("\\$", ln), ln))
        run = []
        if line is not None:
            out.append(line)
    return "\n".join(out)


def module_keys(mods: dict[str, tuple[str, list[str]]]) -> dict[str, str]:
    """A key per module: the SHA-256 of its text with its own name, the order of its port list
    (connections are by name), its children's names (as their keys) and Amaranth's generated
    names (escaped identifiers with a number: ``\\$12``, ``\\port$18530$0``; renamed in order of
    appearance, after :func:`_canonical_order`) made neutral.  Modules with the same key have the same logic (Amaranth writes one module
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
            text = _NUMBERED.sub(lambda m: f"\\${seen.setdefault(m.group(0), len(seen))}", _canonical_order(text))
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
    return _synth_batch([name], mods, work, timeout, top=top)[name]


BATCH_BYTES = 120_000
"""Modules smaller than this are synthesized several to a yosys run (up to this much Verilog
per run): each run spends about 4 s of CPU reading the Xilinx cell library before its first
module, more than most of the accelerator's ~100 small modules take themselves."""

_STAT_MODULE = re.compile(r"^=== (.+?) ===$", re.M)


def batches(names: list[str], mods: dict, limit: int | None = None) -> list[list[str]]:
    """``names`` (one design's modules) grouped for :func:`_synth_batch`: a module of ``limit``
    bytes or more alone, the others together up to ``limit`` bytes of Verilog a group; largest
    first (the long runs start early).  ``limit``: :data:`BATCH_BYTES` if None."""
    limit = BATCH_BYTES if limit is None else limit
    size = lambda n: len(mods[n][0])       # noqa: E731
    out: list[list[str]] = []
    small: list[str] = []
    total = 0
    for n in sorted(names, key=size, reverse=True):
        if size(n) >= limit:
            out.append([n])
            continue
        if small and total + size(n) > limit:
            out.append(small)
            small, total = [], 0
        small.append(n)
        total += size(n)
    return out + ([small] if small else [])


def _synth_batch(names: list[str], mods: dict, work: Path, timeout: int | None, *, top: bool,
                 netlist: bool = False) -> dict:
    """``SYNTH`` of the modules ``names`` in one yosys run, every child not among them a
    blackbox, under a wrapper top that instantiates each once (synthesis does not flatten, so
    each module is synthesized on its own exactly as in a run of the whole design): per module
    its own cells by type (children excluded); the run's wall and CPU seconds are split over
    the modules by Verilog size.  ``top``: ``names`` is the design's top alone (only its clock
    input gets a BUFG).  ``netlist``: also write the netlist after :data:`LTP_SCRIPT` as
    ``work/net.json`` (:func:`endpoint_levels`)."""
    if top and len(names) != 1:
        raise ValueError(f"the design's top is synthesized alone, not with {len(names) - 1} other modules")
    work.mkdir(parents=True, exist_ok=True)
    inside = set(names)
    stubs = dict.fromkeys(c for n in names for c in mods[n][1] if c not in inside)
    text = "".join(mods[n][0] for n in names) + "".join(_stub(c, mods[c][0]) for c in stubs)
    if top:
        plain = names[0][1:] if names[0].startswith("\\") else names[0]
        head = _yosys_name(plain)
    else:
        head = "heatvit_batch_top"
        text += (f"module {head} ();\n" + "".join(f"  (* keep *) {n} u{i} ();\n" for i, n in enumerate(names))
                 + "endmodule\n")
    (work / "m.v").write_text(text)
    script = (f"read_verilog m.v; {SYNTH}{'' if top else ' -noclkbuf'} -top {head}; "
              f"tee -q -o stat.txt stat; {LTP_SCRIPT}{'; write_json net.json' if netlist else ''}")
    what = f"module {names[0]}" if len(names) == 1 else f"{len(names)} modules ({', '.join(names)})"
    try:
        wall, cpu = run_logged(script, work, what, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"yosys did not finish {what} in {timeout} s (see {work / 'yosys.log'}); "
                           "the resource count is incomplete") from e
    stat = (work / "stat.txt").read_text()
    paths = module_paths(*((work / f).read_text() for f in ("ltp.txt", "luts.txt", "muxf.txt", "carry.txt")))
    sections = _STAT_MODULE.split(stat)
    found = {sections[i].strip().lstrip("\\"): sections[i + 1] for i in range(1, len(sections) - 1, 2)}
    total = sum(len(mods[n][0]) for n in names)
    out = {}
    for n in names:
        plain = n.lstrip("\\")
        if plain not in found:
            raise RuntimeError(f"yosys' stat has no module {plain!r} (run: {what}; see {work / 'yosys.log'})")
        child_types = {c.lstrip("\\") for c in mods[n][1]}
        cells = {k: int(v) for k, v in re.findall(r"^\s+(\S+)\s+(\d+)\s*$", found[plain], re.M)
                 if k.lstrip("\\") not in child_types}
        share = len(mods[n][0]) / total
        out[n] = {"cells": cells, "wall_s": round(wall * share, 2),
                  "cpu_s": None if cpu is None else round(cpu * share, 2), "batch": len(names),
                  "ltp": paths.get(plain)}
    return out


LTP_SCRIPT = ("select -set comb t:LUT* t:CARRY* t:MUXF* t:RAM* t:INV; delete t:RAMB*; delete t:* @comb %d; "
              "tee -q -o luts.txt select -list t:LUT*; tee -q -o muxf.txt select -list t:MUXF* t:RAM*; "
              "tee -q -o carry.txt select -list t:CARRY*; tee -q -o ltp.txt ltp -noff")
"""After the count: every cell but the combinational ones (LUTs, carry chains, MUXF, LUT-RAM
reads, inverters) deleted -- flip-flops, SRLs, block RAMs, DSP48E2s, clock buffers and the
children's blackbox instances -- so ``ltp -noff`` finds each module's longest register-to-register
(or port-to-register) path; the lists name the LUT, MUXF/LUT-RAM and carry cells on it."""

_LTP_MODULE = re.compile(r"^Longest topological path in (.+?) \(length=(-?\d+)\):$", re.M)


def module_paths(ltp: str, luts: str, muxf: str, carry: str) -> dict[str, dict]:
    """:data:`LTP_SCRIPT`'s reports -> per module (plain name) its longest combinational path:
    ``cells``, ``luts``, ``carry`` (CARRY4/8 cells), ``other`` (MUXF7/8/9, LUT-RAM reads) and
    ``levels`` (LUTs + others + carry cells / 4, as :func:`heatvit.bench.perf.levels_of`).  A
    module's ports count as registers (a path through a child module is cut at its pins)."""
    def names(text: str) -> set[str]:
        return {ln.strip() for ln in text.splitlines() if ln.strip()}
    lut_set, muxf_set, carry_set = names(luts), names(muxf), names(carry)
    parts = _LTP_MODULE.split(ltp)
    out = {}
    for i in range(1, len(parts) - 2, 3):
        module, length, body = parts[i], int(parts[i + 1]), parts[i + 2]
        via = [f"{module}/{v}" for v in re.findall(r"\(via (\S+)\)", body)]
        n = {"luts": sum(v in lut_set for v in via), "other": sum(v in muxf_set for v in via),
             "carry": sum(v in carry_set for v in via)}
        out[module] = {"cells": max(length, 0), **n, "levels": n["luts"] + n["other"] + n["carry"] / 4}
    return out


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
    mods = split_modules(prepare(verilog))
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
    for i, d in enumerate(designs):
        for k, name in d[3].items():
            f = cache / f"{k}-{stamp}.json"
            if f.exists():
                results[k] = json.loads(f.read_text())
            elif k not in missing:
                missing[k] = (i, name)
    # one design's modules to a run (names are unique within a design); the top alone
    jobs_list = []
    for i, d in enumerate(designs):
        names = [name for k, (j, name) in missing.items() if j == i]
        jobs_list += [(i, [d[4]], True)] * (d[4] in names)
        jobs_list += [(i, group, False) for group in batches([n for n in names if n != d[4]], d[0])]
    jobs_list.sort(key=lambda job: -sum(len(designs[job[0]][0][n][0]) for n in job[1]))

    def run(job):
        i, names, is_top = job
        ms, ks = designs[i][0], designs[i][1]
        with tempfile.TemporaryDirectory(prefix="heatvit-yosys-") as tmp:
            rs = _synth_batch(names, ms, Path(tmp), timeout, top=is_top)
        for n, r in rs.items():
            r["module"] = n
            (cache / f"{ks[n]}-{stamp}.json").write_text(json.dumps(r))
        if log:
            wall = sum(r["wall_s"] for r in rs.values())
            cpu = sum(r["cpu_s"] or 0 for r in rs.values())
            log(f"  {names[0] if len(names) == 1 else f'{len(names)} modules'}: {wall:.0f} s wall, {cpu:.1f} s CPU")
        return rs

    t0 = time.monotonic()
    failed = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for job, fut in [(job, pool.submit(run, job)) for job in jobs_list]:
            try:
                for n, r in fut.result().items():
                    results[designs[job[0]][1][n]] = r
            except Exception as e:          # the others still finish (and are cached)
                failed.append(f"{', '.join(job[1])}: {e}")
    if failed:
        raise RuntimeError(f"{len(failed)} yosys run(s) failed, the resource count is incomplete:\n"
                           + "\n".join(failed))
    missing_here = [k for k in todo if k in missing]
    cells: dict[str, int] = {}
    for name, n in counts.items():
        for t, v in results[keys[name]]["cells"].items():
            cells[t] = cells.get(t, 0) + n * v
    paths = {name: results[keys[name]].get("ltp") for name in todo.values()}
    known = sorted(((n, p) for n, p in paths.items() if p), key=lambda np: -np[1]["levels"])
    return {"cells": dict(sorted(cells.items())), "instances": sum(counts.values()), "modules": len(todo),
            "longest_paths": {"deepest": [{"module": n.lstrip("\\"), **p} for n, p in known[:10]],
                              "modules_measured": len(known),
                              "modules_not_measured": sorted(n.lstrip("\\") for n, p in paths.items() if not p)},
            "synthesized_now": len(missing_here), "wall_s_now": round(time.monotonic() - t0, 1),
            "cpu_s_now": round(sum(results[k]["cpu_s"] or 0 for k in missing_here), 1),
            "cpu_s_all": round(sum(results[k]["cpu_s"] or 0 for k in todo), 1),
            "per_module": {name: {"instances": n, "cells": results[keys[name]]["cells"]}
                           for name, n in counts.items()}}


# -- every endpoint's depth ------------------------------------------------------------------------

CARRY_LEVEL = 0.25
"""Levels per carry-chain cell (CARRY4/CARRY8), as :func:`module_paths` counts them."""

_RAM_DATA_PORTS = re.compile(r"^(D|DI\w*|WE|WCLK|WE\w*)$")
"""LUT-RAM inputs that do not reach the read data combinationally (write data, write enable,
clock): only the address inputs count towards the read's depth."""


def _cell_level(kind: str) -> float:
    if kind.startswith("CARRY"):
        return CARRY_LEVEL
    return 1.0


def netlist_depth(netlist: dict, module: str) -> dict:
    """Every endpoint's depth in ``module`` of a ``write_json`` netlist after :data:`LTP_SCRIPT`'s
    deletions (only combinational cells left; flip-flop outputs, block RAM / DSP48E2 outputs
    and the module's input ports are the sources, at depth 0).  Each net's depth is its
    driver's deepest input plus 1 per LUT, MUXF7/8/9, LUT-RAM read (its address inputs only:
    the write is clocked) and INV, :data:`CARRY_LEVEL` per carry cell.  Returns ``levels`` (the
    deepest net, so the deepest endpoint), its ``path`` (cell types from the source, deepest
    last) and ``cells`` (combinational cells walked).  ``ltp -noff`` reports the path with the
    most cells instead, which a long carry chain wins against fewer but deeper LUT/MUXF levels."""
    mod = netlist["modules"][module]
    driver: dict[int, tuple[str, list[int]]] = {}     # net -> (cell, its counted inputs)
    kinds: dict[str, str] = {}
    for name, cell in mod.get("cells", {}).items():
        kind = cell["type"]
        dirs = cell.get("port_directions", {})
        ins: list[int] = []
        outs: list[int] = []
        for port, bits in cell["connections"].items():
            nets = [b for b in bits if isinstance(b, int)]
            if dirs.get(port) == "output":
                outs += nets
            elif not (kind.startswith("RAM") and _RAM_DATA_PORTS.match(port)):
                ins += nets
        if not dirs:
            raise ValueError(f"cell {name} ({kind}) has no port directions in the netlist")
        kinds[name] = kind
        for n in outs:
            driver[n] = (name, ins)
    depth: dict[int, float] = {}
    via: dict[int, int | None] = {}

    def resolve(net: int) -> float:
        # iterative depth-first walk (chains run thousands of cells deep)
        stack = [(net, False)]
        on_stack: set[int] = set()
        while stack:
            n, expanded = stack.pop()
            if n in depth:
                continue
            if n not in driver:
                depth[n], via[n] = 0.0, None
                continue
            cell, ins = driver[n]
            if not expanded:
                if n in on_stack:
                    raise ValueError(f"combinational loop through {cell} ({kinds[cell]}) in {module}")
                on_stack.add(n)
                stack.append((n, True))
                stack += [(i, False) for i in ins if i not in depth]
                continue
            best = max(ins, key=lambda i: depth[i], default=None)
            depth[n] = (0.0 if best is None else depth[best]) + _cell_level(kinds[cell])
            via[n] = best
            on_stack.discard(n)
        return depth[net]

    for n in driver:
        resolve(n)
    if not depth:
        return {"levels": 0.0, "path": [], "cells": 0}
    net = max(depth, key=lambda n: depth[n])
    names = {b: name for name, v in sorted(mod.get("netnames", {}).items(), key=lambda kv: kv[1].get("hide_name", 0))
             for b in v["bits"] if isinstance(b, int)}
    endpoint = names.get(net, str(net))
    path = []
    while net is not None and net in driver:
        path.append(kinds[driver[net][0]])
        net = via[net]
    source = names.get(net, str(net)) if net is not None else None
    worst: dict[str, float] = {}
    for n, v in depth.items():
        key = re.sub(r"\[[^\]]*\]$", "", names.get(n, str(n)))
        worst[key] = max(worst.get(key, 0.0), v)
    top = sorted(worst.items(), key=lambda kv: -kv[1])[:8]
    return {"levels": max(depth.values()), "path": path[::-1], "cells": len(kinds), "net": endpoint, "source": source,
            "deepest_nets": [list(kv) for kv in top]}


def _endpoints_batch(names: list[str], mods: dict, work: Path, timeout: int | None) -> dict:
    """:func:`_synth_batch` of ``names`` (children as blackboxes) whose netlist after
    :data:`LTP_SCRIPT` is also written as JSON and walked (:func:`netlist_depth`): per module
    its cells, ``ltp`` figure and ``endpoints``."""
    rs = _synth_batch(names, mods, work, timeout, top=False, netlist=True)
    netlist = json.loads((work / "net.json").read_text())
    for n, r in rs.items():
        r["endpoints"] = netlist_depth(netlist, n.lstrip("\\"))
    return rs


def endpoint_levels(verilog: str, names: list[str] | None = None, *, cache: Path | None = None,
                    timeout: int = 3600, log=None) -> dict[str, dict]:
    """Every endpoint's depth (:func:`netlist_depth`) of each module ``names`` (default: every
    module) of exported ``verilog``, each synthesized alone with the resources bench's flow
    (:data:`SYNTH`, children as blackboxes, :data:`LTP_SCRIPT`).  Module name (plain) ->
    ``levels`` (every endpoint), ``ltp_levels`` (what ``ltp -noff`` reports), ``lut`` (LUT-RAM
    counted as :data:`LUTRAM_LUTS`), ``ff``, ``path`` and ``cells``.  Cached per module key
    (:func:`module_keys`) in ``cache`` (:func:`cache_dir`), beside :func:`hier_cell_counts`'
    entries."""
    from .resources import count            # resources imports this module
    cache = cache_dir() if cache is None else Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    stamp = hashlib.sha256(f"{version()}\n{SYNTH}\n{LTP_SCRIPT}\nendpoints 4".encode()).hexdigest()[:8]
    mods = split_modules(prepare(verilog))
    keys = module_keys(mods)
    by_plain = {n.lstrip("\\"): n for n in mods}
    wanted = list(by_plain) if names is None else names
    missing = [n for n in wanted if n not in by_plain]
    if missing:
        raise ValueError(f"no module {missing} in the Verilog (modules: {sorted(by_plain)[:20]}...)")
    out = {}
    for plain in wanted:
        name = by_plain[plain]
        f = cache / f"{keys[name]}-{stamp}-endpoints.json"
        if f.exists():
            r = json.loads(f.read_text())
        else:
            with tempfile.TemporaryDirectory(prefix="heatvit-yosys-") as tmp:
                r = _endpoints_batch([name], mods, Path(tmp), timeout)[name]
            f.write_text(json.dumps(r))
            if log:
                log(f"  {plain}: {r['wall_s']:.0f} s wall")
        res = count(r["cells"])
        out[plain] = {"levels": r["endpoints"]["levels"], "ltp_levels": (r["ltp"] or {}).get("levels", 0),
                      "lut": res["LUT"], "ff": res["FF"],
                      "path": r["endpoints"]["path"], "net": r["endpoints"].get("net"),
                      "source": r["endpoints"].get("source"),
                      "deepest_nets": r["endpoints"].get("deepest_nets"),
                      "cells": r["endpoints"]["cells"]}
    return out
