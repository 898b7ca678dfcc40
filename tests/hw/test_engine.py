"""SpikeEngine end to end: events -> PE array -> TC-LIF -> events, registers, counters, tap."""

import dataclasses

import numpy as np
import pytest
from hwsim import Sink, Source, cfg_read, cfg_write, events_equal, random_spikes, run, weight_words

from spikemllm.hw.engine import ENGINE_ID, REG, REGISTERS, SpikeEngine
from spikemllm.hw.params import HwParams
from spikemllm.hw.streams import unpack_acc_vector
from spikemllm.sw import events as E

P = HwParams(lanes=4, w_bits=4, t_max=4, in_max=32, frac_bits=4, theta_bits=16,
             kv_depth=4, heads=2, head_dim=8, t_kv=3)
P_FPGA = dataclasses.replace(P, read_register=True, bram_rows=8, firing_parts=1,
                             alternating_ports=False)  # FPGA style
P_ALT = dataclasses.replace(P, alternating_ports=True)  # weights through alternating SRAM ports


def case(rng, n_tokens, T_text, T_vision, density=0.3, p=P):
    w = rng.integers(p.w_min, p.w_max + 1, size=(p.lanes, p.in_max))
    mod = rng.integers(0, 2, n_tokens)
    T = np.where(mod == 1, T_vision, T_text)
    ev = E.spikes_to_events(random_spikes(rng, p.t_max, n_tokens, p.in_max, density, T), T, mod)
    return w, ev, mod


def simulate(p, w, ev, regs, *, p_valid=1.0, p_ready=1.0, acc_ready=1.0, tap=None, seed=0,
             expect_out=None, expect_acc=None, read_back=(), **kw):
    dut = SpikeEngine(params=p)
    wsrc = Source(dut.w_stream, weight_words(p, w))
    words = [int(x) for x in E.EventLayout(p.in_max, p.t_max).pack(ev)]
    # events after the weights: written every other cycle with alternating_ports
    start = len(wsrc.words) * (2 if p.alternating_ports else 1) + 1
    src = Source(dut.i_stream, words, p_valid=p_valid, start=start)
    snk = Sink(dut.o_stream, p_ready=p_ready, expect=expect_out)
    sinks = [snk]
    acc_snk = Sink(dut.o_acc, p_ready=acc_ready, expect=expect_acc)
    sinks.append(acc_snk)
    reads = {}

    async def setup(ctx):
        for name, value in regs.items():
            await cfg_write(ctx, dut, REG[name], value)

    async def finish(ctx):
        for name in read_back:
            reads[name] = await cfg_read(ctx, dut, REG[name])

    cycles, watched = run(dut, [wsrc, src], sinks, setup=setup, finish=finish, seed=seed,
                          watch=[dut.o_acc.valid], **kw)
    got = E.EventLayout(p.lanes, p.t_max).unpack(snk.words)
    accs = np.array([unpack_acc_vector(p, x)[0] for x in acc_snk.words], dtype=np.int64)
    return got, accs.reshape(-1, p.lanes), reads, src, snk, watched


@pytest.mark.parametrize("p, seed, p_valid, p_ready, acc_ready", [(P, 1, 1.0, 1.0, 1.0),
                                                                  (P, 2, 0.7, 0.5, 0.5),
                                                                  (P, 3, 0.9, 0.3, 0.9),
                                                                  (P, 4, 1.0, 1.0, 0.1),
                                                                  (P_FPGA, 5, 0.7, 0.5, 0.5),
                                                                  (P_ALT, 6, 0.7, 0.5, 0.5)])
def test_end_to_end_matches_reference(p, seed, p_valid, p_ready, acc_ready):
    rng = np.random.default_rng(seed)
    theta = int(rng.integers(40, 300))
    w, ev, mod = case(rng, 10, 4, 3, p=p)
    acc_ref = E.accumulate_events(ev, w)
    ref, _ = E.fire_events(acc_ref, theta, p.frac_bits, np.where(mod == 1, 3, 4), mod)
    got, accs, reads, *_ = simulate(
        p, w, ev, {"THETA": theta, "T_TEXT": 4, "T_VISION": 3, "CTRL": 0b11},
        p_valid=p_valid, p_ready=p_ready, acc_ready=acc_ready, seed=seed, expect_out=len(ref),
        expect_acc=len(acc_ref),
        read_back=("EVENTS_IN", "EVENTS_OUT", "TOKENS", "STATUS"))
    assert events_equal(got, ref)
    np.testing.assert_array_equal(accs, acc_ref)  # the tap mirrors the PE array bit-exactly
    assert reads["EVENTS_IN"] == len(ev)
    assert reads["EVENTS_OUT"] == len(ref)
    assert reads["TOKENS"] == len(acc_ref)
    assert reads["STATUS"] == 0  # idle, no error


def test_ternary_mode_and_modality_override():
    """CTRL.horner = 0 sums without doubling; CTRL.modality_override forces T_VISION."""
    rng = np.random.default_rng(4)
    w, ev, _ = case(rng, 6, 3, 3)
    acc_ref = E.accumulate_events(ev, w, horner=False)
    mod = np.ones(len(acc_ref), dtype=int)
    ref, _ = E.fire_events(acc_ref, 20, P.frac_bits, 2, mod)
    got, accs, *_ = simulate(P, w, ev, {"THETA": 20, "T_TEXT": 4, "T_VISION": 2,
                                        "CTRL": 0b1110}, expect_out=len(ref))
    np.testing.assert_array_equal(accs, acc_ref)
    assert events_equal(got, ref)


def test_tap_disabled_never_stalls():
    """acc_tap off: o_acc.valid stays low and an o_acc sink that is never ready changes nothing."""
    rng = np.random.default_rng(5)
    w, ev, mod = case(rng, 8, 4, 3)
    acc_ref = E.accumulate_events(ev, w)
    ref, _ = E.fire_events(acc_ref, 1 << P.frac_bits, P.frac_bits, np.where(mod == 1, 3, 4), mod)
    got, accs, _, _, _, watched = simulate(P, w, ev, {}, acc_ready=0.0, expect_out=len(ref))
    assert events_equal(got, ref)  # reset values: THETA = 1.0, T_TEXT = 4, T_VISION = 3
    assert len(accs) == 0 and not any(v[0] for v in watched)


@pytest.mark.parametrize("rr, alt, latency", [(False, False, 5), (True, False, 6),
                                              (False, True, 7)],
                         ids=["asic_style", "fpga_style", "alternating_ports"])
def test_throughput_sustained_and_counters(rr, alt, latency):
    """Dense input, sparse output (the firing unit keeps up): N events enter in N consecutive
    cycles and the last token's first output event appears LATENCY cycles after its last input
    event (one more with read_register, two with alternating_ports); STALL_CYCLES = 0 and
    CYCLES_BUSY covers exactly the busy span."""
    rng = np.random.default_rng(6)
    p = HwParams(lanes=4, w_bits=4, t_max=2, in_max=32, frac_bits=4, theta_bits=16,
                 kv_depth=4, heads=1, head_dim=4, read_register=rr, bram_rows=8 * rr,
                 firing_parts=4 - 3 * rr, alternating_ports=alt)
    assert SpikeEngine(params=p).latency == latency
    w, ev, mod = case(rng, 8, 2, 2, density=0.8, p=p)
    acc_ref = E.accumulate_events(ev, w)
    theta = 16 * 40  # step 40: few spikes, so each token's output is at most 8 events
    ref, _ = E.fire_events(acc_ref, theta, p.frac_bits, 2, mod)
    got, _, reads, src, snk, _ = simulate(
        p, w, ev, {"THETA": theta, "T_TEXT": 2, "T_VISION": 2, "COUNTER_CLEAR": 1},
        expect_out=len(ref),
        read_back=("STALL_CYCLES", "CYCLES_BUSY", "EVENTS_IN", "OUT_STALL_CYCLES"))
    assert events_equal(got, ref)
    n = len(ev)
    assert src.accepted == list(range(src.accepted[0], src.accepted[0] + n))
    first_of_last_token = snk.cycles[int(np.nonzero(ref["last_in_token"])[0][-2]) + 1]
    assert first_of_last_token == src.accepted[-1] + latency
    assert reads["STALL_CYCLES"] == 0 and reads["OUT_STALL_CYCLES"] == 0
    assert reads["EVENTS_IN"] == n
    # busy from the first offered event (weights done) to the last output event
    assert reads["CYCLES_BUSY"] == snk.cycles[-1] - src.accepted[0] + 1


def test_stall_counter_counts_backpressure():
    rng = np.random.default_rng(7)
    w, ev, mod = case(rng, 10, 4, 4, density=0.05)  # few input events, many output events
    acc_ref = E.accumulate_events(ev, w)
    ref, _ = E.fire_events(acc_ref, 8, P.frac_bits, 4, mod)  # small theta: many spikes
    got, _, reads, src, snk, watched = simulate(
        P, w, ev, {"THETA": 8, "T_VISION": 4}, p_ready=0.4, seed=7, expect_out=len(ref),
        read_back=("STALL_CYCLES", "OUT_STALL_CYCLES", "EVENTS_OUT"))
    assert events_equal(got, ref)
    first, last = src.accepted[0], src.accepted[-1]
    # every offered-but-not-taken cycle of the event source (it offers every cycle: p_valid=1)
    assert reads["STALL_CYCLES"] == (last - first + 1) - len(ev)
    assert reads["STALL_CYCLES"] > 0 and reads["OUT_STALL_CYCLES"] > 0
    assert reads["EVENTS_OUT"] == len(ref)


def test_registers():
    p = P
    dut = SpikeEngine(params=p)
    out = {}

    async def setup(ctx):
        for r in REGISTERS:
            out[r.name] = await cfg_read(ctx, dut, r.addr)
        await cfg_write(ctx, dut, REG["THETA"], 0)                 # refused
        out["err_theta0"] = await cfg_read(ctx, dut, REG["STATUS"])
        out["theta_after"] = await cfg_read(ctx, dut, REG["THETA"])
        await cfg_write(ctx, dut, REG["STATUS"], 0b10)              # W1C
        out["cleared"] = await cfg_read(ctx, dut, REG["STATUS"])
        await cfg_write(ctx, dut, REG["T_TEXT"], p.t_max + 1)       # refused
        out["t_text_after"] = await cfg_read(ctx, dut, REG["T_TEXT"])
        out["err_t"] = await cfg_read(ctx, dut, REG["STATUS"])
        await cfg_write(ctx, dut, REG["STATUS"], 0b10)
        await cfg_write(ctx, dut, REG["HW_LANES"], 7)               # read-only
        out["err_ro"] = await cfg_read(ctx, dut, REG["STATUS"])
        out["lanes_after"] = await cfg_read(ctx, dut, REG["HW_LANES"])
        await cfg_write(ctx, dut, REG["STATUS"], 0b10)
        await cfg_write(ctx, dut, REG["T_VISION"], 1)
        await cfg_write(ctx, dut, REG["THETA"], (1 << p.theta_bits) - 1)
        await cfg_write(ctx, dut, REG["CTRL"], 0b1011)
        await cfg_write(ctx, dut, REG["IN_FEATURES"], 5)
        for name in ("T_VISION", "THETA", "CTRL", "IN_FEATURES", "STATUS"):
            out[name + "_new"] = await cfg_read(ctx, dut, REG[name])

    run(dut, [], [], setup=setup, until=lambda c: True)
    assert out["ID"] == ENGINE_ID
    assert (out["HW_LANES"], out["HW_W_BITS"], out["HW_T_MAX"], out["HW_IN_MAX"]) == \
        (p.lanes, p.w_bits, p.t_max, p.in_max)
    assert (out["HW_ACC_BITS"], out["HW_FRAC_BITS"], out["HW_THETA_BITS"]) == \
        (p.acc_bits, p.frac_bits, p.theta_bits)
    reset = dut.reset_values()
    for name, value in reset.items():
        assert out[name] == value, name
    assert out["STATUS"] == 0 and out["CYCLES_BUSY"] == 0
    assert out["err_theta0"] == 0b10 and out["theta_after"] == reset["THETA"]
    assert out["cleared"] == 0
    assert out["t_text_after"] == reset["T_TEXT"] and out["err_t"] == 0b10
    assert out["err_ro"] == 0b10 and out["lanes_after"] == p.lanes
    assert out["T_VISION_new"] == 1 and out["THETA_new"] == (1 << p.theta_bits) - 1
    assert out["CTRL_new"] == 0b1011 and out["IN_FEATURES_new"] == 5 and out["STATUS_new"] == 0


def test_index_error_flag():
    rng = np.random.default_rng(8)
    w, ev, _ = case(rng, 3, 2, 2, density=0.5)
    assert ev["index"].max() >= 8
    _, _, reads, *_ = simulate(P, w, ev, {"IN_FEATURES": 8}, read_back=("STATUS",))
    assert reads["STATUS"] == 0b100
    _, _, reads, *_ = simulate(P, w, ev, {"IN_FEATURES": int(ev["index"].max()) + 1},
                               read_back=("STATUS",))
    assert reads["STATUS"] == 0


def test_reset_mid_stream():
    rng = np.random.default_rng(9)
    w, ev1, _ = case(rng, 6, 4, 4, density=0.5)
    _, ev2, mod2 = case(rng, 4, 4, 4)
    acc2 = E.accumulate_events(ev2, w)
    ref2, _ = E.fire_events(acc2, 1 << P.frac_bits, P.frac_bits, np.where(mod2 == 1, 3, 4), mod2)
    words2 = [int(x) for x in E.EventLayout(P.in_max, P.t_max).pack(ev2)]

    def after_reset(sources, sinks):
        sources[1].words = words2
        sinks[0].words.clear()
        sinks[0].expect = len(ref2)

    got, *_ = simulate(P, w, ev1, {}, reset_at=P.in_max + 30, after_reset=after_reset,
                       p_ready=0.6, seed=9)
    assert events_equal(got, ref2)


@pytest.mark.parametrize("p", [P, P_FPGA, P_ALT], ids=["asic_style", "fpga_style",
                                                      "alternating_ports"])
def test_kv_caches_at_the_top(p):
    """K appends + a Q.K query through the engine's k_* streams match popcount_score; V appends
    past capacity are refused and flagged; counts, flags and KV_CLEAR work through registers."""
    from spikemllm.sw import numerics as nx

    dut = SpikeEngine(params=p)
    assert dut.has_kv_cache
    assert dut.k_cache.read_register == dut.v_cache.read_register == p.read_register
    assert dut.k_cache.alternating_ports == dut.v_cache.alternating_ports == p.alternating_ports
    # as measured by the throughput test
    assert dut.latency == (6 if p.read_register else 7 if p.alternating_ports else 5)
    kc, vc = dut.k_cache, dut.v_cache
    rng = np.random.default_rng(12)
    qm = (1 << p.t_kv) - 1

    def vec():
        q = rng.integers(-qm, qm + 1, p.head_dim)
        pos, neg = nx.to_bit_planes(q, p.t_kv + 1)
        return q, pos, neg

    keys = [vec() for _ in range(3)]
    query = vec()
    k_app = Source(dut.k_append_stream, [kc.pack_append(0, k[1], k[2]) for k in keys])
    k_q = Source(dut.k_query_stream, [kc.pack_query(0, query[1], query[2])], start=30)
    vals = [vec() for _ in range(p.kv_depth + 1)]  # one more than a head holds
    v_app = Source(dut.v_append_stream, [vc.pack_append(1, v[1], v[2]) for v in vals])
    v_rd = Source(dut.v_read_stream, [vc.pack_read(1, 2)], start=40)
    scores = Sink(dut.k_score_stream, expect=len(keys))
    v_data = Sink(dut.v_read_data_stream, expect=p.t_kv)
    reads = {}

    async def finish(ctx):
        for name in ("KV_STATUS", "STATUS", "KV_HEADS", "KV_DEPTH", "KV_T"):
            reads[name] = await cfg_read(ctx, dut, REG[name])
        for h in range(p.heads):
            reads[f"K{h}"] = await cfg_read(ctx, dut, 0x40 + h)
            reads[f"V{h}"] = await cfg_read(ctx, dut, 0x80 + h)
        await cfg_write(ctx, dut, REG["KV_CLEAR"], 0b10)
        reads["after_clear"] = await cfg_read(ctx, dut, REG["KV_STATUS"])
        reads["V1_after"] = await cfg_read(ctx, dut, 0x81)
        reads["K0_after"] = await cfg_read(ctx, dut, 0x40)

    run(dut, [k_app, k_q, v_app, v_rd], [scores, v_data], finish=finish)
    got = [kc.unpack_score(w)["score"] for w in scores.words]
    ref = nx.popcount_score(query[1], query[2], np.stack([k[1] for k in keys], 1),
                            np.stack([k[2] for k in keys], 1))
    assert got == list(ref) == [int(query[0] @ k[0]) for k in keys]
    planes = [vc.unpack_read_data(w) for w in v_data.words]
    q2 = vals[2][0]
    pos = [sum(1 << i for i in range(p.head_dim) if b[i]) for b in nx.to_bit_planes(q2, p.t_kv + 1)[0]]
    assert [d["pos"] for d in planes] == pos and all(d["in_range"] for d in planes)
    assert (reads["K0"], reads["K1"], reads["V0"], reads["V1"]) == (3, 0, 0, p.kv_depth)
    assert reads["KV_STATUS"] == 0b1010  # V error (refused append), a V head full
    assert reads["STATUS"] & 0b1000 and (reads["KV_HEADS"], reads["KV_DEPTH"], reads["KV_T"]) == \
        (p.heads, p.kv_depth, p.t_kv)
    assert reads["after_clear"] == 0 and reads["V1_after"] == 0 and reads["K0_after"] == 3


def test_engine_without_kv_cache():
    dut = SpikeEngine(params=P, kv_cache=False)
    assert not dut.has_kv_cache and "k_append_stream" not in dut.signature.members
    rng = np.random.default_rng(13)
    w, ev, mod = case(rng, 4, 4, 3)
    acc_ref = E.accumulate_events(ev, w)
    ref, _ = E.fire_events(acc_ref, 1 << P.frac_bits, P.frac_bits, np.where(mod == 1, 3, 4), mod)
    wsrc = Source(dut.w_stream, weight_words(P, w))
    src = Source(dut.i_stream, [int(x) for x in E.EventLayout(P.in_max, P.t_max).pack(ev)],
                 start=P.in_max)
    snk = Sink(dut.o_stream, expect=len(ref))
    reads = {}

    async def finish(ctx):
        reads["KV_HEADS"] = await cfg_read(ctx, dut, REG["KV_HEADS"])

    run(dut, [wsrc, src], [snk], finish=finish)
    assert events_equal(E.EventLayout(P.lanes, P.t_max).unpack(snk.words), ref)
    assert reads["KV_HEADS"] == 0


def test_register_table_in_docs_matches():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    for r in REGISTERS:
        assert f"| {r.addr:#04x} | {r.name} | {r.access} | {r.doc} |" in doc, r.name


@pytest.mark.parametrize("p", [
    HwParams(lanes=2, w_bits=2, t_max=1, in_max=2, kv_depth=2, heads=1, head_dim=2, frac_bits=0,
             theta_bits=2),
    HwParams(lanes=2, w_bits=16, t_max=15, in_max=4, kv_depth=2, heads=1, head_dim=2, t_kv=1,
             frac_bits=24, theta_bits=32),
    HwParams(lanes=8, w_bits=3, t_max=2, in_max=8, kv_depth=2, heads=1, head_dim=2, frac_bits=2,
             theta_bits=10),
], ids=["tmax1", "tmax15-wide", "lanes8"])
def test_corner_configurations(p):
    """Smallest and widest parameter corners still match the reference end to end."""
    rng = np.random.default_rng(p.t_max)
    w = rng.integers(p.w_min, p.w_max + 1, size=(p.lanes, p.in_max))
    w[0] = p.w_min  # an extreme lane
    n = 5
    mod = rng.integers(0, 2, n)
    T = np.where(mod == 1, max(1, p.t_max - 1), p.t_max)
    spikes = random_spikes(rng, p.t_max, n, p.in_max, 0.5, T)
    spikes[: T[0], 0, :] = 1  # a token at the accumulator bound
    ev = E.spikes_to_events(spikes, T, mod)
    acc_ref = E.accumulate_events(ev, w)
    theta = max(1, int(np.abs(acc_ref).max()) << p.frac_bits >> max(0, p.t_max - 1))
    theta = min(theta, (1 << p.theta_bits) - 1)
    ref, _ = E.fire_events(acc_ref, theta, p.frac_bits, T, mod)
    got, accs, *_ = simulate(
        p, w, ev, {"THETA": theta, "T_TEXT": p.t_max, "T_VISION": max(1, p.t_max - 1),
                   "CTRL": 0b11}, p_ready=0.7, acc_ready=0.7, expect_out=len(ref),
        expect_acc=len(acc_ref))
    np.testing.assert_array_equal(accs, acc_ref)
    assert events_equal(got, ref)
