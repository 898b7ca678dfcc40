"""Converter configuration: a dataclass that round-trips through JSON.

Golden-vector manifests embed it whole, so a vector set always says how it was made.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from . import numerics as nx

ROTATIONS = ("gamma-aligned", "gamma-folded", "none")
# "gptq" (added by the converter, sw/gptq.py): needs calibration inputs, so its integers come
# from the converted model (SpikeLinear.integer_params), not from layer_quant.quantize_weights.
WEIGHT_QUANTIZERS = ("rtn", "mse", "gptq")
ACT_SCALES = ("dynamic", "static")
MODALITIES = ("text", "vision")


@dataclass
class ConverterConfig:
    """How a model is turned into spike form.

    Parameters
    ----------
    w_bits : int
        Weight bits (per-output-channel symmetric grid), 2..16.
    encoding : str
        Spike encoding of activations: ``rate``, ``ternary`` or ``tc-lif``.
    t_text, t_vision : int
        Timesteps per modality (MSTS; SpikeMLLM's headline Tv/Tt = 3/4). They must be valid for
        ``encoding``: the activation grid has ``bits_for_timesteps(encoding, T)`` bits
        (tc-lif: T + 1 bits).
    layer_t : dict
        Per-layer overrides ``{"<layer index>": {"text": T, "vision": T}}`` (from MSTS).
    rotation : str
        ``gamma-aligned`` (online block Hadamard on each linear's input, SDLLM's semantic
        alignment), ``gamma-folded`` (QuaRot-style: norm gamma folded into the weights first),
        or ``none``.
    weight_quantizer : str
        ``gptq`` (default: the mse scales, integers chosen by GPTQ on the converter's
        calibration inputs to cut the layer output error; needs a calibration pass), ``mse``
        (per-channel clipping ratio minimising the weight MSE; one scale per channel, so the
        hardware grid is the same for all three) or ``rtn`` (max-abs round-to-nearest).
    act_scale : str
        ``dynamic`` (per token, default) or ``static`` (per layer, calibrated; what hardware
        uses).
    static_percentile : float
        Percentile of |x| used for static calibration, in (0, 100].
    kv_bits : int
        Bits of the spiked KV cache (tc-lif planes, T_kv = kv_bits - 1); 0 disables it.
    skip : list of str
        Substrings of module names left in floating point (e.g. the LM head).
    seed : int
        Seed for anything random (tiny models, calibration sampling).
    """

    w_bits: int = 4
    encoding: str = "tc-lif"
    t_text: int = 4
    t_vision: int = 3
    layer_t: dict = field(default_factory=dict)
    rotation: str = "gamma-aligned"
    weight_quantizer: str = "gptq"
    act_scale: str = "dynamic"
    static_percentile: float = 100.0
    kv_bits: int = 5
    skip: list = field(default_factory=lambda: ["lm_head", "pooler"])
    seed: int = 0

    def __post_init__(self):
        self.validate()

    def validate(self):
        nx.check_bits(self.w_bits, "w_bits")
        if self.encoding not in nx.ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(nx.ENCODINGS)}, not {self.encoding!r}")
        for name in ("t_text", "t_vision"):
            self._check_t(getattr(self, name), name)
        if not isinstance(self.layer_t, dict):
            raise ValueError(f"layer_t must be a dict, not {self.layer_t!r}")
        for layer, per in self.layer_t.items():
            if not isinstance(per, dict) or set(per) - set(MODALITIES):
                raise ValueError(f"layer_t[{layer!r}] must map modalities {MODALITIES} to T, not {per!r}")
            for m, T in per.items():
                self._check_t(T, f"layer_t[{layer!r}][{m!r}]")
        if self.rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of {', '.join(ROTATIONS)}, not {self.rotation!r}")
        if self.weight_quantizer not in WEIGHT_QUANTIZERS:
            raise ValueError(f"weight_quantizer must be one of {', '.join(WEIGHT_QUANTIZERS)}, "
                             f"not {self.weight_quantizer!r}")
        if self.act_scale not in ACT_SCALES:
            raise ValueError(f"act_scale must be one of {', '.join(ACT_SCALES)}, not {self.act_scale!r}")
        if not isinstance(self.static_percentile, (int, float)) or not 0 < self.static_percentile <= 100:
            raise ValueError(f"static_percentile must be in (0, 100], not {self.static_percentile!r}")
        if self.kv_bits != 0:
            nx.check_bits(self.kv_bits, "kv_bits")
        if not isinstance(self.skip, list) or not all(isinstance(s, str) for s in self.skip):
            raise ValueError(f"skip must be a list of strings, not {self.skip!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, not {self.seed!r}")

    def _check_t(self, T, name):
        if isinstance(T, bool) or not isinstance(T, int):
            raise ValueError(f"{name} must be an integer, not {T!r}")
        try:
            nx.bits_for_timesteps(self.encoding, T)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None

    def timesteps(self, modality, layer=None):
        """T for a modality ("text"/"vision") at a layer index (per-layer overrides first)."""
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, not {modality!r}")
        per = self.layer_t.get(str(layer), {}) if layer is not None else {}
        return per.get(modality, self.t_text if modality == "text" else self.t_vision)

    def act_bits(self, modality, layer=None):
        """Activation grid bits implied by the encoding and the T of that modality/layer."""
        return nx.bits_for_timesteps(self.encoding, self.timesteps(modality, layer))

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self, **kw):
        return json.dumps(self.to_dict(), sort_keys=True, **kw)

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise ValueError(f"converter config must be a JSON object, not {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown converter config field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_json(cls, text):
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"converter config is not valid JSON: {e}") from None
        return cls.from_dict(d)
