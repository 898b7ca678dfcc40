"""`spikemllm convert` end to end, the cache check, and bad input leaving nothing behind."""

import json
from pathlib import Path

import pytest

from spikemllm.cli import main
from spikemllm.sw.config import ConverterConfig
from spikemllm.sw.convert_cmd import is_cached

TINYSTORIES = Path(__file__).resolve().parents[2].parent / "shared" / "models" / "tinystories-656k"

DONE_WHEN = ("fidelity", "layers", "totals")


def _check_outputs(out, kind):
    rep = json.loads((out / "report.json").read_text())
    for f in ("report.md", "config.json", "firing_rate.png", "med.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert rep["totals"]["sops"] > 0 and rep["totals"]["energy_snn_j"] > 0
    assert rep["totals"]["energy_snn_j"] == pytest.approx(rep["totals"]["sops"] * 0.9e-12)
    for layer in rep["layers"]:
        assert 0 < layer["firing_rate"] < 1
        for k in ("name", "T", "sops", "in_features", "out_features", "flops", "energy_ann_j",
                  "spikes_per_element"):
            assert k in layer
    assert rep["model"]["kind"] == kind
    assert ConverterConfig.from_json((out / "config.json").read_text()).to_dict() == rep["config_effective"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "temp dirs left"
    return rep


def test_minilm_end_to_end_and_cache(tmp_path, capsys):
    out = tmp_path / "minilm_w4"
    # mse: MiniLM's 2 x 36 GPTQ layers would add ~25 s; the default (gptq) runs in the other CLI tests
    rc = main(["convert", "--model", "minilm", "--wbits", "4", "--encoding", "tc-lif", "--t-text", "4",
               "--weight-quantizer", "mse", "--out", str(out), "--eval-size", "8"])
    assert rc == 0
    rep = _check_outputs(out, "encoder")
    assert 0.5 < rep["fidelity"]["cosine_mean"] <= 1 and rep["fidelity"]["n_sentences"] == 8
    assert rep["fidelity"]["cosine_min"] <= rep["fidelity"]["cosine_mean"]
    assert len(rep["layers"]) == 36 and all(l["T"] == 4 for l in rep["layers"])
    assert set(rep["reference_settings"]) == {"W4/T4", "W8/T7"}
    assert [g["goal"] for g in rep["goals"]] == ["W4 tc-lif Tt=4 mean cosine", "W8 tc-lif T=7 mean cosine"]
    assert "cosine_mean" in capsys.readouterr().out
    cfg = ConverterConfig(w_bits=4, encoding="tc-lif", t_text=4, weight_quantizer="mse")
    assert is_cached(out, "minilm", cfg)
    assert not is_cached(out, "minilm", ConverterConfig(w_bits=4, encoding="tc-lif", t_text=4))  # default gptq
    assert not is_cached(out, "minilm", ConverterConfig(w_bits=8, t_text=7))
    assert not is_cached(out, "tiny-llama", cfg)
    assert not is_cached(tmp_path / "nothing", "minilm", cfg)


def test_tiny_qwen2vl_vision_and_text_tokens_get_their_own_t(tmp_path):
    out = tmp_path / "vl"
    assert main(["convert", "--model", "tiny-qwen2vl", "--out", str(out), "--t-text", "4", "--t-vision", "3",
                 "--eval-size", "24", "--no-reference", "--msts-budget", "3.5"]) == 0
    rep = _check_outputs(out, "vlm")
    vision = [l for l in rep["layers"] if l["tower"] == "vision"]
    text = [l for l in rep["layers"] if l["tower"] == "text"]
    assert len(vision) == 2 * 4 + 2 and len(text) == 2 * 7
    assert all(l["tokens_text"] == 0 and l["tokens_vision"] > 0 for l in vision)
    assert all(l["tokens_text"] > 0 and l["tokens_vision"] > 0 for l in text)  # image tokens in the LM
    lt = rep["config_effective"]["layer_t"]
    for l in text:  # T by modality and layer (MSTS), and the measured T matches it
        tt, tv = lt[l["layer"]]["text"], lt[l["layer"]]["vision"]
        assert l["T_mean"] == pytest.approx((tt * l["tokens_text"] + tv * l["tokens_vision"]) / l["tokens"])
    assert rep["fidelity"]["logit_kl"] >= 0 and "logit_kl_vision" in rep["fidelity"]
    cmp_ = rep["msts"]["comparison"]
    assert cmp_["msts"]["average_t"] <= 3.5 + 1e-9 and cmp_["uniform"]["average_t"] == 3
    assert rep["kv_cache"] and all(k["T"] == 4 for k in rep["kv_cache"])


def test_tiny_llama_ablation_table(tmp_path):
    out = tmp_path / "llama"
    assert main(["convert", "--model", "tiny-llama", "--out", str(out), "--eval-size", "48", "--ablate",
                 "--no-reference", "--weight-quantizer", "rtn"]) == 0
    rep = _check_outputs(out, "causal-lm")
    groups = {}
    for a in rep["ablation"]:
        groups.setdefault(a["group"], []).append(a["variant"])
    assert groups["encoding (equal bits A5)"] == ["rate", "ternary", "tc-lif"]
    assert groups["rotation"] == ["gamma-aligned", "gamma-folded", "none"]
    assert groups["weight quantiser"] == ["rtn", "mse", "gptq"]
    assert len(groups["timesteps"]) == 2
    enc = {a["variant"]: a for a in rep["ablation"] if a["group"].startswith("encoding")}
    # equal bits: same grid, so near-identical fidelity, but far more spikes for rate than tc-lif
    assert enc["rate"]["sops"] > enc["ternary"]["sops"] > enc["tc-lif"]["sops"]
    assert "## Ablation" in (out / "report.md").read_text()


def test_tinystories_perplexity_at_w4t4_and_w8t7(tmp_path):
    if not (TINYSTORIES / "config.json").is_file():
        pytest.skip(f"tinystories-656k not found at {TINYSTORIES}")
    out = tmp_path / "ts"
    assert main(["convert", "--model", str(TINYSTORIES), "--out", str(out), "--eval-size", "300"]) == 0
    rep = _check_outputs(out, "causal-lm")
    f = rep["fidelity"]
    assert f["perplexity_fp32"] > 1 and f["perplexity_w4_t4"] > 1 and f["perplexity_w8_t7"] > 1
    assert abs(f["perplexity_w8_t7"] / f["perplexity_fp32"] - 1) < abs(f["perplexity_w4_t4"] / f["perplexity_fp32"] - 1) + 0.05
    assert rep["goals"][0]["goal"].startswith("W4/T4 perplexity")


def test_config_json_file_and_overrides(tmp_path):
    cfg = ConverterConfig(w_bits=6, t_text=5, rotation="none", skip=["lm_head"])
    path = tmp_path / "c.json"
    path.write_text(cfg.to_json())
    out = tmp_path / "o"
    assert main(["convert", "--model", "tiny-llama", "--out", str(out), "--config", str(path), "--kv-bits", "0",
                 "--eval-size", "16", "--no-reference"]) == 0
    got = ConverterConfig.from_json((out / "config.json").read_text())
    assert got == ConverterConfig(w_bits=6, t_text=5, rotation="none", skip=["lm_head"], kv_bits=0)
    assert ConverterConfig.from_json(got.to_json()) == got
    assert json.loads((out / "report.json").read_text())["kv_cache"] == []


def _write_checkpoint(d, model_type, weights):
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": model_type}))
    for w in weights:
        (d / w).write_bytes(b"not really weights")
    return d


@pytest.mark.parametrize("case", ["arch", "wbits", "t", "missing", "pickle", "config", "budget"])
def test_bad_input_is_a_clear_error_and_leaves_nothing(tmp_path, capsys, case):
    out = tmp_path / "parent" / "out"
    args = {"arch": ["--model", str(_write_checkpoint(tmp_path / "gpt", "gpt2", ["model.safetensors"]))],
            "wbits": ["--model", "tiny-llama", "--wbits", "1"],
            "t": ["--model", "tiny-llama", "--t-text", "16"],
            "missing": ["--model", str(tmp_path / "no_such_model")],
            "pickle": ["--model", str(_write_checkpoint(tmp_path / "pk", "llama", ["pytorch_model.bin"]))],
            "config": ["--model", "tiny-llama", "--config", str(tmp_path / "nope.json")],
            "budget": ["--model", "tiny-llama", "--msts-budget", "20"]}[case]
    msg = {"arch": "supported model_type: llama, qwen2, qwen2_vl, bert", "wbits": "w_bits must be in 2..16",
           "t": "t_text: T for encoding 'tc-lif' must be one of 1..15", "missing": "does not exist",
           "pickle": "--trust-pickle", "config": "does not exist", "budget": "--msts-budget"}[case]
    rc = main(["convert", *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and "Traceback" not in err
    assert not out.exists()
    assert not (out.parent.exists() and list(out.parent.iterdir()))


def test_failure_keeps_the_previous_output(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}")
    assert main(["convert", "--model", "tiny-llama", "--eval-size", "1", "--out", str(out)]) == 2
    assert (out / "report.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_local_qwen2_checkpoint_directory(tmp_path):
    """A Qwen2 checkpoint saved as safetensors (no tokenizer: byte ids) converts like any other."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=300, max_position_embeddings=256)
    ckpt = tmp_path / "qwen2"
    Qwen2ForCausalLM(cfg).save_pretrained(ckpt, safe_serialization=True)
    out = tmp_path / "out"
    assert main(["convert", "--model", str(ckpt), "--out", str(out), "--eval-size", "64", "--no-reference"]) == 0
    rep = _check_outputs(out, "causal-lm")
    assert rep["model"]["family"] == "qwen2" and len(rep["layers"]) == 14 and len(rep["kv_cache"]) == 2
    assert is_cached(out, str(ckpt), ConverterConfig())
