"""The co-simulation regression: hardware configurations, case lists, runs and the summary.

Used by ``spikemllm sim`` (:mod:`spikemllm.cosim.run`) and by ``tests/cosim``. One simulator
process runs all cases of one (configuration, top): the case list travels in a JSON manifest
(``COSIM_CASES``), each case in its own ``.npz``, and every cocotb test writes one JSON result
into ``COSIM_RESULT_DIR``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from spikemllm.hw.tools import REPO_ROOT

from .runner import build_top, run_cocotb
from .stimulus import save_case

__all__ = ["CONFIGS", "TRAFFIC", "ConfigBuild", "write_config_verilog", "build_config",
           "register_activity",
           "run_cases", "summarise", "activity", "write_json", "BUILD_ROOT"]

BUILD_ROOT = REPO_ROOT / "build" / "cosim"

#: Hardware configurations of the regression (HwParams keyword arguments). ``lanes8`` is the
#: small CI configuration; ``lanes32`` is the exported default's datapath (LANES = 32, T_MAX = 8)
#: with memories sized for the regression's layers; ``lanes8_fpga`` is lanes8 in the RTL style
#: that ``spikemllm synth`` uses for FPGAs.
CONFIGS = {
    "lanes8": dict(lanes=8, w_bits=4, t_max=4, in_max=512, kv_depth=16, heads=2, head_dim=16,
                   t_kv=4),
    "lanes32": dict(lanes=32, w_bits=4, t_max=8, in_max=512, kv_depth=32, heads=2, head_dim=64,
                    t_kv=7),
    # lanes8 in the FPGA RTL style (registered memory reads, one-part firing remainder)
    "lanes8_fpga": dict(lanes=8, w_bits=4, t_max=4, in_max=512, kv_depth=16, heads=2,
                        head_dim=16, t_kv=4, read_register=True, bram_rows=64,
                        firing_parts=1, kv_sign_magnitude=True),
}

#: Traffic shapes: (probability of a valid gap per cycle, probability of a backpressure burst).
#: ``free`` measures throughput; ``stress`` checks that nothing is lost, duplicated or stuck.
TRAFFIC = {"free": (0.0, 0.0), "stress": (0.25, 0.2)}

TOP_MODULES = {"engine": ("spike_engine", "spikemllm.cosim.tb_engine"),
               "kv": ("spike_kv_cache", "spikemllm.cosim.tb_kv_cache")}


def hw_params(config):
    from spikemllm.hw.params import HwParams

    return HwParams(**CONFIGS[config]) if isinstance(config, str) else config


@dataclass
class ConfigBuild:
    name: str
    params: object
    verilog: dict
    builds: dict = field(default_factory=dict)   # top kind -> BuildResult

    @property
    def build_seconds(self):
        return sum(b.seconds for b in self.builds.values())


def write_config_verilog(name, params, root=None):
    """Verilog of configuration ``name`` into ``<root>/<name>/verilog``: {top kind: path}."""
    from spikemllm.hw.export import write_verilog

    out = Path(root or BUILD_ROOT) / name / "verilog"
    paths = write_verilog(params, out)
    found = {}
    for kind, (module, _) in TOP_MODULES.items():
        p = paths.get(module) or paths.get(kind)
        if p is None:
            cand = out / f"{module}.v"
            p = cand if cand.exists() else None
        if p is not None:
            found[kind] = Path(p)
    return found


def build_config(name, params=None, root=None, waves=None, kinds=("engine", "kv"), log=print):
    """Write the Verilog of a configuration and build (or reuse) its Verilator models."""
    params = params or hw_params(name)
    root = Path(root or BUILD_ROOT)
    verilog = write_config_verilog(name, params, root)
    cb = ConfigBuild(name, params, verilog)
    for kind in kinds:
        if kind not in verilog:
            raise ValueError(f"write_verilog wrote no {TOP_MODULES[kind][0]}.v for {name}")
        module = TOP_MODULES[kind][0]
        log(f"[{name}] verilator build {module} ...")
        cb.builds[kind] = build_top(module, [verilog[kind]], root / name / module, waves=waves)
        b = cb.builds[kind]
        log(f"[{name}] {module}: " + ("reused (Verilog unchanged)" if b.reused else
                                      f"built in {b.seconds:.1f} s ({b.cpu_seconds:.1f} s CPU)"))
    return cb


def run_cases(cb, kind, cases, *, traffic=("free",), seed=None, work_dir=None, log=print):
    """Run ``cases`` (engine or KV) on a built configuration, one simulator process.

    Returns the list of per-(case, traffic) result dicts plus a ``run`` record with the wall
    time and the pass/fail of the simulator process.
    """
    module, test_module = TOP_MODULES[kind]
    work = Path(work_dir or (BUILD_ROOT / cb.name / f"run-{kind}"))
    if work.exists():
        shutil.rmtree(work)
    (work / "cases").mkdir(parents=True)
    results_dir = work / "results"
    results_dir.mkdir()
    entries = []
    for i, case in enumerate(cases):
        if kind == "engine":
            case.check_fits(cb.params)
        path = save_case(case, work / "cases" / f"{i:03d}.npz")
        for tr in traffic:
            entries.append({"id": f"{i:03d}-{tr}", "name": case.name, "source": case.source,
                            "path": str(path), "traffic": tr, "pause": TRAFFIC[tr]})
    manifest = work / "cases.json"
    manifest.write_text(json.dumps({"config": cb.name, "params": cb.params.to_dict(),
                                    "cases": entries}, indent=1))
    seed = int(os.environ.get("COCOTB_RANDOM_SEED", seed if seed is not None else 1))
    log(f"[{cb.name}] {module}: {len(entries)} runs ({len(cases)} cases x {', '.join(traffic)}), "
        f"seed {seed}")
    t0 = time.perf_counter()
    res = run_cocotb(cb.builds[kind], test_module, case_path=manifest,
                     result_path=work / "run.json", test_dir=work, seed=seed,
                     extra_env={"COSIM_CASES": str(manifest), "COSIM_RESULT_DIR": str(results_dir)},
                     log_file=work / "sim.log")
    wall = time.perf_counter() - t0
    per_case = []
    for e in entries:
        p = results_dir / f"{e['id']}.json"
        r = json.loads(p.read_text()) if p.exists() else {"passed": False, "error": "no result"}
        r.update(config=cb.name, top=module, id=e["id"], name=e["name"], source=e["source"],
                 traffic=e["traffic"])
        per_case.append(r)
    return {"config": cb.name, "top": module, "seed": seed, "wall_s": wall,
            "process_passed": res["passed"], "cocotb_tests": res.get("cocotb_tests", 0),
            "cocotb_failed": res.get("cocotb_failed", 0), "error": res.get("error"),
            "log": str(work / "sim.log"), "cases": per_case}


def summarise(runs, builds):
    """Totals over every run: the summary.json body.

    ``events``, ``cycles`` and ``events_per_cycle`` are the engine's own counters (EVENTS_IN,
    CYCLES_BUSY) summed over the free-flowing (no gaps, no backpressure) runs on real spike
    trains (golden cases; all free runs when there are none). CYCLES_BUSY counts every cycle
    with work in the engine, pipeline fill and the last token's firing included.
    ``events_per_offered_cycle`` = EVENTS_IN / (EVENTS_IN + STALL_CYCLES) is the sustained
    input rate (cycles with an event offered on i_stream).
    """
    cases = [c for r in runs for c in r["cases"]]
    passed = sum(1 for c in cases if c.get("passed"))
    mism = sum(int(c.get("mismatches", 0)) for c in cases)
    free_eng = [c for c in cases if c["top"] == "spike_engine" and c["traffic"] == "free"
                and c.get("passed")]
    real = [c for c in free_eng if c["source"].startswith("golden:")]
    basis = real or free_eng

    def tot(cs, key):
        return sum(c.get(key, 0) for c in cs)

    def ratio(a, b):
        return a / b if b else None

    ev, cyc, st = tot(basis, "events_in"), tot(basis, "cycles_busy"), tot(basis, "stall_cycles")
    sim_cycles = tot(cases, "sim_cycles")
    sim_wall = sum(c.get("sim_wall_s", 0.0) for c in cases)
    return {
        "tests_passed": passed,
        "tests_failed": len(cases) - passed,
        "simulator_processes_failed": sum(1 for r in runs if not r["process_passed"]),
        "mismatches": mism,
        "protocol_violations": sum(len(c.get("violations", [])) for c in cases),
        "events_basis": "free traffic, real spike trains (golden)" if real else "free traffic, generated cases",
        "events": ev,
        "cycles": cyc,
        "events_per_cycle": ratio(ev, cyc),
        "events_per_offered_cycle": ratio(ev, ev + st),
        "events_real": tot(real, "events_in"),
        "cycles_real": tot(real, "cycles_busy"),
        "events_per_cycle_real": ratio(tot(real, "events_in"), tot(real, "cycles_busy")),
        "events_per_offered_cycle_real": ratio(tot(real, "events_in"),
                                               tot(real, "events_in") + tot(real, "stall_cycles")),
        "events_all_free": tot(free_eng, "events_in"),
        "cycles_all_free": tot(free_eng, "cycles_busy"),
        "events_all_traffic": tot([c for c in cases if c["top"] == "spike_engine"], "events_in"),
        "simulated_cycles": sim_cycles,
        "verilator_cycles_per_s": ratio(sim_cycles, sim_wall),
        "build_seconds": sum(b["seconds"] for b in builds.values()),
        "build_cpu_seconds": sum(b["cpu_seconds"] for b in builds.values()),
        "builds": builds,
        "run_seconds": sum(r["wall_s"] for r in runs),
    }


def _rel(path):
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def register_activity(cases, params, log=print, kv_cases=(), trace_dir=None, designs=None,
                      cache_dir=None):
    """Register toggle rates of spike_engine (its KV caches idle), pe_array and mac_baseline
    on ``cases`` (golden engine cases that fit ``params``), and of spike_kv_cache (the K cache
    with its score unit) on ``kv_cases`` (golden attention cases, each on ``params``' cache
    where it fits, else on a cache sized for it; where some fit, the K cache's rates are
    theirs alone, and the others only record their traces), and the reads per cycle of each
    of their memories, measured in the Amaranth simulator: the ``activity.json`` keys
    ``register_activity_by_design``, ``sram_reads_per_cycle_by_design``,
    ``register_activity_source`` and, with ``kv_cases``,
    ``port_activity_by_design`` and ``score_planes_per_cycle`` (key planes scored per cycle:
    scores x t_kv / cycles, the score walker's utilisation, which carries over to other t_kv).
    (:mod:`spikemllm.hw.register_activity`; OpenSTA starts every register output from that
    rate.) With ``trace_dir``, every port of spike_engine, pe_array, mac_baseline and
    spike_kv_cache (at the size it ran at) at every cycle of each case is saved there
    (``<design>.<case>.npz``) and listed, relative to
    ``trace_dir``'s parent, as ``port_traces_by_design`` (``spikemllm synth --clock-gating``
    simulates the gate-level netlists on them). ``designs`` (None: all) limits which of
    spike_engine, pe_array and mac_baseline run ``cases``. With ``cache_dir``, each
    (design, case, configuration) measurement is kept there and reused while the package's
    source and the case's data are unchanged (:func:`_cached_measurement`)."""
    from spikemllm.hw import register_activity as RA

    from .stimulus import kv_params_for

    tr = trace_dir is not None
    measures = {
        "spike_engine": lambda c: RA.spike_engine_activity(params, c, trace=tr),
        "pe_array": lambda c: RA.pe_array_activity(params, c.weights, c.events, horner=c.horner,
                                                   trace=tr),
        "mac_baseline": lambda c: RA.mac_baseline_activity(params, c.weights, c.events,
                                                           horner=c.horner, trace=tr)}
    jobs = []
    for case in cases:
        case.check_fits(params)
        jobs += [(design, fn, case, params, True) for design, fn in measures.items()
                 if designs is None or design in designs]
    kv_jobs = [(case, kv_params_for(case, params, keep_fitting=True)) for case in kv_cases]
    # where some case runs on params' own cache, the K cache's rates are those cases' alone;
    # the others only record their traces (for a synthesis at their size)
    own = any(kp == params for _, kp in kv_jobs)
    kv_sizes = []
    for case, kp in kv_jobs:
        counted = kp == params or not own
        if counted:
            kv_sizes.append(f"{case.name} (heads {kp.heads}, head_dim {kp.head_dim}, "
                            f"t_kv {kp.t_kv}, depth {kp.kv_depth})")
        if counted or tr:
            jobs.append(("spike_kv_cache",
                         lambda c, kp=kp: RA.kv_cache_activity(kp, c, trace=tr), case, kp,
                         counted))
    designs = list(dict.fromkeys(d for d, *_ in jobs))
    tot = {d: [0, 0] for d in designs}
    reads = {d: {} for d in designs}
    cycles = dict.fromkeys(designs, 0)
    ports, planes, scores, traces = {}, 0, 0, {}
    # one folder per source digest; those of other sources go when this one is made
    cache = None if cache_dir is None else Path(cache_dir) / _source_digest()[:16]
    reused = 0
    for design, fn, case, p, counted in jobs:
        r, hit = _cached_measurement(cache, design, fn, case, p, tr)
        reused += hit
        if "port_trace" in r:
            r["port_trace"].params = p.to_dict()   # synth names the flags of another size
            trace_dir.mkdir(parents=True, exist_ok=True)
            path = trace_dir / (f"{design}." + re.sub(r"[^A-Za-z0-9_.-]", "_", case.name)
                                + ".npz")
            r["port_trace"].save(path)
            traces.setdefault(design, []).append(str(path.relative_to(trace_dir.parent)))
        if not counted:
            continue
        tot[design][0] += r["toggles"]
        tot[design][1] += r["bits"] * r["cycles"]
        cycles[design] += r["cycles"]
        for mem, n in r["memory_reads"].items():
            reads[design][mem] = reads[design].get(mem, 0) + n
        for port, rate in r.get("port_toggles", {}).items():
            ports.setdefault(design, {}).setdefault(port, []).append((rate, r["cycles"]))
        scores += r.get("scores", 0)
        planes += r.get("score_planes", 0)
    rates = {d: t / b for d, (t, b) in tot.items() if b}
    sram = {d: {mem: n / cycles[d] for mem, n in mems.items()}
            for d, mems in reads.items() if cycles[d]}
    if reused:
        log(f"  {reused} of {len(jobs)} measurement(s) reused from {cache_dir} (source and "
            "cases unchanged)")
    if rates:
        log("  register activity (Amaranth simulator): "
            + ", ".join(f"{d} {r:.3f}" for d, r in rates.items()))
        log("  SRAM reads per cycle: " + "; ".join(
            f"{d} " + ", ".join(f"{m} {v:.3f}" for m, v in mems.items()) for d, mems in sram.items()))
    names = [c.name for c in cases]
    out = {"register_activity_by_design": rates,
           "sram_reads_per_cycle_by_design": sram,
           "register_activity_source": (
               "Amaranth simulator, every clocked register of each design (memories "
               "excluded; the engine's KV caches idle) on golden cases "
               f"{', '.join(names) or 'none'} at lanes={params.lanes}, in_max={params.in_max}, "
               f"t_max={params.t_max}, one input per cycle, output always ready"
               + (f"; spike_kv_cache (K cache with its score unit) on golden attention cases "
                  f"{', '.join(kv_sizes)}: every token's K appended, then every query scored, "
                  "scores checked, outputs always ready" if kv_sizes else ""))}
    if traces:
        out["port_traces_by_design"] = traces
    if kv_sizes:
        # cycle-weighted mean per port; the other input ports hold still (0)
        out["port_activity_by_design"] = {
            d: {p: sum(r * c for r, c in v) / max(1, sum(c for _, c in v)) for p, v in pp.items()}
            for d, pp in ports.items()}
        out["score_planes_per_cycle"] = planes / cycles["spike_kv_cache"]
        log(f"  spike_kv_cache: {scores} scores ({planes} key planes) in "
            f"{cycles['spike_kv_cache']} cycles")
    return out


def _source_digest():
    """SHA-256 over every ``.py`` file of the spikemllm package (path and content) and the
    Amaranth and NumPy versions: any change to the RTL, the simulator benches, the reference
    or the simulator itself invalidates a cached measurement."""
    import hashlib
    import importlib
    from importlib.metadata import version

    h = hashlib.sha256(f"amaranth {version('amaranth')} numpy {version('numpy')}".encode())
    for pkg in ("spikemllm", "spikemllm.hw", "spikemllm.sw", "spikemllm.cosim"):
        root = Path(importlib.import_module(pkg).__file__).parent
        for f in sorted(root.rglob("*.py")):
            h.update(f"{pkg}/{f.relative_to(root)}".encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _case_digest(case):
    """SHA-256 over a case's fields (arrays by dtype, shape and bytes)."""
    import dataclasses
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for f in dataclasses.fields(case):
        v = getattr(case, f.name)
        h.update(f.name.encode() + b"\0")
        if isinstance(v, np.ndarray):
            h.update(f"{v.dtype.str}{v.shape}".encode() + np.ascontiguousarray(v).tobytes())
        else:
            h.update(json.dumps(v, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _cached_measurement(folder, design, fn, case, params, trace):
    """``(fn(case), False)``, or with ``folder`` (the cache's folder for this source) the same
    result kept there by an earlier run with the same design, configuration and case:
    ``(result, True)``. An entry counts once its JSON is in place, written after its port
    trace, each through a temporary file, so an interrupted run leaves no half entry."""
    from spikemllm.hw.netlist_sim import PortTrace

    if folder is None:
        return fn(case), False
    import hashlib

    key = hashlib.sha256(json.dumps(
        [design, params.to_dict(), _case_digest(case), bool(trace)],
        sort_keys=True).encode()).hexdigest()[:32]
    entry, trace_file = folder / f"{key}.json", folder / f"{key}.npz"
    if entry.exists() and (not trace or trace_file.exists()):
        r = json.loads(entry.read_text())
        if trace:
            r["port_trace"] = PortTrace.load(trace_file)
        return r, True
    r = fn(case)
    if not folder.exists():
        if folder.parent.exists():
            for stale in folder.parent.iterdir():
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        folder.mkdir(parents=True)
    if "port_trace" in r:
        tmp = trace_file.with_name(trace_file.stem + ".tmp.npz")
        r["port_trace"].save(tmp)
        os.replace(tmp, trace_file)
    write_json(entry, {k: v for k, v in r.items() if k != "port_trace"}, default=_json_number)
    return r, False


def write_json(path, obj, default=str):
    """Write ``obj`` to ``path`` as indented JSON through a temporary file, so that a run
    stopped halfway leaves the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=default) + "\n")
    os.replace(tmp, path)


def _json_number(v):
    import numpy as np

    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    raise TypeError(f"cannot keep {type(v).__name__} in the activity cache")


def activity(runs):
    """Switching activity measured on real (golden) traffic, for ``spikemllm synth --activity``.

    Schema of docs/synthesis.md. ``input_activity`` is the measured transition rate per bit
    and cycle of ``i_stream__payload`` over the busy window of the free-flowing runs; the ports
    that hold still during inference (configuration, weight loading, ready inputs held high)
    get 0 in ``port_activity``, and so do the KV-cache ports (``k_*``, ``v_*``): these runs
    are linear layers, whose testbench never drives them. Internal registers are not visible
    to the testbench (only ports are public): ``register_activity`` (one rate for every net)
    stays null, and :func:`register_activity` measures the registers in the Amaranth
    simulator instead. ``mac_input_activity`` is the transition rate of the MAC baseline's
    input payload if it took the same layers' activations as a dense INT stream (every
    index of every token, zeros included; :func:`spikemllm.hw.mac_baseline.input_toggles`).
    ``spikes_per_active_input`` is the spikes over the (token, index) pairs that fire
    (:func:`spikemllm.sw.events.active_inputs`): how many SOPs one weight-row read could serve
    in a datapath that held an input's row for all of a token's steps.
    """
    cases = [c for r in runs for c in r["cases"]
             if c["top"] == "spike_engine" and c["traffic"] == "free" and c.get("passed")]
    real = [c for c in cases if c["source"].startswith("golden:")] or cases
    cyc = sum(c.get("cycles_busy", 0) for c in real)
    ev = sum(c.get("events_in", 0) for c in real)
    toggles = sum(c.get("input_toggles", 0) for c in real)
    bits = sum(c.get("input_bit_cycles", 0) for c in real)
    spikes = sum(c.get("input_spikes", 0) for c in real)
    slots = sum(c.get("input_spike_slots", 0) for c in real)
    active = sum(c.get("input_active_inputs", 0) for c in real)
    sources = sorted({_rel(c["source"].split("#")[0].replace("golden:", "")) for c in real})
    configs = sorted({c["config"] for c in real})
    rate = (toggles / bits) if bits else None
    mac_toggles = sum(c.get("mac_input_toggles", 0) for c in real)
    mac_bits = sum(c.get("mac_input_bit_cycles", 0) for c in real)
    return {
        "source": "spikemllm sim (cocotb + Verilator), free-flowing spike_engine runs on "
                  + (", ".join(sources) or "no run") + f" (configurations {', '.join(configs)})",
        "input_activity": rate,
        "port_activity": {"i_stream__payload": rate, "i_stream__valid": 0.0, "cfg_*": 0.0,
                          "w_stream__*": 0.0, "o_stream__ready": 0.0, "o_acc__ready": 0.0,
                          "horner": 0.0,
                          "k_*": 0.0, "v_*": 0.0, "rst": 0.0},
        "register_activity": None,
        "mac_input_activity": (mac_toggles / mac_bits) if mac_bits else None,
        "events_per_cycle": (ev / cyc) if cyc else None,
        "spike_density": (spikes / slots) if slots else None,
        # spikes per (token, index) that fires: the weight-row reuse a token holds
        "spikes_per_active_input": (spikes / active) if active else None,
        "cycles": cyc,
        "events": ev,
    }
