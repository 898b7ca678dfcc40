"""SpikeLinear equals the numpy integer path; the spiked KV cache equals popcount and dequantised scores."""

import numpy as np
import pytest
import torch

from spikemllm.sw import layer_quant as lq
from spikemllm.sw import numerics as nx
from spikemllm.sw.config import ConverterConfig
from spikemllm.sw.spike_modules import (SpikeContext, SpikeLinear, kv_integer_scores, quantize_per_token,
                                        spike_count, spiked_kv_attention, torch_fwht)


def _integer_path(layer, x, mod, cfg):
    """The golden exporter's arithmetic: layer_quant on the same input."""
    p = layer.integer_params()
    xr = lq.rotate(x) if p["block"] else x
    enc = lq.encode_activations(xr, cfg, modality=mod, layer=layer.layer_key, static_scales=p["static_scales"])
    acc, y, sops = lq.linear_integer_path(enc, p["w"], p["s_w"], cfg.encoding, p["bias"])
    return enc, acc, y, sops


@pytest.mark.parametrize("encoding,t_text,t_vision", [("tc-lif", 4, 3), ("ternary", 7, 3), ("rate", 15, 7),
                                                      ("tc-lif", 7, 7)])
@pytest.mark.parametrize("rotation", ["gamma-aligned", "none"])
@pytest.mark.parametrize("act_scale", ["dynamic", "static"])
def test_module_equals_integer_path(encoding, t_text, t_vision, rotation, act_scale):
    rng = np.random.default_rng(0)
    W, b = rng.standard_t(4, size=(24, 96)), rng.normal(size=24)
    x = rng.standard_t(3, size=(10, 96)) * rng.uniform(0.1, 3, size=(10, 1))
    mod = np.array([0, 1] * 5)
    cfg = ConverterConfig(w_bits=4, encoding=encoding, t_text=t_text, t_vision=t_vision, rotation=rotation,
                          act_scale=act_scale, layer_t={"2": {"text": t_text}})
    ctx = SpikeContext(modality=torch.from_numpy(mod))
    layer = SpikeLinear(name="l", layer_key="2", tower="text", weight=W, bias=b, config=cfg, context=ctx)
    if act_scale == "static":
        ctx.mode = "calibrate"
        layer(torch.from_numpy(x))
        layer.finish_calibration()
        ctx.mode = "spike"
    y_mod, acc_mod, q, s, T, bits = layer.spike_forward(torch.from_numpy(x), torch.from_numpy(mod))
    enc, acc, y, sops = _integer_path(layer, x, mod, cfg)
    assert np.array_equal(acc_mod.numpy().astype(np.int64), acc)
    assert np.array_equal(q.numpy().astype(np.int64), enc.q)
    assert np.array_equal(T.numpy(), enc.T)
    np.testing.assert_array_equal(y_mod.numpy(), y)  # same float64 operations: bit-identical
    # the float32 eval path is the same numbers rounded once
    out = layer(torch.from_numpy(x).float())
    np.testing.assert_allclose(out.numpy(), y, rtol=1e-6, atol=1e-6 * np.abs(y).max())
    # spike statistics equal the spikes the numpy encoder makes
    assert layer.stats.spikes[0] + layer.stats.spikes[1] == np.count_nonzero(enc.spikes)
    assert (layer.stats.spikes[0] + layer.stats.spikes[1]) * 24 == sops
    assert sum(layer.stats.t_elements) == int(enc.T.sum()) * 96


def test_real_minilm_layer_equals_integer_path(minilm):
    from spikemllm.sw.convert import convert
    from spikemllm.sw.fidelity import make_workload

    cfg = ConverterConfig(w_bits=4, t_text=4)
    cm = convert(minilm, cfg, filter=lambda n: "layer.2." in n)
    assert len(cm.layers) == 6
    seen = {}

    def keep(m, a, o):
        seen.setdefault(m.name, (a[0].detach(), o.detach()))

    hooks = [l.register_forward_hook(keep) for l in cm.layers]
    wl = make_workload(minilm, eval_size=4)
    wl.run(cm.model, cm.context)
    for h in hooks:
        h.remove()
    for layer in cm.layers:
        x, out = seen[layer.name]
        x64 = x.reshape(-1, layer.in_features).double().numpy()
        _, acc, y, _ = _integer_path(layer, x64, np.zeros(len(x64), dtype=np.int64), cfg)
        np.testing.assert_allclose(out.reshape(-1, layer.out_features).numpy(), y, rtol=1e-5,
                                   atol=1e-5 * np.abs(y).max())
        W = minilm.model.get_submodule(layer.name).weight.detach().double().numpy()
        w, s_w = lq.quantize_weights(lq.rotate_weight(W), 4, "mse")
        assert np.array_equal(layer.integer_params()["w"], w) and np.array_equal(layer.integer_params()["s_w"], s_w)


@pytest.mark.parametrize("n", [64, 96, 384])
def test_torch_fwht_is_numpy_fwht_bit_for_bit(n):
    x = np.random.default_rng(n).normal(size=(5, n))
    b = nx.hadamard_block_size(n)
    np.testing.assert_array_equal(torch_fwht(torch.from_numpy(x), b).numpy(), nx.fwht(x))


@pytest.mark.parametrize("encoding,bits", [("tc-lif", 5), ("tc-lif", 8), ("ternary", 4), ("rate", 3)])
def test_spike_count_matches_encoder(encoding, bits):
    qm = nx.qmax(bits)
    q = np.arange(-qm, qm + 1)
    n = spike_count(torch.from_numpy(q).double(), encoding, torch.tensor(bits))
    assert np.array_equal(n.numpy(), np.count_nonzero(nx.encode(q, encoding, bits), axis=0))


@pytest.mark.parametrize("kv_bits", [3, 5, 8])
def test_kv_scores_equal_popcount_and_dequantised(kv_bits):
    rng = np.random.default_rng(kv_bits)
    q = torch.from_numpy(rng.normal(size=(2, 3, 5, 16)))   # [batch, heads, queries, head_dim]
    k = torch.from_numpy(rng.normal(size=(2, 3, 7, 16)))
    qm = float(nx.qmax(kv_bits))
    q_int, s_q = quantize_per_token(q, qm)
    k_int, s_k = quantize_per_token(k, qm)
    scores = kv_integer_scores(q_int, k_int).numpy().astype(np.int64)
    qi, ki = q_int.numpy().astype(np.int64), k_int.numpy().astype(np.int64)
    for b in range(2):
        for h in range(3):
            qp, qn = nx.to_bit_planes(qi[b, h], kv_bits)
            kp, kn = nx.to_bit_planes(ki[b, h], kv_bits)
            assert np.array_equal(nx.popcount_score(qp, qn, kp, kn), scores[b, h])
    deq = (q_int * s_q) @ (k_int * s_k).transpose(-1, -2)
    np.testing.assert_allclose((kv_integer_scores(q_int, k_int) * s_q * s_k.transpose(-1, -2)).numpy(),
                               deq.numpy(), rtol=1e-12, atol=1e-12)


def test_spiked_attention_equals_dequantised_attention_with_gqa():
    rng = np.random.default_rng(3)
    q = torch.from_numpy(rng.normal(size=(1, 4, 6, 8))).float()
    k = torch.from_numpy(rng.normal(size=(1, 2, 6, 8))).float()
    v = torch.from_numpy(rng.normal(size=(1, 2, 6, 8))).float()
    mask = torch.triu(torch.full((6, 6), float("-inf")), 1)[None, None]

    class Attn(torch.nn.Module):
        num_key_value_groups = 2

    from spikemllm.sw.spike_modules import KVStats
    m = Attn()
    m._spikemllm_kv = (5, KVStats(), SpikeContext())
    out, _ = spiked_kv_attention(m, q, k, v, mask, scaling=8 ** -0.5)
    qm = float(nx.qmax(5))
    deq = lambda t: (lambda qq, s: qq * s)(*quantize_per_token(t.double(), qm))
    kd, vd = deq(k).repeat_interleave(2, 1), deq(v).repeat_interleave(2, 1)
    p = torch.softmax(deq(q) @ kd.transpose(-1, -2) * 8 ** -0.5 + mask.double(), -1)
    ref = (p @ vd).transpose(1, 2)
    np.testing.assert_allclose(out.numpy(), ref.float().numpy(), rtol=1e-5, atol=1e-6)
    st = m._spikemllm_kv[1]
    assert st.steps == 4 and st.elements == 2 * 6 * 8 and st.k_spikes > 0
