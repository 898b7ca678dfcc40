"""TernaryAccumulatorArray against spikemllm.sw.events.accumulate_events (Amaranth simulator)."""

import dataclasses
import gc
import itertools
import warnings

import numpy as np
import pytest
from hwsim import (Sink, Source, input_ready_ignoring_output, random_spikes, run,
                   run_testbench, weight_words)

from spikemllm.hw.params import HwParams
from spikemllm.hw.pe_array import TernaryAccumulatorArray
from spikemllm.hw.streams import unpack_acc_vector
from spikemllm.sw import events as E

P = HwParams(lanes=4, w_bits=4, t_max=4, in_max=16, alternating_ports=False)  # one read port
P_RR = dataclasses.replace(P, read_register=True, bram_rows=4, alternating_ports=False)  # 4 banks
P_ALT = dataclasses.replace(P, alternating_ports=True)
BOTH = pytest.mark.parametrize("p", [P, P_RR], ids=["plain", "read_register"])
STYLES = pytest.mark.parametrize("p", [P, P_RR, P_ALT],
                                 ids=["plain", "read_register", "alternating_ports"])
LATENCIES = pytest.mark.parametrize("p, latency", [(P, 2), (P_RR, 3), (P_ALT, 4)],
                                    ids=["plain", "read_register", "alternating_ports"])


def events_start(p, n_rows):
    """First cycle after the weight writes: one row per cycle, or every other cycle with
    alternating_ports (the SRAM's port 0 writes only in its own cycles)."""
    return n_rows * (2 if p.alternating_ports else 1) + 1


def simulate(p, w, ev, *, horner=True, p_valid=1.0, p_ready=1.0, seed=0, **kw):
    dut = TernaryAccumulatorArray(params=p)
    wsrc = Source(dut.w_stream, weight_words(p, w))
    words = [int(x) for x in E.EventLayout(p.in_max, p.t_max).pack(ev)]
    src = Source(dut.i_stream, words, p_valid=p_valid, start=events_start(p, len(wsrc.words)))
    snk = Sink(dut.o_stream, p_ready=p_ready, expect=int(ev["last_in_token"].sum()))

    async def setup(ctx):
        ctx.set(dut.horner, int(horner))

    cycles, watched = run(dut, [wsrc, src], [snk], setup=setup, seed=seed, **kw)
    acc = np.array([unpack_acc_vector(p, x)[0] for x in snk.words], dtype=np.int64)
    mods = [unpack_acc_vector(p, x)[1] for x in snk.words]
    return acc.reshape(-1, p.lanes), mods, src, snk, watched


def random_case(p, rng, n_tokens, density=0.3, T=None):
    w = rng.integers(p.w_min, p.w_max + 1, size=(p.lanes, p.in_max))
    T = rng.integers(1, p.t_max + 1, n_tokens) if T is None else T
    mod = rng.integers(0, 2, n_tokens)
    ev = E.spikes_to_events(random_spikes(rng, p.t_max, n_tokens, p.in_max, density, T), T, mod)
    return w, ev, mod


@STYLES
@pytest.mark.parametrize("horner", [True, False])
@pytest.mark.parametrize("seed, p_valid, p_ready", [(1, 1.0, 1.0), (2, 0.6, 0.5), (3, 0.9, 0.2)])
def test_random_streams_match_reference(p, horner, seed, p_valid, p_ready):
    rng = np.random.default_rng(seed)
    w, ev, mod = random_case(p, rng, 12)
    acc, mods, *_ = simulate(p, w, ev, horner=horner, p_valid=p_valid, p_ready=p_ready, seed=seed)
    np.testing.assert_array_equal(acc, E.accumulate_events(ev, w, horner=horner))
    assert mods == list(mod)


def test_exhaustive_small():
    """Every ternary spike pattern of 2 inputs over T = 1 and T = 2, with every weight pair."""
    p = HwParams(lanes=4, w_bits=2, t_max=2, in_max=2)
    pats = []
    for T in (1, 2):
        for vals in itertools.product((-1, 0, 1), repeat=2 * T):
            s = np.zeros((2, 1, 2), dtype=np.int8)
            s[:T, 0, :] = np.array(vals).reshape(T, 2)
            pats.append((s, T))
    spikes = np.concatenate([s for s, _ in pats], axis=1)
    T = np.array([t for _, t in pats])
    ev = E.spikes_to_events(spikes, T)
    pairs = list(itertools.product(range(-2, 2), repeat=2))  # 16 (w0, w1) pairs
    for k in range(0, 16, 4):
        w = np.array(pairs[k:k + 4])  # [lanes, in]
        acc, *_ = simulate(p, w, ev, p_valid=0.8, p_ready=0.7, seed=k)
        np.testing.assert_array_equal(acc, E.accumulate_events(ev, w))
        # the integer meaning: acc = q . w with q the decoded tc-lif counts
        t = np.arange(2)[:, None, None]
        d = np.where(t < T[None, :, None], 1 << np.maximum(T[None, :, None] - 1 - t, 0), 0)
        q = (spikes * d).sum(0)
        np.testing.assert_array_equal(acc, q @ w.T)


@LATENCIES
def test_throughput_one_event_per_clock(p, latency):
    """N events with no gaps and a ready sink: accepted in N consecutive cycles, each token's
    vector on o_stream exactly LATENCY cycles after its last event, across step and token ends
    (one cycle more with read_register, two with alternating_ports)."""
    rng = np.random.default_rng(7)
    w, ev, _ = random_case(p, rng, 10, density=0.4)
    acc, _, src, snk, _ = simulate(p, w, ev)
    assert TernaryAccumulatorArray(params=p).latency == latency
    n = len(ev)
    assert src.accepted == list(range(src.accepted[0], src.accepted[0] + n))
    ends = [src.accepted[i] for i in np.nonzero(ev["last_in_token"])[0]]
    assert snk.cycles == [c + latency for c in ends]
    # N events take N + latency cycles from the first acceptance to the last vector's valid
    assert snk.cycles[-1] - src.accepted[0] + 1 == n + latency
    np.testing.assert_array_equal(acc, E.accumulate_events(ev, w))


def test_single_event_tokens_back_to_back():
    """Tokens of one event each (T = 1) still flow one per clock with a ready sink."""
    rng = np.random.default_rng(8)
    w, ev, _ = random_case(P, rng, 20, density=0.05, T=np.ones(20, int))
    acc, _, src, snk, _ = simulate(P, w, ev)
    assert len(src.accepted) == len(ev)
    assert src.accepted[-1] - src.accepted[0] == len(ev) - 1
    np.testing.assert_array_equal(acc, E.accumulate_events(ev, w))


@STYLES
def test_backpressure_stalls_without_loss(p):
    rng = np.random.default_rng(9)
    w, ev, _ = random_case(p, rng, 15, density=0.05, T=np.ones(15, int))  # many token ends
    acc, _, src, snk, watched = simulate(p, w, ev, p_ready=0.15, seed=9)
    np.testing.assert_array_equal(acc, E.accumulate_events(ev, w))
    assert len(src.accepted) == len(ev)


@LATENCIES
def test_finished_vector_holds_the_next_token(p, latency):
    """With o_stream never ready, the finished vector stays offered and unchanged. In the
    asic style the accumulators are o_stream's payload: the array takes exactly one event
    of the next token (into the read stage) and then holds it; with alternating_ports three
    (the read stages and the row register's). With read_register the vector sits in an
    output register: the next token runs on until its last event, which waits at the
    adders."""
    rng = np.random.default_rng(11)
    w, ev, _ = random_case(p, rng, 2, density=0.5, T=np.array([3, 2]))
    n0 = int(np.nonzero(ev["last_in_token"])[0][0]) + 1
    dut = TernaryAccumulatorArray(params=p)
    wsrc = Source(dut.w_stream, weight_words(p, w))
    words = [int(x) for x in E.EventLayout(p.in_max, p.t_max).pack(ev)]
    src = Source(dut.i_stream, words, start=events_start(p, len(wsrc.words)))
    snk = Sink(dut.o_stream, p_ready=0.0)
    end = events_start(p, len(wsrc.words)) + len(words) + 30

    async def setup(ctx):
        ctx.set(dut.horner, 1)

    _, watched = run(dut, [wsrc, src], [snk], setup=setup, until=lambda c: c >= end,
                     watch=[dut.o_stream.valid, dut.o_stream.payload.as_value()])
    assert dut.latency == latency
    assert len(src.accepted) == (len(words) if p.read_register else
                                 n0 + 3 if p.alternating_ports else n0 + 1)
    ref = E.accumulate_events(ev, w)[0]
    first = src.accepted[n0 - 1] + latency
    held = watched[first:]
    assert len(held) > 20 and all(v == 1 for v, _ in held)
    assert {x for _, x in held} == {held[0][1]}
    np.testing.assert_array_equal(unpack_acc_vector(p, held[0][1])[0], ref)
    assert snk.words == []


@STYLES
def test_extremes_reach_the_bound_without_overflow(p):
    """All spikes one sign, every step, every input, extreme weights, T = T_MAX and T = 1."""
    n = p.in_max
    for T in (p.t_max, 1):
        for w_val, s_val in ((p.w_min, 1), (p.w_min, -1), (p.w_max, 1), (p.w_max, -1)):
            w = np.full((p.lanes, n), w_val)
            w[1] = -w_val if w_val != p.w_min else p.w_max  # a second lane of the other sign
            spikes = np.zeros((p.t_max, 2, n), dtype=np.int8)
            spikes[:T] = s_val
            ev = E.spikes_to_events(spikes, T)
            acc, *_ = simulate(p, w, ev)
            ref = E.accumulate_events(ev, w)
            np.testing.assert_array_equal(acc, ref)
            if T == p.t_max and w_val == p.w_min:
                assert abs(int(ref[0, 0])) == p.acc_bound  # the bound is reached and fits


@STYLES
def test_reset_mid_stream(p):
    """Reset in the middle of a token; the array restarts clean (weights survive)."""
    rng = np.random.default_rng(10)
    w, ev1, _ = random_case(p, rng, 6, density=0.5, T=np.full(6, 4))
    _, ev2, _ = random_case(p, rng, 5)
    words2 = [int(x) for x in E.EventLayout(p.in_max, p.t_max).pack(ev2)]

    def after_reset(sources, sinks):
        sources[1].words = words2
        sinks[0].words.clear()
        sinks[0].expect = int(ev2["last_in_token"].sum())

    # weights take in_max cycles; reset lands inside the first stream (about 150 events)
    acc, *_ = simulate(p, w, ev1, reset_at=p.in_max + 40, after_reset=after_reset,
                       p_ready=0.5, seed=10)
    np.testing.assert_array_equal(acc, E.accumulate_events(ev2, w))


def test_bad_params():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the half-built component is never elaborated
        with pytest.raises(ValueError, match="params must be a HwParams"):
            TernaryAccumulatorArray(params={"lanes": 4})
        gc.collect()


def test_fpga_style_input_ready_does_not_depend_on_output_ready():
    """With read_register, i_stream.ready comes from registered state only: in every cycle it
    is the same for o_stream.ready = 0 and 1 (on an FPGA that path reached every block RAM's
    read enable). The vectors still match the reference."""
    rng = np.random.default_rng(12)
    w, ev, _ = random_case(P_RR, rng, 12, density=0.2)
    dut = TernaryAccumulatorArray(params=P_RR)
    rows = weight_words(P_RR, w)
    words = [int(x) for x in E.EventLayout(P_RR.in_max, P_RR.t_max).pack(ev)]
    got, seen = [], set()

    async def tb(ctx):
        ctx.set(dut.horner, 1)
        for row in rows:
            ctx.set(dut.w_stream.valid, 1)
            ctx.set(dut.w_stream.payload.as_value(), row)
            await ctx.tick()
        ctx.set(dut.w_stream.valid, 0)
        pos = 0
        for _ in range(4000):
            if len(got) == int(ev["last_in_token"].sum()):
                break
            ctx.set(dut.i_stream.valid, pos < len(words))
            ctx.set(dut.i_stream.payload.as_value(), words[min(pos, len(words) - 1)])
            seen.add(input_ready_ignoring_output(ctx, dut))
            take = int(rng.random() < 0.3)
            ctx.set(dut.o_stream.ready, take)
            if take and ctx.get(dut.o_stream.valid):
                got.append(unpack_acc_vector(P_RR, ctx.get(dut.o_stream.payload.as_value()))[0])
            if pos < len(words) and ctx.get(dut.i_stream.ready):
                pos += 1
            await ctx.tick()

    run_testbench(dut, tb)
    assert seen == {0, 1}
    np.testing.assert_array_equal(np.array(got), E.accumulate_events(ev, w))


@BOTH
def test_fpga_style_weight_banks_are_no_rw_check(p):
    """read_register: every weight bank carries Yosys's no_rw_check (no read-old-data logic
    on FPGA block RAMs; weights are loaded before the events that read them); the plain
    style keeps the old-row memory."""
    from amaranth.back import rtlil
    il = rtlil.convert(TernaryAccumulatorArray(params=p))
    banks = p.in_max // p.bram_rows if p.read_register else 0
    assert il.count("attribute \\no_rw_check 1") == banks == (4 if p.read_register else 0)
