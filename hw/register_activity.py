"""Register toggle rates measured in the Amaranth simulator on real traffic.

OpenSTA 2.0.17 starts every register output from one activity (``set_power_activity
-input``) and propagates from there; the cosim sees only ports. This module measures that
figure per design: it streams a case through the RTL, one input per cycle with the output
always ready, and counts the bit transitions of every register the design assigns in a
clocked domain (memories excluded: synthesis replaces them by SRAM macros), and the cycles in
which each memory's read ports are enabled (the SRAM macro reads in each such cycle).
``spikemllm sim`` writes the results to ``activity.json`` as ``register_activity_by_design``
and ``sram_reads_per_cycle_by_design``.
"""

from __future__ import annotations

from amaranth.hdl import ClockDomain, Fragment, Module
from amaranth.sim import Simulator

from ..sw.events import EventLayout, events_to_counts, pack_weight_rows
from .mac_baseline import pack_inputs
from .params import HwParams

__all__ = ["clocked_registers", "memory_read_enables", "register_toggle_rate",
           "pe_array_activity", "mac_baseline_activity", "spike_engine_activity"]


def clocked_registers(component):
    """Every signal a clocked domain of ``component`` (and its submodules) assigns:
    ``{"path.name": signal}`` sorted by path, e.g. ``"k_cache.busy"``.

    ``component`` may be an elaborated ``Fragment``; elaborating twice would give a second,
    unrelated set of internal signals. Memory instances are left out (synthesis maps them to
    SRAM macros, not flip-flops).
    """
    found = {}

    def walk(frag, prefix):
        for domain, stmts in getattr(frag, "statements", {}).items():
            if domain == "comb":
                continue
            for st in stmts:
                for sig in st._lhs_signals():
                    found.setdefault(id(sig), (prefix + sig.name, sig))
        for sub, name, *_ in getattr(frag, "subfragments", []):
            walk(sub, prefix + (f"{name}." if name else ""))

    walk(Fragment.get(component, None), "")
    return dict(sorted(found.values(), key=lambda kv: kv[0]))


def memory_read_enables(component):
    """The read-port enables of every memory of ``component``: ``{"path.name": [en, ...]}``,
    named as Yosys names the memories (e.g. ``"k_cache.planes"``), sorted by path."""
    found = {}

    def walk(frag, prefix):
        for sub, name, *_ in getattr(frag, "subfragments", []):
            path = prefix + (name or "")
            ports = getattr(sub, "_read_ports", None)
            if ports is not None:   # a MemoryInstance
                found[path] = [p._en for p in ports]
            else:
                walk(sub, path + "." if name else prefix)

    walk(Fragment.get(component, None), "")
    return dict(sorted(found.items()))


def register_toggle_rate(dut, *, weight_writes, inputs, setup=None, max_cycles=None):
    """Stream ``inputs`` through ``dut`` and measure its registers' transitions per bit-cycle.

    ``weight_writes`` are ``w_stream`` payloads (dicts), written first, one per cycle;
    ``inputs`` are ``i_stream`` payload words, offered one per cycle with ``o_stream.ready``
    held high. ``setup(ctx)`` sets configuration inputs before anything else. Toggles are
    counted from the first input's cycle until ``o_stream.valid`` has been low for 8 cycles
    after the last input (inputs after ``max_cycles`` are not sent). Returns ``{"rate",
    "toggles", "bits", "cycles", "registers", "by_register", "memory_reads"}``
    (``by_register``: register path -> toggles; ``memory_reads``: memory path -> clock edges
    with a read port enabled, summed over its read ports, from the first input's edge on).
    """
    top = Module()
    top.submodules.dut = dut
    top.domains.sync = ClockDomain("sync")
    frag = Fragment.get(top, None)   # elaborated once: simulated and searched alike
    named = {k.removeprefix("dut."): v for k, v in clocked_registers(frag).items()}
    regs = list(named.values())
    mems = {k.removeprefix("dut."): v for k, v in memory_read_enables(frag).items()}
    enables = [en for ens in mems.values() for en in ens]
    masks = [(1 << len(r)) - 1 for r in regs]
    bits = sum(len(r) for r in regs)
    if max_cycles is not None:
        inputs = inputs[:max_cycles]
    sim = Simulator(frag)
    sim.add_clock(1e-8)
    out = {}

    async def bench(ctx):
        if setup is not None:
            await setup(ctx)
        ctx.set(dut.o_stream.ready, 1)
        for w in weight_writes:
            ctx.set(dut.w_stream.valid, 1)
            ctx.set(dut.w_stream.payload, w)
            await ctx.tick()
        ctx.set(dut.w_stream.valid, 0)
        await ctx.tick()
        prev, cycles, pos, idle = None, 0, 0, 0
        per_reg = [0] * len(regs)
        per_en = [0] * len(enables)
        while pos < len(inputs) or idle < 8:
            offered = pos < len(inputs)
            ctx.set(dut.i_stream.valid, int(offered))
            if offered:
                ctx.set(dut.i_stream.payload.as_value(), inputs[pos])
            _, _, taken, ready, out_valid, *vals = await ctx.tick().sample(  # clk, rst first
                dut.i_stream.valid, dut.i_stream.ready, dut.o_stream.valid, *enables, *regs)
            ens, vals = vals[:len(enables)], vals[len(enables):]
            vals = [v & m for v, m in zip(vals, masks)]
            for k, e in enumerate(ens):   # the enable sampled at the edge that reads
                per_en[k] += bool(e)
            if prev is not None:
                for k, (a, b) in enumerate(zip(vals, prev)):
                    per_reg[k] += (a ^ b).bit_count()
                cycles += 1
            prev = vals
            if taken and ready:
                pos += 1
            # stop once the last output has left and the design is quiet
            idle = idle + 1 if pos >= len(inputs) and not out_valid else 0
        out.update(per_reg=per_reg, per_en=per_en, cycles=cycles)

    sim.add_testbench(bench)
    sim.run()
    toggles = sum(out["per_reg"])
    rate = toggles / (bits * out["cycles"]) if bits and out["cycles"] else None
    reads, k = {}, 0
    for path, ens in mems.items():
        reads[path] = sum(out["per_en"][k:k + len(ens)])
        k += len(ens)
    return {"rate": rate, "toggles": toggles, "bits": bits, "cycles": out["cycles"],
            "registers": len(regs),
            "by_register": dict(zip(named, out["per_reg"])), "memory_reads": reads}


def _weight_writes(params, weights, data_field):
    rows = pack_weight_rows(weights, params.w_bits)   # [lanes, in_features], lane 0 at the LSB
    return [{"addr": i, data_field: r} for i, r in enumerate(rows)]


def pe_array_activity(params: HwParams, weights, events, *, horner=True, max_cycles=None):
    """:func:`register_toggle_rate` of :class:`TernaryAccumulatorArray` on an event stream."""
    from .pe_array import TernaryAccumulatorArray

    dut = TernaryAccumulatorArray(params=params)
    words = [int(x) for x in EventLayout(params.in_max, params.t_max).pack(events)]

    async def setup(ctx):
        ctx.set(dut.horner, int(horner))

    return register_toggle_rate(dut, weight_writes=_weight_writes(params, weights, "data"),
                                inputs=words, setup=setup, max_cycles=max_cycles)


def mac_baseline_activity(params: HwParams, weights, events, *, horner=True, max_cycles=None):
    """The same for the dense MAC baseline (``synth.baseline_for(params)``), fed the
    activations that ``events`` encode, every index of every token."""
    from .synth import baseline_for

    dut = baseline_for(params)
    counts = events_to_counts(events, weights.shape[1], horner=horner)
    words = [int(x) for x in pack_inputs(counts, a_bits=dut.a_bits, in_max=dut.in_max)]
    return register_toggle_rate(dut, weight_writes=_weight_writes(params, weights, "row"),
                                inputs=words, max_cycles=max_cycles)


def spike_engine_activity(params: HwParams, case, *, max_cycles=None):
    """The same for the whole :class:`SpikeEngine` (KV caches idle, as in a linear layer),
    configured from ``case`` (a cosim ``EngineCase``: its weights, events and
    ``engine_config(tap=False)``)."""
    from .engine import REG, SpikeEngine

    dut = SpikeEngine(params=params)
    words = [int(x) for x in EventLayout(params.in_max, params.t_max).pack(case.events)]
    config = case.engine_config(tap=False)

    async def setup(ctx):
        for name, value in config.items():
            ctx.set(dut.cfg_we, 1)
            ctx.set(dut.cfg_addr, REG[name])
            ctx.set(dut.cfg_data, value)
            await ctx.tick()
        ctx.set(dut.cfg_we, 0)

    return register_toggle_rate(dut, weight_writes=_weight_writes(params, case.weights, "data"),
                                inputs=words, setup=setup, max_cycles=max_cycles)
