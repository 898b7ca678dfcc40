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
from .netlist_sim import record_ports
from .params import HwParams

__all__ = ["clocked_registers", "memory_read_enables", "register_toggle_rate",
           "pe_array_activity", "mac_baseline_activity", "spike_engine_activity",
           "kv_cache_activity"]


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


class _ToggleProbe:
    """Counts, edge by edge, the bit transitions of every clocked register of ``dut`` and the
    edges at which each of its memories' read ports is enabled (see :func:`register_toggle_rate`).
    ``frag`` is the elaborated top to simulate; :meth:`tick` replaces ``ctx.tick()``."""

    def __init__(self, dut):
        top = Module()
        top.submodules.dut = dut
        top.domains.sync = ClockDomain("sync")
        self.frag = Fragment.get(top, None)   # elaborated once: simulated and searched alike
        self.named = {k.removeprefix("dut."): v
                      for k, v in clocked_registers(self.frag).items()}
        self.regs = list(self.named.values())
        self.mems = {k.removeprefix("dut."): v
                     for k, v in memory_read_enables(self.frag).items()}
        self.enables = [en for ens in self.mems.values() for en in ens]
        self.masks = [(1 << len(r)) - 1 for r in self.regs]
        self.bits = sum(len(r) for r in self.regs)
        self.per_reg = [0] * len(self.regs)
        self.per_en = [0] * len(self.enables)
        self.cycles = 0
        self._prev = None

    async def tick(self, ctx, *signals):
        """One clock edge: counts it and returns ``signals`` sampled at it."""
        _, _, *vals = await ctx.tick().sample(*signals, *self.enables, *self.regs)  # clk, rst
        got, vals = vals[:len(signals)], vals[len(signals):]
        ens, vals = vals[:len(self.enables)], vals[len(self.enables):]
        vals = [v & m for v, m in zip(vals, self.masks)]
        for k, e in enumerate(ens):   # the enable sampled at the edge that reads
            self.per_en[k] += bool(e)
        if self._prev is not None:
            for k, (a, b) in enumerate(zip(vals, self._prev)):
                self.per_reg[k] += (a ^ b).bit_count()
            self.cycles += 1
        self._prev = vals
        return got

    def result(self):
        toggles = sum(self.per_reg)
        rate = toggles / (self.bits * self.cycles) if self.bits and self.cycles else None
        reads, k = {}, 0
        for path, ens in self.mems.items():
            reads[path] = sum(self.per_en[k:k + len(ens)])
            k += len(ens)
        return {"rate": rate, "toggles": toggles, "bits": self.bits, "cycles": self.cycles,
                "registers": len(self.regs),
                "by_register": dict(zip(self.named, self.per_reg)), "memory_reads": reads}


def register_toggle_rate(dut, *, weight_writes, inputs, setup=None, max_cycles=None,
                         trace=False):
    """Stream ``inputs`` through ``dut`` and measure its registers' transitions per bit-cycle.

    ``weight_writes`` are ``w_stream`` payloads (dicts), written first, one per cycle in
    which ``w_stream`` is ready;
    ``inputs`` are ``i_stream`` payload words, offered one per cycle with ``o_stream.ready``
    held high. ``setup(ctx)`` sets configuration inputs before anything else. Toggles are
    counted from the first input's cycle until ``o_stream.valid`` has been low for 8 cycles
    after the last input (inputs after ``max_cycles`` are not sent). Returns ``{"rate",
    "toggles", "bits", "cycles", "registers", "by_register", "memory_reads"}``
    (``by_register``: register path -> toggles; ``memory_reads``: memory path -> clock edges
    with a read port enabled, summed over its read ports, from the first input's edge on).
    With ``trace``, also ``port_trace``: every port at every edge from the start
    (:class:`~spikemllm.hw.netlist_sim.PortTrace`), for ``spikemllm synth --clock-gating``.
    """
    probe = _ToggleProbe(dut)
    if max_cycles is not None:
        inputs = inputs[:max_cycles]
    sim = Simulator(probe.frag)
    sim.add_clock(1e-8)
    build_trace = record_ports(sim, dut) if trace else None

    async def bench(ctx):
        if setup is not None:
            await setup(ctx)
        ctx.set(dut.o_stream.ready, 1)
        for w in weight_writes:
            ctx.set(dut.w_stream.valid, 1)
            ctx.set(dut.w_stream.payload, w)
            while not ctx.get(dut.w_stream.ready):
                await ctx.tick()
            await ctx.tick()
        ctx.set(dut.w_stream.valid, 0)
        await ctx.tick()
        pos, idle = 0, 0
        while pos < len(inputs) or idle < 8:
            offered = pos < len(inputs)
            ctx.set(dut.i_stream.valid, int(offered))
            if offered:
                ctx.set(dut.i_stream.payload.as_value(), inputs[pos])
            taken, ready, out_valid = await probe.tick(
                ctx, dut.i_stream.valid, dut.i_stream.ready, dut.o_stream.valid)
            if taken and ready:
                pos += 1
            # stop once the last output has left and the design is quiet
            idle = idle + 1 if pos >= len(inputs) and not out_valid else 0

    sim.add_testbench(bench)
    sim.run()
    out = probe.result()
    if build_trace is not None:
        out["port_trace"] = build_trace(type(dut).__name__)
    return out


def _weight_writes(params, weights, data_field):
    rows = pack_weight_rows(weights, params.w_bits)   # [lanes, in_features], lane 0 at the LSB
    return [{"addr": i, data_field: r} for i, r in enumerate(rows)]


def pe_array_activity(params: HwParams, weights, events, *, horner=True, max_cycles=None,
                      trace=False):
    """:func:`register_toggle_rate` of :class:`TernaryAccumulatorArray` on an event stream."""
    from .pe_array import TernaryAccumulatorArray

    dut = TernaryAccumulatorArray(params=params)
    words = [int(x) for x in EventLayout(params.in_max, params.t_max).pack(events)]

    async def setup(ctx):
        ctx.set(dut.horner, int(horner))

    return register_toggle_rate(dut, weight_writes=_weight_writes(params, weights, "data"),
                                inputs=words, setup=setup, max_cycles=max_cycles, trace=trace)


def mac_baseline_activity(params: HwParams, weights, events, *, horner=True, max_cycles=None,
                          trace=False):
    """The same for the dense MAC baseline (``synth.baseline_for(params)``), fed the
    activations that ``events`` encode, every index of every token."""
    from .synth import baseline_for

    dut = baseline_for(params)
    counts = events_to_counts(events, weights.shape[1], horner=horner)
    words = [int(x) for x in pack_inputs(counts, a_bits=dut.a_bits, in_max=dut.in_max)]
    return register_toggle_rate(dut, weight_writes=_weight_writes(params, weights, "row"),
                                inputs=words, max_cycles=max_cycles, trace=trace)


def spike_engine_activity(params: HwParams, case, *, max_cycles=None, trace=False):
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
                                inputs=words, setup=setup, max_cycles=max_cycles, trace=trace)


def kv_cache_activity(params, case, *, trace=False):
    """Register toggles, input-port toggles and memory reads of the K cache (SpikeKvCache with
    its score unit, built by ``kv_cache_from_params(params)``) on a cosim ``KvCase``.

    The traffic is an attention layer's: every token's K is appended (token by token, every
    head), then every query is scored against its head's cached keys, one beat offered per
    cycle and ``score_stream`` always ready. Every score is checked against the case's
    ``expected_scores`` (ValueError on a mismatch), so the rates come from a correct run.
    Returns :func:`register_toggle_rate`'s dict plus ``scores`` (beats taken),
    ``score_planes`` (key planes scored: scores x t_kv), ``port_toggles`` (port -> transitions per bit and cycle of the payload as driven, held
    between beats) and ``port_bits``; with ``trace``, also ``port_trace`` (every port at
    every edge, as :func:`register_toggle_rate` gives it).
    """
    from .kv_cache import kv_cache_from_params

    dut = kv_cache_from_params(params)
    heads, tokens = case.k_pos.shape[:2]
    n_queries = case.q_pos.shape[0]
    if heads != dut.heads or tokens > dut.depth:
        raise ValueError(f"case {case.name}: {heads} heads x {tokens} tokens does not fit a "
                         f"cache of {dut.heads} heads x {dut.depth} tokens")
    beats = [("append_stream", dut.pack_append(h, case.k_pos[h, n], case.k_neg[h, n]))
             for n in range(tokens) for h in range(heads)]
    beats += [("query_stream", dut.pack_query(h, case.q_pos[q, h], case.q_neg[q, h]))
              for q in range(n_queries) for h in range(heads)]
    expected = case.expected_scores()   # [queries, heads, tokens]
    ports = ("append_stream", "query_stream")
    port_bits = {p: len(getattr(dut, p).payload.as_value()) for p in ports}
    probe = _ToggleProbe(dut)
    sim = Simulator(probe.frag)
    sim.add_clock(1e-8)
    build_trace = record_ports(sim, dut) if trace else None
    out = {"scores": 0, "port_toggles": dict.fromkeys(ports, 0)}

    async def bench(ctx):
        ctx.set(dut.score_stream.ready, 1)
        ctx.set(dut.read_data_stream.ready, 1)
        held = dict.fromkeys(ports, 0)
        pos, idle, queries_done, got = 0, 0, 0, []
        n_query_beats = sum(p == "query_stream" for p, _ in beats)
        while pos < len(beats) or idle < 8:
            port = beats[pos][0] if pos < len(beats) else None
            for p in ports:
                ctx.set(getattr(dut, p).valid, int(p == port))
            if port is not None:
                word = beats[pos][1]
                out["port_toggles"][port] += (held[port] ^ word).bit_count()
                held[port] = word
                ctx.set(getattr(dut, port).payload.as_value(), word)
            s = getattr(dut, port or "append_stream")
            taken, ready, sv, sw = await probe.tick(ctx, s.valid, s.ready,
                                                    dut.score_stream.valid,
                                                    dut.score_stream.payload.as_value())
            if taken and ready:
                pos += 1
            if sv:
                beat = dut.unpack_score(sw)
                got.append(beat["score"])
                if beat["last"]:
                    q, h = divmod(queries_done, heads)
                    want = [int(x) for x in expected[q, h]]
                    if got != want:
                        raise ValueError(f"case {case.name}: query {q} head {h} scored "
                                         f"{got}, the reference gives {want}")
                    queries_done, got = queries_done + 1, []
                out["scores"] += 1
            busy = pos < len(beats) or queries_done < n_query_beats
            idle = 0 if busy or sv else idle + 1

    sim.add_testbench(bench)
    sim.run()
    r = probe.result()
    cycles = max(1, r["cycles"])
    r.update(scores=out["scores"], score_planes=out["scores"] * dut.t_kv, port_bits=port_bits,
             port_toggles={f"{p}__payload": out["port_toggles"][p] / (port_bits[p] * cycles)
                           for p in ports})
    if build_trace is not None:
        r["port_trace"] = build_trace(type(dut).__name__)
    return r
