"""The split accumulator and counter (hw/split_accumulator.py) against one plain register."""

import random

import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from spikemllm.hw.split_accumulator import split_accumulator, split_counter


class SplitAccumulatorHarness(wiring.Component):
    """``split_accumulator`` with its inputs and its accumulator as ports."""

    def __init__(self, *, bits, low_bits, operand_bits):
        self.bits, self.low_bits = bits, low_bits
        super().__init__({"operand": In(signed(operand_bits)),
                          "load_value": In(signed(operand_bits)),
                          "load": In(1), "double": In(1), "acc": Out(signed(bits))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.acc.eq(split_accumulator(
            m, name="acc", bits=self.bits, low_bits=self.low_bits, operand=self.operand,
            load=self.load, load_value=self.load_value, double=self.double))
        return m


def unused_module():
    m = Module()
    m._MustUse__silence = True  # never elaborated: no "created but never used" warning
    return m


def wrap(x, bits):
    x &= (1 << bits) - 1
    return x - (1 << bits) if x >> (bits - 1) else x


def simulate(dut, steps):
    """Drive ``steps`` [(operand, load, load_value, double)]; the accumulator after each."""
    got, hi_changes = [], 0
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        nonlocal hi_changes
        for op, load, lv, double in steps:
            ctx.set(dut.operand, op)
            ctx.set(dut.load, load)
            ctx.set(dut.load_value, lv)
            ctx.set(dut.double, double)
            before = ctx.get(dut.acc) >> dut.low_bits
            await ctx.tick()
            got.append(ctx.get(dut.acc))
            hi_changes += (ctx.get(dut.acc) >> dut.low_bits) != before
    sim.add_testbench(bench)
    sim.run()
    return got, hi_changes


@pytest.mark.parametrize("bits,low_bits,operand_bits", [(12, 8, 5), (10, 4, 5), (9, 9, 5),
                                                        (16, 12, 13)])
def test_it_is_one_register_bit_for_bit_wrap_around_included(bits, low_bits, operand_bits):
    rng = random.Random(bits * 100 + low_bits)
    lo_op, hi_op = -(1 << (operand_bits - 1)), (1 << (operand_bits - 1)) - 1
    steps = [(rng.randint(lo_op, hi_op), int(rng.random() < 0.05), rng.randint(lo_op, hi_op),
              int(rng.random() < 0.1)) for _ in range(3000)]
    dut = SplitAccumulatorHarness(bits=bits, low_bits=low_bits, operand_bits=operand_bits)
    got, _ = simulate(dut, steps)
    acc, want = 0, []
    for op, load, lv, double in steps:
        s = lv if load else acc + op
        acc = wrap(s << 1 if double else s, bits)
        want.append(acc)
    assert any(abs(a) > (1 << (bits - 2)) for a in want)   # the run reaches the upper bits
    assert got == want


def test_small_operands_seldom_change_the_upper_bits():
    """What makes the split worth it behind a clock gate: +-w steps carry out of 8 low bits
    in a few percent of the adds."""
    rng = random.Random(3)
    steps = [(rng.randint(-8, 7), 0, 0, 0) for _ in range(4000)]
    dut = SplitAccumulatorHarness(bits=20, low_bits=8, operand_bits=5)
    got, hi_changes = simulate(dut, steps)
    assert got[-1] == sum(op for op, *_ in steps)
    assert 0 < hi_changes < 0.05 * len(steps)


@pytest.mark.parametrize("kw,match", [
    (dict(bits=1, low_bits=1), "bits must be an integer of at least 2"),
    (dict(bits=12, low_bits=0), r"low_bits must be an integer in 1\.\.12"),
    (dict(bits=12, low_bits=13), r"low_bits must be an integer in 1\.\.12"),
    (dict(bits=12, low_bits=3), r"operand must be signed and at most 4 bits wide"),
])
def test_bad_parameters_are_refused_naming_the_field(kw, match):
    op = Signal(signed(5))
    with pytest.raises(ValueError, match=match):
        split_accumulator(unused_module(), name="a", operand=op, load=Signal(), load_value=op,
                          **kw)


def test_an_unsigned_operand_is_refused():
    with pytest.raises(ValueError, match="operand must be signed"):
        split_accumulator(unused_module(), name="a", bits=12, low_bits=8, operand=Signal(4),
                          load=Signal(), load_value=Signal(signed(4)))


class SplitCounterHarness(wiring.Component):
    """``split_counter`` with its inputs and its count as ports."""

    def __init__(self, *, bits, low_bits):
        self.bits, self.low_bits = bits, low_bits
        super().__init__({"inc": In(1), "clear": In(1), "count": Out(bits)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.count.eq(split_counter(m, name="n", bits=self.bits,
                                                low_bits=self.low_bits, inc=self.inc,
                                                clear=self.clear))
        return m


@pytest.mark.parametrize("bits,low_bits", [(7, 3), (7, 1), (6, 6)])
def test_the_split_counter_counts_saturates_and_clears(bits, low_bits):
    """Against a plain saturating counter, through carries out of the low bits, a run long
    enough to saturate (and stay there), and clears (which win over a count)."""
    rng = random.Random(bits * 10 + low_bits)
    top = (1 << bits) - 1
    steps = [(int(rng.random() < 0.9), int(i in (40, 41, 700))) for i in range(900)]
    dut = SplitCounterHarness(bits=bits, low_bits=low_bits)
    got = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        for inc, clear in steps:
            ctx.set(dut.inc, inc)
            ctx.set(dut.clear, clear)
            await ctx.tick()
            got.append(ctx.get(dut.count))
    sim.add_testbench(bench)
    sim.run()
    n, want = 0, []
    for inc, clear in steps:
        n = 0 if clear else min(n + inc, top)
        want.append(n)
    assert want.count(top) > 10 and got == want


@pytest.mark.parametrize("kw,match", [
    (dict(bits=0, low_bits=1), "bits must be a positive integer"),
    (dict(bits=8, low_bits=0), r"low_bits must be an integer in 1\.\.8, not 0"),
    (dict(bits=8, low_bits=9), r"low_bits must be an integer in 1\.\.8, not 9"),
])
def test_bad_counter_parameters_are_refused_naming_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        split_counter(unused_module(), name="n", inc=Signal(), clear=Signal(), **kw)
