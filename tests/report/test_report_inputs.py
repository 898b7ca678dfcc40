"""Input parsing: converter reports, synth.json, cosim summary, GPU JSONs, with provenance."""

import json
from pathlib import Path

import pytest

from spikemllm.sw import system_report as sr

REF = sr.SHARED_REFERENCE


def write(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


def test_layer_roles_across_families():
    assert sr.layer_role("model.layers.3.self_attn.q_proj") == "attn_in"
    assert sr.layer_role("model.layers.3.self_attn.o_proj") == "o_in"
    assert sr.layer_role("model.layers.3.mlp.gate_proj") == "mlp_in"
    assert sr.layer_role("model.layers.3.mlp.down_proj") == "down_in"
    assert sr.layer_role("lm_head") == "head_in"
    assert sr.layer_role("encoder.layer.0.attention.self.key") == "attn_in"
    assert sr.layer_role("encoder.layer.0.attention.output.dense") == "o_in"
    assert sr.layer_role("encoder.layer.0.intermediate.dense") == "mlp_in"
    assert sr.layer_role("encoder.layer.0.output.dense") == "down_in"
    assert sr.layer_role("visual.blocks.0.attn.qkv") is None     # vision tower excluded
    assert sr.layer_role("model.norm") is None


def test_converter_reports_pool_per_role_and_modality(tmp_path):
    bert = write(tmp_path / "a.json", {"model": "minilm", "layers": [
        {"name": "encoder.layer.0.attention.self.query", "firing_rate": 0.10, "T": 4},
        {"name": "encoder.layer.1.attention.self.query", "firing_rate": 0.20, "T": 4},
        {"name": "encoder.layer.0.output.dense", "firing_rate": 0.30, "T": 4},
    ]})
    vlm = write(tmp_path / "b.json", {"model": "tiny-qwen2vl", "layers": [
        {"name": "model.layers.0.self_attn.q_proj",
         "firing_rate": {"text": 0.30, "vision": 0.12}, "T": {"text": 4, "vision": 3}},
        {"name": "visual.blocks.0.attn.qkv", "firing_rate": 0.9},
    ]})
    st = sr.parse_converter_reports([bert, vlm], 4, 3)
    assert st.provenance == "measured here"
    assert st.rate("attn_in", "text") == pytest.approx((0.10 + 0.20 + 0.30) / 3)
    assert st.rate("attn_in", "vision") == pytest.approx((0.10 + 0.20 + 0.12) / 3)
    assert st.rate("down_in", "text") == pytest.approx(0.30)
    # roles nobody measured get the mean of the measured (role, modality) rates
    assert "o_in" in st.detail["roles_filled_with_mean"]
    assert st.sources == [bert, vlm]


def test_converter_report_without_rates_is_an_error(tmp_path):
    bad = write(tmp_path / "c.json", {"layers": [{"name": "x"}]})
    with pytest.raises(ValueError, match="firing_rate"):
        sr.parse_converter_reports([bad], 4, 3)


SYNTH = {   # the shape `spikemllm synth --target sky130` writes (figures made up)
    "params": {"lanes": 16, "w_bits": 4, "t_max": 8, "in_max": 1024, "t_kv": 7, "head_dim": 32},
    "fmax_mhz": 180.0, "fmax_mhz_with_sram_macro": 145.0,
    "energy_per_sop_pj": 3.0, "energy_per_sop_logic_only_pj": 2.0,
    "power_mw": {"leakage": 0.001, "internal": 6.0, "switching": 2.0, "sram_dynamic": 1.0},
    "area_um2": {"logic": 5e4, "sram": 2e6},
    "activity": {"source": "default activity 0.2"},
    "pe_array": {"energy_per_sop_pj": 1.0, "energy_per_sop_logic_only_pj": 0.5,
                 "fmax_mhz": 190.0, "area_um2": {"logic": 2e4, "sram": 1.5e6}},
    "mac_baseline": {"energy_per_mac_pj": 2.5, "energy_per_mac_logic_only_pj": 2.0,
                     "fmax_mhz": 290.0, "area_um2": {"logic": 7e4, "sram": 1.9e6},
                     "power_mw": {"leakage": 0.002, "internal": 3.0, "switching": 0.998}},
    "targets": {"sky130": {"designs": {
        "pe_array": {"power_mw": {"leakage": 1.0, "internal": 2.0, "switching": 1.0}},
        "mac_baseline": {"fmax_mhz_with_sram_macro": 145.0},
        "spike_kv_cache": {"energy_per_score_logic_only_pj": 64.0,
                           "power_mw": {"leakage": 1.0, "internal": 2.0, "switching": 1.0}}}}},
}


def test_synth_json_like_for_like_logic_only_energies(tmp_path):
    p = write(tmp_path / "synth.json", SYNTH)
    si = sr.load_synth(p, explicit=True)
    assert si["fmax_mhz"]["value"] == 145.0            # the SRAM macro limits the clock
    assert si["fmax_mhz"]["source"].startswith(f"synthesised here: {p}")
    assert si["mac_fmax_mhz"]["value"] == 145.0
    # PE array logic-only energy x its dynamic share (3 of 4 mW)
    assert si["e_sop_pj"]["value"] == pytest.approx(0.5 * 0.75)
    assert "pe_array.energy_per_sop_logic_only_pj" in si["e_sop_pj"]["source"]
    assert "default activity 0.2" in si["e_sop_pj"]["source"]
    assert si["e_mac_pj"]["value"] == pytest.approx(2.0 * 3.998 / 4.0)
    assert si["e_engine_sop_pj"]["value"] == pytest.approx(2.0 * 8.0 / 8.001)
    assert si["lanes"]["value"] == 16 and si["in_max"]["value"] == 1024
    assert si["leakage_mw"]["value"] == 0.001 and si["mac_leakage_mw"]["value"] == 0.002
    assert si["logic_area_um2"]["value"] == 5e4 and si["mac_logic_area_um2"]["value"] == 7e4
    assert si["mac_sram_area_um2"]["value"] == 1.9e6
    # K/V live in DRAM in the model: the engine's SRAM is its weight memory (the PE array's)
    assert si["engine_sram_area_um2"]["value"] == 1.5e6
    assert si["engine_kv_sram_area_um2"]["value"] == pytest.approx(0.5e6)
    # the score unit: per score / head_dim, times its dynamic share (3 of 4 mW)
    assert si["e_score_elem_pj"]["value"] == pytest.approx(64.0 * 0.75 / 32)
    assert "/ head_dim 32" in si["e_score_elem_pj"]["source"]


def test_synth_json_without_logic_only_figures_says_double_count(tmp_path):
    p = write(tmp_path / "synth.json", {"fmax_mhz": 250.0, "energy_per_sop_pj": 0.3,
                                        "mac_baseline": {"energy_per_mac_pj": 1.2}})
    si = sr.load_synth(p, explicit=True)
    assert si["fmax_mhz"]["value"] == 250.0
    assert si["e_sop_pj"]["value"] == 0.3 and "double count" in si["e_sop_pj"]["source"]
    assert si["e_mac_pj"]["value"] == 1.2
    assert "assumed equal" in si["mac_logic_area_um2"]["source"]
    assert si["e_score_elem_pj"]["value"] is None      # no score unit figure: no sensitivity row


def test_synth_fallbacks_are_labelled(tmp_path):
    si = sr.load_synth(str(tmp_path / "none.json"), explicit=False)
    assert si["fmax_mhz"]["value"] == 200.0 and "fallback" in si["fmax_mhz"]["source"]
    assert si["e_sop_pj"]["value"] == 0.9 and "fallback" in si["e_sop_pj"]["source"]
    assert si["e_mac_pj"]["value"] == 4.6
    with pytest.raises(ValueError, match="no such file"):
        sr.load_synth(str(tmp_path / "none.json"), explicit=True)


def test_sim_summary(tmp_path):
    p = write(tmp_path / "summary.json", {"events_per_cycle": 0.985, "mismatches": 0})
    assert sr.load_sim(p, True) == {"value": 0.985, "source": f"measured here: {p} (cosim)"}
    fb = sr.load_sim(str(tmp_path / "no.json"), False)
    assert fb["value"] == 1.0 and "fallback" in fb["source"]


@pytest.mark.skipif(not (REF / "gpu_baseline_h100_eager.json").exists(),
                    reason="../shared/reference GPU JSONs absent")
def test_reference_gpu_figures():
    g = sr.load_gpu([str(REF / n) for n in sr.DEFAULT_GPU_JSONS])
    assert g["device"] == "NVIDIA H100 80GB HBM3"
    # prefill energy counter is one 1024-token pass (BRIEF: 0.0206 J/token)
    assert g["prefill"]["j_per_token"] == pytest.approx(21.0742 / 1024, rel=1e-4)
    assert g["prefill"]["tokens_per_s"] == pytest.approx(25139.79, rel=1e-5)
    assert g["decode_b1"]["j_per_token"] == pytest.approx(2.627, rel=1e-3)      # graph floor
    assert g["decode_b1_eager"]["j_per_token"] == pytest.approx(10.058, rel=1e-3)
    assert g["decode_b8"]["j_per_token"] == pytest.approx(0.4653, rel=1e-3)     # static cache
    assert g["decode_b8"]["tokens_per_j"] == pytest.approx(1 / 0.46533594, rel=1e-6)
    assert any("one pass" in n for n in g["notes"])


def test_gpu_baseline_script_format(tmp_path):
    p = write(tmp_path / "g.json", {
        "format": "spikemllm-gpu-baseline/1", "device": "NVIDIA H200", "date": "2026-01-01",
        "regimes": {"prefill": {"tokens_per_s": 30000.0, "j_per_token": 0.02, "power_w": 600},
                    "decode_b1": {"tokens_per_s": 200.0, "j_per_token": 2.0},
                    "decode_b8": {"tokens_per_s": 1000.0, "j_per_token": None}}})
    g = sr.load_gpu([p])
    assert g["device"] == "NVIDIA H200"
    assert g["prefill"]["tokens_per_j"] == pytest.approx(50.0)
    assert g["decode_b8"]["tokens_per_j"] is None           # no NVML: no energy, no ratio
    assert g["prefill"]["tokens_per_s_per_mm2"] == pytest.approx(30000 / 814)
    assert "scripts/gpu_baseline.py" in g["prefill"]["source"]


def _gpu_run(path, date, tps, **extra):
    return write(path, {"format": "spikemllm-gpu-baseline/1", "device": "NVIDIA H100",
                        "date": date, **extra,
                        "regimes": {"prefill": {"tokens_per_s": tps, "j_per_token": 0.02}}})


def test_project_gpu_json_picks_the_newest_complete_gpu_run(tmp_path):
    assert sr.project_gpu_json(tmp_path) is None
    _gpu_run(tmp_path / "gpu_baseline_a.json", "2026-12-01T00:00:00Z", 1.0, complete=True)
    newest = _gpu_run(tmp_path / "gpu_baseline_b.json", "2026-12-02T00:00:00Z", 2.0)
    # newer, but a dry run, an unfinished run, another format, unreadable: all passed over
    _gpu_run(tmp_path / "gpu_baseline_c.json", "2026-12-03T00:00:00Z", 3.0, dry_run=True)
    _gpu_run(tmp_path / "gpu_baseline_d.json", "2026-12-04T00:00:00Z", 4.0, complete=False)
    write(tmp_path / "gpu_baseline_e.json", {"format": "other", "date": "2026-12-05"})
    (tmp_path / "gpu_baseline_f.json").write_text("{not json")
    assert str(sr.project_gpu_json(tmp_path)) == newest


def test_default_gpu_prefers_the_projects_run_and_cross_checks_the_reference(tmp_path):
    own, ref = tmp_path / "docs", tmp_path / "ref"
    own.mkdir()
    ref.mkdir()
    write(ref / sr.DEFAULT_GPU_JSONS[0], {"gpu": "NVIDIA H100", "runs": [
        {"prefill_len": 1024, "batch": 1,
         "prefill": {"tokens_per_s": 25000.0, "j_per_token": 0.025}}]})
    g = sr.default_gpu(own, ref)                     # no run of the project's own: reference
    assert g["prefill"]["tokens_per_s"] == 25000.0 and not g["measured_here"]
    p = _gpu_run(own / "gpu_baseline_x.json", "2026-12-05T00:00:00Z", 32000.0)
    g = sr.default_gpu(own, ref)
    assert g["prefill"]["tokens_per_s"] == 32000.0 and g["measured_here"]
    assert g["sources"] == [p]                      # absolute: tmp_path is not below the cwd
    note = next(n for n in g["notes"] if n.startswith("cross-check prefill"))
    assert "32000 tokens/s, 50 tokens/J" in note and "25000 tokens/s, 40 tokens/J" in note
    assert sr.default_gpu(tmp_path / "none", tmp_path / "none") is None


def test_the_kept_project_gpu_run_is_a_complete_fp16_7b_measurement():
    p = sr.project_gpu_json()
    if p is None:
        pytest.skip("no docs/gpu_baseline_*.json in this checkout")
    d = json.loads(Path(p).read_text())
    assert d["dtype"] == "float16" and d["params"] > 7e9 and "H100" in d["device"]
    assert d["energy_source"] and d["complete"] is True
    for k in ("prefill", "decode_b1", "decode_b1_eager", "decode_b8", "decode_b8_graph"):
        r = d["regimes"][k]
        assert r["tokens_per_s"] > 0 and r["j_per_token"] > 0, k
        # board power lies between the idle reading and the H100 SXM's 700 W limit
        assert d["idle_power_w"] * 0.9 < r["j_per_token"] * r["tokens_per_s"] < 700, k
