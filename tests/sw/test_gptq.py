"""GPTQ keeps the per-channel mse scales and the grid, and lowers the layer output error."""

import numpy as np
import torch

from spikemllm.sw import layer_quant as lq
from spikemllm.sw import numerics as nx
from spikemllm.sw.config import ConverterConfig
from spikemllm.sw.gptq import gptq_quantize
from spikemllm.sw.spike_modules import SpikeContext, SpikeLinear


def test_gptq_same_scales_smaller_output_error():
    rng = np.random.default_rng(0)
    W = rng.standard_t(4, size=(32, 128))
    # correlated inputs (low-rank plus noise), as real activations are
    X = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 128)) + 0.1 * rng.normal(size=(400, 128))
    w, s = gptq_quantize(W, 4, X.T @ X)
    w_mse, s_mse = lq.quantize_weights(W, 4, "mse")
    assert np.array_equal(s, s_mse)
    assert np.abs(w).max() <= nx.qmax(4)
    err = lambda ww: np.linalg.norm(X @ (ww * s[:, None] - W).T)
    assert err(w) < 0.5 * err(w_mse)


def test_gptq_layer_calibrates_and_still_equals_integer_path():
    rng = np.random.default_rng(1)
    W, x = rng.normal(size=(16, 64)), rng.normal(size=(50, 64))
    cfg = ConverterConfig(w_bits=4, weight_quantizer="gptq")
    ctx = SpikeContext()
    layer = SpikeLinear(name="l", layer_key="0", tower="text", weight=W, bias=None, config=cfg, context=ctx)
    assert layer.needs_hessian
    ctx.mode = "calibrate"
    layer(torch.from_numpy(x))
    layer.finish_calibration()
    ctx.mode = "spike"
    assert not layer.needs_hessian
    p = layer.integer_params()
    w_ref, _ = gptq_quantize(lq.rotate_weight(W), 4, lq.rotate(x).T @ lq.rotate(x))
    assert np.array_equal(p["w"], w_ref)
    y, *_ = layer.spike_forward(torch.from_numpy(x), torch.zeros(50, dtype=torch.int64))
    enc = lq.encode_activations(lq.rotate(x), cfg)
    _, y_ref, _ = lq.linear_integer_path(enc, p["w"], p["s_w"], "tc-lif")
    np.testing.assert_array_equal(y.numpy(), y_ref)
