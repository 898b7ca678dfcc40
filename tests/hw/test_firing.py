"""TcLifFiring against spikemllm.sw.events.fire_events / numerics.fire (Amaranth simulator)."""

import gc
import warnings

import numpy as np
import pytest
from hwsim import Sink, Source, events_equal, input_ready_ignoring_output, run, run_testbench

from spikemllm.hw.firing import TcLifFiring
from spikemllm.hw.params import HwParams
from spikemllm.hw.streams import pack_acc_vector
from spikemllm.sw import events as E
from spikemllm.sw import numerics as nx

P = HwParams(lanes=4, w_bits=4, t_max=4, in_max=16, frac_bits=4, theta_bits=16)


def simulate(p, acc, mod, theta, t_text, t_vision, *, p_valid=1.0, p_ready=1.0, seed=0,
             ref_T=None, **kw):
    dut = TcLifFiring(params=p)
    src = Source(dut.i_stream, [pack_acc_vector(p, a, m) for a, m in zip(acc, mod)],
                 p_valid=p_valid)
    T = np.where(np.asarray(mod) == 1, t_vision, t_text) if ref_T is None else ref_T
    ref, q = E.fire_events(acc, theta, p.frac_bits, T, mod)
    snk = Sink(dut.o_stream, p_ready=p_ready, expect=len(ref))

    async def setup(ctx):
        ctx.set(dut.theta, theta)
        ctx.set(dut.t_text, t_text)
        ctx.set(dut.t_vision, t_vision)

    cycles, _ = run(dut, [src], [snk], setup=setup, seed=seed, **kw)
    got = E.EventLayout(p.lanes, p.t_max).unpack(snk.words)
    return got, ref, src, snk


@pytest.mark.parametrize("seed, p_valid, p_ready", [(1, 1.0, 1.0), (2, 0.5, 0.6), (3, 0.9, 0.25)])
def test_random_matches_reference(seed, p_valid, p_ready):
    rng = np.random.default_rng(seed)
    n = 16
    theta = int(rng.integers(1, 400))
    acc = rng.integers(-(theta * 20 >> P.frac_bits) - 3, (theta * 20 >> P.frac_bits) + 4, size=(n, P.lanes))
    mod = rng.integers(0, 2, n)
    got, ref, *_ = simulate(P, acc, mod, theta, 4, 2, p_valid=p_valid, p_ready=p_ready, seed=seed)
    assert events_equal(got, ref)


@pytest.mark.parametrize("T", [1, 2, 3, 4])
def test_exhaustive_small(T):
    """Every v in a range covering all q levels and the saturation, for odd and even theta."""
    for theta in (24, 37):  # frac_bits 4: steps 1.5 and 2.3125
        vmax = (((1 << T) + 1) * theta >> P.frac_bits) + 2
        v = np.arange(-vmax, vmax + 1)
        v = np.concatenate([v, np.zeros((-len(v)) % P.lanes, dtype=v.dtype)]).reshape(-1, P.lanes)
        mod = np.zeros(len(v), dtype=int)
        got, ref, *_ = simulate(P, v, mod, theta, T, 1)
        assert events_equal(got, ref)
        # and the spike values decode to numerics.fire (round half away, saturating)
        s = E.events_to_spikes(got, len(v), P.lanes, T)
        q = nx.decode(s, "tc-lif", T + 1)
        np.testing.assert_array_equal(q, nx.fire(v, theta, P.frac_bits, T))


def test_extremes():
    """Largest |acc| of either sign, theta = 1 (everything saturates) and theta = max."""
    n = P.acc_bits
    acc = np.array([[-(1 << (n - 1)), (1 << (n - 1)) - 1, 0, -1],
                    [P.acc_bound, -P.acc_bound, 1, 2]])
    for theta in (1, (1 << P.theta_bits) - 1):
        for T in (1, P.t_max):
            got, ref, *_ = simulate(P, acc, [0, 1], theta, T, T)
            assert events_equal(got, ref)


@pytest.mark.parametrize("kw", [
    dict(lanes=2, w_bits=2, t_max=1, in_max=2, frac_bits=1, theta_bits=2),  # r in 2 parts
    dict(lanes=8, w_bits=3, t_max=2, in_max=4, frac_bits=0, theta_bits=5),
    dict(),                                                                 # the defaults
    dict(firing_parts=1),                                  # one adder (the FPGA flow's)
    dict(firing_parts=2),
    dict(firing_parts=3),
    dict(firing_parts=4),
    dict(firing_parts=6),
    dict(lanes=4, w_bits=4, t_max=4, in_max=16, frac_bits=4, theta_bits=16, firing_parts=1),
], ids=["t_max1", "f0", "default", "one_part", "two_parts", "three_parts", "four_parts",
         "six_parts", "small_one_part"])
def test_other_params(kw):
    """Other widths and part counts (and so other splits of the remainder into parts), with
    the largest |acc| of both signs and theta = 1, max and random."""
    p = HwParams(**kw)
    rng = np.random.default_rng(1)
    b = p.acc_bits
    for theta in (1, (1 << p.theta_bits) - 1, int(rng.integers(1, 1 << p.theta_bits))):
        acc = rng.integers(-(1 << (b - 1)), 1 << (b - 1), size=(5, p.lanes))
        acc[0], acc[1] = -(1 << (b - 1)), (1 << (b - 1)) - 1
        mod = rng.integers(0, 2, len(acc))
        got, ref, *_ = simulate(p, acc, mod, theta, p.t_max, max(1, p.t_max - 1), p_ready=0.7,
                                seed=3)
        assert events_equal(got, ref)


@pytest.mark.parametrize("t_text, t_vision, zeros", [(4, 3, 0.0), (1, 1, 0.5), (1, 4, 0.3),
                                                       (2, 1, 0.5)])
def test_throughput_and_latency(t_text, t_vision, zeros):
    """One event per clock: with a ready sink, events leave on consecutive cycles across step
    and token ends, the first LATENCY cycles after the first vector is accepted, and each
    token takes sum_t max(1, nnz_t) cycles. Zero vectors (T empty steps, one cycle each) and
    T = 1 need the generator to keep up at one step and one vector per clock."""
    rng = np.random.default_rng(5)
    n = 12
    acc = rng.integers(-60, 61, size=(n, P.lanes))
    acc[rng.random(n) < zeros] = 0
    mod = rng.integers(0, 2, n)
    got, ref, src, snk = simulate(P, acc, mod, 100, t_text, t_vision)
    assert events_equal(got, ref)
    c0 = src.accepted[0]
    assert snk.cycles == list(range(c0 + TcLifFiring.LATENCY, c0 + TcLifFiring.LATENCY + len(ref)))
    T = np.where(mod == 1, t_vision, t_text)
    # The generator runs ahead of the emitter by at most the step FIFO (2 steps): vector k
    # is accepted in the cycle the generator pushes token k-1's last step (global step
    # G = sum(T[:k]) - 1), while the emitter sends a step e (-1: none yet) with
    # e < G <= e + 2, i.e. before token k-1's last step even reaches the emitter.
    step_at = dict(zip(snk.cycles, np.cumsum(ref["last_in_step"]) - ref["last_in_step"]))
    for k in range(1, n):
        e = step_at.get(src.accepted[k], -1)
        G = int(np.sum(T[:k])) - 1
        assert e < G <= e + 2, (k, src.accepted[k], e, G)


def test_input_ready_does_not_depend_on_output_ready():
    """i_stream.ready comes from registered state only (o_stream.ready reaches no large
    fan-out): in every cycle it is the same for o_stream.ready = 0 and 1."""
    dut = TcLifFiring(params=P)
    rng = np.random.default_rng(9)
    words = [pack_acc_vector(P, a, m) for a, m in
             zip(rng.integers(-100, 101, size=(30, P.lanes)), rng.integers(0, 2, 30))]
    seen = set()

    async def tb(ctx):
        ctx.set(dut.theta, 40)
        ctx.set(dut.t_text, 3)
        ctx.set(dut.t_vision, 1)
        pos = 0
        held = False
        for _ in range(2000):
            if pos == len(words):
                break
            held = held or rng.random() < 0.8      # once valid, held until taken
            ctx.set(dut.i_stream.valid, held)
            ctx.set(dut.i_stream.payload.as_value(), words[pos])
            seen.add(input_ready_ignoring_output(ctx, dut))
            ctx.set(dut.o_stream.ready, int(rng.random() < 0.5))
            if held and ctx.get(dut.i_stream.ready):
                pos += 1
                held = False
            await ctx.tick()
        assert pos == len(words)

    run_testbench(dut, tb)
    assert seen == {0, 1}


def test_asic_load_adders_see_zeros_between_vectors():
    """Operand isolation (asic style): the asic PE array offers its accumulators themselves,
    which change at every event, so the firing unit's load adders take zeros while
    i_stream.valid is low and the offered vector only while it is high."""
    dut = TcLifFiring(params=P)
    rng = np.random.default_rng(11)
    seen = {0: set(), 1: set()}

    async def tb(ctx):
        for _ in range(60):
            valid = int(rng.random() < 0.3)
            acc = rng.integers(-500, 501, size=P.lanes)
            ctx.set(dut.i_stream.valid, valid)
            ctx.set(dut.i_stream.payload.as_value(), pack_acc_vector(P, acc, 0))
            got = [ctx.get(v) for v in dut._load_operands]
            seen[valid].add(tuple(got) == (tuple(acc) if valid else (0,) * P.lanes))
            await ctx.tick()

    run_testbench(dut, tb)
    assert len(dut._load_operands) == P.lanes
    assert seen == {0: {True}, 1: {True}}


def test_backpressure_holds_payload():
    rng = np.random.default_rng(6)
    acc = rng.integers(-200, 201, size=(8, P.lanes))
    mod = rng.integers(0, 2, 8)
    got, ref, *_ = simulate(P, acc, mod, 50, 3, 4, p_ready=0.1, seed=6)
    assert events_equal(got, ref)


def test_out_of_range_T_is_clamped():
    acc = np.array([[100, -7, 3, 0], [5, -100, 0, 1]])
    # t_text too large -> T_MAX; t_vision 0 -> 1
    got, ref, *_ = simulate(P, acc, [0, 1], 16, P.t_max + 1, 0, ref_T=np.array([P.t_max, 1]))
    assert events_equal(got, ref)


def test_reset_mid_stream():
    rng = np.random.default_rng(11)
    acc1 = rng.integers(-300, 301, size=(6, P.lanes))
    acc2 = rng.integers(-300, 301, size=(5, P.lanes))
    mod2 = rng.integers(0, 2, 5)
    ref2, _ = E.fire_events(acc2, 64, P.frac_bits, np.where(mod2 == 1, 2, 4), mod2)

    def after_reset(sources, sinks):
        sources[0].words = [pack_acc_vector(P, a, m) for a, m in zip(acc2, mod2)]
        sinks[0].words.clear()
        sinks[0].expect = len(ref2)

    got, *_ = simulate(P, acc1, [1] * 6, 64, 4, 2, reset_at=12, after_reset=after_reset,
                       p_ready=0.7, seed=11)
    assert events_equal(got, ref2)


def test_bad_params():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="params must be a HwParams"):
            TcLifFiring(params=None)
        gc.collect()


@pytest.mark.parametrize("parts, widths", [(4, [6, 5, 5, 5]), (3, [7, 7, 7]), (2, [11, 10]),
                                           (1, [21])])
def test_remainder_parts_follow_firing_parts(parts, widths):
    """firing_parts sets how the remainder is split: one part is a single adder."""
    p = HwParams(lanes=4, w_bits=4, t_max=4, in_max=16, frac_bits=4, theta_bits=16,
                 firing_parts=parts)
    unit = TcLifFiring(params=p)
    assert [b - a for a, b in unit.parts] == widths and sum(widths) == unit.r_bits
    unit._MustUse__silence = True  # only inspected
