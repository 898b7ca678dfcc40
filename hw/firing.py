"""TC-LIF firing unit: LANES accumulators in, the next layer's ternary spike events out."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .params import HwParams
from .streams import acc_vector_layout, event_layout

__all__ = ["TcLifFiring"]


class TcLifFiring(wiring.Component):
    """Requantise a token's accumulators into T ternary spikes per lane, as address events.

    For each lane the unit runs the multiplier-free soft-reset neuron of
    :func:`spikemllm.sw.numerics.fire_spikes`: ``u = |v| * 2**F + floor(theta / 2)``, then
    for t = 0..T-1 it fires ``sign(v)`` when ``u >= theta << (T-1-t)`` and subtracts. That
    is ``q = sign(v) * min(floor((|v| * 2**F + floor(theta/2)) / theta), 2**T - 1)``: round
    half away from zero, saturating. T is picked per token by the vector's modality tag:
    ``t_vision`` for modality 1, ``t_text`` for 0 (MSTS in hardware). theta and T are
    latched when a vector is accepted, so configuration may change between tokens.

    The output is exactly :func:`spikemllm.sw.events.fire_events`: steps t-major, lanes
    ascending inside a step, zero spikes skipped, one ``empty`` event (index 0, sign 0) for a
    step with no spike, ``last_in_step`` on a step's last event and ``last_in_token`` on the
    token's last event, ``modality`` copied. Output events use
    ``EventLayout(in_max=lanes, t_max)`` (the next layer's input index is the lane).

    Two pipeline stages keep the compare-and-subtract away from the event logic (it used to
    be one sky130 critical path: ``thr`` -> LANES comparators -> priority encoder -> ``u``):

    * the *digit generator* holds the accepted vector's ``u`` per lane and the threshold
      ``thr``; each cycle it advances it compares all lanes in parallel (``u >= thr``),
      subtracts where they fire, halves ``thr`` and hands that step's spike mask (with the
      lanes' signs, t, last-step flag and modality) to the emitter, one step per cycle;
    * the *event emitter* holds one registered step mask and sends its lanes one per cycle,
      lowest first (priority encoder), or one ``empty`` event for a silent step; it takes the
      generator's next step in the cycle the current step's last event leaves.

    The generator accepts the next vector in the cycle it hands over the current token's
    last step, so it computes the next token while the emitter still sends this one. A
    token takes ``sum_t max(1, nnz_t)`` cycles on o_stream (one event per clock, the
    stream's own limit) and tokens follow without a bubble whatever their T.

    ``theta`` must be >= 1; a T outside 1..t_max is clamped into that range (the engine's
    registers refuse such values anyway).

    Parameters
    ----------
    params : HwParams
        ``lanes``, ``t_max``, ``acc_bits``, ``frac_bits``, ``theta_bits``.

    Members
    -------
    i_stream : In(stream.Signature(acc_vector_layout(params)))
        One accumulator vector per token.
    o_stream : Out(stream.Signature(event_layout(lanes, t_max)))
        Spike address events.
    theta : In(theta_bits)
        Fixed-point step, ``frac_bits`` fraction bits.
    t_text, t_vision : In(tcount_bits)
        T for modality 0 and 1.
    busy : Out(1)
        A token is in the generator or its events are being emitted.
    """

    #: cycles from accepting a vector to its first event on o_stream (valid high), with the
    #: unit idle: one cycle in the digit generator, one in the event emitter
    LATENCY = 2
    #: events emitted per clock while o_stream is ready
    THROUGHPUT = 1

    def __init__(self, *, params):
        if not isinstance(params, HwParams):
            raise ValueError(f"params must be a HwParams, not {params!r}")
        self.params = params
        super().__init__({
            "i_stream": In(stream.Signature(acc_vector_layout(params))),
            "o_stream": Out(stream.Signature(event_layout(params.lanes, params.t_max))),
            "theta": In(params.theta_bits),
            "t_text": In(params.tcount_bits),
            "t_vision": In(params.tcount_bits),
            "busy": Out(1),
        })

    @property
    def u_bits(self):
        p = self.params
        # |v| <= 2**(acc_bits-1); u = |v| << F + floor(theta/2)
        return max(p.acc_bits + p.frac_bits, p.theta_bits - 1) + 1

    def elaborate(self, platform):
        p = self.params
        m = Module()
        lanes = p.lanes

        # ---- digit generator: one compare-and-subtract step per cycle, all lanes
        g_busy = Signal()
        us = [Signal(self.u_bits, name=f"u{lane}") for lane in range(lanes)]
        g_neg = Signal(lanes)
        thr = Signal(p.theta_bits + p.t_max - 1)
        g_t = Signal(p.t_bits)
        g_t_last = Signal(p.t_bits)
        g_modality = Signal()

        g_fire = Signal(lanes)
        m.d.comb += g_fire.eq(Cat(*[u >= thr for u in us]))
        g_last = Signal()
        m.d.comb += g_last.eq(g_t == g_t_last)

        # ---- event emitter: one registered step mask, one event per clock
        e_valid = Signal()
        rem = Signal(lanes)          # lanes of this step not yet sent
        e_neg = Signal(lanes)
        e_t = Signal(p.t_bits)
        e_last = Signal()            # this is the token's last step
        e_modality = Signal()

        low = Signal(lanes)          # lowest set bit of rem
        m.d.comb += low.eq(rem & (~rem + 1))
        idx = Signal(p.lane_bits)
        for lane in reversed(range(lanes)):
            with m.If(rem[lane]):
                m.d.comb += idx.eq(lane)
        step_end = Signal()
        m.d.comb += step_end.eq((rem & ~low) == 0)
        empty = Signal()
        m.d.comb += empty.eq(rem == 0)

        o = self.o_stream
        m.d.comb += [
            o.valid.eq(e_valid),
            o.payload.index.eq(idx),
            o.payload.sign.eq((low & e_neg).any()),
            o.payload.t.eq(e_t),
            o.payload.last_in_step.eq(step_end),
            o.payload.last_in_token.eq(step_end & e_last),
            o.payload.empty.eq(empty),
            o.payload.modality.eq(e_modality),
            self.busy.eq(g_busy | e_valid),
        ]

        out_fire = o.valid & o.ready
        # the emitter is free for a new step mask when empty or its step's last event leaves
        e_take = Signal()
        m.d.comb += e_take.eq(~e_valid | (out_fire & step_end))
        g_step = Signal()            # the generator hands over a step this cycle
        m.d.comb += g_step.eq(g_busy & e_take)

        with m.If(out_fire & ~step_end):
            m.d.sync += rem.eq(rem & ~low)
        with m.If(e_take):
            m.d.sync += e_valid.eq(g_busy)
        with m.If(g_step):
            m.d.sync += [
                rem.eq(g_fire),
                e_neg.eq(g_neg),
                e_t.eq(g_t),
                e_last.eq(g_last),
                e_modality.eq(g_modality),
            ]
            for lane, u in enumerate(us):
                with m.If(g_fire[lane]):
                    m.d.sync += u.eq(u - thr)
            m.d.sync += [thr.eq(thr >> 1), g_t.eq(g_t + 1)]
            with m.If(g_last):
                m.d.sync += g_busy.eq(0)

        i = self.i_stream
        m.d.comb += i.ready.eq(~g_busy | (g_step & g_last))
        with m.If(i.valid & i.ready):
            T_sel = Signal(p.tcount_bits)
            T_eff = Signal(p.tcount_bits)
            m.d.comb += T_sel.eq(Mux(i.payload.modality, self.t_vision, self.t_text))
            with m.If(T_sel == 0):
                m.d.comb += T_eff.eq(1)
            with m.Elif(T_sel > p.t_max):
                m.d.comb += T_eff.eq(p.t_max)
            with m.Else():
                m.d.comb += T_eff.eq(T_sel)
            half = self.theta >> 1
            for lane, u in enumerate(us):
                v = i.payload.acc[lane]
                mag = Signal(p.acc_bits, name=f"mag{lane}")
                m.d.comb += mag.eq(Mux(v < 0, -v, v))
                m.d.sync += [u.eq((mag << p.frac_bits) + half), g_neg[lane].eq(v < 0)]
            m.d.sync += [
                g_busy.eq(1),
                thr.eq(self.theta << (T_eff - 1)[:p.tcount_bits]),
                g_t.eq(0),
                g_t_last.eq((T_eff - 1)[:p.t_bits]),
                g_modality.eq(i.payload.modality),
            ]
        return m
