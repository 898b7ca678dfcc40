"""Fidelity of a converted model against FP32, and the inputs it is measured on.

A :class:`Workload` holds the evaluation and calibration inputs of one model kind and knows
how to run a model on them:

* encoder (BERT / MiniLM): sentence embeddings by attention-masked mean pooling and L2
  normalisation (what sentence-transformers does for all-MiniLM-L6-v2). Metrics: cosine of
  each sentence's SNN embedding with its FP32 one (mean, min), and the Spearman correlation
  of the pairwise cosine similarities (upper triangle) of the two models.
* causal LM (LLaMA / Qwen2): the children's stories of :mod:`corpus` (one sequence per story,
  with the tokenizer's BOS; UTF-8 byte ids for tokenizer-less tiny models). Metrics: perplexity
  of both models, and the mean token KL(P_fp32 || P_snn) of the next-token distributions.
* VLM (Qwen2-VL): synthetic structured images followed by story text. Metrics: mean logit KL
  over all positions, and separately over image and text positions.
"""

from __future__ import annotations

import numpy as np
import torch

from . import corpus

__all__ = ["spearman", "embedding_metrics", "lm_metrics", "Workload", "make_workload"]


def _ranks(a):
    order = np.argsort(a, kind="stable")
    r = np.empty(len(a), dtype=np.float64)
    r[order] = np.arange(len(a), dtype=np.float64)
    # average ranks of ties
    vals, inv, cnt = np.unique(a, return_inverse=True, return_counts=True)
    if np.any(cnt > 1):
        sums = np.bincount(inv, weights=r)
        r = (sums / cnt)[inv]
    return r


def spearman(a, b):
    """Spearman rank correlation of two 1-D arrays (average ranks for ties)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"spearman needs two 1-D arrays of the same length >= 2, not {a.shape}, {b.shape}")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / den) if den else float("nan")


def embedding_metrics(ref, emb):
    """Cosine (mean, min) and Spearman of pairwise similarities; rows are L2-normalised embeddings."""
    ref, emb = np.asarray(ref, np.float64), np.asarray(emb, np.float64)
    cos = (ref * emb).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(emb, axis=1))
    iu = np.triu_indices(len(ref), 1)
    s_ref, s_emb = (ref @ ref.T)[iu], (emb @ emb.T)[iu]
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "spearman_pairwise": spearman(s_ref, s_emb), "n_sentences": int(len(ref))}


def lm_metrics(ref_logits, logits, targets, valid):
    """Perplexity of both models and mean token KL(P_ref || P) over ``valid`` positions.

    ``ref_logits``/``logits`` [N, V]; ``targets`` [N] next-token ids; ``valid`` bool [N]
    (False where there is no next token or at padding).
    """
    lr = torch.log_softmax(ref_logits.double(), -1)[valid]
    lq = torch.log_softmax(logits.double(), -1)[valid]
    t = targets[valid]
    nll_ref = -lr.gather(1, t[:, None]).mean()
    nll = -lq.gather(1, t[:, None]).mean()
    kl = (lr.exp() * (lr - lq)).sum(-1)
    top1 = (lr.argmax(-1) == lq.argmax(-1)).double().mean()
    return {"perplexity_fp32": float(nll_ref.exp()), "perplexity": float(nll.exp()),
            "perplexity_ratio": float((nll - nll_ref).exp()), "token_kl": float(kl.mean()),
            "top1_agreement": float(top1), "n_tokens": int(valid.sum())}


def _byte_ids(text, limit):
    # tokenizer-less tiny models: UTF-8 bytes mapped to ids 3..limit-1
    return [3 + (b % (limit - 3)) for b in text.encode("utf-8")]


class Workload:
    """Evaluation and calibration inputs of one model, and how to run a model on them.

    Parameters
    ----------
    loaded : LoadedModel
    eval_size : int or None
        Encoder: number of evaluation sentences (2..64, default 64). Causal LM / VLM: at most
        this many text tokens in total (default: all of the stories).
    """

    def __init__(self, loaded, eval_size=None):
        self.loaded = loaded
        self.kind = loaded.kind
        if self.kind == "encoder":
            if loaded.tokenizer is None:
                raise ValueError(f"model {loaded.name!r} has no tokenizer; sentence embeddings need one")
            self.eval_batches = [self._tok(corpus.eval_sentences(eval_size or corpus.N_EVAL_SENTENCES))]
            self.calib_batches = [self._tok(corpus.calibration_sentences())]
        elif self.kind == "causal-lm":
            self.eval_batches = [self._stories(corpus.STORIES, eval_size)]
            self.calib_batches = [self._stories(corpus.CALIBRATION_STORY.split("\n\n"), None)]
        elif self.kind == "vlm":
            self.eval_batches = self._vlm(corpus.story_text(), eval_size or 192, seeds=(0, 1))
            self.calib_batches = self._vlm(corpus.CALIBRATION_STORY, 96, seeds=(7,))
        else:
            raise ValueError(f"no workload for model kind {self.kind!r}")
        self.eval_tokens = sum(int(b["valid"].sum()) for b in self.eval_batches)

    # -- inputs --------------------------------------------------------------------------

    def _tok(self, sentences):
        enc = self.loaded.tokenizer(sentences, padding=True, return_tensors="pt")
        inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        mask = enc["attention_mask"].bool()
        return dict(inputs=inputs, valid=mask.reshape(-1), modality=None, mask=mask)

    def _max_len(self):
        cfg = self.loaded.model.config
        cfg = getattr(cfg, "text_config", cfg)
        return int(getattr(cfg, "max_position_embeddings", 512) or 512)

    def _ids(self, text):
        tok = self.loaded.tokenizer
        if tok is not None:
            return tok(text)["input_ids"]
        cfg = self.loaded.model.config
        vocab = getattr(cfg, "text_config", cfg).vocab_size
        special = [getattr(cfg, k, None) for k in ("image_token_id", "video_token_id",
                                                    "vision_start_token_id", "vision_end_token_id")]
        limit = min([vocab] + [s for s in special if s is not None])
        return _byte_ids(text, limit)

    def _stories(self, stories, max_tokens):
        limit = min(self._max_len(), 512)
        seqs, left = [], max_tokens
        for s in stories:
            ids = self._ids(s)[:limit]
            if left is not None:
                ids = ids[:left]
                left -= len(ids)
            if len(ids) >= 2:
                seqs.append(ids)
            if left is not None and left < 2:
                break
        if not seqs:
            raise ValueError("the evaluation text is too short (raise --eval-size)")
        L = max(len(s) for s in seqs)
        pad = 0
        ids = torch.full((len(seqs), L), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), L), dtype=torch.bool)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = True
        inputs = dict(input_ids=ids, attention_mask=mask.long())
        return dict(inputs=inputs, valid=mask.reshape(-1), modality=None, mask=mask)

    def _vlm(self, text, n_text, seeds):
        from .models import qwen2vl_inputs

        ids = self._ids(text)[:n_text]
        out = []
        for seed in seeds:
            inputs, modality = qwen2vl_inputs(self.loaded, ids, image_hw=(112, 112), n_images=1, seed=seed)
            S = inputs["input_ids"].shape[1]
            out.append(dict(inputs=inputs, valid=torch.ones(S, dtype=torch.bool),
                            modality=torch.from_numpy(modality), mask=torch.ones(1, S, dtype=torch.bool)))
        return out

    # -- running -------------------------------------------------------------------------

    def _forward(self, model, batch, context=None):
        if context is not None:
            context.modality = batch["modality"]
            context.valid = batch["valid"]
        try:
            with torch.no_grad():
                out = model(**batch["inputs"])
        finally:
            if context is not None:
                context.modality = context.valid = None
        if self.kind == "encoder":
            h = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            m = batch["mask"].unsqueeze(-1).to(h.dtype)
            emb = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(emb.double(), dim=-1)
        return out.logits.detach()

    def run(self, model, context=None):
        """Outputs of ``model`` on the evaluation inputs (embeddings or logits per batch)."""
        return [self._forward(model, b, context) for b in self.eval_batches]

    def run_calibration(self, model, context=None):
        for b in self.calib_batches:
            self._forward(model, b, context)

    def med_runs(self, model, batches=None):
        """``(run_fn, modality, valid)`` triples for :func:`msts.measure_med` (calibration inputs)."""
        runs = []
        for b in batches or self.calib_batches:
            mod = None if b["modality"] is None else b["modality"].numpy()
            runs.append((lambda b=b: self._forward(model, b), mod, b["valid"].numpy()))
        return runs

    def metrics(self, ref, out):
        """Fidelity metrics of outputs ``out`` against the FP32 outputs ``ref`` (see module docstring)."""
        if self.kind == "encoder":
            return embedding_metrics(torch.cat(ref).numpy(), torch.cat(out).numpy())
        if self.kind == "causal-lm":
            logits_r, logits, targets, valid = [], [], [], []
            for b, r, o in zip(self.eval_batches, ref, out):
                mask = b["mask"]
                ids = b["inputs"]["input_ids"]
                logits_r.append(r[:, :-1].reshape(-1, r.shape[-1]))
                logits.append(o[:, :-1].reshape(-1, o.shape[-1]))
                targets.append(ids[:, 1:].reshape(-1))
                valid.append((mask[:, 1:] & mask[:, :-1]).reshape(-1))
            return lm_metrics(torch.cat(logits_r), torch.cat(logits), torch.cat(targets), torch.cat(valid))
        # vlm: KL of the full output distribution at every position, by modality
        kl_all, mods = [], []
        for b, r, o in zip(self.eval_batches, ref, out):
            lr = torch.log_softmax(r[0].double(), -1)
            lq = torch.log_softmax(o[0].double(), -1)
            kl_all.append((lr.exp() * (lr - lq)).sum(-1))
            mods.append(b["modality"])
        kl, mod = torch.cat(kl_all), torch.cat(mods)
        res = {"logit_kl": float(kl.mean()), "n_tokens": int(kl.numel())}
        for m, name in ((0, "text"), (1, "vision")):
            if bool((mod == m).any()):
                res[f"logit_kl_{name}"] = float(kl[mod == m].mean())
                res[f"n_tokens_{name}"] = int((mod == m).sum())
        return res


def make_workload(loaded, eval_size=None):
    return Workload(loaded, eval_size)
