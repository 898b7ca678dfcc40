"""RegisteredReadMemory (the FPGA style's banked, registered-read memory) against a list."""

import random

import pytest
from amaranth.back import rtlil
from amaranth.hdl import unsigned
from amaranth.sim import Simulator

from spikemllm.hw.registered_memory import RegisteredReadMemory


@pytest.mark.parametrize("depth, bank_rows, banks", [(12, 0, 1), (12, 4, 3), (10, 4, 3),
                                                     (8, 16, 1)])
def test_reads_follow_writes_across_banks(depth, bank_rows, banks):
    """Random writes, reads and register loads, cycle by cycle, against a Python model:
    r_data holds the word read at the last r_en edge before the last r_load edge, and a read
    at the edge that writes the same address gives the old word."""
    dut = RegisteredReadMemory(shape=unsigned(8), depth=depth, bank_rows=bank_rows)
    assert dut.banks == banks and dut.LATENCY == 2
    rng = random.Random(depth * 100 + bank_rows)
    checked = []

    async def bench(ctx):
        mem = [0] * depth
        for a in range(depth):          # fill, one write per cycle
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_addr, a)
            ctx.set(dut.w_data, rng.randrange(256))
            mem[a] = ctx.get(dut.w_data)
            await ctx.tick()
        read_out, reg = None, None      # memory outputs, read registers (model)
        for _ in range(300):
            w_en, r_en, r_load = (rng.random() < 0.5 for _ in range(3))
            w_addr, r_addr, w_data = rng.randrange(depth), rng.randrange(depth), rng.randrange(256)
            ctx.set(dut.w_en, w_en)
            ctx.set(dut.w_addr, w_addr)
            ctx.set(dut.w_data, w_data)
            ctx.set(dut.r_en, r_en)
            ctx.set(dut.r_addr, r_addr)
            ctx.set(dut.r_load, r_load)
            if reg is not None:
                assert ctx.get(dut.r_data) == reg
                checked.append(reg)
            await ctx.tick()
            if r_load and read_out is not None:
                reg = read_out
            if r_en:
                read_out = mem[r_addr]    # before this edge's write: the old word
            if w_en:
                mem[w_addr] = w_data

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) > 100


@pytest.mark.parametrize("kw, match", [
    (dict(depth=0), "depth must be an integer in 1..1048576, not 0"),
    (dict(depth=8, bank_rows=3), "bank_rows must be 0 or a power of two in 2..1048576, not 3"),
    (dict(depth=8, bank_rows=1), "bank_rows must be 0 or a power of two"),
    (dict(depth=8, no_rw_check=1), "no_rw_check must be True or False, not 1"),
])
def test_bad_parameters_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        RegisteredReadMemory(shape=unsigned(4), **kw)


@pytest.mark.parametrize("no_rw_check", [False, True])
def test_no_rw_check_marks_every_bank(no_rw_check):
    """no_rw_check puts Yosys's attribute on each bank (FPGA flows then build no
    read-old-data logic) and on nothing else."""
    il = rtlil.convert(RegisteredReadMemory(shape=unsigned(8), depth=12, bank_rows=4,
                                            no_rw_check=no_rw_check))
    assert il.count("memory width 8") == 3
    assert il.count("attribute \\no_rw_check 1") == (3 if no_rw_check else 0)
