"""Building and running the cocotb testbenches under Verilator (``cocotb_tools.runner``).

* One build directory per (top, hardware configuration): ``build/cosim/<config>/<top>``.
  A build is reused while a hash of the Verilog, the Verilator arguments and the tool versions
  matches the stamp left by the last build, so a second run costs no compile time.
* Only the top-level ports are made public to VPI (a Verilator control file), instead of
  cocotb's default ``--public-flat-rw`` on every signal; the testbenches touch ports only,
  and keeping internal signals private lets Verilator optimise them (measured: 2.6x less
  C++ and about half the compile CPU time on the lanes32 engine, docs/cosim.md).
* Waves only when asked (``waves=True`` or ``WAVES=1``): ``--trace-fst`` (VCD when lz4.h is
  missing), written to ``dump.fst`` in the test directory, from a separate ``-waves`` build.
* :func:`run_cocotb` passes the stimulus and result locations in environment variables
  (``COSIM_CASE``/``COSIM_RESULT`` plus any ``extra_env``; the regression uses
  ``COSIM_CASES``/``COSIM_RESULT_DIR``, see :mod:`spikemllm.cosim.regression`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from spikemllm.hw.tools import apply_verilator_env

__all__ = ["BuildResult", "build_top", "run_cocotb", "BUILD_ARGS", "verilator_runner"]

#: Verilator arguments: warnings are not fatal (Amaranth's Verilog has harmless width
#: warnings); -O2 on Verilator's own optimiser. The generated C++ compiles at OPT_FAST=-O1
#: (-O0 saved only 2.5 s of 29 s compiler CPU on the lanes32 engine; see docs/cosim.md).
BUILD_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O2"]
OPT_FAST = os.environ.get("COSIM_OPT_FAST", "-O1")
SCHEMA = 1


@dataclass
class BuildResult:
    top: str
    build_dir: Path
    seconds: float
    reused: bool
    waves: bool
    digest: str
    cpu_seconds: float = 0.0   # compiler CPU time (user + system), independent of machine load


def verilator_runner(public_all=False):
    """A cocotb Verilator runner; without ``public_all`` only the top's ports go public."""
    apply_verilator_env()
    from cocotb_tools.runner import Verilator

    class _PortsPublicVerilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            if not public_all:
                cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
            # the Makefile's C++ optimisation level for the generated model
            # The PyPI wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which breaks every
            # model large enough to use precompiled headers; gcc's flag is -include.
            cmds[1] = cmds[1] + [f"OPT_FAST={OPT_FAST}", "OPT_SLOW=-O0", "OPT_GLOBAL=-O1",
                                 "CFG_CXXFLAGS_PCH_I=-include"]
            return cmds

    return _PortsPublicVerilator()


def fst_available():
    """Verilator's FST writer compiles against lz4.h and zlib.h (system headers)."""
    import subprocess

    probe = "#include <lz4.h>\n#include <zlib.h>\nint main(){return 0;}\n"
    try:
        r = subprocess.run(["c++", "-fsyntax-only", "-x", "c++", "-"], input=probe, text=True,
                           capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def _ports_vlt(top, build_dir):
    # Public read/write on the top module's own signals only (its ports).
    path = Path(build_dir) / "ports_public.vlt"
    text = ("`verilator_config\n"
            f'public_flat_rw -module "{top}" -var "*"\n')
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _tool_versions():
    import cocotb
    import verilator

    return f"cocotb={cocotb.__version__};verilator={getattr(verilator, '__version__', '?')}"


def _digest(sources, args):
    h = hashlib.sha256()
    for src in sources:
        h.update(Path(src).name.encode())
        h.update(Path(src).read_bytes())
    h.update(json.dumps([list(args), OPT_FAST, _tool_versions(), SCHEMA]).encode())
    return h.hexdigest()


def build_top(top, sources, build_dir, *, waves=None, log=print, public_all=False):
    """Build (or reuse) the Verilator model of ``top`` from ``sources`` into ``build_dir``.

    Returns a :class:`BuildResult`; ``seconds`` is the compile time (about 0 when reused).
    """
    waves = bool(int(os.environ.get("WAVES", "0"))) if waves is None else bool(waves)
    build_dir = Path(build_dir)
    if waves:   # a traced model lives beside the plain one, so neither rebuilds the other
        build_dir = build_dir.with_name(build_dir.name + "-waves")
    build_dir.mkdir(parents=True, exist_ok=True)
    args = list(BUILD_ARGS)
    if waves:
        if fst_available():
            args += ["--trace-fst", "--trace-structs"]
        else:
            log("note: FST needs lz4.h (apt-get install liblz4-dev); writing VCD waves instead")
            args += ["--trace", "--trace-structs"]
    srcs = [Path(s).resolve() for s in sources]
    if not public_all:
        srcs = [_ports_vlt(top, build_dir)] + srcs
    digest = _digest(srcs, args + [f"public_all={public_all}", top])
    stamp = build_dir / "build.stamp.json"
    binary = build_dir / top
    if stamp.exists() and binary.exists():
        try:
            old = json.loads(stamp.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("digest") == digest:
            return BuildResult(top, build_dir, 0.0, True, waves, digest)
    if stamp.exists():
        stamp.unlink()
    runner = verilator_runner(public_all=public_all)
    t0 = time.perf_counter()
    cpu0 = _children_cpu()
    runner.build(sources=[str(s) for s in srcs], hdl_toplevel=top, build_dir=build_dir,
                 build_args=args, waves=waves, always=True,
                 log_file=build_dir / "build.log")
    seconds = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    stamp.write_text(json.dumps({"digest": digest, "top": top, "seconds": seconds,
                                 "cpu_seconds": cpu, "waves": waves}, indent=2))
    return BuildResult(top, build_dir, seconds, False, waves, digest, cpu)


def _children_cpu():
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_cocotb(build, test_module, *, case_path, result_path, test_dir=None, seed=None,
               testcase=None, extra_env=None, log_file=None):
    """Run ``test_module`` (a cocotb module) against a built top; returns the result dict.

    The cocotb test writes its measurements to ``result_path``; the xUnit results say whether
    every cocotb test passed. Returns ``{"passed": bool, "wall_s": float, **result}``.
    """
    from cocotb_tools.runner import get_results

    runner = verilator_runner()
    test_dir = Path(test_dir or build.build_dir)
    test_dir.mkdir(parents=True, exist_ok=True)
    result_path = Path(result_path)
    if result_path.exists():
        result_path.unlink()
    # cocotb_tools passes this process's sys.path as PYTHONPATH and its interpreter as
    # PYGPI_PYTHON_BIN, so the simulator's embedded Python imports spikemllm from the venv.
    env = {"COSIM_CASE": str(Path(case_path).resolve()),
           "COSIM_RESULT": str(result_path.resolve())}
    env.update(extra_env or {})
    results_xml = (test_dir / f"{result_path.stem}.results.xml").resolve()
    # cocotb_tools treats a run under pytest specially (raises on failure); we want the
    # numbers either way, so hide PYTEST_CURRENT_TEST for the call.
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    t0 = time.perf_counter()
    crashed = None
    try:
        runner.test(test_module=test_module, hdl_toplevel=build.top, hdl_toplevel_lang="verilog",
                    build_dir=build.build_dir, test_dir=test_dir, seed=seed, testcase=testcase,
                    extra_env=env, waves=build.waves, results_xml=str(results_xml),
                    log_file=log_file)
    except SystemExit as e:  # the runner exits when the simulator fails
        crashed = f"simulator exited with {e.code}"
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved
    wall = time.perf_counter() - t0
    try:
        n_tests, n_failed = get_results(results_xml)
    except (RuntimeError, FileNotFoundError, OSError) as e:
        n_tests, n_failed = 0, 1
        crashed = crashed or str(e)
    result = {}
    if result_path.exists():
        result = json.loads(result_path.read_text())
    result.update(passed=(n_failed == 0 and n_tests > 0 and crashed is None),
                  cocotb_tests=n_tests, cocotb_failed=n_failed, wall_s=wall)
    if crashed:
        result["error"] = crashed
    return result
