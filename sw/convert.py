"""Conversion of a loaded Hugging Face model to spike form (module replacement).

:func:`convert` deep-copies the model and replaces every ``nn.Linear`` that the filter accepts
(by default all of them except names containing one of ``config.skip``) with a
:class:`~spikemllm.sw.spike_modules.SpikeLinear`:

* BERT: attention query/key/value/output.dense, intermediate.dense, output.dense;
* LLaMA / Qwen2 / Qwen2-VL text: q/k/v/o_proj, gate/up/down_proj;
* Qwen2-VL vision tower: attn.qkv, attn.proj, mlp.fc1, mlp.fc2 of every block and the merger's
  two linears (all vision tokens).

With ``rotation="gamma-folded"`` the γ (and β) of the norm that feeds a linear is folded into
that linear's weights (and bias) first (QuaRot style): pre-norm models (LLaMA, Qwen2, the
Qwen2-VL vision blocks and merger) get the norm's weight set to 1 (bias 0); BERT is post-norm
(the norm output is also the residual), so its linears undo the affine on their input instead.
With ``kv_bits > 0`` the causal LMs' attention uses the spiked KV cache.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .config import ConverterConfig
from .spike_modules import KVStats, SpikeContext, SpikeLinear, register_spiked_kv

__all__ = ["ConvertedModel", "convert", "layer_key_of", "linear_names", "norm_feeding"]

_TEXT_LAYER = re.compile(r"(?:^|\.)(?:layers|layer)\.(\d+)\.")
_VISION_BLOCK = re.compile(r"(?:^|\.)visual\.blocks\.(\d+)\.")


def layer_key_of(name):
    """``(layer_key, tower)`` of a linear module name (see :class:`SpikeLinear`)."""
    m = _VISION_BLOCK.search(name)
    if m:
        return f"visual.{m.group(1)}", "vision"
    if ".visual." in f".{name}" and "merger" in name:
        return "visual.merger", "vision"
    if ".visual." in f".{name}":
        return "visual.other", "vision"
    m = _TEXT_LAYER.search(name)
    if m:
        return m.group(1), "text"
    return "other", "text"


def linear_names(model, config: ConverterConfig, filter=None):
    """Names of the ``nn.Linear`` modules that :func:`convert` replaces, in model order."""
    out = []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear):
            continue
        if any(s in name for s in config.skip):
            continue
        if filter is not None and not filter(name):
            continue
        out.append(name)
    return out


def norm_feeding(model, family):
    """Map linear name -> (norm module name, repeat, post_norm) for γ folding.

    ``repeat`` tiles γ when the linear sees several norm outputs side by side (the Qwen2-VL
    merger); ``post_norm`` marks BERT, whose norm output is also the residual.
    """
    names = {n for n, _ in model.named_modules()}
    feed = {}
    for n in names:
        if family in ("llama", "qwen2", "qwen2_vl"):
            if n.endswith(".input_layernorm"):
                base = n[: -len("input_layernorm")]
                for p in ("q_proj", "k_proj", "v_proj"):
                    feed[base + "self_attn." + p] = (n, 1, False)
            elif n.endswith(".post_attention_layernorm"):
                base = n[: -len("post_attention_layernorm")]
                for p in ("gate_proj", "up_proj"):
                    feed[base + "mlp." + p] = (n, 1, False)
            elif re.search(r"visual\.blocks\.\d+\.norm1$", n):
                feed[n[: -len("norm1")] + "attn.qkv"] = (n, 1, False)
            elif re.search(r"visual\.blocks\.\d+\.norm2$", n):
                feed[n[: -len("norm2")] + "mlp.fc1"] = (n, 1, False)
            elif n.endswith("visual.merger.ln_q"):
                feed[n[: -len("ln_q")] + "mlp.0"] = (n, None, False)
        elif family == "bert":
            if n.endswith("embeddings.LayerNorm"):
                base = n[: -len("embeddings.LayerNorm")] + "encoder.layer.0.attention.self."
                for p in ("query", "key", "value"):
                    feed[base + p] = (n, 1, True)
            m = re.search(r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm$", n)
            if m:
                feed[n[: -len("attention.output.LayerNorm")] + "intermediate.dense"] = (n, 1, True)
            m = re.search(r"^(.*encoder\.layer\.)(\d+)\.output\.LayerNorm$", n)
            if m:
                base = f"{m.group(1)}{int(m.group(2)) + 1}.attention.self."
                for p in ("query", "key", "value"):
                    feed[base + p] = (n, 1, True)
    return {k: v for k, v in feed.items() if k in names}


@dataclass
class ConvertedModel:
    """A converted model and its spike modules.

    Attributes
    ----------
    model : torch.nn.Module
    context : SpikeContext
        Set ``context.modality`` before a Qwen2-VL forward pass.
    layers : list of SpikeLinear
        In model order.
    kv : dict
        Attention module name -> KVStats (spiked KV cache), empty when disabled.
    config : ConverterConfig
    """
    model: object
    context: SpikeContext
    layers: list
    config: ConverterConfig
    kv: dict = field(default_factory=dict)

    def reset_stats(self):
        for layer in self.layers:
            layer.stats.reset()
        for s in self.kv.values():
            s.reset()

    @property
    def needs_calibration(self):
        """True when static scales or GPTQ weights still need a calibration pass."""
        return self.config.act_scale == "static" or any(l.needs_hessian for l in self.layers)

    def calibrate(self, run_fn):
        """Run ``run_fn(model)`` in calibrate mode (float layers, recording their inputs), then set
        every layer's static scales and/or GPTQ weights. Returns the static scales per layer."""
        mode, collect = self.context.mode, self.context.collect
        self.context.mode, self.context.collect = "calibrate", False
        try:
            with torch.no_grad():
                run_fn(self.model)
        finally:
            self.context.mode, self.context.collect = mode, collect
        return {layer.name: layer.finish_calibration() for layer in self.layers}


def _parent(model, name):
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def convert(loaded, config: ConverterConfig, filter=None, weight_cache=None, static_scales=None):
    """Spike form of ``loaded`` (a :class:`~spikemllm.sw.models.LoadedModel`); the original is untouched.

    ``filter(name) -> bool`` restricts which linears convert (after ``config.skip``).
    ``static_scales`` (layer name -> {"text": s, "vision": s}) reuses calibrated scales.
    """
    config.validate()
    model = copy.deepcopy(loaded.model).eval()
    ctx = SpikeContext()
    names = linear_names(model, config, filter)
    if not names:
        raise ValueError("no nn.Linear layer left to convert (check --skip / the filter)")
    feed = norm_feeding(model, loaded.family) if config.rotation == "gamma-folded" else {}
    # γ of each norm, read before any folding changes it
    gammas = {}
    for lin, (norm, _, _) in feed.items():
        if norm not in gammas:
            nm = model.get_submodule(norm)
            g = nm.weight.detach().to(torch.float64).numpy().copy()
            b = None if getattr(nm, "bias", None) is None else nm.bias.detach().to(torch.float64).numpy().copy()
            gammas[norm] = (g, b)
    layers = []
    folded_norms = set()
    for name in names:
        lin = model.get_submodule(name)
        W = lin.weight.detach().to(torch.float64).numpy().copy()
        bias = None if lin.bias is None else lin.bias.detach().to(torch.float64).numpy().copy()
        affine = None
        if name in feed:
            norm, rep, post = feed[name]
            g, be = gammas[norm]
            rep = rep or W.shape[1] // g.shape[0]
            g, be = np.tile(g, rep), (None if be is None else np.tile(be, rep))
            if be is not None:
                bias = (np.zeros(W.shape[0]) if bias is None else bias) + W @ be
            W = W * g[None, :]
            if post:
                affine = (g, np.zeros_like(g) if be is None else be)
            else:
                folded_norms.add(norm)
        key, tower = layer_key_of(name)
        sl = SpikeLinear(name=name, layer_key=key, tower=tower, weight=W, bias=bias, config=config,
                         context=ctx, input_affine=affine, weight_cache=weight_cache)
        if static_scales is not None and name in static_scales:
            sl.static_scales = dict(static_scales[name])
        parent, child = _parent(model, name)
        setattr(parent, child, sl)
        layers.append(sl)
    for norm in folded_norms:  # pre-norm: γ and β now live in the following linears
        nm = model.get_submodule(norm)
        with torch.no_grad():
            nm.weight.fill_(1.0)
            if getattr(nm, "bias", None) is not None:
                nm.bias.zero_()
    kv = {}
    if config.kv_bits and loaded.kind in ("causal-lm", "vlm"):
        name_kv = register_spiked_kv()
        for n, m in model.named_modules():
            if n.endswith("self_attn") and ".visual." not in f".{n}":
                st = KVStats()
                m._spikemllm_kv = (config.kv_bits, st, ctx)
                kv[n] = st
        if loaded.family == "qwen2_vl":
            model.set_attn_implementation({"text_config": name_kv})
        else:
            model.set_attn_implementation(name_kv)
    return ConvertedModel(model=model, context=ctx, layers=layers, config=config, kv=kv)
