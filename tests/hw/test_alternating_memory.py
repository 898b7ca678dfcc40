"""AlternatingPortMemory (reads through two half-rate SRAM ports in turn) against a list."""

import random

import pytest
from amaranth.back import rtlil
from amaranth.hdl import unsigned
from amaranth.sim import Simulator

from spikemllm.hw.alternating_memory import ALTERNATING_PORTS_ATTR, AlternatingPortMemory


def _simulate(bench_body, depth=16):
    dut = AlternatingPortMemory(shape=unsigned(8), depth=depth)

    async def bench(ctx):
        await bench_body(ctx, dut)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return dut


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_reads_writes_and_holds_follow_a_model(seed):
    """Random reads, writes and holds, cycle by cycle, against a Python model of the
    half-rate ports: every issued read reaches r_data after its second advancing edge with the
    word of its issue edge; each port reads only in its phase's cycles and never again before
    its word is registered; writes only in phase 0, where they keep reads out."""
    rng = random.Random(seed)
    depth = 16
    got = []

    async def body(ctx, dut):
        mem = [0] * depth
        a1 = a2 = None              # (port, word) in flight
        reg = None
        pending = {0: False, 1: False}   # a port holds a word the register has not taken
        for cycle in range(600):
            w_en, r_en, hold = rng.random() < 0.5, rng.random() < 0.6, rng.random() < 0.25
            w_addr, w_data, r_addr = rng.randrange(depth), rng.randrange(256), rng.randrange(depth)
            for sig, v in ((dut.w_en, w_en), (dut.w_addr, w_addr), (dut.w_data, w_data),
                           (dut.r_en, r_en), (dut.r_addr, r_addr), (dut.hold, hold)):
                ctx.set(sig, v)
            phase = ctx.get(dut.phase)
            assert phase == cycle % 2                  # free-running: the ports' clocks
            write = w_en and phase == 0
            assert ctx.get(dut.w_ready) == (phase == 0)
            busy = a1 is not None and a1[0] == phase
            ready = not hold and not write and not busy
            assert ctx.get(dut.r_ready) == ready, cycle
            issue = r_en and ready
            if reg is not None:
                assert ctx.get(dut.r_data) == reg
            await ctx.tick()
            if not hold:
                if a2 is not None:      # registered at this edge: its port is free again
                    reg = a2[1]
                    pending[a2[0]] = False
                    got.append(reg)
                assert ctx.get(dut.r_valid) == (a2 is not None)
                if issue:
                    assert not pending[phase], "a port read again before its word was registered"
                    pending[phase] = True
                a1, a2 = ((phase, mem[r_addr]) if issue else None), a1
            if write:
                mem[w_addr] = w_data

    _simulate(body, depth)
    assert len(got) > 150


def test_one_read_per_clock_and_writes_every_other_clock():
    """Without holds a read is issued in every cycle, each word on r_data READ_LATENCY edges
    later; writes are taken in phase-0 cycles only (half rate)."""
    out = {}

    async def body(ctx, dut):
        for a in range(8):                       # one write per phase-0 cycle
            while not ctx.get(dut.w_ready):
                await ctx.tick()
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_addr, a)
            ctx.set(dut.w_data, 10 + a)
            await ctx.tick()
            ctx.set(dut.w_en, 0)
        ctx.set(dut.r_en, 1)
        issued, seen = [], []
        for cycle in range(12):
            ctx.set(dut.r_addr, cycle % 8)
            issued.append(ctx.get(dut.r_ready))
            await ctx.tick()
            if ctx.get(dut.r_valid):
                seen.append((cycle, ctx.get(dut.r_data)))
        out.update(issued=issued, seen=seen)

    _simulate(body)
    assert all(out["issued"])
    L = AlternatingPortMemory.READ_LATENCY
    assert out["seen"] == [(c, 10 + (c - L) % 8) for c in range(L, 12)]


def test_an_odd_hold_costs_one_bubble():
    """After a one-cycle hold the next cycle's port still holds the word issued before the
    hold, so that cycle issues nothing; then reads flow again."""
    out = []

    async def body(ctx, dut):
        ctx.set(dut.r_en, 1)
        for cycle in range(8):
            ctx.set(dut.hold, cycle == 2)
            out.append(ctx.get(dut.r_ready))
            await ctx.tick()

    _simulate(body)
    assert out == [1, 1, 0, 0, 1, 1, 1, 1]


def test_ports_are_two_reads_of_one_marked_memory():
    il = rtlil.convert(AlternatingPortMemory(shape=unsigned(8), depth=12))
    assert il.count("memory width 8") == 1
    assert il.count("cell $memrd_v2") == 2 and il.count("cell $memwr_v2") == 1
    assert il.count(f"attribute \\{ALTERNATING_PORTS_ATTR} 1") == 1


@pytest.mark.parametrize("depth", [0, 1 << 21, True, 4.0])
def test_bad_depth_is_named(depth):
    with pytest.raises(ValueError, match=f"depth must be an integer in 1..1048576, not {depth!r}"):
        AlternatingPortMemory(shape=unsigned(4), depth=depth)
