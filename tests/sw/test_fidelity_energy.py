"""Fidelity metrics, energy accounting and γ folding."""

import numpy as np
import pytest
import torch

from spikemllm.sw import numerics as nx
from spikemllm.sw.config import ConverterConfig
from spikemllm.sw.energy import totals
from spikemllm.sw.fidelity import embedding_metrics, lm_metrics, spearman


def test_spearman_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # monotone transform does not change rank correlation; ties get average ranks
    assert spearman([1, 2, 2, 3], [1, 5, 5, 9]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)


def test_embedding_and_lm_metrics():
    e = np.random.default_rng(0).normal(size=(8, 16))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    m = embedding_metrics(e, e)
    assert m["cosine_mean"] == pytest.approx(1) and m["spearman_pairwise"] == pytest.approx(1)
    noisy = e + 0.3 * np.random.default_rng(1).normal(size=e.shape)
    assert embedding_metrics(e, noisy)["cosine_min"] < 0.99
    logits = torch.randn(20, 50)
    t = torch.randint(0, 50, (20,))
    valid = torch.ones(20, dtype=torch.bool)
    same = lm_metrics(logits, logits, t, valid)
    assert same["token_kl"] == pytest.approx(0, abs=1e-12) and same["perplexity_ratio"] == pytest.approx(1)
    nll = -torch.log_softmax(logits.double(), -1)[torch.arange(20), t].mean()
    assert same["perplexity"] == pytest.approx(float(nll.exp()))
    assert lm_metrics(logits, logits + torch.randn(20, 50), t, valid)["token_kl"] > 0


def test_totals_sum_layers_and_price_ops():
    rows = [dict(sops=100, flops=50, spikes=10, T_mean=4.0, tokens=2, in_features=5),
            dict(sops=300, flops=70, spikes=30, T_mean=2.0, tokens=2, in_features=10)]
    t = totals(rows)
    assert t["sops"] == 400 and t["flops"] == 120
    assert t["energy_snn_j"] == pytest.approx(400 * nx.E_AC_PJ * 1e-12)
    assert t["energy_ann_j"] == pytest.approx(120 * nx.E_MAC_PJ * 1e-12)
    assert t["firing_rate"] == pytest.approx(40 / (4 * 2 * 5 + 2 * 2 * 10))


@pytest.mark.parametrize("which", ["minilm", "tiny_qwen2vl", "tiny_llama"])
def test_gamma_folding_preserves_the_float_model(which, request):
    """γ-folded weights with the float layers reproduce FP32 (the fold is exact algebra)."""
    from spikemllm.sw.convert import convert
    from spikemllm.sw.fidelity import make_workload

    import copy
    import dataclasses

    loaded = request.getfixturevalue(which)
    # random-init tiny models have γ = 1, β = 0: give every norm a non-trivial affine first
    model = copy.deepcopy(loaded.model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, m in model.named_modules():
            if "norm" in type(m).__name__.lower() and getattr(m, "weight", None) is not None:
                m.weight.mul_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                if getattr(m, "bias", None) is not None:
                    m.bias.add_(0.1 * torch.randn(m.bias.shape, generator=gen))
    loaded = dataclasses.replace(loaded, model=model)
    w = make_workload(loaded, eval_size=8 if loaded.kind == "encoder" else 24)
    ref = w.run(loaded.model)
    cm = convert(loaded, ConverterConfig(rotation="gamma-folded", kv_bits=0, weight_quantizer="rtn"))
    folded = [l for l in cm.layers if not torch.equal(l.w_float,
                                                       model.get_submodule(l.name).weight.double())]
    assert folded, "some linears must carry a folded γ"
    cm.context.mode = "float"
    out = w.run(cm.model, cm.context)
    for r, o in zip(ref, out):
        np.testing.assert_allclose(o.numpy(), r.numpy(), rtol=1e-4, atol=1e-4 * float(r.abs().max()))
