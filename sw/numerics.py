"""Bit-exact integer reference for the spike numerics.

This module is the contract: the converter, the Amaranth unit tests, the golden vectors and
the cocotb scoreboards all check against it. Everything here is plain numpy; the converter
has torch wrappers that reproduce the same arithmetic (see ``docs/numerics.md``).

Conventions
-----------
* ``bits`` is the width of a symmetric signed grid, 2..16; ``qmax = 2**(bits-1) - 1``.
* Float quantisers round half to even (numpy's and torch's native rounding), so both
  frameworks agree bit for bit. The integer firing unit rounds half away from zero.
* Spike tensors are ``int8`` with values in {-1, 0, +1}, shaped ``[T, ...]``; time is the
  first axis and ``t = 0`` is the first step (the most significant one for ``tc-lif``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BITS_MIN", "BITS_MAX", "ENCODINGS", "E_AC_PJ", "E_MAC_PJ",
    "qmax", "check_bits", "timesteps", "bits_for_timesteps", "step_weights", "zero_point",
    "quantize_weights", "quantize_dynamic", "quantize_static", "static_scale",
    "hadamard_block_size", "fwht", "hadamard_matrix",
    "encode", "decode",
    "fire", "fire_spikes", "theta_for_step",
    "spike_linear", "SpikeLinearResult", "exact_matmul",
    "to_bit_planes", "from_bit_planes", "sign_magnitude_planes", "popcount_score", "quantize_kv",
]

BITS_MIN, BITS_MAX = 2, 16
ENCODINGS = ("rate", "ternary", "tc-lif")

#: Energy per operation at 45 nm used by SDLLM (Horowitz 2014): accumulate and multiply-accumulate.
E_AC_PJ = 0.9
E_MAC_PJ = 4.6


# --------------------------------------------------------------------------------------------
# Grid and argument checks
# --------------------------------------------------------------------------------------------

def check_bits(bits, name="bits"):
    """Return ``bits`` as int, or raise ValueError naming ``name`` and the allowed range."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise ValueError(f"{name} must be an integer in {BITS_MIN}..{BITS_MAX}, not {bits!r}")
    if not BITS_MIN <= bits <= BITS_MAX:
        raise ValueError(f"{name} must be in {BITS_MIN}..{BITS_MAX}, not {bits!r}")
    return int(bits)


def _check_encoding(encoding):
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, not {encoding!r}")
    return encoding


def qmax(bits):
    """Largest magnitude of the symmetric b-bit grid: ``2**(bits-1) - 1``."""
    return (1 << (check_bits(bits) - 1)) - 1


def timesteps(encoding, bits):
    """Number of timesteps T an encoding needs for a b-bit spike count.

    ``rate``: T = L - 1 with L = 2**bits levels; ``ternary``: T = qmax; ``tc-lif``: T = bits - 1
    (= log2(L) - 1).
    """
    _check_encoding(encoding)
    bits = check_bits(bits)
    if encoding == "rate":
        return (1 << bits) - 1
    if encoding == "ternary":
        return qmax(bits)
    return bits - 1


def bits_for_timesteps(encoding, T):
    """Inverse of :func:`timesteps`: the bit width whose encoding uses exactly ``T`` steps."""
    _check_encoding(encoding)
    for b in range(BITS_MIN, BITS_MAX + 1):
        if timesteps(encoding, b) == T:
            return b
    allowed = sorted({timesteps(encoding, b) for b in range(BITS_MIN, BITS_MAX + 1)})
    if encoding == "tc-lif":
        rng = f"{allowed[0]}..{allowed[-1]}"
    else:
        rng = ", ".join(str(a) for a in allowed[:6]) + ", ..."
    raise ValueError(f"T for encoding {encoding!r} must be one of {rng}, not {T!r}")


def zero_point(encoding, bits):
    """Offset added before unfolding; only ``rate`` (unsigned spikes) has one: 2**(bits-1)."""
    _check_encoding(encoding)
    return (1 << (check_bits(bits) - 1)) if encoding == "rate" else 0


def step_weights(encoding, T):
    """Per-step weights d_t (int64, shape [T]) so that q = sum_t d_t * s_t (minus the zero point)."""
    _check_encoding(encoding)
    if not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T must be a positive integer, not {T!r}")
    if encoding == "tc-lif":
        return (np.int64(1) << np.arange(T - 1, -1, -1, dtype=np.int64))
    return np.ones(T, dtype=np.int64)


def _check_int_range(q, lo, hi, name):
    q = np.asarray(q)
    if q.dtype.kind not in "iu":
        if q.dtype.kind not in "fb" or not np.all(np.isfinite(q)) or not np.all(q == np.round(q)):
            raise ValueError(f"{name} must hold integers, got dtype {q.dtype}")
    # compare before any cast, so a huge float cannot wrap around in int64
    if q.size and (q.min() < lo or q.max() > hi):
        fmt = "{:d}" if q.dtype.kind in "iu" else "{:g}"
        found = f"{fmt.format(q.min())}..{fmt.format(q.max())}"
        raise ValueError(f"{name} must be in {lo}..{hi}, found values in {found}")
    return q.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Quantisers (float -> integer grid)
# --------------------------------------------------------------------------------------------

def _safe_scale(amax, qm):
    # An all-zero row or token gets scale 1 so that 0 quantises to 0 without dividing by zero.
    amax = np.asarray(amax, dtype=np.float64)
    return np.where(amax > 0, amax / qm, 1.0)


def quantize_weights(W, bits, clip=None):
    """Per-output-channel symmetric round-to-nearest.

    ``s_w[o] = clip[o] * max_i |W[o, i]| / qmax``; ``w = clamp(round(W / s_w), -qmax, qmax)``.
    ``clip`` (default 1) is a per-channel clipping ratio in (0, 1] found by a better quantiser
    (for example MSE search); it keeps one scale per channel, so hardware is unchanged.

    Returns ``(w int64 [out, in], s_w float64 [out])``.
    """
    qm = qmax(bits)
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"W must be 2-D [out, in], not shape {W.shape}")
    amax = np.abs(W).max(axis=1)
    if clip is not None:
        clip = np.broadcast_to(np.asarray(clip, dtype=np.float64), amax.shape)
        if np.any(clip <= 0) or np.any(clip > 1):
            raise ValueError("clip must be in (0, 1]")
        amax = amax * clip
    s_w = _safe_scale(amax, qm)
    w = np.clip(np.round(W / s_w[:, None]), -qm, qm).astype(np.int64)
    return w, s_w


def quantize_dynamic(x, bits):
    """Per-token (last axis) symmetric quantisation: ``s_x = max|x| / qmax``.

    Returns ``(q int64 like x, s_x float64 with the last axis kept as size 1)``.
    """
    qm = qmax(bits)
    x = np.asarray(x, dtype=np.float64)
    s = _safe_scale(np.abs(x).max(axis=-1, keepdims=True), qm)
    q = np.clip(np.round(x / s), -qm, qm).astype(np.int64)
    return q, s


def static_scale(calibration, bits, percentile=100.0):
    """Per-layer static scale from calibration activations: percentile of |x| over qmax."""
    qm = qmax(bits)
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {percentile!r}")
    a = np.abs(np.asarray(calibration, dtype=np.float64)).ravel()
    amax = np.percentile(a, percentile) if percentile < 100 else a.max(initial=0.0)
    return float(_safe_scale(amax, qm))


def quantize_static(x, bits, scale):
    """Per-layer static quantisation with a calibrated scalar ``scale`` (saturating)."""
    qm = qmax(bits)
    if not (np.isscalar(scale) and np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite scalar, not {scale!r}")
    x = np.asarray(x, dtype=np.float64)
    return np.clip(np.round(x / scale), -qm, qm).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Block Walsh-Hadamard rotation
# --------------------------------------------------------------------------------------------

def hadamard_block_size(n, max_block=None):
    """Largest power of two dividing ``n`` (optionally capped at ``max_block``)."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, not {n!r}")
    b = n & -n
    if max_block is not None:
        if max_block < 1 or max_block & (max_block - 1):
            raise ValueError(f"max_block must be a power of two, not {max_block!r}")
        b = min(b, max_block)
    return int(b)


def fwht(x, block=None):
    """Orthonormal block Walsh-Hadamard transform along the last axis, O(n log n).

    The last axis is split into blocks of ``block`` (default: the largest power of two dividing
    it); each block is multiplied by the Sylvester Hadamard matrix scaled by 1/sqrt(block). The
    transform is symmetric and its own inverse. Only adds and subtracts happen inside the
    butterflies; the single scale at the end folds into the quantisation scale in hardware.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    b = hadamard_block_size(n) if block is None else block
    if b < 1 or b & (b - 1) or n % b:
        raise ValueError(f"block must be a power of two dividing {n}, not {b!r}")
    y = x.reshape(*x.shape[:-1], n // b, b).copy()
    h = 1
    while h < b:
        y = y.reshape(*y.shape[:-1], b // (2 * h), 2, h)
        a, c = y[..., 0, :].copy(), y[..., 1, :].copy()
        y[..., 0, :] = a + c
        y[..., 1, :] = a - c
        y = y.reshape(*y.shape[:-3], b)
        h *= 2
    return (y / math.sqrt(b)).reshape(x.shape)


def hadamard_matrix(n, block=None):
    """Dense orthonormal block-diagonal Hadamard matrix H (n x n) equal to :func:`fwht`."""
    return fwht(np.eye(n), block)


# --------------------------------------------------------------------------------------------
# Spike encoders and decoders
# --------------------------------------------------------------------------------------------

def encode(q, encoding, bits, T=None):
    """Unfold integer spike counts ``q`` (b-bit symmetric grid) into T spikes, int8 [T, ...].

    * ``rate``: u = q + 2**(bits-1) in 1..2**bits - 1; s_t = 1 for t < u (binary, unsigned).
    * ``ternary``: s_t = sign(q) for t < |q| (SDLLM bidirectional ternary spikes).
    * ``tc-lif``: s_t = sign(q) * bit_(T-1-t)(|q|), most significant first; the soft-reset
      neuron with weights d_t = 2**(T-1-t) fires exactly these spikes.

    ``T``, when given, must equal :func:`timesteps`; it is accepted to catch mismatches.
    """
    _check_encoding(encoding)
    qm = qmax(bits)
    T_enc = timesteps(encoding, bits)
    if T is not None and T != T_enc:
        raise ValueError(f"T must be {T_enc} for encoding {encoding!r} with bits={bits}, not {T!r}")
    q = _check_int_range(q, -qm, qm, "q")
    t = np.arange(T_enc, dtype=np.int64).reshape((T_enc,) + (1,) * q.ndim)
    if encoding == "rate":
        u = q + zero_point(encoding, bits)
        s = (t < u[None]).astype(np.int8)
    elif encoding == "ternary":
        s = (np.sign(q)[None] * (t < np.abs(q)[None])).astype(np.int8)
    else:
        bit = (np.abs(q)[None] >> (T_enc - 1 - t)) & 1
        s = (np.sign(q)[None] * bit).astype(np.int8)
    return s


def decode(spikes, encoding, bits):
    """Inverse of :func:`encode`: q = sum_t d_t s_t - zero_point."""
    _check_encoding(encoding)
    T_enc = timesteps(encoding, bits)
    s = np.asarray(spikes)
    if s.ndim < 1 or s.shape[0] != T_enc:
        raise ValueError(f"spikes must have T={T_enc} steps on axis 0 for encoding {encoding!r} "
                         f"with bits={bits}, not shape {s.shape}")
    s = _check_int_range(s, -1, 1, "spikes")
    d = step_weights(encoding, T_enc).reshape((T_enc,) + (1,) * (s.ndim - 1))
    return (d * s).sum(axis=0) - zero_point(encoding, bits)


# --------------------------------------------------------------------------------------------
# TC-LIF firing unit (hardware requantiser: accumulator -> next layer's spikes)
# --------------------------------------------------------------------------------------------

def _check_T_array(T, shape, T_max=BITS_MAX - 1):
    T = np.asarray(T, dtype=np.int64)
    if T.size == 0 or T.min() < 1 or T.max() > T_max:
        raise ValueError(f"T must be in 1..{T_max}, not {T!r}")
    return np.broadcast_to(T, shape)


def fire(v, theta, frac_bits, T):
    """Closed form of the firing unit: q = sign(v) * min(floor((|v|*2^F + floor(theta/2)) / theta), 2^T - 1).

    ``theta`` is the positive integer fixed-point step with ``frac_bits`` (F) fraction bits, so the
    real step is theta / 2**F; this is round half away from zero, saturating at 2**T - 1.
    ``T`` is a scalar or broadcasts against ``v`` (T per token: MSTS).
    """
    theta, F = _check_theta(theta, frac_bits)
    v = np.asarray(v, dtype=np.int64)
    Tb = _check_T_array(T, v.shape)
    u = (np.abs(v) << F) + theta // 2
    q = np.minimum(u // theta, (np.int64(1) << Tb) - 1)
    return np.sign(v) * q


def _check_theta(theta, frac_bits):
    if not isinstance(frac_bits, (int, np.integer)) or not 0 <= frac_bits <= 24:
        raise ValueError(f"frac_bits must be an integer in 0..24, not {frac_bits!r}")
    if not isinstance(theta, (int, np.integer)) or theta < 1:
        raise ValueError(f"theta must be a positive integer (fixed point, {frac_bits} fraction bits), not {theta!r}")
    return int(theta), int(frac_bits)


def fire_spikes(v, theta, frac_bits, T):
    """The firing unit as a soft-reset neuron; returns int8 spikes [T_max, ...] and q.

    u = |v|*2^F + floor(theta/2); for t = 0..T-1: fire sign(v) if u >= theta*2^(T-1-t), then
    subtract. With T per token, token n uses rows 0..T_n-1 (rows beyond are zero) and its
    step t has weight 2**(T_n-1-t). Equals :func:`fire` (tested exhaustively).
    """
    theta, F = _check_theta(theta, frac_bits)
    v = np.asarray(v, dtype=np.int64)
    Tb = _check_T_array(T, v.shape)
    T_max = int(Tb.max())
    u = (np.abs(v) << F) + theta // 2
    sgn = np.sign(v).astype(np.int8)
    spikes = np.zeros((T_max,) + v.shape, dtype=np.int8)
    mag = np.zeros(v.shape, dtype=np.int64)
    for t in range(T_max):  # T is at most 15: a loop over steps, vectorised over elements
        active = t < Tb
        shift = np.where(active, Tb - 1 - t, 0)
        thr = np.int64(theta) << shift
        f = active & (u >= thr)
        u = np.where(f, u - thr, u)
        mag = mag + (f.astype(np.int64) << shift)
        spikes[t] = np.where(f, sgn, 0)
    q = sgn * mag
    return spikes, q


def theta_for_step(step, frac_bits):
    """Fixed-point theta (integer, ``frac_bits`` fraction bits) closest to a real ``step`` > 0."""
    if not np.isfinite(step) or step <= 0:
        raise ValueError(f"step must be a positive finite number, not {step!r}")
    return max(1, int(round(step * (1 << frac_bits))))


# --------------------------------------------------------------------------------------------
# Spike-driven linear layer
# --------------------------------------------------------------------------------------------

def exact_matmul(a, b):
    """Exact integer product ``a @ b`` (int64): float64 BLAS when every partial sum < 2**53."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    bound = (np.abs(a).max(initial=0) * np.abs(b).max(initial=0) * max(a.shape[-1], 1))
    if bound < 2 ** 53:
        return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a @ b


@dataclass(frozen=True)
class SpikeLinearResult:
    """Output of :func:`spike_linear`.

    Attributes
    ----------
    acc : int64 [..., out]
        Integer accumulators, exactly q @ w.T.
    sops : int
        Synaptic operations: sum_t nnz(s_t) * out_features (the papers' convention).
    spikes : int
        Non-zero spikes, sum_t nnz(s_t).
    """
    acc: np.ndarray
    sops: int
    spikes: int


def spike_linear(spikes, w, encoding, bits=None, T=None):
    """Spike-driven linear layer: only adds and subtracts of weights, at non-zero spikes.

    ``spikes`` is int8 [T_max, ..., in]; ``w`` is int [out, in].

    * ``tc-lif``: Horner form acc <- 2*acc + s_t @ w.T over the token's own T steps. ``T``
      (scalar or one per token, broadcasting against ``spikes.shape[1:-1]``) defaults to
      ``spikes.shape[0]``.
    * ``ternary``: acc = sum_t s_t @ w.T.
    * ``rate``: acc = sum_t s_t @ w.T - zero_point * rowsum(w) (``bits`` required).

    acc equals ``q @ w.T`` exactly, where q are the decoded spike counts.
    """
    _check_encoding(encoding)
    s = np.asarray(spikes)
    if s.ndim < 2:
        raise ValueError(f"spikes must be [T, ..., in], not shape {s.shape}")
    s = _check_int_range(s, -1, 1, "spikes")
    w = np.asarray(w, dtype=np.int64)
    if w.ndim != 2 or w.shape[1] != s.shape[-1]:
        raise ValueError(f"w must be [out, {s.shape[-1]}], not shape {w.shape}")
    T_max = s.shape[0]
    lead = s.shape[1:-1]
    acc = np.zeros(lead + (w.shape[0],), dtype=np.int64)
    if encoding == "tc-lif":
        Tt = _check_T_array(T_max if T is None else T, lead, T_max)[..., None]
        for t in range(T_max):
            part = exact_matmul(s[t], w.T)
            acc = np.where(t < Tt, 2 * acc + part, acc)
    else:
        if T is not None and np.any(np.asarray(T) != T_max):
            raise ValueError(f"per-token T is only supported for tc-lif, not {encoding!r}")
        for t in range(T_max):
            acc = acc + exact_matmul(s[t], w.T)
        if encoding == "rate":
            if bits is None:
                raise ValueError("bits is required for the rate encoding (zero point)")
            acc = acc - zero_point(encoding, bits) * w.sum(axis=1)
    nnz = int(np.count_nonzero(s))
    return SpikeLinearResult(acc=acc, sops=nnz * int(w.shape[0]), spikes=nnz)


# --------------------------------------------------------------------------------------------
# Spiked KV cache: ternary bit planes and the AND/popcount score
# --------------------------------------------------------------------------------------------

def quantize_kv(x, bits):
    """Per-token, per-head quantisation of K, V or Q shaped [..., heads, head_dim] (dynamic)."""
    return quantize_dynamic(x, bits)


def to_bit_planes(q, bits):
    """tc-lif bit planes of integer q [..., d]: (pos, neg) bool arrays [T, ..., d], T = bits - 1."""
    s = encode(q, "tc-lif", bits)
    return s > 0, s < 0


def from_bit_planes(pos, neg):
    """Inverse of :func:`to_bit_planes`: q = sum_t 2^(T-1-t) (pos_t - neg_t)."""
    pos = np.asarray(pos, dtype=bool)
    neg = np.asarray(neg, dtype=bool)
    if pos.shape != neg.shape:
        raise ValueError(f"pos and neg planes must have the same shape, not {pos.shape} and {neg.shape}")
    if np.any(pos & neg):
        raise ValueError("a bit is set in both the positive and the negative plane")
    T = pos.shape[0]
    d = step_weights("tc-lif", T).reshape((T,) + (1,) * (pos.ndim - 1))
    return (d * (pos.astype(np.int64) - neg.astype(np.int64))).sum(axis=0)


def sign_magnitude_planes(pos, neg):
    """The planes a sign-magnitude KV store gives back for (pos, neg) bool [T, ..., d].

    It keeps ``mag = pos | neg`` per plane and one sign per element, negative if any plane's
    ``neg`` is set; it returns ``(mag & ~sign, mag & sign)``. Every pair that
    :func:`to_bit_planes` makes comes back unchanged (each element has one sign in every
    plane); a pattern that mixes signs in one element takes the negative sign throughout.
    """
    pos = np.asarray(pos, dtype=bool)
    neg = np.asarray(neg, dtype=bool)
    if pos.shape != neg.shape or pos.ndim < 1:
        raise ValueError(f"pos and neg planes must have one shape [T, ...], not {pos.shape} "
                         f"and {neg.shape}")
    mag = pos | neg
    sign = neg.any(axis=0, keepdims=True)
    return mag & ~sign, mag & sign


def _popcount_and(a, b):
    # a, b: packed uint8 [..., nbytes]; popcount of a & b summed over the last axis.
    return np.bitwise_count(a & b).sum(axis=-1, dtype=np.int64)


def popcount_score(q_pos, q_neg, k_pos, k_neg):
    """Q.K scores from ternary bit planes with AND and popcount only (no multiplier).

    q planes: bool [Tq, ..., d]; k planes: bool [Tk, n_keys, d] (or broadcastable). Returns int64
    scores [..., n_keys] = sum_{tq,tk} 2^((Tq-1-tq)+(Tk-1-tk)) * [pop(qp&kp) + pop(qn&kn)
    - pop(qp&kn) - pop(qn&kp)], which equals q_int . k_int.
    """
    qp, qn = (np.packbits(np.asarray(p, dtype=bool), axis=-1) for p in (q_pos, q_neg))
    kp, kn = (np.packbits(np.asarray(p, dtype=bool), axis=-1) for p in (k_pos, k_neg))
    Tq, Tk = qp.shape[0], kp.shape[0]
    score = 0
    for tq in range(Tq):
        a_p, a_n = qp[tq][..., None, :], qn[tq][..., None, :]
        for tk in range(Tk):
            term = (_popcount_and(a_p, kp[tk]) + _popcount_and(a_n, kn[tk])
                    - _popcount_and(a_p, kn[tk]) - _popcount_and(a_n, kp[tk]))
            score = score + (term << ((Tq - 1 - tq) + (Tk - 1 - tk)))
    return np.asarray(score, dtype=np.int64)
