"""Converter config, model loading errors, the layer integer path and the CLI shell."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spikemllm.sw import layer_quant as lq, numerics as nx
from spikemllm.sw.config import ConverterConfig
from spikemllm.sw.models import load_model, read_model_type

TINYSTORIES = Path(__file__).resolve().parents[2].parent / "shared" / "models" / "tinystories-656k"


def test_config_json_round_trip_and_unknown_field():
    c = ConverterConfig(w_bits=8, t_text=7, layer_t={"3": {"vision": 2}})
    assert ConverterConfig.from_json(c.to_json()) == c
    assert c.timesteps("vision", 3) == 2 and c.timesteps("vision", 2) == 3 and c.act_bits("text") == 8
    with pytest.raises(ValueError, match=r"unknown converter config field\(s\) \['wbits'\]"):
        ConverterConfig.from_dict({"wbits": 4})


@pytest.mark.parametrize("kw,msg", [
    ({"w_bits": 1}, r"w_bits must be in 2\.\.16"),
    ({"t_text": 0}, r"t_text: T for encoding 'tc-lif' must be one of 1\.\.15"),
    ({"encoding": "ternary", "t_text": 4}, "t_text: T for encoding 'ternary'"),
    ({"rotation": "quarot"}, "rotation must be one of"),
    ({"act_scale": "per-tensor"}, "act_scale must be one of"),
    ({"layer_t": {"0": {"audio": 3}}}, "must map modalities"),
])
def test_config_rejects_bad_values(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ConverterConfig(**kw)


def test_layer_integer_path_matches_float_reference_and_exact_accumulators():
    rng = np.random.default_rng(0)
    W, x = rng.normal(size=(16, 64)), rng.normal(size=(6, 64))
    cfg = ConverterConfig(w_bits=8, t_text=7, t_vision=3)
    w, s_w = lq.quantize_weights(lq.rotate_weight(W), 8, "mse")
    enc = lq.encode_activations(lq.rotate(x), cfg, modality=np.array([0, 1, 0, 1, 0, 1]))
    assert enc.T.tolist() == [7, 3] * 3
    acc, y, sops = lq.linear_integer_path(enc, w, s_w, "tc-lif")
    assert np.array_equal(acc, enc.q @ w.T)
    assert sops == np.count_nonzero(enc.spikes) * 16
    text = enc.T == 7
    ref = x @ W.T
    assert np.corrcoef(y[text].ravel(), ref[text].ravel())[0, 1] > 0.999


def test_mse_weight_quantizer_never_worse_than_rtn():
    W = np.random.default_rng(1).standard_t(3, size=(32, 128))
    w1, s1 = lq.quantize_weights(W, 4, "rtn")
    w2, s2 = lq.quantize_weights(W, 4, "mse")
    e1 = ((w1 * s1[:, None] - W) ** 2).sum(axis=1)
    e2 = ((w2 * s2[:, None] - W) ** 2).sum(axis=1)
    assert np.all(e2 <= e1 + 1e-12) and e2.sum() < e1.sum()


def test_static_scale_requires_calibration():
    cfg = ConverterConfig(act_scale="static")
    with pytest.raises(ValueError, match="needs a calibrated scale for 'text'"):
        lq.encode_activations(np.ones((2, 8)), cfg)
    enc = lq.encode_activations(np.ones((2, 8)) * 3, cfg, static_scales={"text": 0.1})
    assert np.all(enc.q == nx.qmax(5))


def test_model_loader_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_model(str(tmp_path / "missing"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="unsupported architecture 'gpt2'.*llama, qwen2, qwen2_vl, bert"):
        read_model_type(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ValueError, match="only pickle weights.*--trust-pickle"):
        load_model(str(tmp_path))


def test_tinystories_loads_from_safetensors():
    if not TINYSTORIES.is_dir():
        pytest.skip(f"{TINYSTORIES} is absent")
    m = load_model(str(TINYSTORIES))
    assert (m.family, m.kind) == ("llama", "causal-lm")
    assert m.model.config.hidden_size == 128 and m.tokenizer is not None


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "spikemllm", *args], capture_output=True, text=True)


def test_cli_help_lists_every_subcommand():
    r = _cli("--help")
    assert r.returncode == 0
    for name in ("convert", "golden", "verilog", "sim", "synth", "report"):
        assert name in r.stdout


def test_cli_unknown_command_fails():
    r = _cli("frobnicate")
    assert r.returncode != 0 and "invalid choice" in r.stderr


def test_cli_says_plainly_when_a_subcommand_is_missing(monkeypatch, capsys):
    from spikemllm import cli
    monkeypatch.setitem(cli.COMMANDS, "report", ("spikemllm.sw.no_such_module", "system model"))
    assert cli.main(["report"]) == 2
    assert "not implemented yet" in capsys.readouterr().err
