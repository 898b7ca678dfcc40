"""DenseMacLanes (the dense INT MAC baseline of the synthesis flow) in the Amaranth simulator."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from spikemllm.hw.mac_baseline import DenseMacLanes, default_acc_bits, input_layout, input_toggles

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")

LANES, W_BITS, A_BITS, IN_MAX = 4, 4, 5, 16


def _pack_row(ws, w_bits):
    word = 0
    for lane, w in enumerate(ws):
        word |= (int(w) & ((1 << w_bits) - 1)) << (lane * w_bits)
    return word


#: each RTL style's DenseMacLanes keywords and the latency it adds
STYLE = {"plain": ({}, 0),
         "read_register": (dict(read_register=True, bram_rows=4),
                           DenseMacLanes.READ_REGISTER_CYCLES),
         "alternating_ports": (dict(alternating_ports=True),
                               DenseMacLanes.ALTERNATING_PORTS_CYCLES)}


def simulate(weights, inputs, *, ready_pattern=None, style="plain"):
    """Load ``weights`` [lanes, in_max] (each row when ``w_stream`` is ready), stream
    ``inputs`` [(index, act, last)], collect outputs.

    Returns (outputs as [n, lanes] ints, cycle of each output, cycle each input was accepted).
    """
    dut = DenseMacLanes(lanes=LANES, w_bits=W_BITS, a_bits=A_BITS, in_max=IN_MAX,
                        **STYLE[style][0])
    outs, out_cycles, in_cycles = [], [], []
    n_expect = sum(1 for _, _, last in inputs if last)

    async def bench(ctx):
        ctx.set(dut.w_stream.valid, 1)
        for addr in range(IN_MAX):
            ctx.set(dut.w_stream.payload, {"addr": addr,
                                           "row": _pack_row(weights[:, addr], W_BITS)})
            while not ctx.get(dut.w_stream.ready):
                await ctx.tick()
            await ctx.tick()
        ctx.set(dut.w_stream.valid, 0)
        cycle, k = 0, 0
        while len(outs) < n_expect:
            ready = 1 if ready_pattern is None else ready_pattern(cycle)
            ctx.set(dut.o_stream.ready, ready)
            if k < len(inputs):
                idx, act, last = inputs[k]
                ctx.set(dut.i_stream.valid, 1)
                ctx.set(dut.i_stream.payload, {"index": idx, "activation": act, "last": last})
            else:
                ctx.set(dut.i_stream.valid, 0)
            took_in = k < len(inputs) and ctx.get(dut.i_stream.ready)
            if ctx.get(dut.o_stream.valid) and ready:
                outs.append([ctx.get(dut.o_stream.payload[i]) for i in range(LANES)])
                out_cycles.append(cycle)
            await ctx.tick()
            if took_in:
                in_cycles.append(cycle)
                k += 1
            cycle += 1
            assert cycle < 10 * (len(inputs) + 10), "no progress"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert dut.latency == DenseMacLanes.LATENCY + STYLE[style][1]
    return np.array(outs, dtype=np.int64), out_cycles, in_cycles


def _expected(weights, inputs):
    acc, res = np.zeros(LANES, dtype=np.int64), []
    for idx, act, last in inputs:
        acc += weights[:, idx] * act
        if last:
            res.append(acc.copy())
            acc[:] = 0
    return np.array(res, dtype=np.int64)


def _random_case(rng, n_tokens=3):
    w = rng.integers(-(1 << (W_BITS - 1)), 1 << (W_BITS - 1), size=(LANES, IN_MAX))
    inputs = []
    for _ in range(n_tokens):
        n = int(rng.integers(1, IN_MAX + 1))
        for j, idx in enumerate(rng.permutation(IN_MAX)[:n]):
            act = int(rng.integers(-(1 << (A_BITS - 1)), 1 << (A_BITS - 1)))
            inputs.append((int(idx), act, int(j == n - 1)))
    return w, inputs


RR = pytest.mark.parametrize("rr", [False, True], ids=["plain", "read_register"])
STYLES = pytest.mark.parametrize("style", list(STYLE))


@pytest.mark.parametrize("style, latency", [("plain", 3), ("read_register", 5),
                                            ("alternating_ports", 5)])
def test_macs_match_numpy_and_latency(style, latency):
    rng = np.random.default_rng(1)
    w, inputs = _random_case(rng)
    outs, out_cycles, in_cycles = simulate(w, inputs, style=style)
    np.testing.assert_array_equal(outs, _expected(w, inputs))
    # One input per cycle with no stalls; the result of a `last` input LATENCY cycles later.
    assert in_cycles == list(range(len(inputs)))
    last_cycles = [c for c, (_, _, last) in zip(in_cycles, inputs) if last]
    assert [o - c for o, c in zip(out_cycles, last_cycles)] == [latency] * len(last_cycles)


@STYLES
def test_backpressure_loses_nothing(style):
    rng = np.random.default_rng(2)
    w, inputs = _random_case(rng, n_tokens=4)
    outs, _, _ = simulate(w, inputs, ready_pattern=lambda c: int(c % 3 == 0), style=style)
    np.testing.assert_array_equal(outs, _expected(w, inputs))


@STYLES
@pytest.mark.parametrize("seed", [3, 4, 5])
def test_short_vectors_under_random_backpressure(style, seed):
    """Vectors of 1..3 inputs against a consumer that is ready 35% of the cycles: a result
    is offered while the next ones finish behind it (in the fpga style, a held result
    stalls the pipeline only when the next `last` reaches the accumulators)."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-(1 << (W_BITS - 1)), 1 << (W_BITS - 1), size=(LANES, IN_MAX))
    inputs = []
    for _ in range(12):
        n = int(rng.integers(1, 4))
        inputs += [(int(rng.integers(IN_MAX)), int(rng.integers(-16, 16)), int(j == n - 1))
                   for j in range(n)]
    ready = rng.random(10 * (len(inputs) + 10)) < 0.35
    outs, _, _ = simulate(w, inputs, ready_pattern=lambda c: int(ready[c]), style=style)
    np.testing.assert_array_equal(outs, _expected(w, inputs))


@STYLES
def test_extreme_values_do_not_overflow(style):
    w = np.full((LANES, IN_MAX), -(1 << (W_BITS - 1)), dtype=np.int64)
    inputs = [(i, -(1 << (A_BITS - 1)), int(i == IN_MAX - 1)) for i in range(IN_MAX)]
    outs, _, _ = simulate(w, inputs, style=style)
    np.testing.assert_array_equal(outs, _expected(w, inputs))
    assert outs[0, 0] == IN_MAX * (1 << (W_BITS - 1)) * (1 << (A_BITS - 1))


@pytest.mark.parametrize("kw, field", [
    (dict(lanes=0), "lanes"), (dict(w_bits=1), "w_bits"), (dict(a_bits=17), "a_bits"),
    (dict(in_max=1), "in_max"), (dict(acc_bits=3), "acc_bits"), (dict(lanes=2.0), "lanes"),
    (dict(read_register=1), "read_register"), (dict(read_register=True, bram_rows=6), "bram_rows"),
    (dict(bram_rows=8), "bram_rows must be 0 without read_register"),
    (dict(alternating_ports=1), "alternating_ports must be True or False, not 1"),
    (dict(alternating_ports=True, read_register=True), "alternating_ports needs read_register"),
])
def test_bad_parameters_are_named(kw, field):
    args = dict(lanes=LANES, w_bits=W_BITS, a_bits=A_BITS, in_max=IN_MAX)
    args.update(kw)
    with pytest.raises(ValueError, match=field):
        DenseMacLanes(**args)


def test_default_acc_bits_holds_the_worst_case():
    bits = default_acc_bits(w_bits=W_BITS, a_bits=A_BITS, in_max=IN_MAX)
    worst = IN_MAX * (1 << (W_BITS - 1)) * (1 << (A_BITS - 1))
    assert worst <= (1 << (bits - 1)) - 1


def test_input_toggles_count_the_dense_stream_bit_by_bit():
    """Two tokens of three inputs, in_max 4: index 2 bits, activation 4 bits, last 1 bit."""
    q = np.array([[0, 1, -1], [3, 0, 0]])
    L = input_layout(a_bits=4, in_max=4)
    words = []
    for tok in q:
        for i, a in enumerate(tok):
            words.append(i << L["index"].offset | (int(a) & 0xF) << L["activation"].offset
                         | int(i == 2) << L["last"].offset)
    want = sum(bin(a ^ b).count("1") for a, b in zip(words, words[1:]))
    assert input_toggles(q, a_bits=4, in_max=4) == (want, 5 * L.size)
    # the same counts packed as the hardware's payload: -1 is all ones in 4 bits
    assert words[2] >> L["activation"].offset & 0xF == 0xF
    with pytest.raises(ValueError, match="signed 4 bits"):
        input_toggles(np.array([[8]]), a_bits=4, in_max=4)
    with pytest.raises(ValueError, match="in_features"):
        input_toggles(np.zeros((1, 5), int), a_bits=4, in_max=4)


@RR
def test_fpga_style_weight_banks_are_no_rw_check(rr):
    """read_register: the weight banks carry no_rw_check, as the PE array's do (the same
    FPGA memory for the baseline and the spike lanes); without it, the old-row memory."""
    from amaranth.back import rtlil
    il = rtlil.convert(DenseMacLanes(lanes=4, w_bits=4, a_bits=8, in_max=16, read_register=rr,
                                     bram_rows=4 if rr else 0))
    assert il.count("attribute \\no_rw_check 1") == (4 if rr else 0)
