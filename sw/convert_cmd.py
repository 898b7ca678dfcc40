"""``spikemllm convert``: a Hugging Face model to spike form, with fidelity, energy and MSTS reports."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from spikemllm.fsutil import replace_dir

from . import numerics as nx
from .config import ACT_SCALES, ROTATIONS, WEIGHT_QUANTIZERS, ConverterConfig

__all__ = ["DESCRIPTION", "add_arguments", "run", "is_cached", "build_config", "convert_and_report",
           "model_id"]

DESCRIPTION = """\
Convert a Hugging Face model to spike form and write fidelity and energy reports.

Every nn.Linear (attention q/k/v/o, MLP gate/up/down, BERT intermediate/output, the Qwen2-VL
vision blocks and merger; not those named in --skip) becomes a spike-driven layer: online
block-Hadamard rotation, per-output-channel W-bit weights, per-token spike counts unfolded
into T spikes (T from the token's modality and layer), integer accumulation. Causal LMs also
get a spiked KV cache. The model is evaluated against FP32 on built-in text (and synthetic
images for Qwen2-VL), and DIR receives:

  report.json   fidelity, per-layer T / firing rate / SOPs / FLOPs / energy, totals, MED, goals
  report.md     the same as tables (SDLLM Table A1 layout), plus ablations with --ablate
  config.json   the effective converter config (with MSTS per-layer T)
  static_scales.json   per-layer calibrated activation scales (--act-scale static)
  firing_rate.png, med.png

MODEL: minilm | tiny-llama | tiny-qwen2 | tiny-qwen2vl | a local checkpoint directory (LLaMA, Qwen2,
Qwen2-VL, BERT; safetensors, or pickle with --trust-pickle), e.g.
../shared/models/tinystories-656k. Nothing is downloaded. DIR is written atomically.
"""


def add_arguments(p):
    p.add_argument("--model", required=True, help="minilm, tiny-llama, tiny-qwen2, tiny-qwen2vl or a checkpoint directory")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (replaced atomically)")
    p.add_argument("--config", metavar="JSON",
                   help="converter config: a JSON file (or inline JSON object); the flags below override it")
    g = p.add_argument_group("conversion (defaults: ConverterConfig)")
    g.add_argument("--wbits", type=int, help="weight bits, 2..16 (default 4)")
    g.add_argument("--encoding", choices=nx.ENCODINGS, help="spike encoding (default tc-lif)")
    g.add_argument("--t-text", type=int, help="timesteps of text tokens (default 4; tc-lif: 1..15 -> A(T+1))")
    g.add_argument("--t-vision", type=int, help="timesteps of image tokens (default 3)")
    g.add_argument("--rotation", choices=ROTATIONS, help="gamma-aligned (default), gamma-folded (QuaRot) or none")
    g.add_argument("--weight-quantizer", choices=WEIGHT_QUANTIZERS,
                   help="gptq (default: mse scales, integers by GPTQ on the calibration inputs), "
                        "mse (per-channel clipping search) or rtn (max-abs)")
    g.add_argument("--act-scale", choices=ACT_SCALES, help="dynamic per token (default) or static per layer (calibrated)")
    g.add_argument("--static-percentile", type=float, help="percentile of |x| for static scales (default 100)")
    g.add_argument("--kv-bits", type=int, help="spiked KV cache bits (tc-lif planes, T_kv = bits-1); 0 = off (default 5)")
    g.add_argument("--skip", help="comma-separated name substrings left in float (default lm_head,pooler)")
    g.add_argument("--seed", type=int, help="seed of tiny random models (default 0)")
    g.add_argument("--trust-pickle", action="store_true", help="allow pickle (*.bin/*.pt) checkpoints")
    e = p.add_argument_group("evaluation")
    e.add_argument("--msts-budget", type=float, metavar="B",
                   help="allocate T per layer and modality by MED under an average-T budget B, and "
                        "compare with uniform T at the same budget")
    e.add_argument("--ablate", action="store_true",
                   help="also evaluate rate/ternary/tc-lif at equal bits, gamma-aligned/folded/none, "
                        "rtn/mse/gptq and uniform T/MSTS, as one table")
    e.add_argument("--eval-size", type=int, metavar="N",
                   help="sentences (encoder, 2..64, default 64) or max text tokens (causal LM, VLM)")
    e.add_argument("--no-reference", action="store_true",
                   help="skip the reference settings W4/T4 and W8/T7 (and the goals that need them)")


# --------------------------------------------------------------------------------------------
# Config and cache
# --------------------------------------------------------------------------------------------

_FLAG_FIELDS = {"wbits": "w_bits", "encoding": "encoding", "t_text": "t_text", "t_vision": "t_vision",
                "rotation": "rotation", "weight_quantizer": "weight_quantizer", "act_scale": "act_scale",
                "static_percentile": "static_percentile", "kv_bits": "kv_bits", "seed": "seed"}


def build_config(args):
    """ConverterConfig from ``--config`` (file or inline JSON) and the flags that override it."""
    base = {}
    if getattr(args, "config", None):
        src = args.config.strip()
        if src.startswith("{"):
            text = src
        else:
            path = Path(src)
            if not path.is_file():
                raise ValueError(f"--config file {src!r} does not exist")
            text = path.read_text()
        base = ConverterConfig.from_json(text).to_dict()
    for flag, fld in _FLAG_FIELDS.items():
        v = getattr(args, flag, None)
        if v is not None:
            base[fld] = v
    if getattr(args, "skip", None) is not None:
        base["skip"] = [s for s in args.skip.split(",") if s]
    return ConverterConfig.from_dict(base)


def model_id(model):
    """How a model is named in the cache key: builtin names as given, paths resolved."""
    from .models import BUILTIN
    return model if model in BUILTIN else str(Path(model).resolve())


def is_cached(out_dir, model, config):
    """True when ``out_dir/report.json`` exists and was made for this model and config."""
    try:
        rep = json.loads((Path(out_dir) / "report.json").read_text())
        req = rep["request"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    cfg = config.to_dict() if isinstance(config, ConverterConfig) else ConverterConfig.from_dict(config).to_dict()
    return req.get("model") == model_id(model) and req.get("config") == cfg


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------

def _primary(kind):
    return {"encoder": "cosine_mean", "causal-lm": "perplexity", "vlm": "logit_kl"}[kind]


class _Evaluator:
    """Converts and evaluates settings of one loaded model, reusing quantised weights."""

    def __init__(self, loaded, workload, ref):
        self.loaded, self.workload, self.ref = loaded, workload, ref
        self.weight_cache = {}
        self.results = {}

    def evaluate(self, config):
        from .convert import convert
        from .energy import kv_rows, layer_rows, totals

        key = config.to_json()
        if key in self.results:
            return self.results[key]
        t0 = time.perf_counter()
        cm = convert(self.loaded, config, weight_cache=self.weight_cache)
        scales = None
        if cm.needs_calibration:
            scales = cm.calibrate(lambda m: self.workload.run_calibration(m, cm.context))
            if config.act_scale != "static":
                scales = None
        cm.reset_stats()
        out = self.workload.run(cm.model, cm.context)
        fid = self.workload.metrics(self.ref, out)
        rows = layer_rows(cm)
        res = dict(config=config, fidelity=fid, layers=rows, totals=totals(rows), kv=kv_rows(cm),
                   static_scales=scales, seconds=time.perf_counter() - t0)
        self.results[key] = res
        return res


def _with(config, **kw):
    d = config.to_dict()
    d.update(kw)
    return ConverterConfig.from_dict(d)


def _uniform_t(encoding, budget):
    """Largest valid uniform T not above the budget."""
    allowed = [nx.timesteps(encoding, b) for b in range(nx.BITS_MIN, nx.BITS_MAX + 1)]
    ok = [t for t in allowed if t <= budget + 1e-9]
    if not ok:
        raise ValueError(f"MSTS budget {budget} is below the smallest T of {encoding}")
    return max(ok)


def _goals(kind, refs):
    goals = []

    def add(goal, measured, target, higher_better):
        met = measured >= target if higher_better else measured <= target
        missed = None if met else (target - measured if higher_better else measured - target)
        goals.append(dict(goal=goal, measured=measured, target=(">= " if higher_better else "<= ") + f"{target}",
                          met=bool(met), missed_by=missed))

    if kind == "encoder":
        if "W4/T4" in refs:
            add("W4 tc-lif Tt=4 mean cosine", refs["W4/T4"]["cosine_mean"], 0.97, True)
        if "W8/T7" in refs:
            add("W8 tc-lif T=7 mean cosine", refs["W8/T7"]["cosine_mean"], 0.999, True)
    elif kind == "causal-lm":
        if "W4/T4" in refs:
            add("W4/T4 perplexity within 10% of FP32 (ratio)", refs["W4/T4"]["perplexity_ratio"], 1.10, False)
    return goals


def convert_and_report(model, config, out, *, msts_budget=None, ablate=False, eval_size=None,
                       reference=True, trust_pickle=False, progress=True):
    """Load, convert, evaluate and write DIR atomically. Returns the report dict."""
    from tqdm import tqdm

    from . import msts
    from .convert_report import write_outputs
    from .fidelity import make_workload
    from .models import load_model

    t_start = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a directory")
    if eval_size is not None and (isinstance(eval_size, bool) or eval_size < 2):
        raise ValueError(f"--eval-size must be an integer >= 2, not {eval_size!r}")
    if msts_budget is not None:
        lo = nx.timesteps(config.encoding, msts.DEFAULT_BITS_RANGE[0])
        hi = nx.timesteps(config.encoding, msts.DEFAULT_BITS_RANGE[1])
        if not lo <= msts_budget <= hi:
            raise ValueError(f"--msts-budget (average T) for {config.encoding} must be in {lo}..{hi}, "
                             f"not {msts_budget!r}")
    loaded = load_model(model, trust_pickle=trust_pickle, seed=config.seed)
    if loaded.kind == "encoder" and eval_size is not None and eval_size > 64:
        raise ValueError(f"--eval-size for an encoder must be in 2..64 sentences, not {eval_size}")
    workload = make_workload(loaded, eval_size)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the result is an ordinary directory
        t0 = time.perf_counter()
        ref = workload.run(loaded.model)
        fp32_s = time.perf_counter() - t0
        med, counts = msts.measure_med(loaded.model, loaded.family, workload.med_runs(loaded.model))
        ev = _Evaluator(loaded, workload, ref)

        main_cfg = config
        if msts_budget is not None:
            lt = dict(config.layer_t)
            lt.update(msts.allocate(med, counts, msts_budget, config.encoding))
            main_cfg = _with(config, layer_t=lt)

        todo = [("main", main_cfg)]
        refs_cfg = {}
        if reference:
            for name, (wb, T) in {"W4/T4": (4, 4), "W8/T7": (8, 7)}.items():
                refs_cfg[name] = _with(config, w_bits=wb, encoding="tc-lif", t_text=T, t_vision=T, layer_t={},
                                       kv_bits=(max(config.kv_bits, T + 1) if config.kv_bits else 0))
                todo.append((name, refs_cfg[name]))
        cmp_cfg = {}
        budget = msts_budget
        if ablate and budget is None:
            # same cost as the requested (uniform) setting: its token-weighted average T
            budget = msts.average_t({k: {m: config.timesteps(m, k) for m in per} for k, per in counts.items()},
                                    counts)
        if budget is not None:
            t_uni = _uniform_t(config.encoding, budget)
            cmp_cfg["uniform"] = _with(config, t_text=t_uni, t_vision=t_uni, layer_t={}) \
                if msts_budget is not None else config
            lt = msts.allocate(med, counts, budget, config.encoding)
            cmp_cfg["msts"] = _with(config, layer_t=lt)
            todo += [(f"MSTS comparison: {k}", c) for k, c in cmp_cfg.items()]
        abl = []
        if ablate:
            b_t, b_v = config.act_bits("text"), config.act_bits("vision")
            for enc in ("rate", "ternary", "tc-lif"):
                label = f"A{b_t}" if loaded.kind != "vlm" else f"text A{b_t}, vision A{b_v}"
                abl.append((f"encoding (equal bits {label})", enc,
                            _with(config, encoding=enc, t_text=nx.timesteps(enc, b_t),
                                  t_vision=nx.timesteps(enc, b_v), layer_t={})))
            for rot in ROTATIONS:
                abl.append(("rotation", rot, _with(config, rotation=rot)))
            for wq in WEIGHT_QUANTIZERS:
                abl.append(("weight quantiser", wq, _with(config, weight_quantizer=wq)))
            u = cmp_cfg["uniform"]
            abl.append(("timesteps", f"uniform (Tt={u.t_text}, Tv={u.t_vision})", u))
            abl.append(("timesteps", f"MSTS at average T {budget:.3f}", cmp_cfg["msts"]))
            todo += [(f"ablation: {g} {v}", c) for g, v, c in abl]

        seconds_main = None
        for name, cfg in tqdm(todo, desc=f"convert {loaded.name}", unit="setting", disable=not progress):
            res = ev.evaluate(cfg)
            if name == "main":
                seconds_main = res["seconds"]
        main = ev.evaluate(main_cfg)

        fidelity = dict(main["fidelity"])
        refs = {n: ev.evaluate(c)["fidelity"] for n, c in refs_cfg.items()}
        if loaded.kind == "causal-lm":
            for n, m in refs.items():
                fidelity[f"perplexity_{n.replace('/', '_').lower()}"] = m["perplexity"]
        comparison = None
        if cmp_cfg:
            comparison = {"budget": round(float(budget), 4)}
            for k, c in cmp_cfg.items():
                r = ev.evaluate(c)
                lt_full = {kk: {m: c.timesteps(m, kk) for m in per} for kk, per in counts.items()}
                comparison[k] = dict(config=c.to_dict(), fidelity=r["fidelity"], sops=r["totals"]["sops"],
                                     energy_snn_j=r["totals"]["energy_snn_j"],
                                     average_t=msts.average_t(lt_full, counts))
        ablation = []
        for g, v, c in abl:
            r = ev.evaluate(c)
            ablation.append(dict(group=g, variant=v, config=c.to_dict(), fidelity=r["fidelity"],
                                 firing_rate=r["totals"]["firing_rate"], sops=r["totals"]["sops"],
                                 energy_snn_j=r["totals"]["energy_snn_j"]))
        report = {
            "request": {"model": model_id(model), "config": config.to_dict(), "msts_budget": msts_budget,
                        "ablate": bool(ablate), "eval_size": eval_size, "reference": bool(reference)},
            "model": {"name": loaded.name, "family": loaded.family, "kind": loaded.kind, "source": loaded.source},
            "config": config.to_dict(),
            "config_effective": main_cfg.to_dict(),
            "workload": {"description": _describe(workload), "tokens": workload.eval_tokens},
            "fidelity": fidelity,
            "primary_metric": _primary(loaded.kind),
            "reference_settings": refs,
            "goals": _goals(loaded.kind, refs),
            "layers": main["layers"],
            "totals": main["totals"],
            "kv_cache": main["kv"],
            "msts": {"med": med, "tokens": counts, "rule": msts.__doc__.split("Allocation rule")[1].strip()
                     if "Allocation rule" in (msts.__doc__ or "") else "", "comparison": comparison},
            "ablation": ablation,
            "timing": {"fp32_eval_s": fp32_s, "main_s": seconds_main,
                       "settings_evaluated": len(ev.results)},
        }
        report["timing"]["total_s"] = time.perf_counter() - t_start
        write_outputs(tmp, report, main["static_scales"])
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _describe(w):
    if w.kind == "encoder":
        return f"{w.eval_tokens} tokens of {w.eval_batches[0]['inputs']['input_ids'].shape[0]} sentences (sw/corpus.py)"
    if w.kind == "causal-lm":
        return f"{w.eval_tokens} tokens of children's stories (sw/corpus.py)"
    return f"{len(w.eval_batches)} synthetic images + story text, {w.eval_tokens} tokens"


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # so that a killed conversion still removes its temp dir


def run(args):
    import signal

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    config = build_config(args)
    rep = convert_and_report(args.model, config, args.out, msts_budget=args.msts_budget, ablate=args.ablate,
                             eval_size=args.eval_size, reference=not args.no_reference,
                             trust_pickle=args.trust_pickle)
    prim = rep["primary_metric"]
    t = rep["totals"]
    print(f"{rep['model']['name']}: {prim} {rep['fidelity'][prim]:.4f}, firing rate {t['firing_rate']:.4f}, "
          f"SOPs {t['sops']:.4g}, E_SNN {t['energy_snn_j']:.4g} J vs E_ANN {t['energy_ann_j']:.4g} J, "
          f"{rep['timing']['total_s']:.1f} s -> {args.out}")
    for g in rep["goals"]:
        status = "met" if g["met"] else f"MISSED by {g['missed_by']:.4g}"
        print(f"  goal {g['goal']}: {g['measured']:.4f} (target {g['target']}) {status}")
    return 0
