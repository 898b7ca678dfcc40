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

    All LANES comparators work in parallel on the current step; a priority encoder emits the
    firing lanes one per cycle, lowest first. A token therefore takes
    ``sum_t max(1, nnz_t)`` cycles (one event per clock, the stream's own limit) and the next
    vector is accepted in the cycle the last event leaves, so tokens follow without a bubble.

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
        A token's events are being emitted.
    """

    #: cycles from accepting a vector to its first event on o_stream (valid high)
    LATENCY = 1
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

        busy = Signal()
        us = [Signal(self.u_bits, name=f"u{lane}") for lane in range(lanes)]
        neg = Signal(lanes)
        thr = Signal(p.theta_bits + p.t_max - 1)
        t = Signal(p.t_bits)
        t_last = Signal(p.t_bits)
        done = Signal(lanes)
        modality = Signal()

        fire = Signal(lanes)
        m.d.comb += fire.eq(Cat(*[u >= thr for u in us]))
        rem = Signal(lanes)
        m.d.comb += rem.eq(fire & ~done)
        low = Signal(lanes)  # lowest set bit of rem
        m.d.comb += low.eq(rem & (~rem + 1))
        idx = Signal(p.lane_bits)
        for lane in reversed(range(lanes)):
            with m.If(rem[lane]):
                m.d.comb += idx.eq(lane)
        step_end = Signal()
        m.d.comb += step_end.eq((rem & ~low) == 0)
        empty = Signal()
        m.d.comb += empty.eq(rem == 0)
        token_end = Signal()
        m.d.comb += token_end.eq(step_end & (t == t_last))

        o = self.o_stream
        m.d.comb += [
            o.valid.eq(busy),
            o.payload.index.eq(idx),
            o.payload.sign.eq(~empty & neg.bit_select(idx, 1)),
            o.payload.t.eq(t),
            o.payload.last_in_step.eq(step_end),
            o.payload.last_in_token.eq(token_end),
            o.payload.empty.eq(empty),
            o.payload.modality.eq(modality),
            self.busy.eq(busy),
        ]

        out_fire = o.valid & o.ready
        with m.If(out_fire):
            with m.If(step_end):
                for lane, u in enumerate(us):
                    with m.If(fire[lane]):
                        m.d.sync += u.eq(u - thr)
                m.d.sync += [thr.eq(thr >> 1), t.eq(t + 1), done.eq(0)]
                with m.If(token_end):
                    m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += done.eq(done | low)

        i = self.i_stream
        m.d.comb += i.ready.eq(~busy | (out_fire & token_end))
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
                m.d.sync += [u.eq((mag << p.frac_bits) + half), neg[lane].eq(v < 0)]
            m.d.sync += [
                busy.eq(1),
                thr.eq(self.theta << (T_eff - 1)[:p.tcount_bits]),
                t.eq(0),
                t_last.eq((T_eff - 1)[:p.t_bits]),
                done.eq(0),
                modality.eq(i.payload.modality),
            ]
        return m

