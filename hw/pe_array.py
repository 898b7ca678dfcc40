"""Ternary sparse-accumulate PE array: address events in, LANES integer accumulators out."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import HwParams
from .streams import acc_vector_layout, event_layout, weight_write_layout

__all__ = ["TernaryAccumulatorArray"]


class TernaryAccumulatorArray(wiring.Component):
    """LANES output channels of a spike-driven linear layer, one address event per clock.

    Each event ``{index, sign, t, last_in_step, last_in_token, empty, modality}`` reads weight
    row ``index`` (LANES signed W_BITS weights, lane 0 at the LSB) and every lane adds
    (``sign = 0``) or subtracts (``sign = 1``) its weight; an ``empty`` event adds nothing.
    With ``horner = 1`` (tc-lif) an event with ``last_in_step`` and not ``last_in_token``
    also doubles the accumulators in the same cycle, ``acc <- (acc +- w) << 1``, so step
    boundaries cost no bubble. With ``horner = 0`` (ternary / rate spikes, d_t = 1) there is
    no doubling. At ``last_in_token`` the LANES sums ``acc +- w`` leave on ``o_stream`` with
    the token's modality and the accumulators restart from zero for the next token, again
    without a bubble. This is exactly :func:`spikemllm.sw.events.accumulate_events`.

    Pipeline: the event is accepted in cycle c (the weight memory's synchronous read port
    takes ``index``), the row arrives and the lanes add in cycle c+1, and a token's vector is
    on ``o_stream`` (``valid`` high) in cycle c + LATENCY. There is no separate output
    register: ``o_stream.payload`` is the accumulators themselves, which hold the finished
    vector, and the next token's first event loads ``+-w`` instead of adding. That halves
    the flip-flops clocked per SOP. Nor do the accumulators have an enable: a cycle without
    an event, or a stalled one, adds 0, which holds them (no hold mux per bit). The next
    token's first event waits (the array holds it and deasserts ``i_stream.ready``) while
    the vector is still offered and ``o_stream.ready`` is low, so nothing is lost; with a
    ready sink there are no bubbles.

    Overflow is impossible: ``acc_bits`` (see :class:`~spikemllm.hw.params.HwParams`) holds
    ``(2**T_MAX - 1) * IN_MAX * 2**(W_BITS-1)``, the largest |acc| of a valid stream (each
    index at most once per step, at most T_MAX steps per token).

    The weight memory (depth IN_MAX, width LANES*W_BITS) is written through ``w_stream``
    (always ready, one row per cycle). A row written in the same cycle as an event reads it
    gives the old row. Reset clears the pipeline and accumulators, not the weights.

    Parameters
    ----------
    params : HwParams
        ``lanes``, ``w_bits``, ``t_max``, ``in_max`` size the array; ``acc_bits`` follows.

    Members
    -------
    i_stream : In(stream.Signature(event_layout(in_max, t_max)))
        Address events.
    w_stream : In(stream.Signature(weight_write_layout(params)))
        Weight-row writes ``{addr, data}``; ``ready`` is always 1.
    o_stream : Out(stream.Signature(acc_vector_layout(params)))
        One ``{acc[LANES], modality}`` per token.
    horner : In(1)
        1: double at step ends (tc-lif); 0: plain sum (ternary / rate).
    busy : Out(1)
        A token is in progress or a vector is in the pipeline.
    """

    #: cycles from accepting a token's last event to its vector on o_stream (valid high)
    LATENCY = 2
    #: events accepted per clock, sustained across step and token ends while o_stream is ready
    THROUGHPUT = 1

    def __init__(self, *, params):
        if not isinstance(params, HwParams):
            raise ValueError(f"params must be a HwParams, not {params!r}")
        self.params = params
        super().__init__({
            "i_stream": In(stream.Signature(event_layout(params.in_max, params.t_max))),
            "w_stream": In(stream.Signature(weight_write_layout(params))),
            "o_stream": Out(stream.Signature(acc_vector_layout(params))),
            "horner": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        p = self.params
        m = Module()

        m.submodules.weights = weights = memory.Memory(
            shape=unsigned(p.row_bits), depth=p.in_max, init=[])
        wr = weights.write_port()
        rd = weights.read_port()

        m.d.comb += [
            wr.addr.eq(self.w_stream.payload.addr),
            wr.data.eq(self.w_stream.payload.data),
            wr.en.eq(self.w_stream.valid),
            self.w_stream.ready.eq(1),
        ]

        # Stage 1 holds the flags of the event whose weight row is on rd.data.
        s1_valid = Signal()
        s1_sign = Signal()
        s1_empty = Signal()
        s1_step_end = Signal()
        s1_token_end = Signal()
        s1_modality = Signal()
        in_token = Signal()  # events of an unfinished token were accepted

        o_valid = Signal()
        fresh = Signal()  # the accumulators hold a finished vector: the next event loads
        stall = Signal()
        m.d.comb += [
            stall.eq(s1_valid & o_valid & ~self.o_stream.ready),
            self.i_stream.ready.eq(~stall),
            rd.addr.eq(self.i_stream.payload.index),
            rd.en.eq(~stall),
            self.o_stream.valid.eq(o_valid),
            self.busy.eq(in_token | s1_valid | o_valid),
        ]

        accept = self.i_stream.valid & self.i_stream.ready
        with m.If(~stall):
            ev = self.i_stream.payload
            m.d.sync += [
                s1_valid.eq(accept),
                s1_sign.eq(ev.sign),
                s1_empty.eq(ev.empty),
                s1_step_end.eq(ev.last_in_step),
                s1_token_end.eq(ev.last_in_token),
                s1_modality.eq(ev.modality),
            ]
            with m.If(accept):
                m.d.sync += in_token.eq(~ev.last_in_token)

        modality = Signal()
        m.d.comb += self.o_stream.payload.modality.eq(modality)
        # The accumulators load in every cycle, with no enable mux: a cycle without an event
        # (or stalled) adds 0 and neither doubles nor restarts, which holds the value.
        step = Signal()      # an event is processed this cycle
        zero = Signal()      # its operand is 0 (no event, or an empty one)
        first = Signal()     # it starts a new token: load instead of add
        double = Signal()    # Horner step end
        m.d.comb += [
            step.eq(s1_valid & ~stall),
            zero.eq(~step | s1_empty),
            first.eq(step & fresh),
            double.eq(step & s1_step_end & ~s1_token_end & self.horner),
        ]
        accs = [Signal(signed(p.acc_bits), name=f"acc{lane}") for lane in range(p.lanes)]
        for lane, acc in enumerate(accs):
            w = rd.data.word_select(lane, p.w_bits).as_signed()
            add = Signal(signed(p.w_bits + 1), name=f"add{lane}")
            with m.If(zero):
                m.d.comb += add.eq(0)
            with m.Elif(s1_sign):
                m.d.comb += add.eq(-w)
            with m.Else():
                m.d.comb += add.eq(w)
            s = Signal(signed(p.acc_bits), name=f"sum{lane}")
            # fits: |acc +- w| <= acc_bound (see HwParams). first selects after the adder,
            # not at its input: its buffer tree (768 loads) then runs beside the carry chain.
            m.d.comb += s.eq(Mux(first, add, acc + add))
            m.d.sync += acc.eq(Mux(double, s << 1, s))
            m.d.comb += self.o_stream.payload.acc[lane].eq(acc)

        with m.If(o_valid & self.o_stream.ready):
            m.d.sync += o_valid.eq(0)
        with m.If(step):
            m.d.sync += fresh.eq(s1_token_end)
            with m.If(s1_token_end):
                m.d.sync += [o_valid.eq(1), modality.eq(s1_modality)]

        return m
