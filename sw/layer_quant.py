"""Integer path of one spike-driven linear layer, in numpy, on top of :mod:`numerics`.

The converter's torch module and the golden-vector exporter both call these functions, so a
layer converted for evaluation and the same layer exported to hardware are the same integers.

Per layer: rotate (block Hadamard on the input features), quantise the weights per output
channel (``rtn`` or ``mse``), quantise each token's activations to the b-bit grid that its
modality's T implies, unfold into spikes, accumulate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import numerics as nx
from .config import MODALITIES, ConverterConfig

#: Clipping ratios searched by the ``mse`` weight quantiser.
MSE_CLIP_GRID = np.linspace(0.5, 1.0, 51)


def quantize_weights(W, bits, method="rtn"):
    """Per-output-channel weights ``(w int64 [out, in], s_w float64 [out])``.

    ``rtn``: scale = max|W[o]| / qmax. ``mse``: for each channel, the clipping ratio in
    :data:`MSE_CLIP_GRID` that minimises the squared error of the dequantised row (one scale
    per channel, so the hardware is unchanged).
    """
    W = np.asarray(W, dtype=np.float64)
    if method == "rtn":
        return nx.quantize_weights(W, bits)
    if method != "mse":
        raise ValueError(f"weight quantizer must be 'rtn' or 'mse', not {method!r}")
    best_err = np.full(W.shape[0], np.inf)
    best_clip = np.ones(W.shape[0])
    for c in MSE_CLIP_GRID:
        w, s = nx.quantize_weights(W, bits, clip=c)
        err = ((w * s[:, None] - W) ** 2).sum(axis=1)
        better = err < best_err
        best_err[better], best_clip[better] = err[better], c
    return nx.quantize_weights(W, bits, clip=best_clip)


def rotate(x, block=None):
    """Online block Hadamard of activations (last axis): x' = x H."""
    return nx.fwht(x, block)


def rotate_weight(W, block=None):
    """Rotated weight W' = W H, so that x' W'^T = x W^T."""
    return nx.fwht(W, block)


@dataclass
class EncodedActivations:
    """Spike form of a batch of tokens entering one linear layer.

    Attributes
    ----------
    spikes : int8 [T_max, N, in]
        Row t of token n is zero for t >= T[n].
    T : int64 [N]
        Timesteps of each token (from its modality, MSTS).
    bits : int64 [N]
        Activation grid bits of each token.
    q : int64 [N, in]
        Spike counts (decoded spikes).
    s_x : float64 [N]
        Activation scale of each token (per token, or the layer's static scale repeated).
    """
    spikes: np.ndarray
    T: np.ndarray
    bits: np.ndarray
    q: np.ndarray
    s_x: np.ndarray


def encode_activations(x, config: ConverterConfig, modality=None, layer=None, static_scales=None):
    """Quantise and unfold activations ``x`` [N, in] (already rotated) into spikes.

    ``modality`` is [N] of 0 (text) / 1 (vision), default all text. With
    ``config.act_scale == "static"``, ``static_scales`` maps "text"/"vision" to the layer's
    calibrated scale.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must be [tokens, features], not shape {x.shape}")
    N = x.shape[0]
    mod = np.zeros(N, dtype=np.int64) if modality is None else np.asarray(modality, dtype=np.int64)
    if mod.shape != (N,) or (N and (mod.min() < 0 or mod.max() > 1)):
        raise ValueError(f"modality must be [{N}] of 0 (text) / 1 (vision)")
    T = np.zeros(N, dtype=np.int64)
    bits = np.zeros(N, dtype=np.int64)
    q = np.zeros(x.shape, dtype=np.int64)
    s_x = np.zeros(N, dtype=np.float64)
    groups = []
    for m, name in enumerate(MODALITIES):
        sel = np.nonzero(mod == m)[0]
        if not len(sel):
            continue
        b = config.act_bits(name, layer)
        T[sel], bits[sel] = nx.timesteps(config.encoding, b), b
        if config.act_scale == "static":
            if static_scales is None or name not in static_scales:
                raise ValueError(f"act_scale 'static' needs a calibrated scale for {name!r} tokens")
            s = float(static_scales[name])
            q[sel] = nx.quantize_static(x[sel], b, s)
            s_x[sel] = s
        else:
            qq, s = nx.quantize_dynamic(x[sel], b)
            q[sel], s_x[sel] = qq, s[:, 0]
        groups.append((sel, b))
    T_max = int(T.max()) if N else 1
    spikes = np.zeros((T_max, N, x.shape[1]), dtype=np.int8)
    for sel, b in groups:
        s = nx.encode(q[sel], config.encoding, b)
        spikes[: s.shape[0], sel] = s
    return EncodedActivations(spikes=spikes, T=T, bits=bits, q=q, s_x=s_x)


def linear_integer_path(enc: EncodedActivations, w, s_w, encoding, bias=None):
    """Accumulators of the spike-driven layer and the float output ``acc * s_x * s_w + bias``.

    Returns ``(acc int64 [N, out], y float64 [N, out], sops int)``. Tokens with different bit
    widths are accumulated separately (rate needs each token's zero point).
    """
    w = np.asarray(w, dtype=np.int64)
    N = enc.q.shape[0]
    acc = np.zeros((N, w.shape[0]), dtype=np.int64)
    sops = 0
    for b in np.unique(enc.bits):
        sel = np.nonzero(enc.bits == b)[0]
        T = nx.timesteps(encoding, int(b))
        r = nx.spike_linear(enc.spikes[:T, sel], w, encoding, bits=int(b))
        acc[sel] = r.acc
        sops += r.sops
    y = acc * enc.s_x[:, None] * np.asarray(s_w, dtype=np.float64)[None, :]
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)[None, :]
    return acc, y, sops
