"""``spikemllm verilog``: generate the accelerator's Verilog, params.json and a port list.

Each top is an Amaranth ``wiring.Component`` converted with ``amaranth.back.verilog``; its
ports are the signature members flattened with ``__`` (``i_stream__valid``,
``i_stream__payload``, ...) plus ``clk`` and ``rst`` (synchronous, active high). The output
folder is written atomically: a temporary sibling folder is filled and renamed into place.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from spikemllm.fsutil import replace_dir
from .params import HwParams

__all__ = ["DESCRIPTION", "add_arguments", "run", "build_tops", "port_list", "write_verilog",
           "params_from_args"]

DESCRIPTION = """\
Generate the spike accelerator's Verilog from the Amaranth sources.

Writes into --out (atomically, replacing what was there):
  spike_engine.v      the engine top: event stream -> PE array -> TC-LIF firing -> events
  spike_kv_cache.v    the spike KV-cache buffer and score unit (when hw/kv_cache.py exists)
  params.json         the generator parameters and derived widths (acc_bits, ...)
  README.md           each top's ports (name, direction, width) and the register map

Invalid parameters (a non-power-of-two LANES/IN_MAX/HEAD_DIM/KV_DEPTH, a T_MAX outside
1..15, a T_KV above T_MAX, a THETA_BITS not above FRAC_BITS, ...) stop with a clear error.
The default configuration takes about half a minute (mostly the KV-cache memories).
With --lint, the written Verilog is also checked with `verilator --lint-only -Wno-fatal`.
"""


def add_arguments(parser: argparse.ArgumentParser):
    d = HwParams()
    g = parser.add_argument_group("hardware parameters")
    g.add_argument("--lanes", type=int, default=d.lanes, help="output channels in parallel, power of two (default %(default)s)")
    g.add_argument("--w-bits", type=int, default=d.w_bits, help="signed weight width (default %(default)s)")
    g.add_argument("--t-max", type=int, default=d.t_max, help="largest T per token, 1..15 (default %(default)s)")
    g.add_argument("--in-max", type=int, default=d.in_max, help="input features = weight-memory rows, power of two (default %(default)s)")
    g.add_argument("--kv-depth", type=int, default=d.kv_depth, help="KV-cache tokens per head, power of two (default %(default)s)")
    g.add_argument("--heads", type=int, default=d.heads, help="KV heads (default %(default)s)")
    g.add_argument("--head-dim", type=int, default=d.head_dim, help="head dimension, power of two (default %(default)s)")
    g.add_argument("--t-kv", type=int, default=None, help="KV bit-planes, 1..T_MAX (default min(7, T_MAX))")
    g.add_argument("--frac-bits", type=int, default=d.frac_bits, help="fraction bits of theta (default %(default)s)")
    g.add_argument("--theta-bits", type=int, default=d.theta_bits, help="width of theta (default %(default)s)")
    g.add_argument("--read-register", action="store_true",
                   help="register every memory's read data before use: one more cycle of "
                        "latency, no path from a block RAM's slow output into logic (for FPGAs)")
    g.add_argument("--bram-rows", type=int, default=d.bram_rows,
                   help="with --read-register: rows per read bank, each with its own read "
                        "register (0: one bank; 2048 suits ECP5 DP16KD) (default %(default)s)")
    g.add_argument("--firing-parts", type=int, default=d.firing_parts,
                   help="adders per firing remainder, 1..8: 4 suits standard cells, 1 an "
                        "FPGA's carry chains (default %(default)s)")
    g.add_argument("--kv-sign-magnitude", action="store_true",
                   help="with --read-register: KV caches store magnitude planes and one sign "
                        "word per vector (8/14 of the bits at t_kv 7; fits the default on an "
                        "LFE5U-85F)")
    g.add_argument("--alternating-ports", action=argparse.BooleanOptionalAction, default=None,
                   help="read every memory (weights, KV planes) through the SRAM macro's two "
                        "ports in turn, each clocked every other cycle (the OpenRAM macro then "
                        "no longer limits the clock; +2 cycles of read latency, writes every "
                        "other cycle); default: on without --read-register, off with it")
    parser.add_argument("--out", type=Path, default=Path("build/verilog"), help="output folder (default %(default)s)")
    parser.add_argument("--lint", action="store_true", help="run verilator --lint-only on the result")


def params_from_args(args) -> HwParams:
    return HwParams(lanes=args.lanes, w_bits=args.w_bits, t_max=args.t_max, in_max=args.in_max,
                    kv_depth=args.kv_depth, heads=args.heads, head_dim=args.head_dim,
                    t_kv=args.t_kv, frac_bits=args.frac_bits, theta_bits=args.theta_bits,
                    read_register=args.read_register, bram_rows=args.bram_rows,
                    firing_parts=args.firing_parts, kv_sign_magnitude=args.kv_sign_magnitude,
                    alternating_ports=args.alternating_ports)


def _kv_cache_factory():
    try:
        from .kv_cache import kv_cache_from_params
    except ImportError:  # the KV-cache block is optional in this version
        return None
    return kv_cache_from_params


def build_tops(params: HwParams, names=None):
    """The Verilog tops for ``params``: ``{"spike_engine": SpikeEngine, "spike_kv_cache": ...}``.

    ``spike_kv_cache`` is present when :mod:`spikemllm.hw.kv_cache` is available. ``names``
    limits the result to those tops (components that are built and never elaborated make
    Amaranth warn).
    """
    from .engine import SpikeEngine

    if not isinstance(params, HwParams):
        raise ValueError(f"params must be a HwParams, not {params!r}")
    tops = {}
    if names is None or "spike_engine" in names:
        tops["spike_engine"] = SpikeEngine(params=params)
    kv = _kv_cache_factory()
    if kv is not None and (names is None or "spike_kv_cache" in names):
        tops["spike_kv_cache"] = kv(params)
    return tops


def port_list(component):
    """``[(port name, "input"/"output", width), ...]`` of a component's Verilog top, clk/rst first."""
    from amaranth.hdl import Shape
    from amaranth.lib import wiring

    ports = [("clk", "input", 1), ("rst", "input", 1)]
    for path, member in component.signature.members.flatten():
        if not member.is_port:
            continue
        name = "__".join(str(x) for x in path)
        direction = "input" if member.flow == wiring.In else "output"
        ports.append((name, direction, Shape.cast(member.shape).width))
    return ports


def _readme(params, tops):
    from .engine import REGISTERS

    lines = ["# Generated Verilog", "",
             "Generated by `spikemllm verilog` from the Amaranth sources in `hw/`; see",
             "`docs/architecture.md` for the payload bit layouts, latencies and the design.", "",
             "Parameters: " + ", ".join(f"{k}={v}" for k, v in params.to_dict().items())
             + f" (acc_bits={params.acc_bits}).", "",
             "All tops: one clock `clk`, synchronous active-high `rst` (hold >= 2 cycles).",
             "Streams: `valid`/`ready`/`payload`; a transfer happens in a cycle with both high.", ""]
    for name, comp in tops.items():
        lines += [f"## `{name}` ({type(comp).__name__}, `{name}.v`)", "",
                  "| port | direction | width |", "|---|---|---|"]
        lines += [f"| `{n}` | {d} | {w} |" for n, d, w in port_list(comp)]
        lines.append("")
    lines += ["## spike_engine register map (32-bit words, `cfg_addr` = word address)", "",
              "| addr | name | access | meaning |", "|---|---|---|---|"]
    lines += [f"| {r.addr:#04x} | {r.name} | {r.access} | {r.doc} |" for r in REGISTERS]
    return "\n".join(lines) + "\n"


def write_verilog(params: HwParams, out_dir, *, lint=False, progress=False):
    """Write one ``<top>.v`` per :func:`build_tops` entry, ``params.json`` and ``README.md``.

    The folder ``out_dir`` is replaced atomically. Returns ``{top name: path to .v}``.
    With ``lint`` every file is checked with Verilator (ValueError on a lint error); with
    ``progress`` a tqdm bar shows the tops being converted.
    """
    from amaranth.back import verilog

    if not isinstance(params, HwParams):
        raise ValueError(f"params must be a HwParams, not {params!r}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tops = build_tops(params)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the result is an ordinary folder
        items = tops.items()
        if progress:
            from tqdm import tqdm
            items = tqdm(items, desc="verilog", unit="top")
        for name, comp in items:
            text = verilog.convert(comp, name=name, emit_src=False)
            (tmp / f"{name}.v").write_text(text)
        (tmp / "params.json").write_text(params.to_json())
        (tmp / "README.md").write_text(_readme(params, tops))
        if lint:
            for name in tops:
                lint_verilog(tmp / f"{name}.v", top=name)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {name: out_dir / f"{name}.v" for name in tops}


def lint_verilog(path, top=None):
    """``verilator --lint-only -Wno-fatal`` on one file; ValueError with its output on error.

    Returns the warning text (may be empty).
    """
    import subprocess

    from .tools import verilator_env

    path = Path(path)
    cmd = ["verilator", "--lint-only", "-Wno-fatal", path.name]
    if top:
        cmd[-1:-1] = ["--top-module", top]
    r = subprocess.run(cmd, cwd=path.parent, env=verilator_env(), capture_output=True, text=True)
    if r.returncode != 0:
        raise ValueError(f"verilator lint failed for {path.name}:\n{r.stdout}{r.stderr}")
    return r.stdout + r.stderr


def run(args) -> int:
    params = params_from_args(args)
    paths = write_verilog(params, args.out, lint=args.lint, progress=True)
    for name, path in paths.items():
        print(f"{name}: {path}")
    print(f"params: {Path(args.out) / 'params.json'} (acc_bits={params.acc_bits})")
    if "spike_kv_cache" not in paths:
        print("note: hw/kv_cache.py is not available; no spike_kv_cache.v written")
    return 0
