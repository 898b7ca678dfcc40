#!/usr/bin/env python3
"""FP16 GPU baseline for the system model (`spikemllm report --gpu-json ...`).

Builds a Qwen2-7B-shaped causal LM (the language model of Qwen2-VL-7B: 28 layers, hidden 3584,
intermediate 18944, 28 heads, 4 KV heads, vocab 152064) with random weights from a transformers
config -- speed and energy do not depend on the weight values -- and measures:

  prefill        HF forward over a prompt (all logits, as `model(ids)` does), batch 1
  decode (eager) HF generate, batch 1 and 8: time/energy of (long - short) new tokens, so that
                 prefill and set-up cancel
  decode (static cache) the same with cache_implementation="static"
  graph floor    every nn.Linear weight read once per decode step (GEMV chain at batch 1
                 and 8) replayed from a CUDA graph: the best case FP16 decode can reach

Energy comes from NVML's total-energy counter (J, board level, idle included) and power from
sampling NVML power every 10 ms. Without NVML (pip install nvidia-ml-py) or without a GPU the
energy fields are null and the JSON says why.

Run on a GPU machine and keep the JSON under docs/ (the default path carries device and date):

  python scripts/gpu_baseline.py                  # full measurement, minutes on an H100
  python scripts/gpu_baseline.py --dry-run        # tiny config on CPU: exercises every path
  spikemllm report --workload qwen2vl-7b --gpu-json docs/gpu_baseline_<device>_<date>.json ...
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

FORMAT = "spikemllm-gpu-baseline/1"
QWEN2_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                max_position_embeddings=32768)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=1024, max_position_embeddings=512)


class Energy:
    """NVML energy counter and power sampler; every method degrades to None without NVML."""

    def __init__(self, device_index=0):
        self.handle = None
        self.note = None
        try:
            import pynvml
        except ImportError:
            self.note = "pynvml not installed (pip install nvidia-ml-py): energy not measured"
            return
        try:
            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            self.nvml = pynvml
        except Exception as e:  # no driver / no GPU
            self.note = f"NVML unavailable ({e}): energy not measured"
            self.handle = None

    @property
    def available(self):
        return self.handle is not None

    def counter_j(self):
        if not self.available:
            return None
        try:
            return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0
        except Exception:
            return None

    def power_w(self):
        if not self.available:
            return None
        return self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0

    def sampler(self):
        return _PowerSampler(self)


class _PowerSampler:
    def __init__(self, energy):
        self.energy, self.samples, self.stop = energy, [], False

    def _loop(self):
        while not self.stop:
            self.samples.append(self.energy.power_w())
            time.sleep(0.01)

    def __enter__(self):
        if self.energy.available:
            self.t = threading.Thread(target=self._loop, daemon=True)
            self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop = True
        if self.energy.available:
            self.t.join()

    def mean(self):
        s = [x for x in self.samples if x is not None]
        return sum(s) / len(s) if s else None


def _sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def reps_for(fn, torch, device, reps, min_seconds):
    """At least ``reps``, and enough that the timed loop lasts ``min_seconds``: NVML's energy
    counter moves in steps of tens of ms, so a single 40 ms pass would be mostly rounding."""
    if min_seconds <= 0:
        return reps
    _sync(torch, device)
    t0 = time.perf_counter()
    fn()
    _sync(torch, device)
    dt = time.perf_counter() - t0
    return max(reps, int(min_seconds / max(dt, 1e-6)) + 1)


def measure(fn, torch, device, energy, reps=1):
    """Run fn() reps times: (seconds per rep, joules per rep or None, mean power W or None)."""
    _sync(torch, device)
    e0 = energy.counter_j()
    t0 = time.perf_counter()
    with energy.sampler() as ps:
        for _ in range(reps):
            fn()
        _sync(torch, device)
    dt = (time.perf_counter() - t0) / reps
    e1 = energy.counter_j()
    return dt, (None if e0 is None or e1 is None else (e1 - e0) / reps), ps.mean()


def build_model(cfg_kwargs, device, dtype, seed=0):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = Qwen2Config(**cfg_kwargs)
    torch.manual_seed(seed)
    # built in the target dtype on the device: a float32 7B model first would need 30 GB more
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(cfg).to(dtype).eval()
    finally:
        torch.set_default_dtype(old)
    return model, cfg


def prefill_run(model, cfg, device, energy, prefill_len, reps, min_seconds=0.0):
    import torch
    ids = torch.randint(0, cfg.vocab_size, (1, prefill_len), device=device)
    with torch.inference_mode():
        model(ids)  # warm-up
        reps = reps_for(lambda: model(ids), torch, device, reps, min_seconds)
        dt, e, p = measure(lambda: model(ids), torch, device, energy, reps)
    return {"prefill_len": prefill_len, "batch": 1, "tokens_per_s": prefill_len / dt,
            "s_per_pass": dt, "passes": reps, "j_per_pass": e, "power_w": p,
            "j_per_token": None if e is None else e / prefill_len}


def decode_run(model, cfg, device, energy, prompt_len, batch, short, long, static_cache,
               reps=1, attempts=3):
    """Decode tokens/s and J/token from the difference of a long and a short generation.

    Each generation is timed over ``reps`` runs. A long generation that timed no slower than
    the short one (a loaded machine) is measured again, up to ``attempts`` times in all; if it
    never is, tokens/s is null."""
    import torch
    ids = torch.randint(0, cfg.vocab_size, (batch, prompt_len), device=device)
    kw = dict(do_sample=False, pad_token_id=0)
    if static_cache:
        kw["cache_implementation"] = "static"

    def gen(n):
        return lambda: model.generate(ids, max_new_tokens=n, min_new_tokens=n, **kw)

    with torch.inference_mode():
        # warm-up; a static cache is sized to the generation, so transformers compiles the
        # model once per length: both lengths are compiled before timing
        gen(short)()
        gen(long)()
        for _ in range(attempts):
            t_s, e_s, _ = measure(gen(short), torch, device, energy, reps)
            t_l, e_l, p_l = measure(gen(long), torch, device, energy, reps)
            if t_l > t_s:
                break
    n = batch * (long - short)
    dt = t_l - t_s
    return {"prompt_len": prompt_len, "batch": batch, "static_cache": static_cache,
            "new_tokens": [short, long], "tokens_per_s": n / dt if dt > 0 else None,
            "power_w": p_l,
            "j_per_token": None if e_s is None or e_l is None else (e_l - e_s) / n}


def graph_floor_run(model, device, energy, reps, batch=1, min_seconds=0.0):
    """Every nn.Linear's weight read once per decode step of ``batch`` tokens, from a CUDA graph
    on a GPU; on a CPU (dry run) the same chain runs eagerly. Attention over the KV cache is
    left out (at a 1024-token context it reads ~57 MB per token against 15 GB of weights)."""
    import torch
    lins = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    wbytes = sum(m.weight.numel() * m.weight.element_size() for m in lins)
    xs = [torch.randn(batch, m.in_features, device=device, dtype=m.weight.dtype) for m in lins]

    def chain():
        for m, x in zip(lins, xs):
            torch.nn.functional.linear(x, m.weight)

    with torch.inference_mode():
        if device.type == "cuda":
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    chain()
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                chain()
            step, how = g.replay, "CUDA graph replay"
        else:
            step, how = chain, "eager chain (no CUDA graph on CPU)"
        for _ in range(3):
            step()
        reps = reps_for(step, torch, device, reps, min_seconds)
        dt, e, p = measure(step, torch, device, energy, reps)
    return {"batch": batch, "weight_bytes": wbytes, "linears": len(lins), "s_per_step": dt,
            "steps": reps, "tokens_per_s": batch / dt, "achieved_tb_per_s": wbytes / dt / 1e12,
            "power_w": p, "j_per_token": None if e is None else e / batch, "how": how}


def _slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _write_atomic(path, obj):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def regimes_from_runs(res):
    """The rows the system report reads, picked from the raw runs."""
    def row(r, method):
        return None if r is None else {"tokens_per_s": r["tokens_per_s"],
                                       "j_per_token": r.get("j_per_token"),
                                       "power_w": r.get("power_w"), "method": method}
    pre = max(res["prefill"], key=lambda r: r["prefill_len"], default=None)
    eager_b1 = [r for r in res["decode"] if r["batch"] == 1 and not r["static_cache"]
                and r["tokens_per_s"]]
    b8 = [r for r in res["decode"] if r["batch"] == 8 and r["tokens_per_s"]]
    best_b8 = min(b8, key=lambda r: (r["j_per_token"] is None, r["j_per_token"] or 0,
                                     -r["tokens_per_s"]), default=None)
    graphs = {g["batch"]: g for g in res.get("graph") or []}

    def graph_row(b):
        g = graphs.get(b)
        return row(g, f"GEMV chain at batch {b}, every weight read once per step "
                      f"({g['how']}, attention left out)" if g else "")
    return {
        "prefill": row(pre, f"HF forward, prefill {pre['prefill_len']}, batch 1" if pre else ""),
        "decode_b1_eager": row(eager_b1[0] if eager_b1 else None,
                               "HF generate (dynamic cache), batch 1"),
        "decode_b1": graph_row(1),
        "decode_b8": row(best_b8, "HF generate, batch 8, " + (
            "static cache" if best_b8 and best_b8["static_cache"] else "dynamic cache")),
        "decode_b8_graph": graph_row(8),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny config on CPU (float32), a few tokens: checks every code path")
    ap.add_argument("--layers", type=int, default=None,
                    help="decoder layers (default 28; 2 with --dry-run)")
    ap.add_argument("--prefill-len", type=int, nargs="+", default=None,
                    help="prefill lengths (default 1024; 32 with --dry-run)")
    ap.add_argument("--prompt-len", type=int, default=None,
                    help="prompt before decode (default 1024; 16 with --dry-run)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8],
                    help="decode batches (HF generate and graph floor)")
    ap.add_argument("--new-tokens", type=int, nargs=2, default=None, metavar=("SHORT", "LONG"),
                    help="short and long generation lengths (default 8 72; 2 18 with --dry-run)")
    ap.add_argument("--reps", type=int, default=None,
                    help="repetitions of each generation (default 2); prefill and graph floor "
                         "repeat until --min-seconds")
    ap.add_argument("--min-seconds", type=float, default=None,
                    help="shortest timed loop for prefill and graph floor, so that NVML's "
                         "energy counter resolves it (default 10: 2 s loops read up to 2 %% "
                         "over the board's power limit; 0 with --dry-run)")
    ap.add_argument("--deadline-s", type=float, default=None,
                    help="start no new stage after this many seconds from launch; skipped "
                         "stages are named in the JSON's notes (default: none)")
    ap.add_argument("--no-static-cache", action="store_true",
                    help="skip static-cache decode (transformers compiles the model for it, "
                         "which takes minutes on a 7B shape)")
    ap.add_argument("--no-graph", action="store_true", help="skip the graph floor")
    ap.add_argument("--out", default=None,
                    help="JSON path (default docs/gpu_baseline_<device>_<date>.json; "
                         "build/gpu_baseline_dryrun.json with --dry-run). Written after every "
                         "stage, with complete=false until the last")
    a = ap.parse_args(argv)
    t_launch = time.perf_counter()

    import torch
    import transformers

    dry = a.dry_run
    if not dry and not torch.cuda.is_available():
        ap.error("no CUDA GPU: run on a GPU machine, or use --dry-run to exercise the code on CPU")
    device = torch.device("cpu" if dry else "cuda")
    dtype = torch.float32 if dry else torch.float16
    cfg_kwargs = dict(TINY if dry else QWEN2_7B)
    if a.layers is not None:
        if a.layers < 1:
            ap.error(f"--layers must be >= 1, not {a.layers}")
        cfg_kwargs["num_hidden_layers"] = a.layers
    prefill_lens = a.prefill_len or ([32] if dry else [1024])
    prompt_len = a.prompt_len or (16 if dry else 1024)
    # dry run: a 16-token gap, so that the long-minus-short time stays positive on a loaded CPU
    short, long = a.new_tokens or ((2, 18) if dry else (8, 72))
    reps = a.reps or 2
    min_s = a.min_seconds if a.min_seconds is not None else (0.0 if dry else 10.0)
    if not 0 < short < long:
        ap.error(f"--new-tokens needs 0 < SHORT < LONG, not {short} {long}")
    if reps < 1 or min_s < 0:
        ap.error(f"--reps must be >= 1 and --min-seconds >= 0, not {reps} and {min_s}")

    energy = Energy()
    notes = []
    if energy.note:
        notes.append(energy.note + "; j_per_token and power_w are null")
    if dry:
        notes.append("dry run: tiny config on CPU in float32; figures are not a GPU baseline")
    device_name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu (dry run)"
    date = datetime.now(timezone.utc)
    path = a.out or ("build/gpu_baseline_dryrun.json" if dry else
                     f"docs/gpu_baseline_{_slug(device_name)}_{date.strftime('%Y%m%d')}.json")

    def log(msg):
        print(f"[{time.perf_counter() - t_launch:6.1f} s] {msg}", file=sys.stderr, flush=True)

    model, cfg = build_model(cfg_kwargs, device, dtype)
    params = sum(p.numel() for p in model.parameters())
    log(f"built {params / 1e9:.2f} G-parameter model on {device_name}")
    idle = None
    if energy.available:
        s = []
        for _ in range(50):
            s.append(energy.power_w())
            time.sleep(0.02)
        idle = sum(s) / len(s)

    res = {"prefill": [], "decode": [], "graph": []}

    def write(complete):
        _write_atomic(path, {
            "format": FORMAT,
            "device": device_name,
            "date": date.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "dry_run": dry,
            "complete": complete,
            "torch": torch.__version__, "transformers": transformers.__version__,
            "dtype": str(dtype).replace("torch.", ""),
            "config": cfg_kwargs, "params": params,
            "energy_source": "NVML nvmlDeviceGetTotalEnergyConsumption (board, idle included)"
                             if energy.available else None,
            "idle_power_w": idle,
            "notes": notes,
            "runs": res,
            "regimes": regimes_from_runs(res),
        })

    # most wanted first: what the report reads, then the slow static-cache (compiled) decode
    stages = [(f"prefill {n}", "prefill",
               lambda n=n: prefill_run(model, cfg, device, energy, n, reps, min_s))
              for n in prefill_lens]
    if not a.no_graph:
        stages += [(f"graph floor batch {b}", "graph",
                    lambda b=b: graph_floor_run(model, device, energy, reps, b, min_s))
                   for b in a.batches]
    for static in ([False] if a.no_static_cache else [False, True]):
        stages += [(f"decode batch {b} static_cache={static}", "decode",
                    lambda b=b, static=static: decode_run(model, cfg, device, energy, prompt_len,
                                                          b, short, long, static, reps))
                   for b in a.batches]
    for name, kind, fn in stages:
        if a.deadline_s is not None and time.perf_counter() - t_launch > a.deadline_s:
            notes.append(f"{name}: skipped, past --deadline-s {a.deadline_s:g}")
            log(notes[-1])
            continue
        log(f"{name} ...")
        try:
            r = fn()
        except Exception as e:  # e.g. static cache unsupported by this transformers
            notes.append(f"{name} failed: {e!r}")
            log(notes[-1])
            continue
        res[kind].append(r)
        log(json.dumps({kind: r}))
        write(False)
    write(True)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
