"""Cycle-accurate stream harness for the Amaranth simulator (shared by tests/hw)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator


@dataclass
class Source:
    """Drives ``stream`` with ``words`` (ints); in a cycle with nothing held, offers the next
    word with probability ``p_valid``. Once valid, holds the word until it is taken."""
    stream: object
    words: list
    p_valid: float = 1.0
    start: int = 0  # first cycle it may offer
    accepted: list = field(default_factory=list)  # cycle of each transfer


@dataclass
class Sink:
    """Takes words from ``stream``; ready with probability ``p_ready`` each cycle."""
    stream: object
    p_ready: float = 1.0
    expect: int = None  # stop once this many words arrived (else: 8 idle cycles)
    words: list = field(default_factory=list)
    cycles: list = field(default_factory=list)


def run(dut, sources=(), sinks=(), *, setup=None, watch=(), seed=0, max_cycles=100_000,
        until=None, reset_at=None, after_reset=None, done_extra=0, finish=None):
    """Simulate cycle by cycle. ``setup(ctx)`` runs once before cycle 0 (may tick itself).

    ``until(cycle)`` -> True stops early; otherwise the run stops ``done_extra`` cycles after
    every source is drained and no sink saw a word for 8 cycles. ``reset_at`` (cycle) pulses
    the sync reset for 2 cycles; ``after_reset(sources, sinks)`` may then swap words (the
    sources restart at their first word). ``finish(ctx)`` runs after the last cycle. Reaching
    ``max_cycles`` with a sink short of its ``expect`` raises AssertionError. Returns ``(cycles, watched)`` with ``watched`` a list per cycle of the sampled ``watch``.
    """
    rng = random.Random(seed)
    top = Module()
    top.submodules.dut = dut
    top.domains.sync = cd = ClockDomain("sync")
    sim = Simulator(top)
    sim.add_clock(1e-8)
    watched = []
    result = {}

    async def tb(ctx):
        if setup is not None:
            await setup(ctx)
        pos = [0] * len(sources)
        held = [False] * len(sources)
        idle = 0
        cycle = 0
        in_reset = 0
        while cycle < max_cycles:
            if reset_at is not None and cycle == reset_at:
                in_reset = 2
            ctx.set(cd.rst, 1 if in_reset else 0)
            for k, s in enumerate(sources):
                if in_reset:
                    held[k] = False
                if not held[k] and pos[k] < len(s.words) and cycle >= s.start and rng.random() < s.p_valid:
                    held[k] = True
                if held[k] and not in_reset:
                    ctx.set(s.stream.valid, 1)
                    ctx.set(s.stream.payload.as_value(), s.words[pos[k]])
                else:
                    ctx.set(s.stream.valid, 0)
            for s in sinks:
                ctx.set(s.stream.ready, 1 if rng.random() < s.p_ready else 0)
            exprs = []
            for s in sources:
                exprs += [s.stream.valid, s.stream.ready]
            for s in sinks:
                exprs += [s.stream.valid, s.stream.ready, s.stream.payload.as_value()]
            exprs += list(watch)
            _, rst, *vals = await ctx.tick().sample(*exprs)
            i = 0
            for k, s in enumerate(sources):
                v, r = vals[i], vals[i + 1]
                i += 2
                if v and r and not in_reset:
                    s.accepted.append(cycle)
                    pos[k] += 1
                    held[k] = False
            got = False
            for s in sinks:
                v, r, w = vals[i], vals[i + 1], vals[i + 2]
                i += 3
                if v and r and not in_reset:
                    s.words.append(int(w))
                    s.cycles.append(cycle)
                    got = True
            watched.append(vals[i:])
            if in_reset:
                in_reset -= 1
                if in_reset == 0 and after_reset is not None:
                    after_reset(sources, sinks)
                    pos = [0] * len(sources)
            cycle += 1
            if until is not None:
                if until(cycle):
                    break
                continue
            drained = all(p >= len(s.words) for p, s in zip(pos, sources))
            drained = drained and all(s.expect is None or len(s.words) >= s.expect for s in sinks)
            idle = 0 if (got or not drained) else idle + 1
            if drained and idle >= 8 + done_extra:
                break
        result["cycles"] = cycle
        short = [s for s in sinks if s.expect is not None and len(s.words) < s.expect]
        if until is None and short:
            raise AssertionError(f"timeout after {cycle} cycles: a sink got {len(short[0].words)} "
                                 f"of {short[0].expect} words")
        for s in sources:
            ctx.set(s.stream.valid, 0)
        if finish is not None:
            await finish(ctx)

    sim.add_testbench(tb)
    sim.run()
    return result["cycles"], watched


# ---- helpers shared by the block tests ------------------------------------------------------

def run_testbench(dut, testbench):
    """Simulate ``dut`` in a ``sync`` domain (10 ns clock) with one async ``testbench(ctx)``."""
    top = Module()
    top.submodules.dut = dut
    top.domains.sync = ClockDomain("sync")
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def input_ready_ignoring_output(ctx, dut):
    """``dut.i_stream.ready`` in this cycle, asserted to be the same for
    ``dut.o_stream.ready`` = 0 and 1 (no combinational path from one to the other). Leaves
    ``o_stream.ready`` at 1; the caller sets the value it wants next."""
    ready = []
    for r in (0, 1):
        ctx.set(dut.o_stream.ready, r)
        ready.append(ctx.get(dut.i_stream.ready))
    assert ready[0] == ready[1], "i_stream.ready follows o_stream.ready"
    return ready[0]


def weight_words(params, w):
    """w_stream payload words {addr, data} writing weight matrix w [lanes, in_max]."""
    from spikemllm.sw.events import pack_weight_rows
    rows = pack_weight_rows(w, params.w_bits)
    return [a | (r << params.index_bits) for a, r in enumerate(rows)]


def random_spikes(rng, T_max, n_tokens, n_in, density=0.3, T=None):
    """Random ternary spikes int8 [T_max, N, in]; zero beyond each token's T."""
    import numpy as np
    s = rng.choice([-1, 0, 1], size=(T_max, n_tokens, n_in),
                   p=[density / 2, 1 - density, density / 2]).astype(np.int8)
    if T is not None:
        T = np.broadcast_to(np.asarray(T), (n_tokens,))
        s[np.arange(T_max)[:, None] >= T[None, :]] = 0
    return s


async def cfg_write(ctx, dut, addr, value):
    ctx.set(dut.cfg_addr, addr)
    ctx.set(dut.cfg_data, value)
    ctx.set(dut.cfg_we, 1)
    await ctx.tick()
    ctx.set(dut.cfg_we, 0)


async def cfg_read(ctx, dut, addr):
    ctx.set(dut.cfg_we, 0)
    ctx.set(dut.cfg_addr, addr)
    await ctx.tick()
    return ctx.get(dut.cfg_rdata)


def events_equal(got, ref):
    """Field-by-field equality of two EVENT_DTYPE arrays (the token field is bookkeeping)."""
    names = ("index", "sign", "t", "last_in_step", "last_in_token", "empty", "modality")
    return len(got) == len(ref) and all((got[n] == ref[n]).all() for n in names)
