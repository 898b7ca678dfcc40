"""Torch modules of a converted model: the spike-driven linear layer and the spiked KV cache.

:class:`SpikeLinear` replaces an ``nn.Linear``. It simulates the spike-driven layer in float64
(fake quantisation): block-Hadamard rotation of the input (the same butterflies as
:func:`numerics.fwht`), per-output-channel integer weights from
:func:`layer_quant.quantize_weights`, per-token spike counts on the grid that the token's T
implies (T from its modality and layer: MSTS), then ``acc = q @ w.T`` and
``y = acc * s_x * s_w + bias``. Every step is the same float64 operation in the same order as
:mod:`layer_quant`'s numpy integer path, and ``q @ w.T`` of small integers is exact in float64,
so the module's output equals ``layer_quant.linear_integer_path`` bit for bit
(``tests/sw/test_spike_modules.py``). The integer export path stays in :mod:`layer_quant`;
:meth:`SpikeLinear.integer_params` hands it this layer's integers.

Spike statistics (spikes, SOPs, T x elements) are counted from the spike counts without
materialising spike trains: a tc-lif token fires popcount(|q|) spikes, a ternary one |q|, a
rate one q + zero point.

The spiked KV cache (:func:`spiked_kv_attention`) is registered as a transformers attention
function: Q, K and V are quantised per token and head to ``kv_bits`` (tc-lif planes,
T_kv = kv_bits - 1), the scores are the integer products ``q_int . k_int`` (what
:func:`numerics.popcount_score` computes from AND/popcount on the planes) times the scales,
and the values are the dequantised V.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import layer_quant as lq
from . import numerics as nx
from .config import MODALITIES, ConverterConfig

__all__ = ["SpikeContext", "LayerStats", "SpikeLinear", "torch_fwht", "quantize_per_token",
           "spike_count", "kv_integer_scores", "spiked_kv_attention", "KV_ATTENTION_NAME",
           "register_spiked_kv"]

#: Name under which the spiked-KV attention function is registered with transformers.
KV_ATTENTION_NAME = "spikemllm_spiked_kv"


@dataclass
class SpikeContext:
    """State shared by the spike modules of one converted model.

    Attributes
    ----------
    modality : torch.Tensor or None
        Flat int64 [tokens] of 0 (text) / 1 (vision) for the language-model tokens of the
        current forward pass (batch-major), or None (all text).
    valid : torch.Tensor or None
        Flat bool [tokens] of the text tower, False at padding (left out of the statistics
        and the calibration), or None (all valid).
    mode : str
        ``spike`` (converted arithmetic), ``float`` (original float layer) or ``calibrate``
        (float, and record input ranges for static scales).
    collect : bool
        Count spikes, SOPs and tokens while running.
    """
    modality: torch.Tensor | None = None
    valid: torch.Tensor | None = None
    mode: str = "spike"
    collect: bool = True


@dataclass
class LayerStats:
    """Counters of one layer, per modality (index 0 text, 1 vision)."""
    tokens: list = field(default_factory=lambda: [0, 0])
    spikes: list = field(default_factory=lambda: [0, 0])
    t_elements: list = field(default_factory=lambda: [0, 0])  # sum over tokens of T * in_features

    def reset(self):
        self.tokens, self.spikes, self.t_elements = [0, 0], [0, 0], [0, 0]


def torch_fwht(x, block):
    """Block Walsh-Hadamard of the last axis; the same float64 butterflies as :func:`numerics.fwht`."""
    n = x.shape[-1]
    lead = x.shape[:-1]
    y = x.reshape(*lead, n // block, block)
    h = 1
    while h < block:
        y = y.reshape(*lead, n // block, block // (2 * h), 2, h)
        a, c = y[..., 0, :], y[..., 1, :]
        y = torch.stack((a + c, a - c), dim=-2).reshape(*lead, n // block, block)
        h *= 2
    return (y / math.sqrt(block)).reshape(x.shape)


def quantize_per_token(x, qm):
    """Dynamic per-token quantisation (last axis), as :func:`numerics.quantize_dynamic`.

    ``qm`` is a float64 tensor broadcasting against ``x[..., :1]`` (a qmax per token).
    Returns ``(q float64 of integers, s float64 with the last axis kept)``.
    """
    amax = x.abs().amax(dim=-1, keepdim=True)
    s = torch.where(amax > 0, amax / qm, torch.ones_like(amax))
    q = torch.clamp(torch.round(x / s), -qm, qm)
    return q, s


_POPCOUNT = None


def _popcount_table():
    global _POPCOUNT
    if _POPCOUNT is None:
        t = torch.zeros(1 << (nx.BITS_MAX - 1), dtype=torch.int64)
        for k in range(nx.BITS_MAX - 1):  # popcount of every 15-bit magnitude, built by doubling
            t[1 << k: 2 << k] = t[: 1 << k] + 1
        _POPCOUNT = t
    return _POPCOUNT


def spike_count(q, encoding, bits):
    """Non-zero spikes per element of spike counts ``q`` (float64 tensor of integers).

    ``bits`` broadcasts against ``q`` (int64). tc-lif: popcount(|q|) (a table lookup; |q| has
    at most 15 bits); ternary: |q|; rate: q + 2**(bits-1).
    """
    if encoding == "ternary":
        return q.abs()
    if encoding == "rate":
        return q + (torch.ones_like(bits) << (bits - 1)).to(q.dtype)
    return _popcount_table()[q.abs().to(torch.int64)].to(q.dtype)


class SpikeLinear(nn.Module):
    """A spike-driven linear layer converted from ``nn.Linear``.

    Parameters
    ----------
    name : str
        Dotted module name in the model.
    layer_key : str
        Key of ``config.layer_t`` (and of MSTS): ``"<i>"`` for text-tower layer i,
        ``"visual.<i>"`` for vision block i, ``"visual.merger"`` for the merger.
    tower : str
        ``text`` (modality from the context, per token) or ``vision`` (all tokens vision).
    weight, bias : numpy float64
        The float parameters (after γ folding when the rotation is ``gamma-folded``).
    config : ConverterConfig
    context : SpikeContext
    input_affine : (gamma, beta) numpy or None
        γ-folded variant after a post-norm (BERT): the module sees ``γ x̂ + β`` and quantises
        ``x̂ = (x - β) / γ``; γ and β are folded into ``weight``/``bias`` by the caller.
    weight_cache : dict or None
        Shared cache of quantised weights keyed by (name, rotation, bits, method).

    Members
    -------
    w_int : float64 [out, in] buffer of integers; s_w : float64 [out]; bias64 : float64 [out]
    static_scales : dict or None, ``{"text": s, "vision": s}`` when act_scale is static.
    stats : LayerStats
    """

    def __init__(self, *, name, layer_key, tower, weight, bias, config: ConverterConfig, context,
                 input_affine=None, weight_cache=None):
        super().__init__()
        if tower not in ("text", "vision"):
            raise ValueError(f"tower must be 'text' or 'vision', not {tower!r}")
        W = np.asarray(weight, dtype=np.float64)
        self.name, self.layer_key, self.tower = name, str(layer_key), tower
        self.config, self.context = config, context
        self.out_features, self.in_features = W.shape
        self.block = nx.hadamard_block_size(self.in_features) if config.rotation != "none" else 0
        self._cache_key = (name, config.rotation, config.w_bits, config.weight_quantizer)
        self._weight_cache = weight_cache
        self.needs_hessian = False
        if weight_cache is not None and self._cache_key in weight_cache:
            w, s_w = weight_cache[self._cache_key]
        else:
            Wr = lq.rotate_weight(W) if self.block else W
            if config.weight_quantizer == "gptq":
                # provisional mse integers until calibration supplies the Hessian
                w, s_w = lq.quantize_weights(Wr, config.w_bits, "mse")
                self.needs_hessian = True
            else:
                w, s_w = lq.quantize_weights(Wr, config.w_bits, config.weight_quantizer)
                if weight_cache is not None:
                    weight_cache[self._cache_key] = (w, s_w)
        self.register_buffer("w_int", torch.from_numpy(w.astype(np.float64)))
        self.register_buffer("s_w", torch.from_numpy(np.asarray(s_w, dtype=np.float64)))
        self.register_buffer("w_float", torch.from_numpy(W.copy()))
        b = None if bias is None else torch.from_numpy(np.asarray(bias, dtype=np.float64).copy())
        self.register_buffer("bias64", b)
        if input_affine is not None:
            g, be = (torch.from_numpy(np.asarray(a, dtype=np.float64).copy()) for a in input_affine)
            if torch.any(g == 0):
                raise ValueError(f"{name}: γ-folding after a post-norm needs a norm γ without zeros")
            self.register_buffer("affine_gamma", g)
            self.register_buffer("affine_beta", be)
        else:
            self.affine_gamma = self.affine_beta = None
        self.static_scales = None
        self.stats = LayerStats()
        self._calib = [[], []]
        self._hessian = None

    def extra_repr(self):
        c = self.config
        return (f"{self.in_features} -> {self.out_features}, layer={self.layer_key}, tower={self.tower}, "
                f"W{c.w_bits} {c.encoding} Tt={c.timesteps('text', self.layer_key)} "
                f"Tv={c.timesteps('vision', self.layer_key)}, rotation={c.rotation}")

    # -- per-token grid ----------------------------------------------------------------------

    def _modality(self, n):
        if self.tower == "vision":
            return torch.ones(n, dtype=torch.int64)
        m = self.context.modality
        if m is None:
            return torch.zeros(n, dtype=torch.int64)
        if m.numel() != n:
            raise ValueError(f"{self.name}: the context holds modality for {m.numel()} tokens, "
                             f"the layer sees {n}")
        return m.reshape(-1).to(torch.int64)

    def _valid(self, n):
        v = self.context.valid
        if self.tower == "vision" or v is None:
            return torch.ones(n, dtype=torch.bool)
        if v.numel() != n:
            raise ValueError(f"{self.name}: the context holds a padding mask for {v.numel()} tokens, "
                             f"the layer sees {n}")
        return v.reshape(-1).to(torch.bool)

    def _grid(self, mod):
        """Per-token (T, bits, qmax) from the token's modality at this layer."""
        c = self.config
        T = [c.timesteps(m, self.layer_key) for m in MODALITIES]
        b = [c.act_bits(m, self.layer_key) for m in MODALITIES]
        pick = lambda v: torch.where(mod == 1, torch.tensor(v[1]), torch.tensor(v[0]))
        bits = pick(b)
        qm = ((torch.ones_like(bits) << (bits - 1)) - 1).to(torch.float64)
        return pick(T), bits, qm

    def _input(self, x):
        x2 = x.reshape(-1, self.in_features).to(torch.float64)
        if self.affine_gamma is not None:
            x2 = (x2 - self.affine_beta) / self.affine_gamma
        return x2

    # -- arithmetic --------------------------------------------------------------------------

    def spike_forward(self, x2, mod):
        """Float64 simulation of the spike-driven layer on tokens ``x2`` [N, in].

        Returns ``(y, acc, q, s_x, T, bits)``; ``y = acc * s_x * s_w + bias`` with
        ``acc = q @ w.T`` exact.
        """
        xr = torch_fwht(x2, self.block) if self.block else x2
        T, bits, qm = self._grid(mod)
        if self.config.act_scale == "static":
            if self.static_scales is None:
                raise ValueError(f"{self.name}: act_scale 'static' needs calibration first")
            s = torch.tensor([self.static_scales.get(m, 1.0) for m in MODALITIES], dtype=torch.float64)[mod]
            q = torch.clamp(torch.round(xr / s[:, None]), -qm[:, None], qm[:, None])
        else:
            q, s = quantize_per_token(xr, qm[:, None])
            s = s[:, 0]
        acc = q @ self.w_int.T
        y = acc * s[:, None] * self.s_w[None, :]
        if self.bias64 is not None:
            y = y + self.bias64[None, :]
        return y, acc, q, s, T, bits

    def forward(self, x):
        lead = x.shape[:-1]
        x2 = self._input(x)
        n = x2.shape[0]
        mode = self.context.mode
        if mode in ("float", "calibrate"):
            if mode == "calibrate":
                self._record(x2, self._modality(n), self._valid(n))
            y = x2 @ self.w_float.T
            if self.bias64 is not None:
                y = y + self.bias64
            return y.to(x.dtype).reshape(*lead, self.out_features)
        mod = self._modality(n)
        y, acc, q, s, T, bits = self.spike_forward(x2, mod)
        if self.context.collect:
            nnz = spike_count(q, self.config.encoding, bits[:, None]).sum(dim=1)
            valid = self._valid(n)
            for m in (0, 1):
                sel = (mod == m) & valid
                k = int(sel.sum())
                if k:
                    self.stats.tokens[m] += k
                    self.stats.spikes[m] += int(nnz[sel].sum())
                    self.stats.t_elements[m] += int(T[sel].sum()) * self.in_features
        return y.to(x.dtype).reshape(*lead, self.out_features)

    # -- static scales -----------------------------------------------------------------------

    _CALIB_CAP = 1 << 20  # values kept per modality for a percentile (a strided subsample beyond)

    def _record(self, x2, mod, valid):
        xr = torch_fwht(x2, self.block) if self.block else x2
        if self.needs_hessian:
            xv = xr[valid]
            h = xv.T @ xv
            self._hessian = h if self._hessian is None else self._hessian + h
        for m in (0, 1):
            a = xr[(mod == m) & valid].abs()
            if not a.numel():
                continue
            if self.config.act_scale != "static":
                continue
            if self.config.static_percentile >= 100:
                self._calib[m].append(a.max().reshape(1))
            else:
                a = a.reshape(-1)
                step = max(1, a.numel() // self._CALIB_CAP)
                self._calib[m].append(a[::step])

    def finish_calibration(self):
        """Set ``static_scales`` from the recorded ranges (``numerics.static_scale``), and the
        GPTQ weights from the recorded Hessian (``weight_quantizer="gptq"``)."""
        if self.needs_hessian:
            from .gptq import gptq_quantize

            if self._hessian is None:
                raise ValueError(f"{self.name}: GPTQ saw no calibration tokens")
            W = self.w_float.numpy()
            Wr = lq.rotate_weight(W) if self.block else W
            w, s_w = gptq_quantize(Wr, self.config.w_bits, self._hessian.numpy())
            self.w_int.copy_(torch.from_numpy(w.astype(np.float64)))
            self.s_w.copy_(torch.from_numpy(s_w))
            if self._weight_cache is not None:
                self._weight_cache[self._cache_key] = (w, s_w)
            self.needs_hessian, self._hessian = False, None
        scales = {}
        for m, name in enumerate(MODALITIES):
            if self._calib[m] and self.config.act_scale == "static":
                vals = torch.cat(self._calib[m]).numpy()
                b = self.config.act_bits(name, self.layer_key)
                scales[name] = nx.static_scale(vals, b, self.config.static_percentile)
        self.static_scales = scales or None
        self._calib = [[], []]
        return scales

    # -- export ------------------------------------------------------------------------------

    def integer_params(self):
        """Integers and scales of this layer, as the integer export path uses them."""
        return dict(w=self.w_int.numpy().astype(np.int64), s_w=self.s_w.numpy().copy(),
                    bias=None if self.bias64 is None else self.bias64.numpy().copy(),
                    block=self.block, static_scales=self.static_scales)


# --------------------------------------------------------------------------------------------
# Spiked KV cache
# --------------------------------------------------------------------------------------------

def kv_integer_scores(q_int, k_int):
    """Integer scores ``q_int . k_int`` [..., Sq, Sk] of float64 integer tensors (exact).

    This is what :func:`numerics.popcount_score` computes from the tc-lif bit planes with AND
    and popcount; ``tests/sw/test_spike_modules.py`` checks the two agree.
    """
    return q_int @ k_int.transpose(-1, -2)


@dataclass
class KVStats:
    """Spike counts of the K and V planes held in the cache (one attention layer)."""
    k_spikes: int = 0
    v_spikes: int = 0
    elements: int = 0   # per-plane elements of K (= of V): tokens x kv heads x head_dim
    steps: int = 0      # T_kv
    score_ops: int = 0  # AND/popcount word pairs: Tq x Tk x q tokens x keys x heads x words

    def reset(self):
        self.k_spikes = self.v_spikes = self.elements = self.score_ops = 0


def spiked_kv_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention with a spiked KV cache (a transformers attention function).

    ``module._spikemllm_kv`` = ``(kv_bits, KVStats, SpikeContext)``; modules without it (or a
    context not in ``spike`` mode) run eager float attention. Scores: ``(q_int . k_int) * s_q * s_k * scaling`` plus the mask; softmax
    in float; output ``P @ (v_int * s_v)``.
    """
    spec = getattr(module, "_spikemllm_kv", None)
    groups = getattr(module, "num_key_value_groups", 1)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    dtype = query.dtype
    k = key.to(torch.float64)
    v = value.to(torch.float64)
    qf = query.to(torch.float64)
    if spec is not None and spec[2].mode != "spike":
        spec = None
    if spec is not None:
        bits, stats, ctx = spec
        qm = float(nx.qmax(bits))
        q_int, s_q = quantize_per_token(qf, qm)
        k_int, s_k = quantize_per_token(k, qm)
        v_int, s_v = quantize_per_token(v, qm)
        if ctx.collect:
            bb = torch.tensor(bits)
            B, H, S, d = k.shape
            w = torch.ones(B, 1, S, 1, dtype=torch.float64)
            if ctx.valid is not None and ctx.valid.numel() == B * S:
                w = ctx.valid.reshape(B, 1, S, 1).to(torch.float64)
            n_tok = int(w.sum())
            stats.k_spikes += int((spike_count(k_int, "tc-lif", bb) * w).sum())
            stats.v_spikes += int((spike_count(v_int, "tc-lif", bb) * w).sum())
            stats.elements += n_tok * H * d
            stats.steps = bits - 1
            # AND/popcount over 64-bit words, every plane pair, every (query, key) pair that is
            # not masked out (causal: about half), every query head
            words = -(-d // 64)
            stats.score_ops += (bits - 1) ** 2 * query.shape[1] * words * (n_tok * (n_tok + B)) // (2 * B)
        k_int = k_int.repeat_interleave(groups, dim=1) if groups > 1 else k_int
        s_k = s_k.repeat_interleave(groups, dim=1) if groups > 1 else s_k
        v_deq = v_int * s_v
        v_deq = v_deq.repeat_interleave(groups, dim=1) if groups > 1 else v_deq
        scores = kv_integer_scores(q_int, k_int) * s_q * s_k.transpose(-1, -2) * scaling
    else:
        kk = k.repeat_interleave(groups, dim=1) if groups > 1 else k
        v_deq = v.repeat_interleave(groups, dim=1) if groups > 1 else v
        scores = qf @ kk.transpose(-1, -2) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask[..., : k.shape[-2]].to(torch.float64)
    probs = torch.softmax(scores, dim=-1)
    out = (probs @ v_deq).transpose(1, 2).contiguous().to(dtype)
    return out, None


_registered = False


def register_spiked_kv():
    """Register :func:`spiked_kv_attention` (and the eager additive mask) with transformers."""
    global _registered
    if _registered:
        return KV_ATTENTION_NAME
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(KV_ATTENTION_NAME, spiked_kv_attention)
    AttentionMaskInterface.register(KV_ATTENTION_NAME, eager_mask)
    _registered = True
    return KV_ATTENTION_NAME
