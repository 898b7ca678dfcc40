"""Register toggle rates measured in the Amaranth simulator (hw/register_activity.py)."""

import numpy as np

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
    assert {"acc0", "acc1", "fresh", "o_valid", "s1_sign", "s1_valid"} <= names
    assert not any("weights" in n or "data" in n for n in names)


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
        assert r["by_register"][f"acc{lane}"] == _toggles(states, P.acc_bits)
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
    caches' registers do not."""
    from spikemllm.cosim.stimulus import EngineCase

    p = HwParams(lanes=2, w_bits=4, t_max=4, in_max=16, kv_depth=4, heads=1, head_dim=4,
                 t_kv=2)
    w, q, ev = _case(3)
    case = EngineCase(name="t", source="random", weights=w, events=ev, t_text=4, t_vision=3,
                      theta=1 << p.frac_bits, frac_bits=p.frac_bits)
    r = RA.spike_engine_activity(p, case)
    kv = [n for n in r["by_register"] if n.startswith(("k_cache.", "v_cache."))]
    assert len(kv) > 20 and all(r["by_register"][n] == 0 for n in kv)
    assert r["by_register"]["pe.acc0"] > 0
    assert 0 < r["rate"] < 1
    # the idle KV memories are never read; the weight memory at least once per event
    assert set(r["memory_reads"]) == {"k_cache.planes", "pe.weights", "v_cache.planes"}
    assert r["memory_reads"]["k_cache.planes"] == r["memory_reads"]["v_cache.planes"] == 0
    assert len(ev) <= r["memory_reads"]["pe.weights"] <= r["cycles"] + 1  # edges, first included


def test_weight_memories_read_in_every_unstalled_cycle():
    """The PE array's and the MAC baseline's read ports are enabled whenever they are not
    stalled, input or not: with the output always ready, at every counted clock edge."""
    w, q, ev = _case(4)
    r = RA.pe_array_activity(P, w, ev)
    assert list(RA.memory_read_enables(TernaryAccumulatorArray(params=P))) == ["weights"]
    assert r["memory_reads"] == {"weights": r["cycles"] + 1} and r["cycles"] > len(ev)
    r = RA.mac_baseline_activity(P, w, ev)
    assert r["memory_reads"] == {"weights": r["cycles"] + 1}
