"""Ternary sparse-accumulate PE array: address events in, LANES integer accumulators out."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .alternating_memory import AlternatingPortMemory
from .params import HwParams
from .registered_memory import RegisteredReadMemory, result_stall
from .split_accumulator import split_accumulator
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
    the flip-flops clocked per SOP. Nor do the accumulators' low ACC_LOW_BITS bits have an
    enable: a cycle without an event, or a stalled one (the finished vector is still
    offered), adds 0, which holds them (no hold mux per bit). Their upper bits are a
    register of their own (:func:`~spikemllm.hw.split_accumulator.split_accumulator`) that
    loads only when they change: on a carry or borrow out of the low bits (``+-w`` is small,
    so a few percent of the events), a token's first event or a doubling. Behind a clock
    gate those flip-flops then miss most clock edges. The next token's first event waits
    (the array holds it and deasserts ``i_stream.ready``) while the vector is still offered
    and ``o_stream.ready`` is low, so nothing is lost; with a ready sink there are no
    bubbles.

    With ``params.read_register`` the weight row is registered once more before the lanes
    use it, bank by bank with ``params.bram_rows``
    (:class:`~spikemllm.hw.registered_memory.RegisteredReadMemory`): LATENCY +
    READ_REGISTER_CYCLES; ``self.latency`` is the figure for the instance.
    The lanes then subtract as ``acc + ~w + 1``, one carry chain with a carry-in, instead of
    negating ``w`` in a chain of its own, and the accumulators load only in cycles with an
    event, through the flip-flops' enable. Both suit an FPGA (one LUT before the carry
    chain, enable pins in every flip-flop). A token's vector also moves into an output
    register at its last event, so the next token goes on while it is offered; the array
    stalls only at a token's last event while the previous vector is still offered. Its
    ``i_stream.ready`` then depends on registered state only, never on ``o_stream.ready``
    (on an FPGA that combinational path reached every block RAM's read enable); the stall
    is a flip-flop of its own, computed a cycle ahead, so the read enables' net starts at
    a flip-flop with no LUT before it. With a ready sink a token of one event, right after
    another token, waits one cycle.

    With ``params.alternating_ports`` (asic style) the weight memory is an
    :class:`~spikemllm.hw.alternating_memory.AlternatingPortMemory`: reads alternate between
    the SRAM macro's two ports, each clocked every other cycle, and the row is registered two
    cycles after its address, so the lanes add in cycle c+3: LATENCY +
    ALTERNATING_PORTS_CYCLES. An event is accepted only when its cycle's port is free (after
    an odd-length stall, one bubble) and no row is written; ``w_stream`` takes a row every
    other cycle (port 0's), and an event waits in a cycle that writes one. The lanes are
    those of the asic style, fed from the registered row.

    Overflow is impossible: ``acc_bits`` (see :class:`~spikemllm.hw.params.HwParams`) holds
    ``(2**T_MAX - 1) * IN_MAX * 2**(W_BITS-1)``, the largest |acc| of a valid stream (each
    index at most once per step, at most T_MAX steps per token).

    The weight memory (depth IN_MAX, width LANES*W_BITS) is written through ``w_stream``
    (always ready, one row per cycle; see ``alternating_ports`` below). A row written in the
    cycle an event that reads it is accepted gives the old row; with
    ``params.read_register`` (the fpga style) it gives an undefined row instead: the banks
    carry Yosys's ``no_rw_check`` attribute, so FPGA flows build no read-old-data logic
    between the block RAMs and the read registers (simulation still gives the old row).
    Load the weights before the events that read them. Reset clears the pipeline and
    accumulators, not the weights.

    Parameters
    ----------
    params : HwParams
        ``lanes``, ``w_bits``, ``t_max``, ``in_max`` size the array; ``acc_bits`` follows.

    Members
    -------
    i_stream : In(stream.Signature(event_layout(in_max, t_max)))
        Address events.
    w_stream : In(stream.Signature(weight_write_layout(params)))
        Weight-row writes ``{addr, data}``; ``ready`` is always 1 (with
        ``alternating_ports``: in every other cycle).
    o_stream : Out(stream.Signature(acc_vector_layout(params)))
        One ``{acc[LANES], modality}`` per token.
    horner : In(1)
        1: double at step ends (tc-lif); 0: plain sum (ternary / rate).
    busy : Out(1)
        A token is in progress or a vector is in the pipeline.
    """

    #: cycles from accepting a token's last event to its vector on o_stream (valid high)
    LATENCY = 2
    #: cycles that ``params.read_register`` adds to LATENCY
    READ_REGISTER_CYCLES = 1
    #: cycles that ``params.alternating_ports`` adds to LATENCY
    ALTERNATING_PORTS_CYCLES = AlternatingPortMemory.READ_LATENCY
    #: events accepted per clock, sustained across step and token ends while o_stream is ready
    THROUGHPUT = 1
    #: without ``read_register``: the accumulators' low bits, clocked in every cycle (the rest
    #: load only on a carry or borrow out of them, a restart or a doubling); at least W_BITS.
    #: 5 measured best on sky130, gated and ungated, with both engine netlists at 200 MHz
    #: (docs/synthesis-runs.md, 2026-12-05 evening)
    ACC_LOW_BITS = 5
    #: asic style: lanes per copy of the event's sign flip-flop (at most 4 copies)
    SIGN_GROUP_LANES = 8

    def __init__(self, *, params):
        if not isinstance(params, HwParams):
            raise ValueError(f"params must be a HwParams, not {params!r}")
        self.params = params
        self.acc_low_bits = min(params.acc_bits, max(params.w_bits, self.ACC_LOW_BITS))
        self.latency = self.LATENCY + (
            self.READ_REGISTER_CYCLES if params.read_register else
            self.ALTERNATING_PORTS_CYCLES if params.alternating_ports else 0)
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

        alternate = p.alternating_ports
        if p.read_register or alternate:
            if p.read_register:
                weights = RegisteredReadMemory(shape=unsigned(p.row_bits), depth=p.in_max,
                                               bank_rows=p.bram_rows, no_rw_check=True)
            else:
                weights = AlternatingPortMemory(shape=unsigned(p.row_bits), depth=p.in_max)
            m.submodules.weights = weights
            wr_addr, wr_data, wr_en = weights.w_addr, weights.w_data, weights.w_en
            rd_addr, rd_en = weights.r_addr, weights.r_en
        else:
            m.submodules.weights = weights = memory.Memory(
                shape=unsigned(p.row_bits), depth=p.in_max, init=[])
            wr = weights.write_port()
            rd = weights.read_port()
            wr_addr, wr_data, wr_en, rd_addr, rd_en = wr.addr, wr.data, wr.en, rd.addr, rd.en

        m.d.comb += [
            wr_addr.eq(self.w_stream.payload.addr),
            wr_data.eq(self.w_stream.payload.data),
            wr_en.eq(self.w_stream.valid),
            self.w_stream.ready.eq(weights.w_ready if alternate else 1),
        ]

        # Stage 1 holds the flags of the event whose weight row is on rd.data.
        s1 = _EventFlags("s1")
        # the stage whose event the lanes add: stage 2 with read_register, 3 with alternating
        # ports (stage 2: the row is registered at its end)
        s2 = _EventFlags("s2") if alternate else None
        ev = _EventFlags("s2") if p.read_register else _EventFlags("s3") if alternate else s1
        in_token = Signal()  # events of an unfinished token were accepted

        o_valid = Signal()
        fresh = Signal()  # the accumulators hold a finished vector: the next event loads
        stall = Signal()
        last_valid = (s1.valid | ev.valid if p.read_register else
                      s1.valid | s2.valid | ev.valid if alternate else s1.valid)
        if p.read_register:
            # The stall (ev.valid & ev.token_end & o_valid, registered state only) is itself a
            # flip-flop: its net reaches every weight block RAM's read enable.
            stall_when = result_stall(m, held=o_valid & ~self.o_stream.ready,
                                      ready=self.o_stream.ready,
                                      next_last=s1.valid & s1.token_end,
                                      last=ev.valid & ev.token_end)
        else:
            stall_when = ev.valid & o_valid & ~self.o_stream.ready
        m.d.comb += [
            stall.eq(stall_when),
            rd_addr.eq(self.i_stream.payload.index),
            self.o_stream.valid.eq(o_valid),
            self.busy.eq(in_token | last_valid | o_valid),
        ]
        if alternate:
            # the memory issues only to a free port, and holds its reads with the pipeline
            m.d.comb += [weights.hold.eq(stall), rd_en.eq(self.i_stream.valid),
                         self.i_stream.ready.eq(weights.r_ready)]
        else:
            m.d.comb += [self.i_stream.ready.eq(~stall), rd_en.eq(~stall)]

        accept = self.i_stream.valid & self.i_stream.ready
        with m.If(~stall):
            m.d.sync += s1.load(self.i_stream.payload, accept)
            with m.If(accept):
                m.d.sync += in_token.eq(~self.i_stream.payload.last_in_token)

        if p.read_register:
            # Stage 2: the weight row (from the memory's read registers) and its flags.
            row = weights.r_data
            m.d.comb += weights.r_load.eq(~stall)
            with m.If(~stall):
                m.d.sync += ev.copy(s1)
        elif alternate:
            # Stages 2 and 3 follow the memory's: its row register loads at the end of stage 2
            row = weights.r_data
            with m.If(~stall):
                m.d.sync += [*s2.copy(s1), *ev.copy(s2)]
        else:
            row = rd.data
        if not p.read_register:
            # The event's sign reaches every lane's operand (LANES x (W_BITS + 1) loads, on the
            # path into the accumulators), so each group of lanes takes it from a flip-flop of
            # its own. The copies register different functions of the previous stage, each
            # equal to the sign whenever a lane uses it (a valid event that is not empty), so
            # that Yosys keeps them apart: it merges flip-flops with the same input.
            if alternate:
                prev_sign, prev_empty, prev_valid = s2.sign, s2.empty, s2.valid
            else:
                pl = self.i_stream.payload
                prev_sign, prev_empty, prev_valid = pl.sign, pl.empty, accept
            variants = [prev_sign & ~prev_empty, prev_sign & prev_valid,
                        prev_sign & prev_valid & ~prev_empty]
            groups = min(1 + len(variants), -(-p.lanes // self.SIGN_GROUP_LANES))
            lane_signs = [ev.sign]
            for g in range(1, groups):
                copy = Signal(name=f"{ev.sign.name}_g{g}")
                with m.If(~stall):
                    m.d.sync += copy.eq(variants[g - 1])
                lane_signs.append(copy)
            per_group = -(-p.lanes // groups)

        modality = Signal()
        m.d.comb += self.o_stream.payload.modality.eq(modality)
        step = Signal()      # an event is processed this cycle
        m.d.comb += step.eq(ev.valid & ~stall)
        if not p.read_register:  # (read_register selects with the flip-flops' enable)
            zero = Signal()      # its operand is 0 (no event, or an empty one)
            first = Signal()     # it starts a new token: load instead of add
            double = Signal()    # Horner step end
            m.d.comb += [
                # registered state only: the stall selects after the adders (first, double)
                zero.eq(~ev.valid | ev.empty),
                first.eq(step & fresh),
                double.eq(step & ev.step_end & ~ev.token_end & self.horner),
            ]
        for lane in range(p.lanes):
            # fits: |acc +- w| <= acc_bound (see HwParams)
            if p.read_register:
                acc = Signal(signed(p.acc_bits), name=f"acc{lane}")
                s = Signal(signed(p.acc_bits), name=f"sum{lane}")
                # one carry chain: acc - w = acc + ~w + 1. The flip-flops' enable (step)
                # holds, so the restart and doubling selects do not wait for the stall.
                w = row.word_select(lane, p.w_bits)
                addend = Mux(ev.empty, 0, Mux(ev.sign, ~w, w)).as_signed()
                m.d.comb += s.eq(Mux(fresh, 0, acc) + addend + (ev.sign & ~ev.empty))
                with m.If(step):
                    m.d.sync += acc.eq(Mux(ev.step_end & ~ev.token_end & self.horner,
                                           s << 1, s))
                out = Signal(signed(p.acc_bits), name=f"out{lane}")
                with m.If(step & ev.token_end):
                    m.d.sync += out.eq(s)
                m.d.comb += self.o_stream.payload.acc[lane].eq(out)
            else:
                # The accumulators load in every cycle, with no enable mux: a cycle without
                # an event adds 0 and neither doubles nor restarts, which holds. A stall can
                # only hold a finished vector (o_valid), and while it is offered (or fresh) the
                # adders add 0, so a stalled cycle holds too. The stall (late: it comes from
                # o_stream.ready) and its buffer tree (768 loads) thus reach only the selects
                # after the adders (first, double), beside the carry chains, never an operand.
                # (o_valid implies fresh; adding 0 on either holds by construction, so that
                # k-induction needs no invariant about the two.) The accumulator is split:
                # its upper bits change only on a carry or borrow out of the low ones, a
                # restart or a doubling, so behind a clock gate they are rarely clocked.
                w = row.word_select(lane, p.w_bits).as_signed()
                add = Signal(signed(p.w_bits + 1), name=f"add{lane}")
                with m.If(zero):
                    m.d.comb += add.eq(0)
                with m.Elif(lane_signs[lane // per_group]):
                    m.d.comb += add.eq(-w)
                with m.Else():
                    m.d.comb += add.eq(w)
                operand = Signal(signed(p.w_bits + 1), name=f"operand{lane}")
                m.d.comb += operand.eq(Mux(fresh | o_valid, 0, add))
                acc = split_accumulator(m, name=f"acc{lane}", bits=p.acc_bits,
                                        low_bits=self.acc_low_bits, operand=operand,
                                        load=first, load_value=add, double=double)
                m.d.comb += self.o_stream.payload.acc[lane].eq(acc)

        with m.If(o_valid & self.o_stream.ready):
            m.d.sync += o_valid.eq(0)
        with m.If(step):
            m.d.sync += fresh.eq(ev.token_end)
            with m.If(ev.token_end):
                m.d.sync += [o_valid.eq(1), modality.eq(ev.modality)]

        return m


class _EventFlags:
    """The flags of one event in a pipeline stage (the weight row travels separately)."""

    _NAMES = ("valid", "sign", "empty", "step_end", "token_end", "modality")

    def __init__(self, stage):
        for n in self._NAMES:
            setattr(self, n, Signal(name=f"{stage}_{n}"))

    def load(self, payload, valid):
        """Statements that take an accepted event's flags from ``i_stream``'s payload."""
        return [self.valid.eq(valid), self.sign.eq(payload.sign), self.empty.eq(payload.empty),
                self.step_end.eq(payload.last_in_step), self.token_end.eq(payload.last_in_token),
                self.modality.eq(payload.modality)]

    def copy(self, other):
        """Statements that take the previous stage's flags."""
        return [getattr(self, n).eq(getattr(other, n)) for n in self._NAMES]
