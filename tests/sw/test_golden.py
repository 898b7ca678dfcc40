"""Golden vectors: export -> verify round trips on real models, corruption detection,
determinism and atomic writes (spikemllm.sw.golden, spikemllm.sw.capture)."""

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from spikemllm.cli import main as cli_main
from spikemllm.sw import golden as gd
from spikemllm.sw import layer_quant as lq
from spikemllm.sw import numerics as nx
from spikemllm.sw.capture import capture_attention, capture_linear
from spikemllm.sw.config import ConverterConfig
from spikemllm.sw.events import EventLayout, accumulate_events
from spikemllm.sw.golden import GoldenError, export_golden, load_golden, verify_golden
from spikemllm.sw.models import load_model

REPO = Path(__file__).resolve().parents[2]
TINYSTORIES = REPO.parent / "shared" / "models" / "tinystories-656k"
TS_SPEC = "../shared/models/tinystories-656k"


@pytest.fixture(scope="module")
def minilm():
    return load_model("minilm")


@pytest.fixture(scope="module")
def tinystories():
    if not (TINYSTORIES / "config.json").is_file():
        pytest.skip(f"pretrained LLaMA not found at {TINYSTORIES}")
    return load_model(str(TINYSTORIES))


@pytest.fixture(scope="module")
def qwen2vl():
    return load_model("tiny-qwen2vl")


@pytest.fixture(scope="module")
def l0q(minilm, tmp_path_factory):
    out = tmp_path_factory.mktemp("golden") / "l0q"
    return export_golden("minilm", 0, "q", out, tokens=4, loaded=minilm)


def _files(d):
    return sorted(p.name for p in Path(d).iterdir())


def _rewrite(d, name, data):
    """Replace a file and fix its size and hash in the manifest (so only deeper checks can fail)."""
    d = Path(d)
    (d / name).write_bytes(data)
    m = json.loads((d / gd.MANIFEST).read_text())
    m["files"][name]["bytes"] = len(data)
    m["files"][name]["sha256"] = hashlib.sha256(data).hexdigest()
    (d / gd.MANIFEST).write_bytes(gd._manifest_bytes(m))


# ---------------------------------------------------------------------------------------------
# round trip
# ---------------------------------------------------------------------------------------------

def _gptq_layer(loaded, module, cfg, whole_model=False):
    """The converter's calibrated SpikeLinear ``module`` (GPTQ): the whole model converted and
    calibrated as ``spikemllm convert`` does, or only that linear (what golden does)."""
    from spikemllm.sw.convert import convert
    from spikemllm.sw.fidelity import make_workload

    cm = convert(loaded, cfg, filter=None if whole_model else (lambda n: n == module))
    wl = make_workload(loaded)
    cm.calibrate(lambda m: wl.run_calibration(m, cm.context))
    (sl,) = [l for l in cm.layers if l.name == module]
    assert not sl.needs_hessian
    return sl


def test_minilm_round_trip_matches_converter_integers(minilm, l0q):
    report = verify_golden(l0q)
    assert report.kind == "linear" and set(report.files) == set(_files(l0q))
    gv = load_golden(l0q)
    assert gv.kind == "linear" and gv.weights.shape == (32, 384) and gv.lanes == 32 and gv.w_bits == 4
    assert gv.layout == EventLayout(4096, 8) and gv.in_features == 384
    # independent recomputation with the converter's functions
    cap = capture_linear(minilm, 0, "q", 4)
    cfg = ConverterConfig()
    assert cfg.weight_quantizer == "gptq"  # the default: the converter's calibrated integers
    p = _gptq_layer(minilm, cap.module, cfg).integer_params()
    w, s_w = p["w"][:32], p["s_w"][:32]
    # GPTQ keeps the mse scales and moves integers away from round-to-nearest
    w_mse, s_mse = lq.quantize_weights(lq.rotate_weight(cap.weight[:32]), cfg.w_bits, "mse")
    assert np.array_equal(s_w, s_mse) and not np.array_equal(w, w_mse)
    enc = lq.encode_activations(lq.rotate(cap.x), cfg, cap.modality, 0)
    acc, _, _ = lq.linear_integer_path(enc, w, s_w, cfg.encoding)
    assert np.array_equal(gv.weights, w) and np.array_equal(gv.s_w, s_w)
    assert np.array_equal(gv.expected_acc, acc) and np.array_equal(gv.s_x, enc.s_x)
    assert np.array_equal(accumulate_events(gv.events, gv.weights), acc)
    assert gv.T_in.tolist() == [4] * 4 and gv.T_out.tolist() == [4] * 4 and gv.T.tolist() == [4] * 4
    assert gv.theta == nx.theta_for_step(np.abs(acc).max() / 15, 8) and gv.frac_bits == 8
    # the strongest accumulator lands at the top of the 4-step output grid
    assert np.abs(gv.expected_q_out).max() == 15
    assert gv.manifest["converter_config"] == cfg.to_dict()
    wi = gv.manifest["weights"]
    assert wi["quantizer"] == "gptq" and "integer_params" in wi["source"]
    assert wi["calibration"]["valid_tokens"] > 0 and len(wi["calibration"]["inputs_sha256"]) == 64
    assert gv.manifest["model"]["spec"] == "minilm" and gv.manifest["source"]["module"].endswith("layer.0.attention.self.query")


def test_hex_words_follow_the_documented_bit_layout(l0q):
    gv = load_golden(l0q)
    lines = (Path(l0q) / "events_in.hex").read_text().splitlines()
    assert len(lines) == len(gv.events) and all(len(s) == 5 for s in lines)  # 20-bit words
    for k in (0, len(lines) // 2, len(lines) - 1):
        e = gv.events[k]
        word = (int(e["index"]) | int(e["sign"]) << 12 | int(e["t"]) << 13 | int(e["last_in_step"]) << 16
                | int(e["last_in_token"]) << 17 | int(e["empty"]) << 18 | int(e["modality"]) << 19)
        assert int(lines[k], 16) == word
    rows = (Path(l0q) / "weights.hex").read_text().splitlines()
    assert len(rows) == 384 and all(len(r) == 32 for r in rows)  # 32 lanes x 4 bits
    for i in (0, 100, 383):
        word = int(rows[i], 16)
        lanes = [(word >> (4 * L)) & 0xF for L in range(32)]
        assert [v - 16 if v >= 8 else v for v in lanes] == gv.weights[:, i].tolist()
    acc = (Path(l0q) / "expected_acc.hex").read_text().splitlines()
    bits = gv.manifest["hardware"]["derived"]["acc_bits"]
    v = int(acc[33], 16)
    assert (v - (1 << bits) if v >> (bits - 1) else v) == gv.expected_acc[1, 1]


def test_cli_export_and_verify(tmp_path, capsys):
    out = tmp_path / "l0q"
    assert cli_main(["golden", "--model", "minilm", "--layer", "0", "--proj", "q", "--tokens", "8",
                     "--weight-quantizer", "mse", "--out", str(out)]) == 0
    m = json.loads((out / gd.MANIFEST).read_text())
    assert m["weights"]["quantizer"] == m["converter_config"]["weight_quantizer"] == "mse"
    assert m["weights"]["calibration"] is None
    assert cli_main(["golden", "--verify", str(out)]) == 0
    assert "OK (linear, 8 files)" in capsys.readouterr().out
    # refuses to overwrite without --force
    assert cli_main(["golden", "--model", "minilm", "--layer", "0", "--proj", "q", "--out", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err
    # a corrupted file: non-zero exit and the file named
    p = out / "expected_out.hex"
    b = bytearray(p.read_bytes())
    b[3] ^= 0x01
    p.write_bytes(bytes(b))
    assert cli_main(["golden", "--verify", str(out)]) == 2
    assert "expected_out.hex: SHA-256 mismatch" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# corruption
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def qvl_attn(qwen2vl, tmp_path_factory):
    out = tmp_path_factory.mktemp("golden") / "qvl-attn"
    return export_golden("tiny-qwen2vl", 1, "attn", out, tokens=4, modality="mixed", loaded=qwen2vl)


@pytest.mark.parametrize("which,n_files", [("l0q", 8), ("qvl_attn", 6)])
def test_byte_flip_in_any_file_is_detected_and_named(which, n_files, request, tmp_path):
    src = request.getfixturevalue(which)
    names = _files(src)
    assert gd.MANIFEST in names and len(names) == n_files
    for name in names:
        size = (Path(src) / name).stat().st_size
        for pos in sorted({0, size // 3, size // 2, size - 2, size - 1}):
            for xor in (0x01, 0x20, 0x80):
                d = tmp_path / f"{name}-{pos}-{xor}"
                shutil.copytree(src, d)
                b = bytearray((d / name).read_bytes())
                b[pos] ^= xor
                (d / name).write_bytes(bytes(b))
                with pytest.raises(GoldenError) as ei:
                    verify_golden(d)
                assert Path(ei.value.file).name == name, (name, pos, xor, str(ei.value))
                shutil.rmtree(d)


def test_truncated_and_missing_and_extra_files(l0q, tmp_path):
    d = tmp_path / "t"
    shutil.copytree(l0q, d)
    p = d / "events_in.hex"
    p.write_bytes(p.read_bytes()[:-7])
    with pytest.raises(GoldenError, match=r"events_in\.hex: truncated: \d+ bytes, manifest says \d+"):
        verify_golden(d)
    shutil.rmtree(d)
    shutil.copytree(l0q, d)
    (d / "weights.npz").unlink()
    with pytest.raises(GoldenError, match=r"weights\.npz: missing"):
        verify_golden(d)
    shutil.rmtree(d)
    shutil.copytree(l0q, d)
    (d / "notes.txt").write_text("x")
    with pytest.raises(GoldenError, match=r"notes\.txt: not listed in the manifest"):
        verify_golden(d)
    (d / "notes.txt").unlink()
    (d / gd.MANIFEST).write_bytes((d / gd.MANIFEST).read_bytes()[:100])
    with pytest.raises(GoldenError, match=r"manifest\.json: not valid JSON"):
        verify_golden(d)


def test_wrong_schema_version_is_refused(l0q, tmp_path):
    d = tmp_path / "v"
    shutil.copytree(l0q, d)
    m = json.loads((d / gd.MANIFEST).read_text())
    m["schema_version"] = gd.SCHEMA_VERSION + 1
    (d / gd.MANIFEST).write_bytes(gd._manifest_bytes(m))  # otherwise a valid, self-hashed manifest
    with pytest.raises(GoldenError, match=r"manifest\.json: schema_version 2 is not supported"):
        verify_golden(d)
    with pytest.raises(GoldenError, match="schema_version"):
        load_golden(d, verify=False)


def test_replay_catches_inconsistent_content_with_valid_hashes(l0q, tmp_path):
    # weights.hex rewritten (hash fixed up): disagrees with weights.npz
    d = tmp_path / "w"
    shutil.copytree(l0q, d)
    lines = (d / "weights.hex").read_text().splitlines()
    lines[5] = ("0" if lines[5][0] != "0" else "1") + lines[5][1:]
    _rewrite(d, "weights.hex", ("\n".join(lines) + "\n").encode())
    with pytest.raises(GoldenError, match=r"weights\.hex: rows disagree with weights\.npz"):
        verify_golden(d)
    # an expected accumulator changed consistently in .npz (hash fixed up): replay disagrees
    d = tmp_path / "a"
    shutil.copytree(l0q, d)
    with np.load(d / "expected.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["acc"][2, 7] += 1
    _rewrite(d, "expected.npz", gd._npz_bytes(arrays))
    with pytest.raises(GoldenError, match=r"expected\.npz: acc disagrees with accumulate_events"):
        verify_golden(d)
    # theta not following the rule
    d = tmp_path / "th"
    shutil.copytree(l0q, d)
    m = json.loads((d / gd.MANIFEST).read_text())
    m["scales"]["theta"] += 1
    (d / gd.MANIFEST).write_bytes(gd._manifest_bytes(m))
    with pytest.raises(GoldenError, match=r"manifest\.json: theta \d+ does not follow the theta rule"):
        verify_golden(d)
    # the recorded weight quantiser must be the config's
    d = tmp_path / "wq"
    shutil.copytree(l0q, d)
    m = json.loads((d / gd.MANIFEST).read_text())
    m["weights"]["quantizer"] = "rtn"
    (d / gd.MANIFEST).write_bytes(gd._manifest_bytes(m))
    with pytest.raises(GoldenError, match=r"manifest\.json: weights\.quantizer 'rtn' disagrees with the config's 'gptq'"):
        verify_golden(d)


# ---------------------------------------------------------------------------------------------
# determinism and atomicity
# ---------------------------------------------------------------------------------------------

def test_two_exports_are_byte_identical(minilm, l0q, tmp_path):
    again = export_golden("minilm", 0, "q", tmp_path / "again", tokens=4, loaded=minilm)
    assert _files(again) == _files(l0q)
    for name in _files(l0q):
        assert (Path(l0q) / name).read_bytes() == (again / name).read_bytes(), name
    with zipfile.ZipFile(again / "expected.npz") as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}


MSE = ConverterConfig(weight_quantizer="mse")  # tests not about the weights skip GPTQ calibration


def test_failure_mid_export_leaves_nothing(minilm, tmp_path, monkeypatch):
    written = []
    real = gd._write_file

    def failing(path, data):
        if len(written) == 3:
            raise OSError("disk full (simulated)")
        written.append(path)
        real(path, data)

    monkeypatch.setattr(gd, "_write_file", failing)
    out = tmp_path / "sub" / "g"
    with pytest.raises(OSError, match="simulated"):
        export_golden("minilm", 0, "q", out, tokens=2, loaded=minilm, config=MSE)
    assert len(written) == 3 and not out.exists() and list((tmp_path / "sub").iterdir()) == []
    # --force over an existing directory: a failure keeps the old directory intact
    monkeypatch.setattr(gd, "_write_file", real)
    export_golden("minilm", 0, "q", out, tokens=2, loaded=minilm, config=MSE)
    before = {n: (out / n).read_bytes() for n in _files(out)}
    written.clear()
    monkeypatch.setattr(gd, "_write_file", failing)
    with pytest.raises(OSError, match="simulated"):
        export_golden("minilm", 0, "k", out, tokens=2, loaded=minilm, force=True, config=MSE)
    assert {n: (out / n).read_bytes() for n in _files(out)} == before
    assert _files(tmp_path / "sub") == ["g"]
    with pytest.raises(ValueError, match="exists; pass --force"):
        export_golden("minilm", 0, "q", out, tokens=2, loaded=minilm)


def test_force_refuses_a_directory_that_is_not_golden(minilm, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("...")
    with pytest.raises(ValueError, match="not a golden directory"):
        export_golden("minilm", 0, "q", out, tokens=2, loaded=minilm, force=True, config=MSE)
    assert (out / "thesis.tex").exists()


# ---------------------------------------------------------------------------------------------
# real decoder (tinystories) and multimodal (tiny Qwen2-VL)
# ---------------------------------------------------------------------------------------------

def test_tinystories_mlp_down_projection(tinystories, tmp_path):
    out = export_golden(TS_SPEC, 1, "down", tmp_path / "down", tokens=6, tile=2, loaded=tinystories)
    verify_golden(out)
    gv = load_golden(out)
    m = gv.manifest
    assert m["source"]["module"] == "model.layers.1.mlp.down_proj" and gv.in_features == 384
    assert m["layer"]["out_channels"] == [64, 96] and m["model"]["family"] == "llama"
    assert "model.safetensors" in m["model"]["weights_sha256"]
    assert m["stats"]["rel_err_vs_float"] < 0.3  # W4 / 5-bit activations on a real layer


def test_tinystories_attention_kv_planes_and_scores(tinystories, tmp_path):
    import torch

    out = export_golden(TS_SPEC, 1, "attn", tmp_path / "attn", tokens=6, loaded=tinystories)
    verify_golden(out)
    gv = load_golden(out)
    assert gv.kind == "attention" and gv.weights is None and gv.heads == 2 and gv.head_dim == 16
    assert gv.t_kv == ConverterConfig().kv_bits - 1
    assert gv.k_pos.shape == (2, 6, gv.t_kv, 16) and gv.q_pos.shape == (6, 2, gv.t_kv, 16)
    assert gv.expected_scores.shape == (6, 2, 6)
    kz = np.load(out / "kv.npz")
    assert np.array_equal(gv.expected_scores, np.einsum("nhd,hmd->nhm", kz["q_int"], kz["k_int"]))
    # the captured K is the post-RoPE K that the model's own KV cache stores
    cap = capture_attention(tinystories, 1, 6)
    from spikemllm.sw.capture import _text_inputs
    inputs = _text_inputs(tinystories, 6)[0]
    with torch.no_grad():
        cache = tinystories.model(**inputs, use_cache=True).past_key_values
    assert np.array_equal(cache.layers[1].keys[0].double().numpy(), cap.key)
    k_int, _ = nx.quantize_kv(cap.key[:2, :6], ConverterConfig().kv_bits)
    assert np.array_equal(kz["k_int"], k_int)
    # plane file layout: line (h*tokens + n)*t_kv + t, bit i = element i
    lines = (out / "k_planes.hex").read_text().splitlines()
    assert len(lines) == 2 * 6 * gv.t_kv and all(len(s) == 8 for s in lines)  # {neg, pos}: 32 bits
    for h, n, t in ((1, 4, 2), (0, 0, 0), (1, 5, gv.t_kv - 1)):
        word = int(lines[(h * 6 + n) * gv.t_kv + t], 16)
        assert [(word >> i) & 1 for i in range(16)] == gv.k_pos[h, n, t].astype(int).tolist()
        assert [(word >> (16 + i)) & 1 for i in range(16)] == gv.k_neg[h, n, t].astype(int).tolist()


def test_tiny_qwen2_attention_fits_the_default_kv_cache(tmp_path):
    """make sim's tq2-attn set: tiny-qwen2's attention at kv_bits 8 is a case of the default
    HwParams' KV cache itself, so its trace drives the default spike_kv_cache's netlist."""
    from spikemllm.cosim.stimulus import golden_kv_case, kv_params_for
    from spikemllm.hw.params import HwParams

    out = export_golden("tiny-qwen2", 1, "attn", tmp_path / "tq2", tokens=4,
                        config=ConverterConfig(kv_bits=8))
    gv = load_golden(out)
    hw = HwParams()
    assert (gv.heads, gv.head_dim, gv.t_kv) == (hw.heads, hw.head_dim, hw.t_kv) == (2, 64, 7)
    assert load_golden(out).manifest["model"]["source"].startswith("transformers Qwen2Config")
    case = golden_kv_case(out)
    assert kv_params_for(case, hw, keep_fitting=True) == hw
    assert kv_params_for(case, hw).kv_depth == 4       # sized for the case without it


def test_qwen2vl_mixed_modality_language_layer(qwen2vl, tmp_path):
    out = export_golden("tiny-qwen2vl", 0, "down", tmp_path / "mixed", tokens=8, modality="mixed",
                        loaded=qwen2vl)
    verify_golden(out)
    gv = load_golden(out)
    vis = gv.modality == 1
    assert vis.sum() == 4 and (~vis).sum() == 4
    assert gv.T_in[vis].tolist() == [3] * 4 and gv.T_in[~vis].tolist() == [4] * 4  # Tv = 3, Tt = 4
    assert gv.T_out[vis].tolist() == [3] * 4 and (gv.t_text_out, gv.t_vision_out) == (4, 3)
    ends = gv.events[gv.events["last_in_token"] == 1]
    assert ends["modality"].tolist() == gv.modality.tolist()
    assert gv.expected_out_events["t"][gv.expected_out_events["modality"] == 1].max() <= 2
    assert np.abs(gv.expected_q_out[vis]).max() <= 7 and np.abs(gv.expected_q_out[~vis]).max() <= 15
    assert gv.manifest["source"]["module"] == "model.language_model.layers.0.mlp.down_proj"


def test_qwen2vl_mixed_attention_and_vision_tower(qwen2vl, qvl_attn, tmp_path):
    assert verify_golden(qvl_attn).kind == "attention"
    gv = load_golden(qvl_attn)
    assert gv.modality.tolist().count(1) == 2 and gv.heads == 2 and gv.head_dim == 32
    assert gv.manifest["hardware"]["t_kv"] == gv.t_kv and gv.manifest["hardware"]["head_dim"] == 32
    v = export_golden("tiny-qwen2vl", 1, "fc2", tmp_path / "v", tokens=4, modality="vision",
                      tower="vision", loaded=qwen2vl)
    gv = load_golden(v)
    assert gv.manifest["source"]["module"] == "model.visual.blocks.1.mlp.fc2"
    assert gv.modality.tolist() == [1] * 4 and gv.T_in.tolist() == [3] * 4


def test_clear_errors_for_bad_requests(minilm, tmp_path):
    with pytest.raises(ValueError, match=r"layer must be in 0\.\.5"):
        export_golden("minilm", 6, "q", tmp_path / "x", loaded=minilm)
    with pytest.raises(ValueError, match="proj for a bert text tower must be one of"):
        export_golden("minilm", 0, "gate", tmp_path / "x", loaded=minilm)
    with pytest.raises(ValueError, match=r"--tile must be in 0\.\.11"):
        export_golden("minilm", 0, "q", tmp_path / "x", tile=12, loaded=minilm)
    with pytest.raises(ValueError, match="needs a vision-language model"):
        export_golden("minilm", 0, "q", tmp_path / "x", modality="mixed", loaded=minilm)
    with pytest.raises(ValueError, match="more than --t-max 4"):
        export_golden("minilm", 0, "q", tmp_path / "x", tokens=2, loaded=minilm,
                      config=ConverterConfig(t_text=6, weight_quantizer="mse"), hw={"t_max": 4})
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------
# the plain-Verilog $readmemh testbench of docs/golden-vectors.md, run by Verilator
# ---------------------------------------------------------------------------------------------

def test_doc_verilog_testbench_replays_the_hex_files(l0q, tmp_path):
    import re
    import subprocess

    from spikemllm.hw.tools import verilator_env

    env = verilator_env()
    if shutil.which("verilator", path=env.get("PATH")) is None:
        pytest.skip("verilator not installed")
    doc = (REPO / "docs" / "golden-vectors.md").read_text()
    src = re.search(r"```verilog\n(// golden_acc_tb\.v.*?)```", doc, re.S).group(1)
    (tmp_path / "golden_acc_tb.v").write_text(src)
    m = json.loads((Path(l0q) / gd.MANIFEST).read_text())
    hw = m["hardware"]
    params = {"LANES": hw["lanes"], "W_BITS": hw["w_bits"], "IN_FEATURES": m["layer"]["in_features"],
              "N_EVENTS": m["files"]["events_in.hex"]["lines"], "N_TOKENS": m["tokens"]["count"],
              "INDEX_BITS": hw["derived"]["index_bits"], "T_BITS": hw["derived"]["t_bits"],
              "ACC_BITS": hw["derived"]["acc_bits"], "HORNER": int(m["layer"]["horner"])}
    build = subprocess.run(["verilator", "--binary", "-Wno-fatal", "--top-module", "golden_acc_tb",
                            *[f"-G{k}={v}" for k, v in params.items()], "golden_acc_tb.v", "-Mdir", "obj"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    binary = tmp_path / "obj" / "Vgolden_acc_tb"
    ok = subprocess.run([str(binary)], cwd=l0q, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    n_tok, n_ev = m["tokens"]["count"], params["N_EVENTS"]
    assert f"golden_acc_tb: {n_tok} tokens, {n_ev} events, 0 mismatches" in ok.stdout
    # the testbench really compares: one wrong expected accumulator fails it
    bad = tmp_path / "bad"
    shutil.copytree(l0q, bad)
    lines = (bad / "expected_acc.hex").read_text().splitlines()
    lines[5] = f"{(int(lines[5], 16) + 1) % (1 << params['ACC_BITS']):0{len(lines[5])}x}"
    (bad / "expected_acc.hex").write_text("\n".join(lines) + "\n")
    fail = subprocess.run([str(binary)], cwd=bad, capture_output=True, text=True)
    assert fail.returncode != 0 and "token 0 lane 5" in fail.stdout and "1 mismatches" in fail.stdout


# ---------------------------------------------------------------------------------------------
# parity with the converter's SpikeLinear (sw/convert.py) for the same layer and input
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which,layer,proj,kw", [
    ("minilm", 0, "q", dict(rotation="gamma-folded")),         # BERT post-norm: input affine undone
    ("minilm", 1, "up", dict(rotation="gamma-aligned", act_scale="static")),
    ("minilm", 2, "k", dict(weight_quantizer="mse")),
    ("tinystories", 1, "gate", dict(rotation="gamma-folded")),  # pre-norm: gamma folded into W
    ("tinystories", 1, "o", dict()),                           # the default config (gptq)
    ("tinystories", 0, "down", dict(rotation="none", weight_quantizer="rtn")),
])
def test_exported_integers_equal_the_converters_spike_linear(which, layer, proj, kw, request, tmp_path):
    import torch

    from spikemllm.sw.convert import convert

    loaded = request.getfixturevalue(which)
    cfg = ConverterConfig(**kw)
    out = export_golden(which, layer, proj, tmp_path / "g", tokens=6, tile=1, config=cfg, loaded=loaded)
    gv = load_golden(out)
    cap = capture_linear(loaded, layer, proj, 6)
    if cfg.weight_quantizer == "gptq":
        # tinystories: the whole model converted and calibrated, as `spikemllm convert` does
        # (MiniLM's 36 GPTQ layers take a minute: only this layer there)
        sl = _gptq_layer(loaded, cap.module, cfg, whole_model=which == "tinystories")
        assert gv.manifest["weights"]["quantizer"] == "gptq"
    else:
        sl = convert(loaded, cfg, filter=lambda n: n == cap.module).layers[0]
        assert gv.manifest["weights"]["calibration"] is None
    p = sl.integer_params()
    lanes = slice(32, 64)
    assert np.array_equal(gv.weights, p["w"][lanes]) and np.array_equal(gv.s_w, p["s_w"][lanes])
    assert np.array_equal(gv.bias, np.zeros(32) if p["bias"] is None else p["bias"][lanes])
    assert gv.manifest["layer"]["rotation_block"] == p["block"]
    if cfg.act_scale == "static":
        sl.static_scales = gv.manifest["scales"]["static_scales"]
    x_hat = gd._fold_gamma(loaded, cap)[0] if cfg.rotation == "gamma-folded" else cap.x_all
    if sl.affine_gamma is not None:  # post-norm: the SpikeLinear undoes the affine itself
        x2 = sl._input(torch.from_numpy(cap.x))
        assert np.allclose(x2.numpy(), x_hat[cap.positions], rtol=0, atol=1e-12)
    else:
        x2 = torch.from_numpy(x_hat[cap.positions])
    y, acc, q, s, T, bits = sl.spike_forward(x2, torch.from_numpy(cap.modality))
    assert np.array_equal(acc.numpy()[:, lanes].astype(np.int64), gv.expected_acc)
    assert np.array_equal(s.numpy(), gv.s_x) and T.tolist() == gv.T_in.tolist()



def test_make_sim_exports_a_golden_set_again_when_its_lanes_change(tmp_path, monkeypatch):
    """``make sim`` reuses a golden directory only when it was exported with today's converter
    config and LANES; its linear sets are as wide as the documented ``synth --sweep`` (64)."""
    from spikemllm.cosim import run as sim

    linear = [gargs for gargs, kind in sim.GOLDEN_SETS.values() if kind == "linear"]
    assert linear and all(sim._golden_made_with(g)[1] == sim.GOLDEN_LANES == 64 for g in linear)
    gargs = ["--model", "tiny-llama", "--layer", "0", "--proj", "q", "--tokens", "2",
             "--in-max", "128", "--lanes"]
    monkeypatch.setattr(sim, "GOLDEN_SETS", {"tl-q": (gargs + ["4"], "linear")})
    lines = []
    found, _ = sim.step_golden(tmp_path, lines.append)
    assert load_golden(found["tl-q"][0]).weights.shape == (4, 128)
    sim.step_golden(tmp_path, lines.append)
    assert any("tl-q: cached" in m for m in lines)
    monkeypatch.setitem(sim.GOLDEN_SETS, "tl-q", (gargs + ["8"], "linear"))
    found, _ = sim.step_golden(tmp_path, lines.append)
    assert any("stale (exported for 4 lanes, not 8)" in m for m in lines)
    assert load_golden(found["tl-q"][0]).weights.shape == (8, 128)
