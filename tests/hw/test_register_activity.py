"""Register toggle rates measured in the Amaranth simulator (hw/register_activity.py)."""

import numpy as np
import pytest

from spikemllm.hw import register_activity as RA
from spikemllm.hw.mac_baseline import activation_bits
from spikemllm.hw.params import HwParams
from spikemllm.hw.pe_array import TernaryAccumulatorArray
from spikemllm.sw import events as E, numerics as nx

P = HwParams(lanes=2, w_bits=4, t_max=4, in_max=16)


def _case(seed, n_tokens=4, n_in=12):
    rng = np.random.default_rng(seed)
    w = rng.integers(P.w_min, P.w_max + 1, size=(P.lanes, n_in))
    q = rng.integers(-15, 16, size=(n_tokens, n_in)) * (rng.random((n_tokens, n_in)) < 0.5)
    spikes = np.zeros((P.t_max, n_tokens, n_in), np.int8)
    for i in range(n_tokens):
        spikes[:, i] = nx.encode(q[i], "tc-lif", P.t_max + 1)
    return w, q, E.spikes_to_events(spikes, P.t_max)


def _toggles(states, bits):
    mask = (1 << bits) - 1
    s = [int(x) & mask for x in states]
    return sum((a ^ b).bit_count() for a, b in zip(s, s[1:]))


def test_clocked_registers_are_the_flip_flops_not_the_memory():
    names = set(RA.clocked_registers(TernaryAccumulatorArray(params=P)))
    # the accumulators are split (low bits clocked every cycle, the rest on a carry)
    assert {"acc0_lo", "acc0_hi", "acc1_lo", "fresh", "o_valid", "s1_sign", "s1_valid"} <= names
    assert not any(n.startswith("weights.mem") for n in names)   # the words are no registers
    # the asic style's memory is read through alternating ports: its row register and phase are
    assert P.alternating_ports and {"weights.r_data", "weights.phase", "weights.a1_valid"} <= names
    one_port = set(RA.clocked_registers(TernaryAccumulatorArray(
        params=HwParams(lanes=2, w_bits=4, t_max=4, in_max=16, alternating_ports=False))))
    assert not any("weights" in n or "data" in n for n in one_port)


def test_pe_accumulator_toggles_follow_the_running_sums():
    """Each accumulator steps through its running sums (Horner per step, reloaded at each
    token's first event): its measured toggles are those of that sequence, from 0."""
    w, q, ev = _case(1)
    r = RA.pe_array_activity(P, w, ev)
    assert np.array_equal(E.events_to_counts(ev, w.shape[1]), q)  # the stream encodes q
    for lane in range(P.lanes):
        states, acc, fresh = [0], 0, False
        for e in ev:
            add = 0 if e["empty"] else (-1 if e["sign"] else 1) * int(w[lane, e["index"]])
            acc = add if fresh else acc + add
            fresh = bool(e["last_in_token"])
            if e["last_in_step"] and not e["last_in_token"]:
                acc <<= 1
            states.append(acc)
        toggles = r["by_register"][f"acc{lane}_lo"] + r["by_register"][f"acc{lane}_hi"]
        assert toggles == _toggles(states, P.acc_bits)
    assert 0 < r["rate"] < 1 and r["cycles"] >= len(ev)


def test_mac_activation_register_toggles_follow_the_dense_stream():
    """The baseline's stage-1 activation register takes every activation in index order."""
    w, q, ev = _case(2)
    r = RA.mac_baseline_activity(P, w, ev)
    a_bits = activation_bits(P.t_max)
    assert r["by_register"]["s1_act"] == _toggles([0] + list(q.reshape(-1)), a_bits)
    assert r["cycles"] >= q.size and 0 < r["rate"] < 1


def test_engine_registers_idle_kv_caches_do_not_toggle():
    """The whole engine on a linear-layer stream: the PE accumulators toggle, the idle KV
    caches' registers do not (but the phase of their memories' alternating ports, the
    half-rate port clocks' divider)."""
    from spikemllm.cosim.stimulus import EngineCase

    p = HwParams(lanes=2, w_bits=4, t_max=4, in_max=16, kv_depth=4, heads=1, head_dim=4,
                 t_kv=2)
    w, q, ev = _case(3)
    case = EngineCase(name="t", source="random", weights=w, events=ev, t_text=4, t_vision=3,
                      theta=1 << p.frac_bits, frac_bits=p.frac_bits)
    r = RA.spike_engine_activity(p, case)
    kv = [n for n in r["by_register"] if n.startswith(("k_cache.", "v_cache."))]
    phases = {"k_cache.planes.phase", "v_cache.planes.phase"}
    assert phases <= set(kv) and all(r["by_register"][n] == r["cycles"] for n in phases)
    assert len(kv) > 20 and all(r["by_register"][n] == 0 for n in kv if n not in phases)
    assert r["by_register"]["pe.acc0_lo"] > 0
    assert 0 < r["rate"] < 1
    # the idle KV memories are never read; the weight memory once per event
    assert set(r["memory_reads"]) == {"k_cache.planes.mem", "pe.weights.mem",
                                      "v_cache.planes.mem"}
    assert r["memory_reads"]["k_cache.planes.mem"] == r["memory_reads"]["v_cache.planes.mem"] == 0
    assert r["memory_reads"]["pe.weights.mem"] == len(ev)


def test_weight_memories_read_in_every_unstalled_cycle():
    """With one read port the PE array's and the MAC baseline's reads are enabled whenever
    they are not stalled, input or not: with the output always ready, at every counted clock
    edge. Through alternating ports (the asic default) a memory reads once per input, each
    read counted on one of its two ports."""
    w, q, ev = _case(4)
    one = HwParams(lanes=2, w_bits=4, t_max=4, in_max=16, alternating_ports=False)
    r = RA.pe_array_activity(one, w, ev)
    assert list(RA.memory_read_enables(TernaryAccumulatorArray(params=one))) == ["weights"]
    assert r["memory_reads"] == {"weights": r["cycles"] + 1} and r["cycles"] > len(ev)
    r = RA.mac_baseline_activity(one, w, ev)
    assert r["memory_reads"] == {"weights": r["cycles"] + 1}
    ens = RA.memory_read_enables(TernaryAccumulatorArray(params=P))
    assert list(ens) == ["weights.mem"] and len(ens["weights.mem"]) == 2
    assert RA.pe_array_activity(P, w, ev)["memory_reads"] == {"weights.mem": len(ev)}


def _kv_case(seed, tokens=5, queries=2):
    import dataclasses

    from spikemllm.cosim.stimulus import random_kv_case

    p = dataclasses.replace(HwParams(), heads=2, head_dim=8, t_kv=3, kv_depth=8)
    return p, random_kv_case(p, seed=seed, tokens=tokens, queries=queries)


def test_kv_cache_activity_walks_every_key_plane_and_checks_the_scores():
    """The K cache on an attention case: one score per (query, head, token), one memory
    read per key plane scored (no reads for the appends), and the ports' toggle rates are
    those of the words driven, held between beats."""
    p, case = _kv_case(5)
    r = RA.kv_cache_activity(p, case)
    nq, heads, tokens = case.expected_scores().shape
    assert r["scores"] == nq * heads * tokens
    assert r["memory_reads"] == {"planes.mem": nq * heads * tokens * p.t_kv}
    assert r["by_register"]["acc"] > 0 and 0 < r["rate"] < 1
    from spikemllm.hw.kv_cache import kv_cache_from_params
    c = kv_cache_from_params(p)
    c._MustUse__silence = True   # built only to pack words
    words = [c.pack_append(h, case.k_pos[h, n], case.k_neg[h, n])
             for n in range(tokens) for h in range(heads)]
    assert r["port_toggles"]["append_stream__payload"] == pytest.approx(
        _toggles([0] + words, r["port_bits"]["append_stream"])
        / (r["port_bits"]["append_stream"] * r["cycles"]))
    assert r["cycles"] >= nq * heads * tokens * p.t_kv


def test_kv_cache_activity_refuses_a_wrong_reference():
    p, case = _kv_case(6)
    wrong = case.expected_scores() + 1
    case.expected_scores = lambda: wrong
    with pytest.raises(ValueError, match="the reference gives"):
        RA.kv_cache_activity(p, case)


def test_regression_activity_keys_for_the_kv_cache(tmp_path):
    """``spikemllm sim``'s activity for the K cache: its register rate, plane reads, its own
    port rates and the walker's key planes per cycle."""
    from spikemllm.cosim import regression as R

    p, case = _kv_case(7)
    r = RA.kv_cache_activity(p, case)
    a = R.register_activity([], p, log=lambda m: None, kv_cases=[case])
    assert a["register_activity_by_design"] == {"spike_kv_cache": r["rate"]}
    assert a["sram_reads_per_cycle_by_design"]["spike_kv_cache"]["planes.mem"] == (
        pytest.approx(r["memory_reads"]["planes.mem"] / r["cycles"]))
    assert a["port_activity_by_design"]["spike_kv_cache"] == pytest.approx(r["port_toggles"])
    assert a["score_planes_per_cycle"] == pytest.approx(r["scores"] * p.t_kv / r["cycles"])
    assert "head_dim 8, t_kv 3" in a["register_activity_source"]
    assert "port_traces_by_design" not in a
    # with a trace directory, the K cache's ports at every edge, at its case's size
    t = R.register_activity([], p, log=lambda m: None, kv_cases=[case], trace_dir=tmp_path / "tr")
    (f,) = t["port_traces_by_design"]["spike_kv_cache"]
    from spikemllm.hw.netlist_sim import PortTrace
    assert PortTrace.load(tmp_path / f).cycles > r["cycles"]   # the trace starts at the first edge
    # and it says the configuration it was recorded at (the cache sized for the case)
    from spikemllm.cosim.stimulus import kv_params_for
    assert PortTrace.header(tmp_path / f)["params"] == kv_params_for(case, p).to_dict()


def test_a_kv_case_is_recorded_on_the_synthesis_cache_where_it_fits(tmp_path):
    """A golden attention case that the given configuration's cache takes runs on that cache
    (so its trace fits the netlist synth makes of it), and the K cache's rates are its alone;
    one of another head_dim runs on a cache sized for it, for its trace only."""
    import dataclasses

    from spikemllm.cosim import regression as R
    from spikemllm.cosim.stimulus import kv_params_for, random_kv_case
    from spikemllm.hw.netlist_sim import PortTrace

    p, case = _kv_case(7)
    deep = dataclasses.replace(p, kv_depth=16)
    narrow = random_kv_case(dataclasses.replace(p, head_dim=4), seed=8, tokens=3, queries=1,
                            name="narrow")
    t = R.register_activity([], deep, log=lambda m: None, kv_cases=[case, narrow],
                            trace_dir=tmp_path / "tr")
    fits, other = t["port_traces_by_design"]["spike_kv_cache"]
    assert PortTrace.header(tmp_path / fits)["params"] == deep.to_dict()
    assert kv_params_for(case, deep).kv_depth == 8 != deep.kv_depth
    rec = PortTrace.header(tmp_path / other)["params"]
    assert rec == kv_params_for(narrow, deep).to_dict() and rec["head_dim"] == 4
    assert "head_dim 8, t_kv 3, depth 16" in t["register_activity_source"]
    assert "narrow" not in t["register_activity_source"]
    r = RA.kv_cache_activity(deep, case)
    assert t["register_activity_by_design"]["spike_kv_cache"] == pytest.approx(r["rate"])
    assert t["score_planes_per_cycle"] == pytest.approx(r["scores"] * p.t_kv / r["cycles"])
    # without a trace directory the other case is not run at all
    a = R.register_activity([], deep, log=lambda m: None, kv_cases=[case, narrow])
    assert a["register_activity_by_design"]["spike_kv_cache"] == pytest.approx(r["rate"])
    # and where none fits, every case counts, each at its own size
    b = R.register_activity([], dataclasses.replace(p, head_dim=16), log=lambda m: None,
                            kv_cases=[case, narrow])
    assert "narrow" in b["register_activity_source"] and "head_dim 8" in b[
        "register_activity_source"]


def test_a_cached_measurement_is_reused_only_for_the_same_case_and_source(tmp_path, monkeypatch):
    """``spikemllm sim`` keeps each measurement under ``activity_cache``: a second run with the
    same case gives the same activity and the same port trace without simulating; another
    case, or another source digest, is simulated again."""
    from spikemllm.cosim import regression as R
    from spikemllm.cosim.stimulus import random_kv_case
    from spikemllm.hw.netlist_sim import PortTrace

    p, case = _kv_case(7)
    calls = []
    real = RA.kv_cache_activity

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(RA, "kv_cache_activity", counted)
    kw = dict(log=lambda m: None, trace_dir=tmp_path / "tr", cache_dir=tmp_path / "cache")
    first = R.register_activity([], p, kv_cases=[case], **kw)
    (f,) = first["port_traces_by_design"]["spike_kv_cache"]
    bits = PortTrace.load(tmp_path / f).bits.copy()
    (tmp_path / f).unlink()
    logged = []
    again = R.register_activity([], p, kv_cases=[case], **{**kw, "log": logged.append})
    assert len(calls) == 1
    assert again == first
    assert np.array_equal(PortTrace.load(tmp_path / f).bits, bits)
    assert any("1 of 1 measurement(s) reused" in m for m in logged)
    # another case's data under the same name is measured again
    other = random_kv_case(p, seed=8, tokens=5, queries=2, name=case.name)
    R.register_activity([], p, kv_cases=[other], **kw)
    assert len(calls) == 2
    # and so is the same case under another source
    assert len(list((tmp_path / "cache").iterdir())) == 1
    monkeypatch.setattr(R, "_source_digest", lambda: "changed")
    R.register_activity([], p, kv_cases=[case], **kw)
    assert len(calls) == 3
    # whose entries replace those of the old source
    assert [d.name for d in (tmp_path / "cache").iterdir()] == ["changed"]
