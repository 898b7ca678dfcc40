"""``spikemllm sim`` (= ``make sim``): the whole chain from a real model to a bit-exact RTL check."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from spikemllm.hw.tools import REPO_ROOT

__all__ = ["DESCRIPTION", "add_arguments", "run", "GOLDEN_SETS"]

DESCRIPTION = """\
Run the co-simulation regression: real-model spike trains replayed against the exported
Verilog under cocotb + Verilator, bit for bit against the numerics reference.

Steps (each cached, so a second run only re-simulates):
  1. convert MiniLM (spikemllm convert --model minilm), skipped when its report is current;
  2. export golden vectors (spikemllm golden): MiniLM layer 0 q (text, Tt = 4), a tiny
     Qwen2-VL MLP layer mixing vision (Tv = 3) and text (Tt = 4) tokens, and the KV-cache /
     attention case of the pretrained tinystories LLaMA (when ../shared/models has it);
     a set is reused only when it verifies and was made with today's converter config;
  3. generate the Verilog of each hardware configuration (write_verilog);
  4. build the Verilator models (reused while the Verilog hashes the same);
  5. run spike_engine on golden, corner and random cases, with free-flowing streams and with
     random valid gaps + backpressure, and spike_kv_cache on golden and random K/Q planes.

Writes build/sim/summary.json (tests passed/failed, events, cycles, events per cycle,
Verilator cycles/s, build and run seconds, mismatches) and build/sim/activity.json (measured
input toggle rates, spike density, events per cycle, and the register toggle rates of
spike_engine, pe_array and mac_baseline from the Amaranth simulator on the golden cases, for
`spikemllm synth --activity`).
Exit status 1 when any test fails or any output mismatches.

Environment: COCOTB_RANDOM_SEED (default 1) fixes every random pause; WAVES=1 builds with
--trace-fst and writes dump.fst next to each run (build/cosim/<config>/run-*/).
"""

#: output channels of the linear sets: every LANES up to this one can take real weights (the
#: cosim runs them as LANES-wide tiles; ``spikemllm synth --sweep`` measures each point on them)
GOLDEN_LANES = 64

#: golden sets exported by step 2: name -> (spikemllm golden arguments, kind)
GOLDEN_SETS = {
    "l0q": (["--model", "minilm", "--layer", "0", "--proj", "q", "--tokens", "8",
             "--lanes", str(GOLDEN_LANES)], "linear"),
    "qvl-down-mixed": (["--model", "tiny-qwen2vl", "--layer", "0", "--proj", "down",
                        "--modality", "mixed", "--tokens", "8", "--lanes", str(GOLDEN_LANES)],
                       "linear"),
    "ts-attn": (["--model", str(REPO_ROOT.parent / "shared" / "models" / "tinystories-656k"),
                 "--layer", "1", "--proj", "attn", "--tokens", "16"], "attention"),
    # the default HwParams' KV cache (2 heads, head_dim 64, t_kv 7): its trace lets
    # `spikemllm synth --clock-gating` gate the default spike_kv_cache
    "tq2-attn": (["--model", "tiny-qwen2", "--layer", "1", "--proj", "attn", "--tokens", "16",
                  "--kv-bits", "8"], "attention"),
}


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("--configs", default="lanes8,lanes32",
                        help="hardware configurations, comma-separated, from "
                             "spikemllm.cosim.regression.CONFIGS (default %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="small configuration only (lanes8), fewer random cases")
    parser.add_argument("--no-convert", action="store_true",
                        help="skip step 1 (the MiniLM conversion report)")
    parser.add_argument("--golden", action="append", default=[], metavar="DIR",
                        help="extra golden directory to replay (repeatable)")
    parser.add_argument("--golden-root", type=Path, default=REPO_ROOT / "build" / "golden",
                        help="where step 2 exports golden vectors (default %(default)s)")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed (default: COCOTB_RANDOM_SEED or 1)")
    parser.add_argument("--waves", action="store_true", help="FST waves (same as WAVES=1)")
    parser.add_argument("--no-cache", action="store_true",
                        help="measure the register activity again even where OUT/activity_cache "
                             "holds it for the same source, configuration and cases")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "sim",
                        help="summary folder (default %(default)s)")


def _cli(args, log):
    """Run a ``spikemllm`` subcommand with its output (progress bars too) shown live."""
    cmd = [sys.executable, "-m", "spikemllm.cli"] + args
    log("  $ spikemllm " + " ".join(args))
    sys.stdout.flush()
    return subprocess.run(cmd, cwd=REPO_ROOT).returncode


def step_convert(log):
    try:
        from spikemllm.sw import convert_cmd
        from spikemllm.sw.config import ConverterConfig
    except ImportError as e:
        log(f"  skipped: spikemllm convert is not available in this version ({e})")
        return {"status": "not implemented"}
    out = REPO_ROOT / "build" / "convert" / "minilm"
    if convert_cmd.is_cached(out, "minilm", ConverterConfig()):
        log(f"  cached: {out.relative_to(REPO_ROOT)}/report.json")
        return {"status": "cached", "out": str(out)}
    t0 = time.perf_counter()
    rc = _cli(["convert", "--model", "minilm", "--out", str(out)], log)
    if rc != 0:
        raise RuntimeError(f"spikemllm convert failed (exit {rc}); its output is above")
    return {"status": "converted", "out": str(out), "seconds": time.perf_counter() - t0}


def _golden_made_with(gargs):
    """The converter config (as a dict) and the LANES that ``spikemllm golden GARGS`` exports
    with."""
    from spikemllm.sw import golden

    p = argparse.ArgumentParser()
    golden.add_arguments(p)
    args = p.parse_args(gargs + ["--out", "-"])
    return golden._config_from_args(args).to_dict(), args.lanes


def step_golden(root, log):
    """Export (or reuse) the golden sets; returns {name: dir} of the ones available."""
    try:
        from spikemllm.sw.golden import load_golden
    except ImportError as e:
        log(f"  skipped: spikemllm golden is not available in this version ({e})")
        return {}, {}
    found, notes = {}, {}
    for name, (gargs, kind) in GOLDEN_SETS.items():
        d = Path(root) / name
        model = gargs[1]
        if model.startswith("/") and not Path(model).exists():
            log(f"  {name}: skipped, {model} not found")
            notes[name] = "model not found"
            continue
        if (d / "manifest.json").exists():
            try:
                m = load_golden(d).manifest
                config, lanes = _golden_made_with(gargs)
                if m["converter_config"] != config:  # e.g. an older default weight quantiser
                    raise ValueError("exported with a different converter config")
                if m["hardware"]["lanes"] != lanes:
                    raise ValueError(f"exported for {m['hardware']['lanes']} lanes, not {lanes}")
                log(f"  {name}: cached ({d.relative_to(REPO_ROOT) if d.is_relative_to(REPO_ROOT) else d})")
                found[name] = (d, kind)
                continue
            except ValueError as e:
                log(f"  {name}: stale ({e}); exporting again")
        rc = _cli(["golden"] + gargs + ["--out", str(d), "--force"], log)
        if rc != 0:
            raise RuntimeError(f"spikemllm golden {name} failed (exit {rc}); its output is above")
        load_golden(d)
        found[name] = (d, kind)
    return found, notes


def _fmt(v, nd=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def print_table(runs, log):
    rows = [("config", "top", "case", "traffic", "ok", "mism", "events", "cycles", "ev/cyc",
             "stalls", "sim cyc/s")]
    for r in runs:
        for c in r["cases"]:
            ev = c.get("events_in", c.get("scores", 0))
            cyc = c.get("cycles_busy", c.get("sim_cycles", 0))
            rate = c.get("events_per_busy_cycle")
            cps = (c.get("sim_cycles", 0) / c["sim_wall_s"]) if c.get("sim_wall_s") else None
            rows.append((c["config"], c["top"].replace("spike_", ""), c["name"][:22], c["traffic"],
                         "PASS" if c.get("passed") else "FAIL", str(c.get("mismatches", "-")),
                         str(ev), str(cyc), _fmt(rate), str(c.get("stall_cycles", c.get("backpressure_cycles", "-"))),
                         _fmt(cps, 0)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        log("  " + "  ".join(s.ljust(w) for s, w in zip(row, widths)))
        if k == 0:
            log("  " + "  ".join("-" * w for w in widths))


def run(args) -> int:
    from . import regression as R

    def log(msg):
        print(msg, flush=True)

    t_start = time.perf_counter()
    configs = ["lanes8"] if args.quick else [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        if c not in R.CONFIGS:
            raise ValueError(f"--configs: unknown configuration {c!r}; allowed: {', '.join(R.CONFIGS)}")
    if args.waves:
        os.environ["WAVES"] = "1"
    seed = args.seed if args.seed is not None else int(os.environ.get("COCOTB_RANDOM_SEED", "1"))
    os.environ["COCOTB_RANDOM_SEED"] = str(seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    try:
        return _run(args, configs, seed, out, t_start, log)
    except RuntimeError as e:
        log(f"spikemllm sim: error: {e}")
        return 1


def _run(args, configs, seed, out, t_start, log):
    from . import regression as R
    from .stimulus import (corner_engine_cases, golden_activity_cases, golden_engine_cases,
                           golden_kv_case, kv_params_for, random_engine_case, random_kv_case)

    log("[1/5] convert MiniLM")
    convert = {"status": "skipped (--no-convert)"} if args.no_convert else step_convert(log)
    log("[2/5] golden vectors")
    golden, golden_notes = step_golden(args.golden_root, log)
    for extra in args.golden:
        from spikemllm.sw.golden import load_golden
        g = load_golden(extra)
        golden[Path(extra).name] = (Path(extra), g.kind)

    runs, builds = [], {}
    golden_kv = {g: golden_kv_case(d, name=g) for g, (d, kind) in golden.items()
                 if kind == "attention"}
    # each golden attention case runs on the first configuration whose KV cache takes it
    by_name = {n: R.hw_params(n) for n in configs}
    kv_home = {g: next((n for n, p in by_name.items()
                        if kv_params_for(c, p, keep_fitting=True) == p), None)
               for g, c in golden_kv.items()}
    for ci, name in enumerate(configs):
        params = by_name[name]
        log(f"[3/5] Verilog + [4/5] Verilator builds: {name} ({ci + 1}/{len(configs)})")
        cb = R.build_config(name, params, kinds=("engine",), log=lambda m: log("  " + m))
        builds[f"{name}/spike_engine"] = _build_record(cb.builds["engine"])
        # ---- engine cases
        cases = []
        for gname, (gdir, kind) in golden.items():
            if kind == "linear":
                cases += golden_engine_cases(gdir, params, name=gname)
        cases += corner_engine_cases(params, seed=seed)
        n_rand = 1 if args.quick else 3
        cases += [random_engine_case(params, seed=seed * 100 + k, n_tokens=6,
                                     in_features=min(params.in_max, 128)) for k in range(n_rand)]
        log(f"[5/5] simulate {name}/spike_engine: {len(cases)} cases x free + stress traffic")
        runs.append(R.run_cases(cb, "engine", cases, traffic=("free", "stress"), seed=seed,
                                log=lambda m: log("  " + m)))
        # ---- KV cases: a golden attention case runs on a KV top sized for it
        kv_sets = [(name, params, [random_kv_case(params, seed=seed, tokens=min(params.kv_depth, 6)),
                                   random_kv_case(params, seed=seed + 1, tokens=params.kv_depth, queries=1),
                                   random_kv_case(params, seed=seed + 2, tokens=3, queries=1, extreme=True)])]
        for gname, kcase in golden_kv.items():
            if kv_home[gname] == name:
                kv_sets[0][2].insert(0, kcase)
            elif kv_home[gname] is None and ci == 0:   # one extra KV build sized for it
                kv_sets.append((f"{name}-{gname}", kv_params_for(kcase, params), [kcase]))
        for kname, kp, kcases in kv_sets:
            log(f"[3/5] Verilog + [4/5] Verilator builds: {kname} (spike_kv_cache)")
            kb = R.build_config(kname, kp, kinds=("kv",), log=lambda m: log("  " + m))
            builds[f"{kname}/spike_kv_cache"] = _build_record(kb.builds["kv"])
            log(f"[5/5] simulate {kname}/spike_kv_cache: {len(kcases)} cases x free + stress traffic")
            runs.append(R.run_cases(kb, "kv", kcases, traffic=("free", "stress"), seed=seed,
                                    log=lambda m: log("  " + m)))

    summary = R.summarise(runs, builds)
    summary.update(seed=seed, configs=configs, convert=convert,
                   golden={k: str(v[0]) for k, v in golden.items()}, golden_skipped=golden_notes,
                   runs=[{k: v for k, v in r.items() if k != "cases"} for r in runs],
                   cases=[c for r in runs for c in r["cases"]])
    act = R.activity(runs)
    # register toggle rates at the synthesis defaults, on the golden cases that fit them
    from spikemllm.hw.params import HwParams
    synth_params = HwParams()
    fit, fit_dirs = [], []
    for gname, (gdir, kind) in golden.items():
        if kind == "linear":
            try:
                fit += golden_activity_cases([gdir], synth_params)
                fit_dirs.append(gdir)
            except ValueError as e:
                log(f"  {gname}: not used for the register activity: {e}")
    kv_own = sum(kv_params_for(c, synth_params, keep_fitting=True) == synth_params
                 for c in golden_kv.values())
    log("register activity for spikemllm synth: spike_engine, pe_array, mac_baseline on "
        f"{len(fit)} golden case(s); spike_kv_cache on {kv_own} attention case(s) that fit "
        "its cache" + (f", traces only of {len(golden_kv) - kv_own} at their own size"
                       if len(golden_kv) > kv_own else ""))
    act.update(R.register_activity(fit, synth_params, log=lambda m: log(m),
                                   kv_cases=list(golden_kv.values()),
                                   trace_dir=out / "traces",
                                   cache_dir=None if args.no_cache else out / "activity_cache"))
    # where those cases came from, so that a sweep can measure its points on them too
    act["golden_linear_dirs"] = [os.path.relpath(d, out) for d in fit_dirs]
    summary["total_seconds"] = time.perf_counter() - t_start
    R.write_json(out / "summary.json", summary)
    R.write_json(out / "activity.json", act)

    log("")
    print_table(runs, log)
    for c in summary["cases"]:
        if not c.get("passed"):
            why = (c.get("problems") or c.get("mismatch_examples") or c.get("violations")
                   or [c.get("error", "no result")])
            log(f"  FAIL {c['config']}/{c['top']} {c['name']} ({c['traffic']}): {why[0]}")
    for r in runs:
        if not r["process_passed"]:
            log(f"  simulator log: {r['log']}")
    log("")
    log(f"tests: {summary['tests_passed']} passed, {summary['tests_failed']} failed; "
        f"mismatches: {summary['mismatches']}")
    log(f"engine, free streams: {summary['events']} events in {summary['cycles']} busy cycles "
        f"= {_fmt(summary['events_per_cycle'])} events/cycle (real spike trains: "
        f"{_fmt(summary['events_per_cycle_real'])}; per offered cycle: "
        f"{_fmt(summary['events_per_offered_cycle_real'])})")
    log(f"Verilator: {_fmt(summary['verilator_cycles_per_s'], 0)} simulated cycles/s (cocotb-driven); "
        f"build {summary['build_seconds']:.1f} s, run {summary['run_seconds']:.1f} s, "
        f"total {summary['total_seconds']:.1f} s")
    log(f"wrote {out / 'summary.json'} and {out / 'activity.json'}")
    ok = summary["tests_failed"] == 0 and summary["mismatches"] == 0 and \
        summary["simulator_processes_failed"] == 0
    return 0 if ok else 1


def _build_record(b):
    return {"seconds": b.seconds, "cpu_seconds": b.cpu_seconds, "reused": b.reused}
