"""Capture one real layer's inputs from a model run (forward hooks, no model edits).

Used by the golden-vector exporter (:mod:`spikemllm.sw.golden`):

* :func:`capture_linear` records the input activations of one ``nn.Linear`` (the text tower
  of BERT, LLaMA, Qwen2 and Qwen2-VL, or a block of the Qwen2-VL vision tower) together with
  its weight and bias, for every token of a fixed input, plus each token's modality tag.
* :func:`capture_attention` records the post-RoPE query, key and value of one decoder
  attention layer, exactly as they enter the attention kernel (what a spiked KV cache
  stores), by routing that layer through a registered attention function that records and
  then calls SDPA.

Inputs are fixed sentences (tokenised when the checkpoint has a tokenizer) and, for Qwen2-VL,
the deterministic synthetic images of :func:`spikemllm.sw.models.qwen2vl_inputs`, so a capture
is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .events import MODALITY_TEXT, MODALITY_VISION

__all__ = ["PROJS", "VISION_PROJS", "MODALITY_MODES", "SENTENCES", "CapturedLinear",
           "CapturedAttention", "module_name", "capture_linear", "capture_attention",
           "select_tokens"]

#: Text-tower projections. BERT: up = intermediate.dense, down = output.dense, o = attention.output.dense.
PROJS = ("q", "k", "v", "o", "gate", "up", "down")
#: Qwen2-VL vision-tower projections (per block).
VISION_PROJS = ("qkv", "proj", "fc1", "fc2")
MODALITY_MODES = ("text", "vision", "mixed")

#: Fixed input text. Real sentences, so decoder activations are those of real language.
SENTENCES = (
    "Once upon a time, there was a little girl named Lily who loved to play in the park.",
    "One day she found a shiny red ball under a big green tree.",
    "She wanted to share it with her friend Tom, so she ran to his house.",
    "The sun was warm, the birds were singing, and everyone was happy.",
    "The accelerator reads spike events and adds or subtracts weights without multiplying.",
)

_BERT = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
         "o": "attention.output.dense", "up": "intermediate.dense", "down": "output.dense"}
_DECODER = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
            "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
            "down": "mlp.down_proj"}
_VISION = {"qkv": "attn.qkv", "proj": "attn.proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}

# Name under which the recording attention function is registered with transformers.
_CAPTURE_ATTN = "spikemllm_golden_capture"


@dataclass
class CapturedLinear:
    """One linear layer's real inputs and parameters.

    Attributes
    ----------
    module : str
        Dotted module name inside the model.
    x_all : float64 [S, in]
        Input activations of every token of the run (calibration set for static scales).
    modality_all : int64 [S]
        0 text, 1 vision, per token of the run.
    positions : int64 [N]
        Positions (into ``x_all``) of the selected tokens, ascending.
    weight : float64 [out, in]
    bias : float64 [out] or None
    token_ids : list of int
        Input ids of the text tower run (empty for the vision tower).
    inputs : dict
        How the input was made (sentences, image size), for the manifest.
    """
    module: str
    x_all: np.ndarray
    modality_all: np.ndarray
    positions: np.ndarray
    weight: np.ndarray
    bias: np.ndarray | None
    token_ids: list = field(default_factory=list)
    inputs: dict = field(default_factory=dict)

    @property
    def x(self):
        return self.x_all[self.positions]

    @property
    def modality(self):
        return self.modality_all[self.positions]


@dataclass
class CapturedAttention:
    """Post-RoPE Q, K and V of one decoder attention layer (batch 1).

    Attributes
    ----------
    module : str
        Dotted name of the attention module.
    query : float64 [heads, S, head_dim]
    key, value : float64 [kv_heads, S, head_dim]
    modality_all : int64 [S]
    positions : int64 [N]
    token_ids, inputs : as in :class:`CapturedLinear`.
    """
    module: str
    query: np.ndarray
    key: np.ndarray
    value: np.ndarray
    modality_all: np.ndarray
    positions: np.ndarray
    token_ids: list = field(default_factory=list)
    inputs: dict = field(default_factory=dict)

    @property
    def modality(self):
        return self.modality_all[self.positions]


# --------------------------------------------------------------------------------------------
# Module lookup
# --------------------------------------------------------------------------------------------

def _find_module(model, suffix):
    hits = [(n, m) for n, m in model.named_modules() if n == suffix or n.endswith("." + suffix)]
    if len(hits) != 1:
        raise ValueError(f"expected exactly one module named '*{suffix}', found "
                         f"{[n for n, _ in hits] or 'none'}")
    return hits[0]


def _n_layers(model, family, tower):
    cfg = model.config
    if tower == "vision":
        return cfg.vision_config.depth
    if family == "qwen2_vl":
        return cfg.text_config.num_hidden_layers
    return cfg.num_hidden_layers


def module_name(loaded, layer, proj, tower="text"):
    """Dotted suffix of the linear module for ``layer``/``proj`` (validated), e.g. ``layers.0.mlp.down_proj``."""
    family = loaded.family
    if tower not in ("text", "vision"):
        raise ValueError(f"tower must be 'text' or 'vision', not {tower!r}")
    if tower == "vision":
        if family != "qwen2_vl":
            raise ValueError(f"--tower vision needs a Qwen2-VL model, not family {family!r}")
        table, prefix = _VISION, f"visual.blocks.{layer}."
    elif family == "bert":
        table, prefix = _BERT, f"encoder.layer.{layer}."
    else:
        table, prefix = _DECODER, f"layers.{layer}."
    if proj not in table:
        raise ValueError(f"proj for a {family} {tower} tower must be one of {', '.join(table)}, not {proj!r}")
    n = _n_layers(loaded.model, family, tower)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n:
        raise ValueError(f"layer must be in 0..{n - 1} for this model's {tower} tower, not {layer!r}")
    return prefix + table[proj]


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

def _passage(reps):
    return " ".join([" ".join(SENTENCES)] * reps)


def _max_positions(cfg):
    return int(getattr(cfg, "max_position_embeddings", 512) or 512)


def _text_inputs(loaded, n_tokens):
    """Tokenised passage (batch 1) with at least ``n_tokens`` tokens; returns (inputs, ids, info)."""
    import torch

    cfg = loaded.model.config
    limit = _max_positions(cfg)
    if n_tokens > limit:
        raise ValueError(f"--tokens must be at most {limit} for this model, not {n_tokens}")
    reps = 0
    while True:  # repeat the passage until it gives n_tokens tokens (the model's limit at most)
        reps += 1
        text = _passage(reps)
        if loaded.tokenizer is None:
            # tiny random models have no tokenizer: UTF-8 bytes as ids (still deterministic)
            ids = _byte_ids(text, cfg.vocab_size, cfg.vocab_size)[:limit]
            inputs = {"input_ids": torch.tensor([ids], dtype=torch.long)}
            tok_name = "utf-8 bytes"
        else:
            enc = loaded.tokenizer(text, return_tensors="pt", truncation=True, max_length=limit)
            ids = enc["input_ids"][0].tolist()
            inputs = {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}
            tok_name = type(loaded.tokenizer).__name__
        if len(ids) >= n_tokens or len(ids) >= limit:
            break
    if len(ids) < n_tokens:
        raise ValueError(f"the fixed passage gives only {len(ids)} tokens, fewer than --tokens {n_tokens}")
    info = {"text": text, "tokenizer": tok_name}
    return inputs, ids, np.zeros(len(ids), dtype=np.int64), info


def _byte_ids(text, vocab, reserved):
    # tiny-qwen2vl has no tokenizer: map UTF-8 bytes to ids below its special tokens.
    top = min(vocab, reserved)
    return [3 + (b % (top - 3)) for b in text.encode("utf-8")]


def _vlm_inputs(loaded, n_text, n_vision):
    """Qwen2-VL inputs: one synthetic image with at least ``n_vision`` merged tokens, then text."""
    cfg = loaded.model.config
    vc = cfg.vision_config
    side = vc.patch_size * vc.spatial_merge_size
    k = max(2, math.ceil(math.sqrt(max(n_vision, 1))))
    image_hw = (side * k, side * k)
    from .models import qwen2vl_inputs

    text = " ".join(SENTENCES)
    if loaded.tokenizer is not None:
        text_ids = loaded.tokenizer(text)["input_ids"]
    else:
        special = min(cfg.image_token_id, cfg.video_token_id, cfg.vision_start_token_id,
                      cfg.vision_end_token_id)
        text_ids = _byte_ids(text, cfg.text_config.vocab_size, special)
    while len(text_ids) < n_text:
        text_ids = text_ids + text_ids
    inputs, modality = qwen2vl_inputs(loaded, text_ids, image_hw=image_hw, n_images=1,
                                      seed=0)
    ids = inputs["input_ids"][0].tolist()
    info = {"text": text, "text_ids": "tokenizer" if loaded.tokenizer is not None else "utf-8 bytes",
            "image": {"kind": "synthetic_image(seed=0)", "height": image_hw[0], "width": image_hw[1]}}
    return inputs, ids, modality, info


def select_tokens(modality_all, n_tokens, mode):
    """Positions of ``n_tokens`` tokens for a modality mode.

    ``text``: the first text tokens; ``vision``: the first vision tokens; ``mixed``: the first
    ``n // 2`` vision tokens and the first ``n - n // 2`` text tokens (at least one of each),
    in sequence order.
    """
    if mode not in MODALITY_MODES:
        raise ValueError(f"modality must be one of {', '.join(MODALITY_MODES)}, not {mode!r}")
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens < 1:
        raise ValueError(f"--tokens must be a positive integer, not {n_tokens!r}")
    mod = np.asarray(modality_all, dtype=np.int64)
    text = np.nonzero(mod == MODALITY_TEXT)[0]
    vision = np.nonzero(mod == MODALITY_VISION)[0]
    if mode == "mixed":
        if n_tokens < 2:
            raise ValueError("--modality mixed needs --tokens >= 2 (one vision and one text token)")
        n_v = n_tokens // 2
        want = [(vision, n_v, "vision"), (text, n_tokens - n_v, "text")]
    else:
        want = [(text if mode == "text" else vision, n_tokens, mode)]
    picked = []
    for pool, n, name in want:
        if len(pool) < n:
            raise ValueError(f"the input has only {len(pool)} {name} tokens, fewer than the {n} needed")
        picked.append(pool[:n])
    return np.sort(np.concatenate(picked)).astype(np.int64)


def _inputs_for(loaded, n_tokens, mode, tower):
    if mode != "text" and loaded.family != "qwen2_vl":
        raise ValueError(f"--modality {mode} needs a vision-language model (tiny-qwen2vl or a "
                         f"Qwen2-VL checkpoint); {loaded.name!r} is {loaded.family}")
    if loaded.family == "qwen2_vl":
        if tower == "vision":
            # patch tokens of the vision tower: n_tokens patches need n_tokens / merge^2 merged tokens
            m2 = loaded.model.config.vision_config.spatial_merge_size ** 2
            return _vlm_inputs(loaded, 1, -(-n_tokens // m2))
        n_v = {"text": 0, "vision": n_tokens, "mixed": n_tokens // 2}[mode]
        return _vlm_inputs(loaded, n_tokens, n_v)
    return _text_inputs(loaded, n_tokens)


def _run(loaded, inputs):
    import torch

    with torch.no_grad():
        loaded.model(**inputs)


# --------------------------------------------------------------------------------------------
# Captures
# --------------------------------------------------------------------------------------------

def capture_linear(loaded, layer, proj, n_tokens, modality="text", tower="text"):
    """Run the fixed input through ``loaded`` and record the inputs of one linear layer.

    ``tower="vision"`` (Qwen2-VL only) captures a vision block (``proj`` in qkv, proj, fc1,
    fc2); its tokens are image patches, all tagged vision.
    """
    import torch

    suffix = module_name(loaded, layer, proj, tower)
    name, mod = _find_module(loaded.model, suffix)
    if not isinstance(mod, torch.nn.Linear):
        raise ValueError(f"module {name!r} is {type(mod).__name__}, not a Linear layer")
    if tower == "vision" and modality != "vision":
        raise ValueError("--tower vision captures image patches: use --modality vision")
    inputs, ids, modality_all, info = _inputs_for(loaded, n_tokens, modality, tower)
    seen = []
    handle = mod.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    try:
        _run(loaded, inputs)
    finally:
        handle.remove()
    if len(seen) != 1:
        raise ValueError(f"module {name!r} ran {len(seen)} times in one forward pass, expected once")
    x = seen[0].to(torch.float64).numpy()
    x = x.reshape(-1, x.shape[-1])
    if tower == "vision":
        modality_all = np.full(x.shape[0], MODALITY_VISION, dtype=np.int64)
        ids = []
    if x.shape[0] != len(modality_all):
        raise ValueError(f"captured {x.shape[0]} tokens at {name!r} but the input has {len(modality_all)}")
    positions = select_tokens(modality_all, n_tokens, modality)
    W = mod.weight.detach().to(torch.float64).numpy().copy()
    b = None if mod.bias is None else mod.bias.detach().to(torch.float64).numpy().copy()
    return CapturedLinear(module=name, x_all=x, modality_all=np.asarray(modality_all, np.int64),
                          positions=positions, weight=W, bias=b, token_ids=list(ids), inputs=info)


def capture_attention(loaded, layer, n_tokens, modality="text"):
    """Post-RoPE Q, K, V of decoder layer ``layer``'s self-attention, as the kernel sees them."""
    import torch
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if loaded.family not in ("llama", "qwen2", "qwen2_vl"):
        raise ValueError(f"--proj attn needs a decoder (LLaMA, Qwen2, Qwen2-VL), not {loaded.family!r}")
    suffix = module_name(loaded, layer, "q").rsplit(".", 1)[0]  # layers.L.self_attn
    name, attn = _find_module(loaded.model, suffix)
    inputs, ids, modality_all, info = _inputs_for(loaded, n_tokens, modality, "text")
    seen = []

    def record(module, query, key, value, attention_mask, **kw):
        if module is attn:
            seen.append(tuple(t.detach().to(torch.float64).numpy().copy() for t in (query, key, value)))
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kw)

    AttentionInterface.register(_CAPTURE_ATTN, record)
    model = loaded.model
    if loaded.family == "qwen2_vl":
        before = model.config.text_config._attn_implementation
        model.set_attn_implementation({"text_config": _CAPTURE_ATTN})
        restore = {"text_config": before}
    else:
        restore = model.config._attn_implementation
        model.set_attn_implementation(_CAPTURE_ATTN)
    try:
        _run(loaded, inputs)
    finally:
        model.set_attn_implementation(restore)
    if len(seen) != 1:
        raise ValueError(f"attention {name!r} ran {len(seen)} times in one forward pass, expected once")
    q, k, v = (a[0] for a in seen[0])  # batch 1: [heads, S, d]
    positions = select_tokens(modality_all, n_tokens, modality)
    return CapturedAttention(module=name, query=q, key=k, value=v,
                             modality_all=np.asarray(modality_all, np.int64), positions=positions,
                             token_ids=list(ids), inputs=info)
