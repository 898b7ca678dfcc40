"""MSTS: modality evolution discrepancy (MED) and T allocation per layer and modality.

MED of block ℓ (a transformer layer of the text tower, or a block of the vision tower) and
modality m is the mean, over the modality-m tokens of the calibration inputs, of
``1 - cos(h_ℓ, h_(ℓ-1))``, where ``h_(ℓ-1)`` is the block's input hidden state and ``h_ℓ`` its
output. A block that changes a modality's tokens a lot is assumed to be sensitive to its
quantisation.

Allocation rule (:func:`allocate`): each (block, modality) unit u gets a bit width b_u, so
T_u = ``timesteps(encoding, b_u)``. The quantisation noise of a b-bit grid scales as 4^-b, so
we minimise ``sum_u n_u * MED_u * 4^-b_u`` subject to the token-weighted average T,
``sum_u n_u T_u / sum_u n_u``, being at most the budget (n_u = modality-m tokens that pass
block ℓ). Greedy water filling: start every unit at the lowest width and repeatedly add one bit
to the unit with the largest noise reduction per added timestep, ``MED_u (4^-b - 4^-(b+1)) /
ΔT``, among those that still fit the budget. Higher MED therefore gets more T: a unit with
4x the MED of another ends up about one bit (one tc-lif step) higher. Ties go to the earlier
block. The one exception to "higher MED, more T" is at the end of the budget: when the best
unit's step no longer fits (it has many tokens, e.g. vision-tower blocks) a unit with fewer
tokens may still take one.
"""

from __future__ import annotations

import numpy as np
import torch

from . import numerics as nx
from .config import MODALITIES

__all__ = ["block_modules", "measure_med", "allocate", "average_t", "DEFAULT_BITS_RANGE"]

#: Activation widths MSTS may choose from (tc-lif: T = 2..8).
DEFAULT_BITS_RANGE = (3, 9)


def block_modules(model, family):
    """``[(layer_key, module)]`` of the blocks whose input/output MED is measured."""
    out = []
    for name, mod in model.named_modules():
        parts = name.split(".")
        if len(parts) < 2 or not parts[-1].isdigit():
            continue
        parent = parts[-2]
        if family == "bert" and parent == "layer" and "encoder" in parts:
            out.append((parts[-1], mod))
        elif family in ("llama", "qwen2", "qwen2_vl") and parent == "layers" and "visual" not in parts:
            out.append((parts[-1], mod))
        elif family == "qwen2_vl" and parent == "blocks" and "visual" in parts:
            out.append((f"visual.{parts[-1]}", mod))
    return out


def _first_tensor(x):
    return x[0] if isinstance(x, (tuple, list)) else x


def measure_med(model, family, runs):
    """MED per block and modality.

    ``runs`` is a list of ``(run_fn, modality, valid)``: ``run_fn()`` does one forward pass of
    ``model``; ``modality`` (int array, flat over the text tower's [batch, seq] tokens, 1 =
    vision) and ``valid`` (bool, same shape, False for padding) may be None (all text / all
    valid). Vision-tower tokens are all vision.

    Returns ``(med, counts)``: ``{layer_key: {"text": value, "vision": value}}`` and the token
    counts behind each value (modalities with no tokens are left out).
    """
    blocks = block_modules(model, family)
    if not blocks:
        raise ValueError(f"no transformer blocks found for MED in a {family} model")
    sums = {k: np.zeros(2) for k, _ in blocks}
    counts = {k: np.zeros(2, dtype=np.int64) for k, _ in blocks}
    state = {}
    handles = []

    def pre(key):
        def hook(mod, args, kwargs):
            h = args[0] if args else kwargs.get("hidden_states")
            state[key] = h.detach()
        return hook

    def post(key):
        def hook(mod, args, kwargs, out):
            h0, h1 = state.pop(key), _first_tensor(out).detach()
            d = h0.shape[-1]
            cos = torch.nn.functional.cosine_similarity(h0.reshape(-1, d).double(), h1.reshape(-1, d).double(), dim=-1)
            dist = (1 - cos).numpy()
            n = dist.shape[0]
            if key.startswith("visual."):
                mod_arr, ok = np.ones(n, dtype=np.int64), np.ones(n, dtype=bool)
            else:
                mod_arr = np.zeros(n, dtype=np.int64) if cur["modality"] is None else cur["modality"]
                ok = np.ones(n, dtype=bool) if cur["valid"] is None else cur["valid"]
                if mod_arr.shape[0] != n or ok.shape[0] != n:
                    raise ValueError(f"MED: block {key} saw {n} tokens, the run describes {mod_arr.shape[0]}")
            for m in (0, 1):
                sel = ok & (mod_arr == m)
                sums[key][m] += dist[sel].sum()
                counts[key][m] += int(sel.sum())
        return hook

    cur = {}
    for key, mod in blocks:
        handles.append(mod.register_forward_pre_hook(pre(key), with_kwargs=True))
        handles.append(mod.register_forward_hook(post(key), with_kwargs=True))
    try:
        with torch.no_grad():
            for run_fn, modality, valid in runs:
                cur["modality"] = None if modality is None else np.asarray(modality, dtype=np.int64).ravel()
                cur["valid"] = None if valid is None else np.asarray(valid, dtype=bool).ravel()
                run_fn()
    finally:
        for h in handles:
            h.remove()
    med, cnt = {}, {}
    for key, _ in blocks:
        med[key], cnt[key] = {}, {}
        for m, name in enumerate(MODALITIES):
            if counts[key][m]:
                med[key][name] = float(sums[key][m] / counts[key][m])
                cnt[key][name] = int(counts[key][m])
    return med, cnt


def average_t(layer_t, counts):
    """Token-weighted average T of an allocation ``{key: {modality: T}}`` over ``counts``."""
    num = den = 0
    for key, per in counts.items():
        for m, n in per.items():
            num += n * layer_t[key][m]
            den += n
    return num / den if den else 0.0


def allocate(med, counts, budget, encoding, bits_range=DEFAULT_BITS_RANGE):
    """T per (block, modality) under a token-weighted average-T budget (see the module docstring).

    Returns ``layer_t`` ``{layer_key: {modality: T}}`` ready for ``ConverterConfig.layer_t``.
    Raises ValueError when the budget is outside what ``bits_range`` allows.
    """
    b_lo, b_hi = bits_range
    nx.check_bits(b_lo, "bits_range[0]")
    nx.check_bits(b_hi, "bits_range[1]")
    t_lo, t_hi = nx.timesteps(encoding, b_lo), nx.timesteps(encoding, b_hi)
    if not isinstance(budget, (int, float)) or not t_lo <= budget <= t_hi:
        raise ValueError(f"MSTS budget (average T) for {encoding} must be in {t_lo}..{t_hi}, not {budget!r}")
    units = [(k, m) for k in med for m in med[k] if counts.get(k, {}).get(m, 0) > 0]
    if not units:
        raise ValueError("MSTS needs MED of at least one block and modality")
    bits = {u: b_lo for u in units}
    n = {u: counts[u[0]][u[1]] for u in units}
    total = sum(n.values())
    cap = budget * total
    cost = sum(n[u] * t_lo for u in units)
    while True:
        best, best_ratio = None, -1.0
        for u in units:
            b = bits[u]
            if b >= b_hi:
                continue
            dT = nx.timesteps(encoding, b + 1) - nx.timesteps(encoding, b)
            if cost + n[u] * dT > cap + 1e-9:
                continue
            ratio = med[u[0]][u[1]] * (4.0 ** -b - 4.0 ** -(b + 1)) / dT
            if ratio > best_ratio:
                best, best_ratio = u, ratio
        if best is None:
            break
        b = bits[best]
        cost += n[best] * (nx.timesteps(encoding, b + 1) - nx.timesteps(encoding, b))
        bits[best] = b + 1
    layer_t = {}
    for (k, m), b in bits.items():
        layer_t.setdefault(k, {})[m] = nx.timesteps(encoding, b)
    return layer_t
