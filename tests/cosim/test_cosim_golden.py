"""Real-model golden vectors replayed on the exported RTL: MiniLM (text, Tt = 4), tiny Qwen2-VL
(vision Tv = 3 and text Tt = 4 tokens mixed) and the tinystories LLaMA's KV-cache case."""

import json

import pytest

from spikemllm.cosim import regression
from spikemllm.cosim.stimulus import golden_engine_cases, golden_kv_case, kv_params_for
from spikemllm.hw.tools import REPO_ROOT

pytestmark = pytest.mark.cosim

TINYSTORIES = REPO_ROOT.parent / "shared" / "models" / "tinystories-656k"


@pytest.mark.parametrize("config", ["lanes8", "lanes32"])
def test_engine_replays_real_spike_trains_bit_exact(config, golden_linear, cosim_builds, tmp_path):
    cb = cosim_builds(config, "engine")
    cases = [c for d in golden_linear for c in golden_engine_cases(d, cb.params)]
    mixed = [c for c in cases if c.name.startswith("qvl")]
    # the multimodal layer really switches T per token: vision tokens Tv = 3, text Tt = 4
    assert mixed and set(mixed[0].T_out.tolist()) == {3, 4}
    assert set(mixed[0].modality.tolist()) == {0, 1}
    run = regression.run_cases(cb, "engine", cases, traffic=("free", "stress"), seed=99,
                               work_dir=tmp_path)
    bad = [(c["id"], c.get("problems"), c.get("mismatch_examples"), c.get("error"))
           for c in run["cases"] if not c.get("passed")]
    assert run["process_passed"] and not bad, (run["error"], bad)
    free = [c for c in run["cases"] if c["traffic"] == "free"]
    for c in run["cases"]:
        assert c["mismatches"] == 0
        assert c["counters_hw"] == c["counters_tb"]
    # sustained throughput on real spike trains with no backpressure
    assert all(c["stall_cycles"] == 0 for c in free)
    ev = sum(c["events_in"] for c in free)
    cyc = sum(c["cycles_busy"] for c in free)
    assert ev / cyc >= 0.98, (ev, cyc)
    # the activity file of this run is one that `spikemllm synth --activity` accepts
    act = regression.activity([run])
    assert act["events_per_cycle"] == ev / cyc
    assert 0 < act["input_activity"] < 1 and 0 < act["spike_density"] < 1
    assert 0 < act["mac_input_activity"] < 1
    # each (token, index) that fires does so at 1..T steps; the activity says how often
    spikes = sum(c["input_spikes"] for c in free)
    active = sum(c["input_active_inputs"] for c in free)
    assert 0 < active < spikes and act["spikes_per_active_input"] == spikes / active
    assert act["spikes_per_active_input"] <= cb.params.t_max
    # configuration inputs hold still during inference
    assert act["port_activity"]["cfg_*"] == act["port_activity"]["horner"] == 0.0
    try:
        from spikemllm.hw.synth import load_activity
    except ImportError:
        return
    path = tmp_path / "activity.json"
    path.write_text(json.dumps(act))
    loaded = load_activity(path)
    assert loaded["input_activity"] == act["input_activity"]
    assert loaded["events_per_cycle"] == act["events_per_cycle"]
    assert loaded["mac_input_activity"] == act["mac_input_activity"]
    if config == "lanes32":
        # register toggle rates for synthesis, on the same real cases (Amaranth simulator)
        from spikemllm.hw.params import HwParams
        ra = regression.register_activity(cases, HwParams(), log=lambda m: None,
                                          trace_dir=tmp_path / "traces")
        rates = ra["register_activity_by_design"]
        assert set(rates) == {"spike_engine", "pe_array", "mac_baseline"}
        assert all(0 < r < 1 for r in rates.values())
        # every port at every cycle, one trace per design and case, for --clock-gating
        traces = ra["port_traces_by_design"]
        assert set(traces) == set(rates) and all(len(v) == len(cases) for v in traces.values())
        path.write_text(json.dumps({**act, **ra}))
        loaded = load_activity(path)
        assert loaded["register_activity_by_design"] == rates
        for design, files in loaded["port_traces_by_design"].items():
            assert files == [str(tmp_path / f) for f in traces[design]]
            from spikemllm.hw.netlist_sim import PortTrace
            assert all(PortTrace.load(f).cycles > 0 for f in files)


def test_kv_cache_replays_real_attention_planes(cosim_builds, golden_export, tmp_path):
    if not TINYSTORIES.is_dir():
        pytest.skip(f"{TINYSTORIES} is not present")
    d = golden_export("ts-attn", str(TINYSTORIES), 1, "attn", 16)
    case = golden_kv_case(d)
    cb = cosim_builds("lanes8", "kv")
    assert kv_params_for(case, cb.params) == cb.params, "lanes8 KV sizing no longer fits ts-attn"
    run = regression.run_cases(cb, "kv", [case], traffic=("free", "stress"), seed=5,
                               work_dir=tmp_path)
    bad = [(c["id"], c.get("problems"), c.get("mismatch_examples")) for c in run["cases"]
           if not c.get("passed")]
    assert run["process_passed"] and not bad, bad
    for c in run["cases"]:
        assert c["mismatches"] == 0
        assert c["scores"] >= 2 * 16 * 16   # every query of both heads against 16 keys
        assert c["capacity_checked"]        # 16 tokens fill kv_depth 16: refusal + clear
    # the K cache's activity for synthesis, on the same real planes (Amaranth simulator)
    from spikemllm.hw.params import HwParams
    from spikemllm.hw.synth import load_activity
    ra = regression.register_activity([], HwParams(), log=lambda m: None, kv_cases=[case])
    assert 0 < ra["register_activity_by_design"]["spike_kv_cache"] < 1
    assert 0.5 < ra["score_planes_per_cycle"] <= 1.0     # the walker is busy most cycles
    path = tmp_path / "activity.json"
    path.write_text(json.dumps(ra))
    loaded = load_activity(path)
    assert loaded["port_activity_by_design"] == ra["port_activity_by_design"]
    assert loaded["score_planes_per_cycle"] == ra["score_planes_per_cycle"]
