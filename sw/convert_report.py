"""Writing a conversion's results: report.json, report.md and the PNG plots.

:func:`write_outputs` writes into a directory that the caller renames into place afterwards
(atomic output, see :mod:`convert_cmd`).
"""

from __future__ import annotations

import json
from pathlib import Path

from .energy import table_a1_markdown

__all__ = ["write_outputs", "render_markdown", "plot_firing", "plot_med"]


def _fmt(v, digits=4):
    if v is None:
        return "—"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.{digits}f}"
    return str(v)


def plot_firing(rows, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 0.28 * len(rows) + 2), 4))
    colors = ["tab:orange" if r["tower"] == "vision" else "tab:blue" for r in rows]
    ax.bar(range(len(rows)), [r["firing_rate"] for r in rows], color=colors)
    ax.set_xticks(range(len(rows)))
    short = [r["name"].removeprefix("model.").replace("encoder.layer.", "L") for r in rows]
    ax.set_xticklabels(short, rotation=90, fontsize=6)
    ax.set_ylim(0, max([r["firing_rate"] for r in rows] + [0.01]) * 1.25)
    ax.set_ylabel("firing rate = spikes / (T x elements)")
    ax.set_title(title)
    if any(r["tower"] == "vision" for r in rows):
        from matplotlib.patches import Patch
        ax.legend(handles=[Patch(color="tab:blue", label="text tower"),
                           Patch(color="tab:orange", label="vision tower")], fontsize=8, ncol=2,
                  loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_med(med, path, title, layer_t=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(med)
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(keys) + 2), 4))
    for m, style in (("text", "o-"), ("vision", "s--")):
        xs = [i for i, k in enumerate(keys) if m in med[k]]
        if xs:
            ax.plot(xs, [med[keys[i]][m] for i in xs], style, label=f"MED {m}")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys, rotation=45, fontsize=7)
    ax.set_xlabel("block (text layer index, or visual.<block>)")
    ax.set_ylabel("MED = mean (1 - cos(h_l, h_l-1))")
    ax.set_title(title)
    if layer_t:
        ax2 = ax.twinx()
        for m, style in (("text", "^:"), ("vision", "v:")):
            xs = [i for i, k in enumerate(keys) if m in layer_t.get(k, {})]
            if xs:
                ax2.plot(xs, [layer_t[keys[i]][m] for i in xs], style, alpha=0.6, label=f"MSTS T {m}")
        ax2.set_ylabel("T allocated by MSTS")
        ax2.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _metric_cells(kind, m):
    if kind == "encoder":
        return [_fmt(m.get("cosine_mean")), _fmt(m.get("cosine_min")), _fmt(m.get("spearman_pairwise"))]
    if kind == "causal-lm":
        return [_fmt(m.get("perplexity"), 2), _fmt(m.get("perplexity_ratio")), _fmt(m.get("token_kl"))]
    return [_fmt(m.get("logit_kl")), _fmt(m.get("logit_kl_text")), _fmt(m.get("logit_kl_vision"))]


def _metric_heads(kind):
    return {"encoder": ["cosine mean", "cosine min", "Spearman"],
            "causal-lm": ["perplexity", "ppl / FP32", "token KL"],
            "vlm": ["logit KL", "KL text", "KL vision"]}[kind]


def render_markdown(report):
    r = report
    kind = r["model"]["kind"]
    c = r["config"]
    lines = [f"# Spike conversion report: {r['model']['name']}", "",
             f"- model: {r['model']['name']} ({r['model']['family']}, {kind}); weights from {r['model']['source']}",
             f"- setting: W{c['w_bits']} {c['encoding']} Tt={c['t_text']} Tv={c['t_vision']}, rotation "
             f"{c['rotation']}, weights {c['weight_quantizer']}, activations {c['act_scale']}, KV bits "
             f"{(c['kv_bits'] if r.get('kv_cache') else 'off (' + kind + ')') if c['kv_bits'] else 'off'}" + (", MSTS per-layer T" if c["layer_t"] else ""),
             f"- evaluation: {r['workload']['description']}",
             f"- time: {r['timing']['total_s']:.1f} s total (FP32 evaluation {r['timing']['fp32_eval_s']:.2f} s, "
             f"conversion + spike evaluation of the main setting {r['timing']['main_s']:.2f} s)", "",
             "## Fidelity against FP32", "",
             "| metric | value |", "|---|---|"]
    for k, v in r["fidelity"].items():
        if not isinstance(v, dict):
            lines.append(f"| {k} | {_fmt(v)} |")
    if r.get("reference_settings"):
        lines += ["", "Reference settings (same options, tc-lif):", "",
                  "| setting | " + " | ".join(_metric_heads(kind)) + " |",
                  "|---" * (1 + len(_metric_heads(kind))) + "|"]
        for name, m in r["reference_settings"].items():
            lines.append(f"| {name} | " + " | ".join(_metric_cells(kind, m)) + " |")
    if r.get("goals"):
        lines += ["", "## Goals", "", "| goal | measured | target | met | missed by |", "|---|---|---|---|---|"]
        for g in r["goals"]:
            lines.append(f"| {g['goal']} | {_fmt(g['measured'])} | {g['target']} | "
                         f"{'yes' if g['met'] else 'no'} | {_fmt(g['missed_by']) if not g['met'] else '—'} |")
    t = r["totals"]
    lines += ["", "## Operations and energy (SDLLM Table A1 layout)", "",
              f"E_AC = {t['e_ac_pj']} pJ, E_MAC = {t['e_mac_pj']} pJ (45 nm). SOPs = spikes x out_features; "
              f"dense FLOPs = MACs of the float layer; all over the {r['workload']['tokens']} evaluated tokens.", "",
              table_a1_markdown(r["layers"], r["model"]["name"], f"W{c['w_bits']}"), "",
              f"Totals: SOPs {t['sops']:.4g}, dense FLOPs {t['flops']:.4g}, firing rate {t['firing_rate']:.4f}, "
              f"E_SNN {t['energy_snn_j']:.4g} J, E_ANN {t['energy_ann_j']:.4g} J, "
              f"ANN/SNN energy {_fmt(t['energy_ratio_ann_over_snn'], 2)}x."]
    if r.get("kv_cache"):
        lines += ["", "### Spiked KV cache", "", "| attention | T_kv | K firing rate | V firing rate | popcount score ops |",
                  "|---|---|---|---|---|"]
        for k in r["kv_cache"]:
            lines.append(f"| {k['name']} | {k['T']} | {k['k_firing_rate']:.4f} | {k['v_firing_rate']:.4f} | "
                         f"{k['score_popcount_ops']} |")
    ms = r["msts"]
    lines += ["", "## MSTS", "", "MED per block and modality (calibration inputs):", "",
              "| block | MED text | MED vision | T text | T vision |", "|---|---|---|---|---|"]
    eff = r["config_effective"]
    for k, per in ms["med"].items():
        lt = eff["layer_t"].get(k, {})
        t_t = lt.get("text", eff["t_text"]) if "text" in per else "—"
        t_v = lt.get("vision", eff["t_vision"]) if "vision" in per else "—"
        lines.append(f"| {k} | {_fmt(per.get('text'))} | {_fmt(per.get('vision'))} | {t_t} | {t_v} |")
    if ms.get("comparison"):
        cmp_ = ms["comparison"]
        lines += ["", f"MSTS against uniform T at the same budget (average T {cmp_['budget']}):", "",
                  "| setting | average T | " + " | ".join(_metric_heads(kind)) + " | SOPs |",
                  "|---" * (3 + len(_metric_heads(kind))) + "|"]
        for name in ("uniform", "msts"):
            e = cmp_[name]
            lines.append(f"| {name} | {e['average_t']:.3f} | " + " | ".join(_metric_cells(kind, e["fidelity"]))
                         + f" | {e['sops']:.4g} |")
    if r.get("ablation"):
        lines += ["", "## Ablation", "",
                  "| group | variant | " + " | ".join(_metric_heads(kind)) + " | firing rate | SOPs | E_SNN (J) |",
                  "|---" * (5 + len(_metric_heads(kind))) + "|"]
        for a in r["ablation"]:
            lines.append(f"| {a['group']} | {a['variant']} | " + " | ".join(_metric_cells(kind, a["fidelity"]))
                         + f" | {a['firing_rate']:.4f} | {a['sops']:.4g} | {a['energy_snn_j']:.4g} |")
    lines += ["", "Plots: `firing_rate.png` (firing rate per layer), `med.png` (MED per block and modality).", ""]
    return "\n".join(lines)


def write_outputs(directory, report, static_scales=None):
    """Write report.json, report.md, config.json, static_scales.json (if any) and the plots."""
    d = Path(directory)
    (d / "report.json").write_text(json.dumps(report, indent=1, sort_keys=False) + "\n")
    (d / "report.md").write_text(render_markdown(report))
    (d / "config.json").write_text(json.dumps(report["config_effective"], indent=1, sort_keys=True) + "\n")
    if static_scales:
        (d / "static_scales.json").write_text(json.dumps(static_scales, indent=1) + "\n")
    name = report["model"]["name"]
    plot_firing(report["layers"], d / "firing_rate.png", f"{name}: firing rate per layer")
    plot_med(report["msts"]["med"], d / "med.png", f"{name}: MED per block and modality",
             report["config_effective"]["layer_t"] or None)
