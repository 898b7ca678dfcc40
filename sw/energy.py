"""Per-layer operation counts and theoretical energy (the papers' convention, SDLLM Table A1).

For each converted linear layer, over the evaluated tokens:

* ``T``: timesteps of its text tokens (and vision tokens), ``T_mean`` over its tokens;
* firing rate = spikes / (T x elements) (elements = tokens x in_features, T per token);
* avg spikes per element = spikes / elements;
* SOPs = spikes x out_features (one add or subtract of a weight per spike per output);
* dense FLOPs = MACs of the float layer = tokens x in_features x out_features;
* E_SNN = SOPs x E_AC, E_ANN = FLOPs x E_MAC, with E_AC = 0.9 pJ and E_MAC = 4.6 pJ
  (45 nm, :data:`numerics.E_AC_PJ`, :data:`numerics.E_MAC_PJ`).

The spiked KV cache gets its own rows (K and V firing rates; the popcount score ops are
reported, not priced, since they are neither ACs nor MACs).
"""

from __future__ import annotations

from . import numerics as nx
from .config import MODALITIES

__all__ = ["layer_rows", "kv_rows", "totals", "table_a1_markdown"]

PJ = 1e-12


def layer_rows(converted):
    """One dict per converted linear layer (see the module docstring for the fields)."""
    rows = []
    cfg = converted.config
    for layer in converted.layers:
        st = layer.stats
        tokens = sum(st.tokens)
        spikes = sum(st.spikes)
        t_el = sum(st.t_elements)
        elements = tokens * layer.in_features
        sops = spikes * layer.out_features
        flops = tokens * layer.in_features * layer.out_features
        row = {
            "name": layer.name, "layer": layer.layer_key, "tower": layer.tower,
            "in_features": layer.in_features, "out_features": layer.out_features,
            "T": cfg.timesteps("vision" if layer.tower == "vision" else "text", layer.layer_key),
            "T_text": cfg.timesteps("text", layer.layer_key),
            "T_vision": cfg.timesteps("vision", layer.layer_key),
            "T_mean": (t_el / elements) if elements else 0.0,
            "tokens": tokens, "tokens_text": st.tokens[0], "tokens_vision": st.tokens[1],
            "spikes": spikes,
            "firing_rate": spikes / t_el if t_el else 0.0,
            "spikes_per_element": spikes / elements if elements else 0.0,
            "sops": sops, "flops": flops,
            "energy_snn_j": sops * nx.E_AC_PJ * PJ, "energy_ann_j": flops * nx.E_MAC_PJ * PJ,
        }
        for m, name in enumerate(MODALITIES):
            te = st.t_elements[m]
            row[f"firing_rate_{name}"] = st.spikes[m] / te if te else None
        rows.append(row)
    return rows


def kv_rows(converted):
    """K and V cache firing per attention layer (spiked KV cache), empty when disabled."""
    out = []
    for name, s in converted.kv.items():
        denom = s.elements * s.steps
        out.append({"name": name, "T": s.steps, "elements": s.elements,
                    "k_spikes": s.k_spikes, "v_spikes": s.v_spikes,
                    "k_firing_rate": s.k_spikes / denom if denom else 0.0,
                    "v_firing_rate": s.v_spikes / denom if denom else 0.0,
                    "score_popcount_ops": s.score_ops})
    return out


def totals(rows):
    """Sums over layers, and the energy ratio ANN / SNN."""
    sops = sum(r["sops"] for r in rows)
    flops = sum(r["flops"] for r in rows)
    spikes = sum(r["spikes"] for r in rows)
    t_el = sum(r["T_mean"] * r["tokens"] * r["in_features"] for r in rows)
    e_snn, e_ann = sops * nx.E_AC_PJ * PJ, flops * nx.E_MAC_PJ * PJ
    return {"sops": sops, "flops": flops, "spikes": spikes,
            "firing_rate": spikes / t_el if t_el else 0.0,
            "energy_snn_j": e_snn, "energy_ann_j": e_ann,
            "energy_ratio_ann_over_snn": e_ann / e_snn if e_snn else None,
            "e_ac_pj": nx.E_AC_PJ, "e_mac_pj": nx.E_MAC_PJ}


def table_a1_markdown(rows, model_label, setting):
    """SDLLM Table A1 layout: Model | Layer | T | firing rate | spikes/elem | SOPs | FLOPs | energy."""
    lines = ["| Model | Layer | T | Firing rate | Spikes/elem | SOPs (M) | Dense FLOPs (M) | "
             "E_SNN (µJ) | E_ANN (µJ) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        T = f"{r['T_text']}" if r["tower"] == "text" and not r["tokens_vision"] else (
            f"{r['T_vision']}" if not r["tokens_text"] else f"{r['T_text']}/{r['T_vision']}")
        lines.append(f"| {model_label} {setting} | {r['name']} | {T} | {r['firing_rate']:.4f} | "
                     f"{r['spikes_per_element']:.3f} | {r['sops'] / 1e6:.3f} | {r['flops'] / 1e6:.3f} | "
                     f"{r['energy_snn_j'] * 1e6:.3f} | {r['energy_ann_j'] * 1e6:.3f} |")
    t = totals(rows)
    lines.append(f"| {model_label} {setting} | **total** | | {t['firing_rate']:.4f} | | "
                 f"{t['sops'] / 1e6:.3f} | {t['flops'] / 1e6:.3f} | {t['energy_snn_j'] * 1e6:.3f} | "
                 f"{t['energy_ann_j'] * 1e6:.3f} |")
    return "\n".join(lines)
