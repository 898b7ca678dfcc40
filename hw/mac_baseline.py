"""Dense INT multiply-accumulate lanes: the baseline that the spike engine's energy per SOP is
compared against (``spikemllm synth`` synthesises both in the same run).

It is built like the PE array (weight memory row per input index, LANES lanes, one input per
cycle, result per lane at ``last``) but each lane multiplies its weight by a dense
``A_BITS``-bit activation instead of adding or subtracting it on a ternary spike.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .alternating_memory import AlternatingPortMemory, check_alternating_ports
from .registered_memory import RegisteredReadMemory, check_read_register, result_stall

__all__ = ["DenseMacLanes", "activation_bits", "default_acc_bits", "input_layout", "input_toggles",
           "pack_inputs"]


def default_acc_bits(*, w_bits, a_bits, in_max):
    """Accumulator width that cannot overflow: a full product plus log2(in_max) growth bits."""
    return w_bits + a_bits + max(1, (in_max - 1).bit_length())


def activation_bits(t_max):
    """A_BITS of the baseline for spikes of up to ``t_max`` steps: a tc-lif count
    |q| <= 2**t_max - 1 plus its sign (at most 16)."""
    return min(16, t_max + 1)


def input_layout(*, a_bits, in_max):
    """The lanes' input payload ``{index, activation, last}`` (LSB first)."""
    return data.StructLayout({"index": unsigned(max(1, (in_max - 1).bit_length())),
                              "activation": signed(a_bits), "last": 1})


def input_toggles(counts, *, a_bits, in_max):
    """Bit transitions on ``i_stream.payload`` when the dense activations ``counts`` (int
    [tokens, in_features]) stream in, token by token in index order, one word per cycle as a
    dense datapath takes them (zeros included). Returns ``(toggles, bit_cycles)``; their
    ratio is the input activity for power estimation."""
    words = pack_inputs(counts, a_bits=a_bits, in_max=in_max)
    if len(words) < 2:
        return 0, 0
    size = input_layout(a_bits=a_bits, in_max=in_max).size
    return int(np.bitwise_count(words[1:] ^ words[:-1]).sum()), (len(words) - 1) * size


def pack_inputs(counts, *, a_bits, in_max):
    """The ``i_stream`` payload words (int64) that stream ``counts`` [tokens, in_features]
    token by token in index order, ``last`` on each token's final index."""
    q = np.asarray(counts, dtype=np.int64)
    if q.ndim != 2 or q.shape[1] > in_max:
        raise ValueError(f"counts must be [tokens, in_features <= {in_max}], not shape {q.shape}")
    lim = 1 << (a_bits - 1)
    if q.size and (q.min() < -lim or q.max() >= lim):
        raise ValueError(f"counts must fit signed {a_bits} bits, not {q.min()}..{q.max()}")
    layout = input_layout(a_bits=a_bits, in_max=in_max)
    n_tok, n_in = q.shape
    index = np.tile(np.arange(n_in, dtype=np.int64), n_tok)
    last = (index == n_in - 1).astype(np.int64)
    return ((index << layout["index"].offset)
            | ((q.reshape(-1) & ((1 << a_bits) - 1)) << layout["activation"].offset)
            | (last << layout["last"].offset))


def _check_int(name, value, lo, hi=None):
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or \
            (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an int in {rng}, not {value!r}")


class DenseMacLanes(wiring.Component):
    """LANES dense multiply-accumulate lanes with a weight memory (the dense INT baseline).

    Each accepted input ``{index, activation, last}`` reads weight row ``index`` (one
    ``w_bits`` weight per lane, lane 0 at the LSB, as in ``pack_weight_rows``) and every lane
    does ``acc += w * activation``. On ``last`` the accumulators, which are ``o_stream``'s
    payload, hold the result and the next input starts a new sum. Pipeline: weight read,
    registered product, accumulate.

    Parameters
    ----------
    lanes : int
        Number of MAC lanes (output channels computed in parallel), 1..1024.
    w_bits : int
        Signed weight width, 2..16.
    a_bits : int
        Signed activation width, 2..16.
    in_max : int
        Depth of the weight memory (input features), 2..65536.
    acc_bits : int or None
        Signed accumulator width; default :func:`default_acc_bits`.
    read_register : bool
        Register the weight row before the multipliers (default False), as
        ``HwParams.read_register`` does in the PE array, and once more after the read
        banks' multiplexer: READ_REGISTER_CYCLES = 2 more cycles of latency
        (``self.latency``), and no path from a block RAM's output into a multiplier. Its
        weight memory then gives an undefined row for a row written in the cycle an input
        that reads it is accepted (Yosys's ``no_rw_check``, as in the PE array); without
        it, the old row. The result then goes to an output register
        (``o_stream.payload``), and a held result stalls the pipeline only when the next
        ``last`` reaches the accumulators; that stall is a flip-flop, as in the PE array.
    bram_rows : int
        With ``read_register``: rows per read bank (``HwParams.bram_rows``; 0: one bank).
    alternating_ports : bool
        Without ``read_register``: read the weights through an
        :class:`~spikemllm.hw.alternating_memory.AlternatingPortMemory`, as
        ``HwParams.alternating_ports`` does in the PE array: the row is registered two
        cycles after its address (ALTERNATING_PORTS_CYCLES more latency), an input is
        accepted only when its cycle's port is free and no row is written, and
        ``w_stream`` takes a row every other cycle.

    Members
    -------
    i_stream : In(stream.Signature(StructLayout{index, activation, last}))
        One MAC input per cycle.
    w_stream : In(stream.Signature(StructLayout{addr, row}))
        Weight memory writes (always ready; with ``alternating_ports`` every other cycle).
    o_stream : Out(stream.Signature(ArrayLayout(signed(acc_bits), lanes)))
        The sums at ``last``: the accumulators, or with ``read_register`` their output
        register.
    """

    #: Cycles from an accepted ``last`` input to ``o_stream.valid``.
    LATENCY = 3
    #: cycles that ``read_register`` adds to LATENCY
    READ_REGISTER_CYCLES = 2
    #: cycles that ``alternating_ports`` adds to LATENCY
    ALTERNATING_PORTS_CYCLES = AlternatingPortMemory.READ_LATENCY
    #: Inputs accepted per cycle when ``o_stream`` is not stalled.
    THROUGHPUT = 1

    def __init__(self, *, lanes, w_bits, a_bits, in_max, acc_bits=None, read_register=False,
                 bram_rows=0, alternating_ports=False):
        try:
            _check_int("lanes", lanes, 1, 1024)
            _check_int("w_bits", w_bits, 2, 16)
            _check_int("a_bits", a_bits, 2, 16)
            _check_int("in_max", in_max, 2, 65536)
            if acc_bits is None:
                acc_bits = default_acc_bits(w_bits=w_bits, a_bits=a_bits, in_max=in_max)
            _check_int("acc_bits", acc_bits, w_bits + a_bits - 1, 64)
            check_read_register(read_register, bram_rows)
            check_alternating_ports(alternating_ports, read_register)
        except ValueError:
            self._MustUse__silence = True  # never built: no "created but never used" warning
            raise
        self.lanes, self.w_bits, self.a_bits = lanes, w_bits, a_bits
        self.in_max, self.acc_bits = in_max, acc_bits
        self.read_register, self.bram_rows = read_register, bram_rows
        self.alternating_ports = alternating_ports
        self.latency = self.LATENCY + (
            self.READ_REGISTER_CYCLES if read_register else
            self.ALTERNATING_PORTS_CYCLES if alternating_ports else 0)
        self.in_layout = input_layout(a_bits=a_bits, in_max=in_max)
        self.weight_layout = data.StructLayout({
            "addr": self.in_layout["index"].shape, "row": unsigned(lanes * w_bits)})
        self.out_layout = data.ArrayLayout(signed(acc_bits), lanes)
        super().__init__({
            "i_stream": In(stream.Signature(self.in_layout)),
            "w_stream": In(stream.Signature(self.weight_layout)),
            "o_stream": Out(stream.Signature(self.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, w_bits = self.lanes, self.w_bits

        if self.read_register or self.alternating_ports:
            if self.read_register:
                weights = RegisteredReadMemory(shape=unsigned(lanes * w_bits), depth=self.in_max,
                                               bank_rows=self.bram_rows, no_rw_check=True)
            else:
                weights = AlternatingPortMemory(shape=unsigned(lanes * w_bits), depth=self.in_max)
            m.submodules.weights = weights
            wr_addr, wr_data, wr_en = weights.w_addr, weights.w_data, weights.w_en
            rd_addr, rd_en = weights.r_addr, weights.r_en
        else:
            m.submodules.weights = weights = Memory(
                shape=unsigned(lanes * w_bits), depth=self.in_max, init=[])
            wr = weights.write_port()
            rd = weights.read_port(domain="sync")
            wr_addr, wr_data, wr_en, rd_addr, rd_en = wr.addr, wr.data, wr.en, rd.addr, rd.en

        m.d.comb += [
            self.w_stream.ready.eq(weights.w_ready if self.alternating_ports else 1),
            wr_addr.eq(self.w_stream.payload.addr),
            wr_data.eq(self.w_stream.payload.row),
            wr_en.eq(self.w_stream.valid),
        ]

        stall = Signal()
        if not self.read_register:
            # One global stall: a finished vector is offered and not taken.
            m.d.comb += stall.eq(self.o_stream.valid & ~self.o_stream.ready)
        # Stage 1: weight row read (the read port holds its data while stalled).
        s1_valid, s1_last = Signal(name="s1_valid"), Signal(name="s1_last")
        s1_act = Signal(signed(self.a_bits))
        m.d.comb += rd_addr.eq(self.i_stream.payload.index)
        if self.alternating_ports:
            # the memory issues only to a free port, and holds its reads with the pipeline
            m.d.comb += [weights.hold.eq(stall), rd_en.eq(self.i_stream.valid),
                         self.i_stream.ready.eq(weights.r_ready)]
        else:
            m.d.comb += [rd_en.eq(~stall), self.i_stream.ready.eq(~stall)]
        with m.If(~stall):
            m.d.sync += [
                s1_valid.eq(self.i_stream.valid & self.i_stream.ready),
                s1_last.eq(self.i_stream.payload.last),
                s1_act.eq(self.i_stream.payload.activation),
            ]
        if self.read_register:
            # The registered weight row and its input, then the row once more after the
            # read banks' multiplexer: the multipliers start at flip-flops, and the bank
            # select's fan-out does not add to the multiply.
            r_valid, r_last = Signal(name="r_valid"), Signal(name="r_last")
            r_act = Signal(signed(self.a_bits))
            m.d.comb += weights.r_load.eq(~stall)
            with m.If(~stall):
                m.d.sync += [r_valid.eq(s1_valid), r_last.eq(s1_last), r_act.eq(s1_act)]
            row = Signal(lanes * w_bits)
            q_valid, q_last = Signal(name="q_valid"), Signal(name="q_last")
            q_act = Signal(signed(self.a_bits))
            with m.If(~stall):
                m.d.sync += [row.eq(weights.r_data), q_valid.eq(r_valid), q_last.eq(r_last),
                             q_act.eq(r_act)]
            s1_valid, s1_last, s1_act = q_valid, q_last, q_act
        elif self.alternating_ports:
            # the memory registers the row at the end of stage r; stage q adds it
            stages = [[Signal(name=f"{n}_valid"), Signal(name=f"{n}_last"),
                       Signal(signed(self.a_bits), name=f"{n}_act")] for n in ("r", "q")]
            with m.If(~stall):
                m.d.sync += [a.eq(b) for a, b in zip(stages[0], (s1_valid, s1_last, s1_act))]
                m.d.sync += [a.eq(b) for a, b in zip(stages[1], stages[0])]
            s1_valid, s1_last, s1_act = stages[1]
            row = weights.r_data
        else:
            row = rd.data

        # Stage 2: registered products (keeps the multiplier out of the accumulate path).
        s2_valid, s2_last = Signal(name="s2_valid"), Signal(name="s2_last")
        prod_bits = w_bits + self.a_bits
        s2_prod = [Signal(signed(prod_bits), name=f"s2_prod{i}") for i in range(lanes)]
        with m.If(~stall):
            m.d.sync += [s2_valid.eq(s1_valid), s2_last.eq(s1_last)]
            for i in range(lanes):
                w = row[i * w_bits:(i + 1) * w_bits].as_signed()
                m.d.sync += s2_prod[i].eq(w * s1_act)

        # Stage 3: accumulate. As in the PE array, o_stream.payload is the accumulators
        # themselves (no output register): on last they hold the result, and the next
        # input loads its product instead of adding. They load in every cycle with no
        # enable mux: a cycle without an input (or stalled) adds 0, which holds the value.
        # Without read_register, as in the PE array, the adders' operand depends on
        # registered state only (a stall holds a finished vector: while it is offered, or
        # fresh, the accumulators add 0); the late stall reaches only the select after them.
        # With read_register (the FPGA style) the result goes to an output register instead,
        # as in the PE array: the pipeline stalls only when a second `last` reaches the
        # accumulators while the previous result is still offered. That stall is a flip-flop
        # computed a cycle ahead (assuming `ready` low next cycle), so o_stream.ready reaches
        # no block RAM read enable through logic.
        acc = [Signal(signed(self.acc_bits), name=f"acc{i}") for i in range(lanes)]
        fresh = Signal()
        step, first = Signal(name="step"), Signal(name="first")
        m.d.comb += [step.eq(~stall & s2_valid), first.eq(step & fresh)]
        if not self.read_register:
            m.d.comb += [self.o_stream.payload[i].eq(acc[i]) for i in range(lanes)]
        else:
            m.d.comb += stall.eq(result_stall(
                m, held=self.o_stream.valid & ~self.o_stream.ready, ready=self.o_stream.ready,
                next_last=s1_valid & s1_last, last=s2_valid & s2_last))
        with m.If(self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        with m.If(step):
            m.d.sync += fresh.eq(s2_last)
            with m.If(s2_last):
                m.d.sync += self.o_stream.valid.eq(1)
        for i in range(lanes):
            add = Signal(signed(prod_bits), name=f"add{i}")
            if self.read_register:  # a stall can hold a token in progress here
                m.d.comb += add.eq(Mux(step, s2_prod[i], 0))
                total = Mux(first, add, acc[i] + add)
                m.d.sync += acc[i].eq(total)
                out = Signal(signed(self.acc_bits), name=f"out{i}")
                with m.If(step & s2_last):
                    m.d.sync += out.eq(total)
                m.d.comb += self.o_stream.payload[i].eq(out)
            else:
                # Not split as in the PE array: with products of w_bits + a_bits bits the
                # upper bits change too often; sky130 measured it costlier, gated or not.
                m.d.comb += add.eq(Mux(s2_valid, s2_prod[i], 0))
                m.d.sync += acc[i].eq(
                    Mux(first, add, acc[i] + Mux(fresh | self.o_stream.valid, 0, add)))
        return m
