"""GPTQ weight quantisation with fixed per-output-channel scales (hardware grid unchanged).

GPTQ (Frantar et al., 2023) quantises the columns of W one at a time and spreads each
column's rounding error over the columns not yet quantised, weighted by the inverse Hessian
``H = X^T X`` of the layer's calibration inputs, so that the layer *output* error is small
rather than the weight error. Here the scales are fixed first (the ``mse`` per-channel
clipping of :func:`layer_quant.quantize_weights`), so the result is still one scale per
output channel on the same b-bit grid: only which integers are chosen changes.

The loop runs over input columns in blocks (lazy batch updates), vectorised over the output
channels.
"""

from __future__ import annotations

import numpy as np

from . import layer_quant as lq
from . import numerics as nx

__all__ = ["gptq_quantize", "DAMP"]

#: Diagonal damping as a fraction of the mean diagonal of H.
DAMP = 0.01


def gptq_quantize(W, bits, hessian, block=128, damp=DAMP, act_order=True):
    """``(w int64 [out, in], s_w float64 [out])`` of W [out, in] given ``hessian`` = sum x^T x [in, in].

    ``act_order``: quantise the columns with the largest Hessian diagonal (the most active
    inputs) first, as GPTQ's "desc_act"; the integers are put back in the original order.
    """
    W = np.array(W, dtype=np.float64)
    _, s_w = lq.quantize_weights(W, bits, "mse")
    qm = float(nx.qmax(bits))
    H = np.array(hessian, dtype=np.float64)
    n = W.shape[1]
    if H.shape != (n, n):
        raise ValueError(f"hessian must be [{n}, {n}], not {H.shape}")
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H[np.diag_indices(n)] += damp * np.mean(np.diag(H))
    perm = np.argsort(-np.diag(H), kind="stable") if act_order else np.arange(n)
    W, H = W[:, perm], H[perm][:, perm]
    # upper Cholesky factor of H^-1 (the GPTQ update weights)
    Hinv = np.linalg.cholesky(np.linalg.inv(H)).T
    s = s_w
    Q = np.zeros_like(W)
    for i1 in range(0, n, block):
        i2 = min(i1 + block, n)
        W1 = W[:, i1:i2].copy()
        Err1 = np.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            w = W1[:, i]
            q = np.clip(np.round(w / s), -qm, qm)
            Q[:, i1 + i] = q
            err = (w - q * s) / Hinv1[i, i]
            W1[:, i:] -= np.outer(err, Hinv1[i, i:])
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    out = np.empty_like(Q)
    out[:, perm] = Q
    return out.astype(np.int64), s_w
