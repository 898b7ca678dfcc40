"""Golden vectors: one real layer's integers, in files a testbench or an FPGA flow can load.

``spikemllm golden`` takes one real linear layer (a tile of LANES output channels) or one
decoder attention layer of a model, runs a fixed input through it, and writes a directory:

* ``manifest.json``: schema version, model and layer, the full converter configuration, the
  hardware parameters, scales, theta, T per token, modality per token, shapes and dtypes of
  every array and the SHA-256 and size of every file;
* linear: ``weights.hex``/``weights.npz`` (weight memory rows), ``events_in.hex``/
  ``events_in.npz`` (input address events), ``expected_acc.hex``, ``expected_out.hex`` and
  ``expected.npz`` (accumulators and output events of the TC-LIF firing unit);
* attention: Q/K/V tc-lif bit planes (``q_pos.hex`` ...) and the AND/popcount Q.K scores
  (``scores.hex``), with ``kv.npz``.

With ``weight_quantizer="gptq"`` (the default) the weights are the converter's own integers:
``convert`` restricted to the exported linear, its calibration pass on the converter's
calibration workload, then ``SpikeLinear.integer_params()``; the manifest's ``weights``
section records the quantiser and the calibration source.

``spikemllm golden --verify DIR`` re-checks sizes, hashes, the schema version, shapes and
dtypes, that every ``.hex`` agrees with its ``.npz``, and replays the vectors through the
numerics reference. The full format is in ``docs/golden-vectors.md``.

Files are byte-for-byte reproducible (no timestamps; ``.npz`` written with fixed zip
metadata; sorted JSON keys) and written atomically (temporary directory, then rename).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikemllm.fsutil import atomic_dir

from . import numerics as nx
from .config import ConverterConfig, MODALITIES
from .events import (EVENT_DTYPE, MODALITY_VISION, EventLayout, accumulate_events,
                     events_to_spikes, fire_events, pack_weight_rows, spikes_to_events,
                     unpack_weight_rows)

__all__ = ["SCHEMA", "SCHEMA_VERSION", "GoldenError", "GoldenVectors", "VerifyReport",
           "export_golden", "verify_golden", "load_golden", "theta_rule",
           "DESCRIPTION", "add_arguments", "run"]

SCHEMA = "spikemllm-golden"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
ATTN_PROJ = "attn"
#: Fixed zip entry time (the earliest a zip can hold), so .npz files are reproducible.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)

THETA_RULE = ("theta = theta_for_step(max_n max_o |acc[n, o]| / (2**T_out[n] - 1), frac_bits) over the "
              "exported tokens and lanes (2**frac_bits when every accumulator is 0): the largest "
              "accumulator maps to the top of its token's output grid")


class GoldenError(ValueError):
    """A golden directory is invalid; ``file`` names the offending file."""

    def __init__(self, file, problem):
        self.file = str(file)
        self.problem = problem
        super().__init__(f"{self.file}: {problem}")


# --------------------------------------------------------------------------------------------
# Encodings of arrays into files
# --------------------------------------------------------------------------------------------

def _digits(bits):
    return max(1, -(-int(bits) // 4))


def _hex_bytes(words, bits):
    """``$readmemh`` text: one word per line, fixed width, lower case, MSB first."""
    d = _digits(bits)
    return "".join(f"{int(w):0{d}x}\n" for w in words).encode("ascii")


def _to_unsigned(values, bits):
    mask = (1 << bits) - 1
    return [int(v) & mask for v in np.asarray(values, dtype=np.int64).ravel()]


def _parse_hex(data, bits, count, file):
    """Strictly parse a ``.hex`` file written by :func:`_hex_bytes` into a list of ints."""
    d = _digits(bits)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as e:
        raise GoldenError(file, f"not ASCII text (byte {e.start})") from None
    if text and not text.endswith("\n"):
        raise GoldenError(file, "truncated: the last line has no newline")
    lines = text.split("\n")[:-1] if text else []
    if len(lines) != count:
        raise GoldenError(file, f"has {len(lines)} lines, expected {count}")
    out = []
    for k, line in enumerate(lines):
        if len(line) != d:
            raise GoldenError(file, f"line {k + 1}: {len(line)} digits, expected {d}")
        try:
            v = int(line, 16)
        except ValueError:
            raise GoldenError(file, f"line {k + 1}: {line!r} is not hexadecimal") from None
        if line != line.lower() or v >> bits:
            raise GoldenError(file, f"line {k + 1}: {line!r} is not a {bits}-bit lower-case hex word")
        out.append(v)
    return out


def _to_signed(words, bits):
    words = np.asarray([int(w) for w in words], dtype=object)
    top = 1 << (bits - 1)
    return np.asarray([w - (1 << bits) if w & top else w for w in words], dtype=np.int64)


def _plane_words(planes):
    """bool [..., d] -> one int per row, bit i = element i (LSB = element 0)."""
    p = np.asarray(planes, dtype=bool)
    packed = np.packbits(p.reshape(-1, p.shape[-1]), axis=-1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def _plane_pair_words(pos, neg):
    """KV-cache memory words: pos plane in the low head_dim bits, neg plane above (as the RTL)."""
    d = np.asarray(pos).shape[-1]
    return [p | (n << d) for p, n in zip(_plane_words(pos), _plane_words(neg))]


def _words_to_planes(words, shape):
    d = shape[-1]
    nbytes = -(-d // 8)
    raw = np.frombuffer(b"".join(int(w).to_bytes(nbytes, "little") for w in words), dtype=np.uint8)
    bits = np.unpackbits(raw.reshape(-1, nbytes), axis=-1, bitorder="little")[:, :d]
    return bits.astype(bool).reshape(shape)


def _rows_to_bytes(rows, row_bits):
    nbytes = -(-row_bits // 8)
    return np.frombuffer(b"".join(int(r).to_bytes(nbytes, "little") for r in rows),
                         dtype=np.uint8).reshape(len(rows), nbytes)


def _npz_bytes(arrays):
    """np.savez-compatible archive with fixed entry order and metadata (reproducible bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            arr = np.ascontiguousarray(arrays[name])
            body = io.BytesIO()
            np.lib.format.write_array(body, arr, allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
            info.create_system = 3
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_STORED
            zf.writestr(info, body.getvalue())
    return buf.getvalue()


def _array_spec(arr):
    return {"dtype": str(arr.dtype), "shape": [int(s) for s in arr.shape]}


def _canonical(obj):
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n").encode("ascii")


def _manifest_bytes(manifest):
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    body["manifest_sha256"] = hashlib.sha256(_canonical(body)).hexdigest()
    return _canonical(body)


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _layout_dict(layout):
    return {"in_max": layout.in_max, "t_max": layout.t_max, "width": layout.width,
            "fields_lsb_first": [[n, w] for n, w in layout.fields]}


# --------------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------------

@dataclass
class GoldenVectors:
    """One golden directory, loaded (see ``docs/golden-vectors.md`` for every field).

    Linear fields are ``None`` for ``kind == "attention"`` and attention fields are ``None``
    for ``kind == "linear"``.

    Attributes
    ----------
    manifest : dict
    kind : str
        ``"linear"`` or ``"attention"``.
    lanes, w_bits, in_features, t_max, in_max : int
        Hardware parameters the vectors were made for (``in_features`` = weight rows used).
    weights : int64 [lanes, in_features]
        The weight tile (lanes beyond ``lanes_valid`` are zero).
    layout : EventLayout
        Input event layout ``EventLayout(in_max, t_max)``.
    out_layout : EventLayout
        Output event layout ``EventLayout(lanes, t_max)`` (index = lane).
    events : EVENT_DTYPE array
        Input events.
    T_in, modality : int64 [N]
    s_x : float64 [N]
    s_w, bias : float64 [lanes]
    expected_acc : int64 [N, lanes]
    theta, frac_bits : int
    T_out : int64 [N]
        Output T per token (Tt for text tokens, Tv for vision tokens).
    t_text_out, t_vision_out : int
        The firing unit's Tt/Tv registers.
    expected_out_events : EVENT_DTYPE array
    expected_q_out : int64 [N, lanes]
        Spike counts the output events encode.
    horner : bool
        True for tc-lif input (doubling at each step end), False for ternary.
    q_pos, q_neg : bool [queries, heads, t_kv, head_dim]
    k_pos, k_neg, v_pos, v_neg : bool [heads, tokens, t_kv, head_dim]
    expected_scores : int64 [queries, heads, tokens]
    t_kv, head_dim, heads : int
    """
    manifest: dict
    kind: str
    lanes: int
    w_bits: int
    in_features: int | None
    t_max: int
    in_max: int
    weights: np.ndarray | None
    layout: EventLayout
    events: np.ndarray | None
    T_in: np.ndarray | None
    modality: np.ndarray
    expected_acc: np.ndarray | None
    theta: int | None
    frac_bits: int
    T_out: np.ndarray | None
    t_text_out: int | None
    t_vision_out: int | None
    expected_out_events: np.ndarray | None
    out_layout: EventLayout | None = None
    expected_q_out: np.ndarray | None = None
    s_x: np.ndarray | None = None
    s_w: np.ndarray | None = None
    bias: np.ndarray | None = None
    horner: bool | None = None
    q_pos: np.ndarray | None = None
    q_neg: np.ndarray | None = None
    k_pos: np.ndarray | None = None
    k_neg: np.ndarray | None = None
    v_pos: np.ndarray | None = None
    v_neg: np.ndarray | None = None
    expected_scores: np.ndarray | None = None
    t_kv: int | None = None
    head_dim: int | None = None
    heads: int | None = None

    @property
    def T(self):
        """Alias of :attr:`T_out`: the T per token the firing unit's Tt/Tv registers select."""
        return self.T_out


@dataclass
class VerifyReport:
    """What :func:`verify_golden` checked (it raises :class:`GoldenError` on the first failure)."""
    directory: str
    kind: str
    files: list
    checks: list = field(default_factory=list)

    def summary(self):
        lines = [f"golden {self.directory}: OK ({self.kind}, {len(self.files)} files)"]
        lines += [f"  ok  {c}" for c in self.checks]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Building the vectors
# --------------------------------------------------------------------------------------------

def theta_rule(acc, T_out, frac_bits):
    """The documented static theta (see :data:`THETA_RULE`)."""
    acc = np.asarray(acc, dtype=np.int64)
    T_out = np.asarray(T_out, dtype=np.int64)
    if acc.size == 0:
        return 1 << frac_bits
    peak = float(np.max(np.abs(acc).max(axis=1) / ((np.int64(1) << T_out) - 1).astype(np.float64)))
    if peak == 0:
        return 1 << frac_bits
    return nx.theta_for_step(peak, frac_bits)


def _rotate(x, W, rotation):
    """Block Hadamard of x and W (as the converter's SpikeLinear: any rotation but 'none')."""
    from . import layer_quant as lq

    if rotation == "none":
        return np.asarray(x, np.float64), np.asarray(W, np.float64), 0
    return lq.rotate(x), lq.rotate_weight(W), nx.hadamard_block_size(W.shape[1])


def _fold_gamma(loaded, cap):
    """``gamma-folded``: the feeding norm's affine moves into the layer (as ``convert`` does).

    With the norm output ``x = gamma * xhat + beta``: ``W' = W * gamma``, ``b' = b + W @ beta``
    and the layer quantises ``xhat = (x - beta) / gamma``. Layers no norm feeds are unchanged.
    Returns ``(x_all, W, bias, norm name or None)``.
    """
    import torch

    from .convert import norm_feeding

    feed = norm_feeding(loaded.model, loaded.family)
    if cap.module not in feed:
        return cap.x_all, cap.weight, cap.bias, None
    norm, rep, _ = feed[cap.module]
    nm = loaded.model.get_submodule(norm)
    g = nm.weight.detach().to(torch.float64).numpy()
    be = None if getattr(nm, "bias", None) is None else nm.bias.detach().to(torch.float64).numpy()
    if rep not in (None, 1):
        g, be = np.tile(g, rep), (None if be is None else np.tile(be, rep))
    if np.any(g == 0):
        raise ValueError(f"gamma-folded: norm {norm!r} has a zero gamma; use --rotation gamma-aligned")
    W, bias, x = cap.weight * g[None, :], cap.bias, cap.x_all
    if be is not None:
        bias = (np.zeros(W.shape[0]) if bias is None else bias) + cap.weight @ be
        x = x - be[None, :]
    return x / g[None, :], W, bias, norm


def config_layer_key(layer, tower):
    """Key of ``config.layer_t`` for a layer, as the converter names it: "L" or "visual.L"."""
    return str(layer) if tower == "text" else f"visual.{layer}"


def _token_T_out(config, modality, layer_key):
    t_text = config.timesteps("text", layer_key)
    t_vision = config.timesteps("vision", layer_key)
    return np.where(np.asarray(modality) == MODALITY_VISION, t_vision, t_text).astype(np.int64), t_text, t_vision


def _calibration_source(workload):
    """What the converter's calibration pass ran on: description, token count, SHA-256 of the inputs."""
    h = hashlib.sha256()
    tokens = 0
    for b in workload.calib_batches:
        for k in sorted(b["inputs"]):
            v = b["inputs"][k]
            if hasattr(v, "numpy"):
                a = np.ascontiguousarray(v.detach().cpu().numpy())
                h.update(f"{k}:{a.dtype}:{a.shape};".encode())
                h.update(a.tobytes())
        tokens += int(b["valid"].sum())
    what = {"encoder": "sw/corpus.py calibration_sentences()",
            "causal-lm": "sw/corpus.py CALIBRATION_STORY",
            "vlm": "sw/corpus.py CALIBRATION_STORY + synthetic image (seed 7)"}[workload.kind]
    return {"workload": f"fidelity.make_workload(model).calib_batches: {what}",
            "batches": len(workload.calib_batches), "valid_tokens": tokens, "inputs_sha256": h.hexdigest()}


def _converter_weights(loaded, module, config):
    """The converter's GPTQ integers of linear ``module``: ``convert`` restricted to that layer,
    then the converter's calibration pass (``spikemllm convert``'s workload) and
    ``SpikeLinear.integer_params()``. Calibration runs the layers in float, so the layer sees
    exactly the inputs it sees when the whole model converts."""
    from .convert import convert
    from .fidelity import make_workload

    cm = convert(loaded, config, filter=lambda n: n == module)
    if [l.name for l in cm.layers] != [module]:
        raise ValueError(f"{module} is not a linear the converter converts (config.skip {config.skip})")
    workload = make_workload(loaded)
    cm.calibrate(lambda m: workload.run_calibration(m, cm.context))
    p = cm.layers[0].integer_params()
    p["source"] = ("converter: convert(model, config, filter=<this linear>), ConvertedModel.calibrate on "
                   "the calibration workload (Hessian of the layer's rotated float inputs), "
                   "SpikeLinear.integer_params()")
    p["calibration"] = _calibration_source(workload)
    return p


def _build_linear(loaded, cap, config, hw, layer_key, tile):
    from . import layer_quant as lq

    if config.encoding not in ("tc-lif", "ternary"):
        raise ValueError(f"golden export needs encoding 'tc-lif' or 'ternary' (the PE array has no "
                         f"zero-point correction for 'rate'), not {config.encoding!r}")
    if config.w_bits > hw.w_bits:
        raise ValueError(f"converter w_bits {config.w_bits} does not fit the hardware's --w-bits {hw.w_bits}")
    folded_norm = None
    x_in, W_in, b_in = cap.x_all, cap.weight, cap.bias
    if config.rotation == "gamma-folded":
        x_in, W_in, b_in, folded_norm = _fold_gamma(loaded, cap)
    x_all, W, block = _rotate(x_in, W_in, config.rotation)
    out_f, in_f = W.shape
    if in_f > hw.in_max:
        raise ValueError(f"layer has {in_f} input features, more than --in-max {hw.in_max}")
    n_tiles = -(-out_f // hw.lanes)
    if isinstance(tile, bool) or not isinstance(tile, int) or not 0 <= tile < n_tiles:
        raise ValueError(f"--tile must be in 0..{n_tiles - 1} ({out_f} outputs / {hw.lanes} lanes), not {tile!r}")
    lo, hi = tile * hw.lanes, min(out_f, (tile + 1) * hw.lanes)
    valid = hi - lo
    if config.weight_quantizer == "gptq":
        conv = _converter_weights(loaded, cap.module, config)
        w_q, s_w_q = conv["w"][lo:hi], conv["s_w"][lo:hi]
        # the converter rotated / folded this layer as golden does: same mse scales, same bias
        _, s_mse = lq.quantize_weights(W[lo:hi], config.w_bits, "mse")
        b_conv = None if conv["bias"] is None else conv["bias"][lo:hi]
        b_here = None if b_in is None else b_in[lo:hi]
        if (conv["w"].shape != W.shape or conv["block"] != block or not np.allclose(s_w_q, s_mse, rtol=1e-12, atol=0)
                or (b_conv is None) != (b_here is None)
                or (b_conv is not None and not np.allclose(b_conv, b_here, rtol=1e-12, atol=1e-15))):
            raise RuntimeError(f"{cap.module}: the converter's layer disagrees with golden's rotation/gamma handling")
        weights_info = {"quantizer": "gptq", "source": conv["source"], "calibration": conv["calibration"]}
    else:
        w_q, s_w_q = lq.quantize_weights(W[lo:hi], config.w_bits, config.weight_quantizer)
        weights_info = {"quantizer": config.weight_quantizer,
                        "source": f"layer_quant.quantize_weights(W, {config.w_bits}, {config.weight_quantizer!r}) "
                                  f"of the (rotated{', gamma-folded' if folded_norm else ''}) float weights",
                        "calibration": None}
    w = np.zeros((hw.lanes, in_f), dtype=np.int64)
    s_w = np.ones(hw.lanes, dtype=np.float64)
    bias = np.zeros(hw.lanes, dtype=np.float64)
    w[:valid], s_w[:valid] = w_q, s_w_q
    if b_in is not None:
        bias[:valid] = b_in[lo:hi]
    mod = cap.modality
    static_scales = None
    if config.act_scale == "static":
        # calibrated on every token of the capture run, per modality
        static_scales = {}
        for m, name in enumerate(MODALITIES):
            sel = cap.modality_all == m
            if sel.any():
                static_scales[name] = nx.static_scale(x_all[sel], config.act_bits(name, layer_key),
                                                      config.static_percentile)
    x_sel = x_all[cap.positions]
    enc = lq.encode_activations(x_sel, config, mod, layer_key, static_scales)
    if int(enc.T.max()) > hw.t_max:
        raise ValueError(f"tokens need T up to {int(enc.T.max())} steps, more than --t-max {hw.t_max}")
    events = spikes_to_events(enc.spikes, enc.T, mod)
    layout = EventLayout(hw.in_max, hw.t_max)
    horner = config.encoding == "tc-lif"
    acc = accumulate_events(events, w, horner=horner)
    acc_ref, y_spike, sops = lq.linear_integer_path(enc, w, s_w, config.encoding, bias)
    if not np.array_equal(acc, acc_ref):  # two independent paths of the reference disagree
        raise RuntimeError("accumulate_events and linear_integer_path disagree; numerics bug")
    T_out, t_text, t_vision = _token_T_out(config, mod, layer_key)
    if int(T_out.max()) > hw.t_max:
        raise ValueError(f"output T up to {int(T_out.max())} exceeds --t-max {hw.t_max}")
    theta = theta_rule(acc, T_out, hw.frac_bits)
    if theta >= 1 << hw.theta_bits:
        raise ValueError(f"theta {theta} does not fit {hw.theta_bits} bits; lower --frac-bits")
    out_layout = EventLayout(hw.lanes, hw.t_max)
    out_events, q_out = fire_events(acc, theta, hw.frac_bits, T_out, mod)
    y_float = cap.x @ cap.weight[lo:hi].T + (0 if cap.bias is None else cap.bias[lo:hi])
    err = float(np.linalg.norm(y_spike[:, :valid] - y_float) / max(np.linalg.norm(y_float), 1e-30))

    rows = pack_weight_rows(w, hw.w_bits)
    in_words = layout.pack(events)
    out_words = out_layout.pack(out_events)
    arrays = {
        "weights.npz": {"w": w.astype(np.int8 if hw.w_bits <= 8 else np.int16),
                        "rows": _rows_to_bytes(rows, hw.row_bits), "s_w": s_w, "bias": bias},
        "events_in.npz": {"events": events, "words": in_words, "T_in": enc.T.astype(np.int64),
                          "modality": mod.astype(np.int64), "s_x": enc.s_x.astype(np.float64),
                          "positions": cap.positions.astype(np.int64)},
        "expected.npz": {"acc": acc, "q_out": q_out.astype(np.int64), "events_out": out_events,
                         "words_out": out_words, "T_out": T_out, "y_spike": y_spike,
                         "y_float": np.pad(y_float, ((0, 0), (0, hw.lanes - valid)))},
    }
    hexes = {
        "weights.hex": (rows, hw.row_bits, "weight memory row i (input feature i): lane L at bits "
                        "[L*w_bits +: w_bits], two's complement"),
        "events_in.hex": ([int(v) for v in in_words], layout.width, "input events, one per line, EventLayout(in_max, t_max)"),
        "expected_acc.hex": (_to_unsigned(acc, hw.acc_bits), hw.acc_bits,
                             "accumulator of token n, lane L at line n*lanes + L, two's complement"),
        "expected_out.hex": ([int(v) for v in out_words], out_layout.width,
                             "output events of the firing unit, one per line, EventLayout(lanes, t_max)"),
    }
    info = {
        "kind": "linear",
        "layer": {"in_features": in_f, "out_features": out_f, "tile": tile, "tiles": n_tiles,
                  "out_channels": [lo, hi], "lanes_valid": valid, "has_bias": b_in is not None,
                  "rotation_block": block, "folded_norm": folded_norm, "horner": horner},
        "weights": weights_info,
        "scales": {"s_w": [float(v) for v in s_w], "s_x": [float(v) for v in enc.s_x],
                   "static_scales": static_scales, "theta": int(theta), "frac_bits": hw.frac_bits,
                   "theta_rule": THETA_RULE,
                   "dequant": "y[n, L] = acc[n, L] * s_x[n] * s_w[L] + bias[L]"},
        "tokens": {"count": int(len(mod)), "modality": [int(v) for v in mod],
                   "T_in": [int(v) for v in enc.T], "T_out": [int(v) for v in T_out],
                   "t_text_out": int(t_text), "t_vision_out": int(t_vision)},
        "event_layout_in": _layout_dict(layout),
        "event_layout_out": _layout_dict(out_layout),
        "stats": {"events_in": int(len(events)), "spikes_in": int(np.count_nonzero(enc.spikes)),
                  "sops": int(sops), "events_out": int(len(out_events)),
                  "spikes_out": int((out_events["empty"] == 0).sum()),
                  "rel_err_vs_float": err},
    }
    return arrays, hexes, info


def _build_attention(cap, config, hw, n_heads_out, layer_key):
    if config.kv_bits == 0:
        raise ValueError("--proj attn needs kv_bits > 0 (the spiked KV cache is disabled in the config)")
    bits = config.kv_bits
    t_kv = nx.timesteps("tc-lif", bits)
    n_q_heads, n_kv = cap.query.shape[0], cap.key.shape[0]
    if not 1 <= n_heads_out <= n_kv:
        raise ValueError(f"--heads must be in 1..{n_kv} (KV heads of this layer), not {n_heads_out!r}")
    group = n_q_heads // n_kv
    q_heads = [h * group for h in range(n_heads_out)]  # first query head of each KV group
    pos = cap.positions
    Q = cap.query[q_heads][:, pos].transpose(1, 0, 2)   # [N, heads, d]
    K = cap.key[:n_heads_out][:, pos]                    # [heads, N, d]
    V = cap.value[:n_heads_out][:, pos]
    q_int, s_q = nx.quantize_kv(Q, bits)
    k_int, s_k = nx.quantize_kv(K, bits)
    v_int, s_v = nx.quantize_kv(V, bits)
    planes = {}
    for name, ints in (("q", q_int), ("k", k_int), ("v", v_int)):
        p, n = nx.to_bit_planes(ints, bits)  # [T, a, b, d]
        planes[name + "_pos"] = np.moveaxis(p, 0, 2)
        planes[name + "_neg"] = np.moveaxis(n, 0, 2)
    N, d = Q.shape[0], Q.shape[-1]
    scores = _scores(planes["q_pos"], planes["q_neg"], planes["k_pos"], planes["k_neg"])
    if not np.array_equal(scores, np.einsum("nhd,hmd->nhm", q_int, k_int)):
        raise RuntimeError("popcount_score disagrees with the integer dot product; numerics bug")
    bound = ((1 << t_kv) - 1) ** 2 * d
    score_bits = bound.bit_length() + 1
    arrays = {"kv.npz": {**planes, "q_int": q_int, "k_int": k_int, "v_int": v_int,
                         "s_q": s_q[..., 0], "s_k": s_k[..., 0], "s_v": s_v[..., 0],
                         "scores": scores, "modality": cap.modality.astype(np.int64),
                         "positions": pos.astype(np.int64)}}
    hexes = {}
    for x in ("q", "k", "v"):
        order = ("line (n*heads + h)*t_q + t: query n, head h, plane t" if x == "q" else
                 "line (h*tokens + n)*t_kv + t: head h, token n, plane t")
        words = _plane_pair_words(planes[x + "_pos"], planes[x + "_neg"])
        hexes[x + "_planes.hex"] = (words, 2 * d, f"{x.upper()} plane pair {{neg, pos}}: pos element i at bit i, "
                                                   f"neg element i at bit head_dim + i; {order}")
    hexes["scores.hex"] = (_to_unsigned(scores, score_bits), score_bits,
                           "score of query n, head h, key m at line (n*heads + h)*tokens + m, two's complement")
    hw_kv = {"t_kv": t_kv, "head_dim": d, "heads": n_heads_out}
    info = {
        "kind": "attention",
        "attention": {"q_heads": q_heads, "kv_heads": list(range(n_heads_out)), "head_dim": d,
                      "heads": n_heads_out, "kv_bits": bits, "t_kv": t_kv, "t_q": t_kv,
                      "score_bits": score_bits, "causal_mask_applied": False,
                      "rope": "applied (Q and K as they enter the attention kernel)",
                      "score_float": "scores[n, h, m] * s_q[n, h] * s_k[h, m] / sqrt(head_dim)"},
        "scales": {"s_q": s_q[..., 0].tolist(), "s_k": s_k[..., 0].tolist(), "s_v": s_v[..., 0].tolist(),
                   "frac_bits": hw.frac_bits},
        "tokens": {"count": int(N), "modality": [int(v) for v in cap.modality]},
        "stats": {"q_spikes": int(planes["q_pos"].sum() + planes["q_neg"].sum()),
                  "k_spikes": int(planes["k_pos"].sum() + planes["k_neg"].sum())},
    }
    return arrays, hexes, info, hw_kv


def _scores(q_pos, q_neg, k_pos, k_neg):
    """[queries, heads, tokens] scores from planes laid out like :class:`GoldenVectors`."""
    nq, heads = q_pos.shape[:2]
    out = np.zeros((nq, heads, k_pos.shape[1]), dtype=np.int64)
    for h in range(heads):
        qp = np.moveaxis(q_pos[:, h], 1, 0)  # [Tq, queries, d]
        qn = np.moveaxis(q_neg[:, h], 1, 0)
        kp = np.moveaxis(k_pos[h], 1, 0)     # [Tk, tokens, d]
        kn = np.moveaxis(k_neg[h], 1, 0)
        out[:, h] = nx.popcount_score(qp, qn, kp, kn)
    return out


def _model_provenance(loaded, spec):
    prov = {"spec": str(spec), "family": loaded.family, "kind": loaded.kind}
    src = Path(loaded.source)
    if src.is_dir():
        prov["weights_sha256"] = {p.name: _sha256(p.read_bytes()) for p in sorted(src.glob("*.safetensors"))}
    else:
        prov["source"] = loaded.source
    return prov


def _hw_params(hw):
    from spikemllm.hw.params import HwParams

    if isinstance(hw, HwParams):
        return hw
    return HwParams.from_dict(dict(hw or {}))


def export_golden(model, layer, proj, out, *, tokens=8, modality="text", tower="text", tile=0,
                  heads=None, config=None, hw=None, force=False, loaded=None):
    """Export golden vectors of one layer into directory ``out`` (atomically); returns the Path.

    Parameters
    ----------
    model : str
        Model spec for :func:`spikemllm.sw.models.load_model` (recorded in the manifest).
    layer : int
        Layer (block) index.
    proj : str
        ``q k v o gate up down`` (text tower), ``qkv proj fc1 fc2`` (Qwen2-VL vision tower),
        or ``attn`` (decoder attention: Q/K/V planes and Q.K scores).
    out : path
        Output directory; must not exist unless ``force``.
    tokens : int
        Number of tokens exported.
    modality : str
        ``text``, ``vision`` or ``mixed`` (Qwen2-VL only for the last two).
    tower : str
        ``text`` or ``vision`` (Qwen2-VL vision blocks).
    tile : int
        Output tile: channels ``tile*lanes .. tile*lanes + lanes - 1``.
    heads : int or None
        KV heads exported for ``attn`` (at most the layer's KV heads; default min(2, KV heads)).
    config : ConverterConfig or None
    hw : HwParams, dict or None
        Hardware parameters (lanes, w_bits, t_max, in_max, frac_bits, ...).
    loaded : LoadedModel or None
        An already loaded model (skips loading ``model``).
    """
    from . import capture as cp
    from .models import load_model

    config = config or ConverterConfig()
    config.validate()
    hw = _hw_params(hw)
    out = Path(out)
    if out.exists() and not force:
        raise ValueError(f"output {str(out)!r} exists; pass --force to overwrite it")
    if loaded is None:
        loaded = load_model(model, seed=config.seed)
    key = config_layer_key(layer, tower)
    if proj == ATTN_PROJ:
        if tower != "text":
            raise ValueError("--proj attn exports a language-model attention layer (--tower text)")
        if tokens > hw.kv_depth:
            raise ValueError(f"--tokens {tokens} exceeds the KV cache depth {hw.kv_depth}")
        cap = cp.capture_attention(loaded, layer, tokens, modality)
        n_heads = min(2, cap.key.shape[0]) if heads is None else heads
        arrays, hexes, info, hw_kv = _build_attention(cap, config, hw, n_heads, key)
        if hw_kv["t_kv"] > hw.t_max:
            raise ValueError(f"kv_bits {config.kv_bits} needs {hw_kv['t_kv']} planes, more than --t-max {hw.t_max}")
        hw = dataclasses.replace(hw, **hw_kv)
    else:
        cap = cp.capture_linear(loaded, layer, proj, tokens, modality, tower)
        arrays, hexes, info = _build_linear(loaded, cap, config, hw, key, tile)
    files = {}
    specs = {}
    for name, arrs in arrays.items():
        files[name] = _npz_bytes(arrs)
        specs[name] = {"arrays": {k: _array_spec(np.asarray(v)) for k, v in sorted(arrs.items())}}
    for name, (words, bits, what) in hexes.items():
        files[name] = _hex_bytes(words, bits)
        specs[name] = {"word_bits": int(bits), "digits": _digits(bits), "lines": len(words), "content": what}
    manifest = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "generator": f"spikemllm {__import__('spikemllm').__version__}",
        "model": _model_provenance(loaded, model),
        "source": {"module": cap.module, "layer": layer, "layer_key": key, "proj": proj, "tower": tower,
                   "modality_mode": modality, "positions": [int(p) for p in cap.positions],
                   "token_ids": [int(cap.token_ids[p]) for p in cap.positions] if cap.token_ids else [],
                   "sequence_length": int(len(cap.modality_all)), "inputs": cap.inputs},
        "converter_config": config.to_dict(),
        "hardware": json.loads(hw.to_json()),
        **info,
        "files": {name: {**specs[name], "bytes": len(files[name]), "sha256": _sha256(files[name])}
                  for name in sorted(files)},
    }
    files[MANIFEST] = _manifest_bytes(manifest)
    _write_atomic(out, files, force)
    return out


def _write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_atomic(out, files, force):
    out = Path(out)
    if out.exists():
        if not force:
            raise ValueError(f"output {str(out)!r} exists; pass --force to overwrite it")
        if not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file()):
            raise ValueError(f"refusing to overwrite {str(out)!r}: not a golden directory (no {MANIFEST})")
    with atomic_dir(out) as tmp:
        for name in sorted(files):
            _write_file(tmp / name, files[name])


# --------------------------------------------------------------------------------------------
# Reading and verifying
# --------------------------------------------------------------------------------------------

def _read_manifest(d):
    path = d / MANIFEST
    if not path.is_file():
        raise GoldenError(path, "missing (not a golden directory)")
    data = path.read_bytes()
    try:
        m = json.loads(data.decode("ascii"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GoldenError(path, f"not valid JSON ({e})") from None
    if not isinstance(m, dict):
        raise GoldenError(path, "not a JSON object")
    if m.get("schema") != SCHEMA:
        raise GoldenError(path, f"schema is {m.get('schema')!r}, expected {SCHEMA!r}")
    if m.get("schema_version") != SCHEMA_VERSION:
        raise GoldenError(path, f"schema_version {m.get('schema_version')!r} is not supported "
                                f"(this reader understands version {SCHEMA_VERSION})")
    if _manifest_bytes(m) != data:
        stored = m.get("manifest_sha256")
        body = {k: v for k, v in m.items() if k != "manifest_sha256"}
        if stored != _sha256(_canonical(body)):
            raise GoldenError(path, "content does not match its manifest_sha256 (edited or corrupted)")
        raise GoldenError(path, "not in canonical form (bytes changed outside the JSON values)")
    return m


def _read_file(d, name, entry):
    path = d / name
    if not path.is_file():
        raise GoldenError(path, "missing")
    data = path.read_bytes()
    if len(data) != entry["bytes"]:
        what = "truncated" if len(data) < entry["bytes"] else "too long"
        raise GoldenError(path, f"{what}: {len(data)} bytes, manifest says {entry['bytes']}")
    digest = _sha256(data)
    if digest != entry["sha256"]:
        raise GoldenError(path, f"SHA-256 mismatch: {digest}, manifest says {entry['sha256']}")
    return data


def _load_npz(path, data, entry):
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zip or npy format error
        raise GoldenError(path, f"not a readable .npz ({type(e).__name__}: {e})") from None
    want = entry["arrays"]
    if sorted(arrays) != sorted(want):
        raise GoldenError(path, f"holds arrays {sorted(arrays)}, manifest lists {sorted(want)}")
    for k, spec in want.items():
        got = _array_spec(arrays[k])
        if got != spec:
            raise GoldenError(path, f"array {k!r} is {got['dtype']} {got['shape']}, manifest says "
                                    f"{spec['dtype']} {spec['shape']}")
    return arrays


def _load_dir(d, check_files=True):
    d = Path(d)
    if not d.is_dir():
        raise GoldenError(d, "not a directory")
    m = _read_manifest(d)
    files = m.get("files")
    if not isinstance(files, dict) or not files:
        raise GoldenError(d / MANIFEST, "has no 'files' table")
    if check_files:
        extra = sorted(p.name for p in d.iterdir() if p.name != MANIFEST and p.name not in files)
        if extra:
            raise GoldenError(d / extra[0], "not listed in the manifest")
    raw = {}
    for name, entry in sorted(files.items()):
        if check_files:
            raw[name] = _read_file(d, name, entry)
        else:
            raw[name] = (d / name).read_bytes()
    npz = {name: _load_npz(d / name, data, files[name]) for name, data in raw.items() if name.endswith(".npz")}
    return m, files, raw, npz


def _hex_of(d, files, raw, name):
    e = files[name]
    return _parse_hex(raw[name], e["word_bits"], e["lines"], d / name)


def _expect(cond, file, problem):
    if not cond:
        raise GoldenError(file, problem)


def _vectors_from(d, m, npz):
    hw = m["hardware"]
    hwp = _hw_params(hw)  # validates every hardware field (ranges, powers of two, types)
    _expect(hw.get("derived") == json.loads(hwp.to_json()).get("derived"), d / MANIFEST,
            "hardware.derived disagrees with the hardware parameters")
    kind = m.get("kind")
    if kind == "linear":
        _check_layer_fields(d, m, hwp)
    layout = EventLayout(hw["in_max"], hw["t_max"])
    common = dict(manifest=m, kind=kind, lanes=hw["lanes"], w_bits=hw["w_bits"], t_max=hw["t_max"],
                  in_max=hw["in_max"], layout=layout, frac_bits=hw["frac_bits"])
    if kind == "linear":
        wz, ez, xz = npz["weights.npz"], npz["events_in.npz"], npz["expected.npz"]
        tok = m["tokens"]
        return GoldenVectors(
            **common, in_features=int(m["layer"]["in_features"]), weights=wz["w"].astype(np.int64),
            events=ez["events"], T_in=ez["T_in"], modality=ez["modality"], expected_acc=xz["acc"],
            theta=int(m["scales"]["theta"]), T_out=xz["T_out"], t_text_out=int(tok["t_text_out"]),
            t_vision_out=int(tok["t_vision_out"]), expected_out_events=xz["events_out"],
            out_layout=EventLayout(hw["lanes"], hw["t_max"]), expected_q_out=xz["q_out"],
            s_x=ez["s_x"], s_w=wz["s_w"], bias=wz["bias"], horner=bool(m["layer"]["horner"]))
    if kind == "attention":
        kz = npz["kv.npz"]
        a = m["attention"]
        return GoldenVectors(
            **common, in_features=None, weights=None, events=None, T_in=None, modality=kz["modality"],
            expected_acc=None, theta=None, T_out=None, t_text_out=None, t_vision_out=None,
            expected_out_events=None, q_pos=kz["q_pos"], q_neg=kz["q_neg"], k_pos=kz["k_pos"],
            k_neg=kz["k_neg"], v_pos=kz["v_pos"], v_neg=kz["v_neg"], expected_scores=kz["scores"],
            t_kv=int(a["t_kv"]), head_dim=int(a["head_dim"]), heads=int(a["heads"]))
    raise GoldenError(d / MANIFEST, f"kind must be 'linear' or 'attention', not {kind!r}")


def _verify_linear(d, m, files, raw, npz, gv, checks):
    hw = m["hardware"]
    cfg = ConverterConfig.from_dict(m["converter_config"])
    lanes, w_bits, n_in = gv.lanes, gv.w_bits, gv.in_features
    wf, ef, xf = d / "weights.npz", d / "events_in.npz", d / "expected.npz"
    tok = m["tokens"]
    N = int(tok["count"])
    # shapes against the manifest's own numbers
    _expect(gv.weights.shape == (lanes, n_in), wf, f"w is {gv.weights.shape}, expected {(lanes, n_in)}")
    for name, arr in (("T_in", gv.T_in), ("modality", gv.modality), ("s_x", gv.s_x)):
        _expect(arr.shape == (N,), ef, f"{name} has shape {arr.shape}, expected ({N},)")
    _expect(gv.expected_acc.shape == (N, lanes), xf, f"acc has shape {gv.expected_acc.shape}, expected {(N, lanes)}")
    _expect(gv.events.dtype == EVENT_DTYPE, ef, "events do not have EVENT_DTYPE")
    _expect(gv.expected_out_events.dtype == EVENT_DTYPE, xf, "events_out do not have EVENT_DTYPE")
    for key, arr, f in (("modality", gv.modality, ef), ("T_in", gv.T_in, ef), ("T_out", gv.T_out, xf)):
        _expect(arr.tolist() == tok[key], f, f"{key} disagrees with manifest.json tokens.{key}")
    _expect(gv.s_x.tolist() == m["scales"]["s_x"], ef, "s_x disagrees with manifest.json scales.s_x")
    _expect(gv.s_w.tolist() == m["scales"]["s_w"], wf, "s_w disagrees with manifest.json scales.s_w")
    _expect(m["weights"]["quantizer"] == cfg.weight_quantizer, d / MANIFEST,
            f"weights.quantizer {m['weights']['quantizer']!r} disagrees with the config's {cfg.weight_quantizer!r}")
    checks.append(f"shapes and dtypes: weights {lanes}x{n_in}, {N} tokens, {len(gv.events)} input events")
    # weights: grid, packing, hex
    qm = nx.qmax(cfg.w_bits)
    _expect(np.abs(gv.weights).max(initial=0) <= qm, wf, f"weights outside the {cfg.w_bits}-bit grid +-{qm}")
    rows = pack_weight_rows(gv.weights, w_bits)
    _expect(np.array_equal(_rows_to_bytes(rows, lanes * w_bits), npz["weights.npz"]["rows"]), wf,
            "packed rows do not match w")
    _expect(np.array_equal(unpack_weight_rows(rows, lanes, w_bits), gv.weights), wf, "rows do not unpack to w")
    _expect(_hex_of(d, files, raw, "weights.hex") == rows, d / "weights.hex", "rows disagree with weights.npz")
    checks.append(f"weights.hex == pack_weight_rows(weights.npz w) ({len(rows)} rows of {lanes * w_bits} bits)")
    # input events: words, hex, structure
    words = gv.layout.pack(gv.events)
    _expect(np.array_equal(words, npz["events_in.npz"]["words"]), ef, "words do not match EventLayout.pack(events)")
    _expect(np.array_equal(gv.layout.unpack(words), gv.events), ef, "events do not round-trip through their words")
    _expect(_hex_of(d, files, raw, "events_in.hex") == [int(w) for w in words], d / "events_in.hex",
            "words disagree with events_in.npz")
    ev = gv.events
    ends = ev[ev["last_in_token"] == 1]
    _expect(len(ends) == N and len(ev) and ev["last_in_token"][-1] == 1, ef,
            f"event stream has {len(ends)} tokens, expected {N}")
    _expect(ends["modality"].astype(np.int64).tolist() == gv.modality.tolist(), ef,
            "event modality tags disagree with the per-token modality")
    steps = np.bincount(ev["token"], weights=ev["last_in_step"], minlength=N).astype(np.int64)
    _expect(steps.tolist() == gv.T_in.tolist(), ef, f"steps per token {steps.tolist()} disagree with T_in")
    _expect(int(ev["index"].max(initial=0)) < n_in, ef, f"an event index is beyond the {n_in} weight rows")
    _expect(np.all(ev["t"].astype(np.int64) < gv.T_in[ev["token"]]), ef, "an event's step t is beyond its token's T_in")
    checks.append(f"events_in.hex == EventLayout({gv.in_max}, {gv.t_max}).pack(events) ({gv.layout.width}-bit words); "
                  f"token/step structure matches T_in")
    # accumulators: two reference paths
    acc = accumulate_events(ev, gv.weights, horner=gv.horner)
    _expect(np.array_equal(acc, gv.expected_acc), xf, "acc disagrees with accumulate_events(events, w)")
    spikes = events_to_spikes(ev, N, n_in, int(gv.T_in.max()))
    if gv.horner:
        acc2 = nx.spike_linear(spikes, gv.weights, "tc-lif", T=gv.T_in).acc
    else:
        acc2 = nx.spike_linear(spikes, gv.weights, "ternary").acc
    _expect(np.array_equal(acc2, gv.expected_acc), xf, "acc disagrees with numerics.spike_linear")
    acc_bits = hw["derived"]["acc_bits"]
    _expect(_to_signed(_hex_of(d, files, raw, "expected_acc.hex"), acc_bits).tolist() == gv.expected_acc.ravel().tolist(),
            d / "expected_acc.hex", "accumulators disagree with expected.npz")
    checks.append("expected_acc == accumulate_events == spike_linear; expected_acc.hex agrees")
    # firing unit
    T_out, t_text, t_vision = _token_T_out(cfg, gv.modality, m["source"]["layer_key"])
    _expect(T_out.tolist() == gv.T_out.tolist(), xf, "T_out disagrees with the config's Tt/Tv for the modalities")
    _expect((t_text, t_vision) == (gv.t_text_out, gv.t_vision_out), d / MANIFEST, "t_text_out/t_vision_out disagree with the config")
    theta = theta_rule(gv.expected_acc, gv.T_out, gv.frac_bits)
    _expect(theta == gv.theta, d / MANIFEST, f"theta {gv.theta} does not follow the theta rule (gives {theta})")
    out_ev, q = fire_events(gv.expected_acc, gv.theta, gv.frac_bits, gv.T_out, gv.modality)
    _expect(np.array_equal(out_ev, gv.expected_out_events), xf, "events_out disagree with fire_events(acc)")
    _expect(np.array_equal(q, gv.expected_q_out), xf, "q_out disagrees with fire_events(acc)")
    _expect(np.array_equal(q, nx.fire(gv.expected_acc, gv.theta, gv.frac_bits, gv.T_out[:, None])), xf,
            "q_out disagrees with numerics.fire")
    out_words = gv.out_layout.pack(out_ev)
    _expect(np.array_equal(out_words, npz["expected.npz"]["words_out"]), xf, "words_out do not match events_out")
    _expect(_hex_of(d, files, raw, "expected_out.hex") == [int(w) for w in out_words], d / "expected_out.hex",
            "words disagree with expected.npz events_out")
    checks.append(f"theta {gv.theta} (F={gv.frac_bits}) follows the rule; fire_events(acc) == events_out "
                  f"({len(out_ev)} events); expected_out.hex agrees")
    y = gv.expected_acc * gv.s_x[:, None] * gv.s_w[None, :] + gv.bias[None, :]
    _expect(np.array_equal(y, npz["expected.npz"]["y_spike"]), xf, "y_spike != acc * s_x * s_w + bias")
    checks.append("y_spike == acc * s_x * s_w + bias")


def _verify_attention(d, m, files, raw, npz, gv, checks):
    kf = d / "kv.npz"
    kz = npz["kv.npz"]
    a = m["attention"]
    N, heads, t_kv, dim = int(m["tokens"]["count"]), gv.heads, gv.t_kv, gv.head_dim
    shapes = {"q_pos": (N, heads, t_kv, dim), "k_pos": (heads, N, t_kv, dim), "v_pos": (heads, N, t_kv, dim)}
    for name, shape in shapes.items():
        for nm in (name, name.replace("pos", "neg")):
            _expect(kz[nm].shape == shape and kz[nm].dtype == bool, kf, f"{nm} is {kz[nm].dtype} {kz[nm].shape}, expected bool {shape}")
    _expect(gv.modality.tolist() == m["tokens"]["modality"], kf, "modality disagrees with manifest.json")
    qm = nx.qmax(a["kv_bits"])
    for x in ("q", "k", "v"):
        p, n = kz[x + "_pos"], kz[x + "_neg"]
        _expect(not np.any(p & n), kf, f"{x} planes have a bit set in both pos and neg")
        ints = nx.from_bit_planes(np.moveaxis(p, 2, 0), np.moveaxis(n, 2, 0))
        _expect(np.array_equal(ints, kz[x + "_int"]), kf, f"{x}_pos/{x}_neg do not decode to {x}_int")
        _expect(np.abs(ints).max(initial=0) <= qm, kf, f"{x}_int outside the {a['kv_bits']}-bit grid")
        words = _hex_of(d, files, raw, x + "_planes.hex")
        mask = (1 << dim) - 1
        _expect(np.array_equal(_words_to_planes([w & mask for w in words], p.shape), p)
                and np.array_equal(_words_to_planes([w >> dim for w in words], n.shape), n),
                d / (x + "_planes.hex"), f"planes disagree with kv.npz {x}_pos/{x}_neg")
    checks.append(f"q/k/v planes ({heads} heads, {N} tokens, t_kv {t_kv}, head_dim {dim}) decode to the "
                  f"integers; .hex planes agree with kv.npz")
    scores = _scores(kz["q_pos"], kz["q_neg"], kz["k_pos"], kz["k_neg"])
    _expect(np.array_equal(scores, gv.expected_scores), kf, "scores disagree with popcount_score(planes)")
    _expect(np.array_equal(np.einsum("nhd,hmd->nhm", kz["q_int"], kz["k_int"]), gv.expected_scores), kf,
            "scores disagree with q_int . k_int")
    words = _hex_of(d, files, raw, "scores.hex")
    _expect(_to_signed(words, a["score_bits"]).tolist() == gv.expected_scores.ravel().tolist(), d / "scores.hex",
            "scores disagree with kv.npz")
    checks.append("scores == popcount_score(q planes, k planes) == q_int . k_int; scores.hex agrees")


def verify_golden(directory):
    """Check a golden directory completely; returns a :class:`VerifyReport`, raises :class:`GoldenError`.

    Checks: schema name/version and canonical, self-hashed manifest; every listed file present,
    of the listed size and SHA-256, no unlisted file; .npz array names, dtypes and shapes;
    every .hex parses strictly and equals its .npz counterpart; replay through the numerics
    reference (accumulators by two paths, theta rule, firing unit, scores by two paths).
    """
    d = Path(directory)
    with _manifest_errors(d):
        m, files, raw, npz = _load_dir(d, check_files=True)
        checks = [f"manifest schema {SCHEMA} v{SCHEMA_VERSION}, self-hash ok",
                  f"{len(files)} files: sizes and SHA-256 match"]
        gv = _vectors_from(d, m, npz)
        if gv.kind == "linear":
            _verify_linear(d, m, files, raw, npz, gv, checks)
        else:
            _verify_attention(d, m, files, raw, npz, gv, checks)
    return VerifyReport(directory=str(d), kind=gv.kind, files=[MANIFEST] + sorted(files), checks=checks)


def load_golden(directory, verify=True):
    """Load a golden directory as :class:`GoldenVectors` (after :func:`verify_golden` unless ``verify=False``)."""
    d = Path(directory)
    if verify:
        verify_golden(d)
    with _manifest_errors(d):
        m, files, raw, npz = _load_dir(d, check_files=verify)
        return _vectors_from(d, m, npz)


@contextlib.contextmanager
def _manifest_errors(d):
    """A manifest that passed its self-hash but has a missing or mistyped field -> GoldenError."""
    try:
        yield
    except GoldenError:
        raise
    except KeyError as e:  # written by something else, or edited and re-hashed
        raise GoldenError(Path(d) / MANIFEST, f"missing field {e}") from None
    except (TypeError, IndexError, AttributeError, ValueError) as e:
        raise GoldenError(Path(d) / MANIFEST, f"malformed field ({type(e).__name__}: {e})") from None


def _check_layer_fields(d, m, hw):
    """The layer fields the hardware depends on must be integers consistent with each other."""
    layer = m["layer"]
    for key in ("in_features", "out_features", "lanes_valid", "tile", "tiles"):
        v = layer[key]
        _expect(isinstance(v, int) and not isinstance(v, bool) and v >= 0, d / MANIFEST,
                f"layer.{key} must be a non-negative integer, not {v!r}")
    _expect(1 <= layer["in_features"] <= hw.in_max, d / MANIFEST,
            f"layer.in_features must be in 1..{hw.in_max} (hardware.in_max), not {layer['in_features']!r}")
    _expect(1 <= layer["lanes_valid"] <= hw.lanes, d / MANIFEST,
            f"layer.lanes_valid must be in 1..{hw.lanes} (hardware.lanes), not {layer['lanes_valid']!r}")
    _expect(layer["tiles"] == -(-layer["out_features"] // hw.lanes) and layer["tile"] < layer["tiles"],
            d / MANIFEST, f"layer.tile/tiles/out_features disagree with hardware.lanes {hw.lanes}")
    lo = layer["tile"] * hw.lanes
    _expect(layer["lanes_valid"] == min(hw.lanes, layer["out_features"] - lo), d / MANIFEST,
            f"layer.lanes_valid {layer['lanes_valid']!r} disagrees with out_features and tile")


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

DESCRIPTION = """\
Export golden vectors of one real layer, or verify an exported directory.

Export: runs a fixed input (real sentences; a synthetic image for Qwen2-VL) through MODEL,
captures the input of one linear layer (or the Q/K/V of one attention layer), converts it with
the converter's integer path (default gptq weights: the converter's integers after its
calibration pass on that layer; --weight-quantizer rtn/mse need none), and writes weights, input spike events and the expected
accumulators / output events (or KV bit-planes and Q.K scores) as .npz and $readmemh .hex
files with a manifest.json (schema, config, hardware parameters, scales, SHA-256 per file).
The directory appears atomically and the same command writes byte-identical files.

Verify: --verify DIR re-checks hashes, schema version, shapes and dtypes, .hex against .npz,
and replays everything through the numerics reference. A bad file is named in the error.

Examples:
  spikemllm golden --model minilm --layer 0 --proj q --tokens 8 --out build/golden/l0q
  spikemllm golden --verify build/golden/l0q
  spikemllm golden --model ../shared/models/tinystories-656k --layer 1 --proj attn --tokens 16 --out build/golden/ts-attn
  spikemllm golden --model tiny-qwen2vl --layer 0 --proj down --modality mixed --tokens 8 --out build/golden/qvl
See docs/golden-vectors.md for the file format.
"""


def add_arguments(p):
    from .capture import MODALITY_MODES, PROJS, VISION_PROJS

    p.add_argument("--verify", metavar="DIR", help="verify an exported directory instead of exporting")
    g = p.add_argument_group("what to export")
    g.add_argument("--model", help="minilm, tiny-llama, tiny-qwen2, tiny-qwen2vl, or a local HF checkpoint directory")
    g.add_argument("--layer", type=int, help="layer (block) index")
    g.add_argument("--proj", choices=PROJS + VISION_PROJS + (ATTN_PROJ,),
                   help="linear projection (BERT: up = intermediate, down = output), a Qwen2-VL "
                        "vision block's qkv/proj/fc1/fc2 (with --tower vision), or 'attn' for the "
                        "KV-cache case (Q/K/V planes and Q.K scores of a decoder)")
    g.add_argument("--tokens", type=int, default=8, help="number of tokens exported (default 8)")
    g.add_argument("--modality", choices=MODALITY_MODES, default="text",
                   help="which tokens: text, vision or mixed (vision/mixed need Qwen2-VL)")
    g.add_argument("--tower", choices=("text", "vision"), default="text",
                   help="Qwen2-VL: language model (text) or vision tower blocks (vision)")
    g.add_argument("--tile", type=int, default=0, help="output tile: channels TILE*LANES.. (default 0)")
    g.add_argument("--heads", type=int, help="KV heads exported with --proj attn (default: 2 or all if fewer)")
    g.add_argument("--out", help="output directory (created atomically)")
    g.add_argument("--force", action="store_true", help="overwrite an existing golden directory")
    h = p.add_argument_group("hardware parameters (as hw/params.py HwParams)")
    h.add_argument("--lanes", type=int, default=32, help="output lanes of the PE array (default 32)")
    h.add_argument("--w-bits", type=int, default=4, help="weight bits, hardware and converter (default 4)")
    h.add_argument("--t-max", type=int, default=8, help="largest T per token (default 8)")
    h.add_argument("--in-max", type=int, default=4096, help="weight memory depth / event index range (default 4096)")
    h.add_argument("--frac-bits", type=int, default=8, help="fraction bits F of theta (default 8)")
    c = p.add_argument_group("converter configuration (default: ConverterConfig defaults)")
    c.add_argument("--config", metavar="JSON", help="ConverterConfig JSON file; the flags below override it")
    c.add_argument("--encoding", choices=("tc-lif", "ternary"))
    c.add_argument("--t-text", type=int, help="T of text tokens (Tt)")
    c.add_argument("--t-vision", type=int, help="T of vision tokens (Tv)")
    c.add_argument("--rotation", choices=("gamma-aligned", "gamma-folded", "none"))
    c.add_argument("--weight-quantizer", choices=("rtn", "mse", "gptq"),
                   help="gptq (default) takes the converter's integers after its calibration pass; "
                        "rtn/mse quantise the layer directly")
    c.add_argument("--act-scale", choices=("dynamic", "static"))
    c.add_argument("--static-percentile", type=float)
    c.add_argument("--kv-bits", type=int, help="KV-cache bits (t_kv = kv_bits - 1 planes)")
    c.add_argument("--seed", type=int, help="seed for tiny random models")


def _config_from_args(args):
    base = {}
    if args.config:
        try:
            base = ConverterConfig.from_json(Path(args.config).read_text()).to_dict()
        except OSError as e:
            raise ValueError(f"--config: cannot read {args.config!r} ({e.strerror})") from None
    else:
        base["w_bits"] = args.w_bits
    for key in ("encoding", "t_text", "t_vision", "rotation", "weight_quantizer", "act_scale",
                "static_percentile", "kv_bits", "seed"):
        v = getattr(args, key)
        if v is not None:
            base[key] = v
    return ConverterConfig.from_dict(base)


def run(args):
    if args.verify:
        report = verify_golden(args.verify)
        print(report.summary())
        return 0
    missing = [f"--{n}" for n in ("model", "layer", "proj", "out") if getattr(args, n) is None]
    if missing:
        raise ValueError(f"export needs {', '.join(missing)} (or use --verify DIR)")
    config = _config_from_args(args)
    hw = dict(lanes=args.lanes, w_bits=args.w_bits, t_max=args.t_max, in_max=args.in_max,
              frac_bits=args.frac_bits)
    out = export_golden(args.model, args.layer, args.proj, args.out, tokens=args.tokens,
                        modality=args.modality, tower=args.tower, tile=args.tile, heads=args.heads,
                        config=config, hw=hw, force=args.force)
    m = json.loads((out / MANIFEST).read_text())
    s = m["stats"]
    if m["kind"] == "linear":
        print(f"wrote {out}: {m['source']['module']} tile {m['layer']['tile']} "
              f"({m['layer']['lanes_valid']} lanes x {m['layer']['in_features']} inputs), "
              f"{m['tokens']['count']} tokens, {s['events_in']} input events, {s['events_out']} output events, "
              f"theta {m['scales']['theta']}, rel. error vs float {s['rel_err_vs_float']:.4f}")
    else:
        a = m["attention"]
        print(f"wrote {out}: {m['source']['module']} {a['heads']} KV heads x {m['tokens']['count']} tokens, "
              f"t_kv {a['t_kv']}, head_dim {a['head_dim']}")
    return 0
