"""TC-LIF firing unit: LANES accumulators in, the next layer's ternary spike events out."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
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

    Three stages, so that the arithmetic, the output handshake and the event logic are
    separate sky130 timing paths:

    * the *digit generator* holds the accepted vector's remainder ``r`` per lane and the
      threshold ``thr``; each cycle it advances it takes one step for all lanes in parallel
      and pushes that step's spike mask (with the lanes' signs, t, last-step flag and
      modality) into the step FIFO. It is non-restoring division: ``r`` starts at ``u``
      and a lane fires where ``r - thr_t >= 0``; the next step adds ``thr_{t+1}`` to a
      negative ``r`` (restoring ``thr_t = 2 thr_{t+1}``) and subtracts it otherwise, so the
      add/subtract choice is a registered sign bit, not a compare in front of a mux. ``r``
      is kept in ``params.firing_parts`` parts (at most; see :attr:`parts`), each with a
      carry from the part below that is added one step later, so a step is short adders;
      only the sign resolves the pending carries. With one part ``r`` is one adder and its
      sign is its top bit;
    * the *step FIFO* (2 entries) decouples the two: its fill level is a register, so the
      generator's advance (the enable of every ``r`` register) and ``i_stream.ready``
      depend on registered state only, never on ``o_stream.ready``;
    * the *event emitter* holds one registered step mask and sends its lanes one per cycle,
      lowest first (prefix-OR priority encoder), or one ``empty`` event for a silent step;
      a registered flag says whether the current event is the step's last. It takes the
      FIFO's next step in the cycle the current step's last event leaves.

    The generator accepts the next vector in the cycle it pushes the current token's last
    step, so it computes the next token while the emitter still sends this one; it runs up
    to two steps (the FIFO) ahead of the emitter. A token takes ``sum_t max(1, nnz_t)``
    cycles on o_stream (one event per clock, the stream's own limit) and tokens follow
    without a bubble whatever their T.

    ``theta`` must be >= 1; a T outside 1..t_max is clamped into that range (the engine's
    registers refuse such values anyway).

    Without ``params.read_register`` (the asic style) the load adders see zeros while
    ``i_stream.valid`` is low: the asic PE array offers its accumulators themselves, which
    change at every event, and this operand isolation keeps the adders from following them
    between tokens.

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
        A token is in the generator, the step FIFO or the emitter.
    """

    #: cycles from accepting a vector to its first event on o_stream (valid high), with the
    #: unit idle: one cycle each in the digit generator, the step FIFO and the event emitter
    LATENCY = 3
    #: events emitted per clock while o_stream is ready
    THROUGHPUT = 1
    #: lanes per copy of the threshold register (its fan-out is on the step's path)
    THR_GROUP = 16

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
    def r_bits(self):
        """Width of the signed per-lane remainder ``r``.

        ``-thr_0 <= r <= u``, with ``u = |v| << F + floor(theta/2) < 2**max(acc_bits+F,
        theta_bits)`` (``|v| <= 2**(acc_bits-1)``) and ``thr_0 < 2**(theta_bits+t_max-1)``;
        one spare bit on the negative side keeps the top part from wrapping while carries
        are pending (see :func:`_resolved_sign`).
        """
        p = self.params
        return max(p.acc_bits + p.frac_bits + 1, p.theta_bits + p.t_max + 1)

    @property
    def parts(self):
        """Bit ranges ``(lo, hi)`` of the parts of ``r``, lowest first (see elaborate)."""
        p = self.params
        r_bits = self.r_bits
        w0 = max(p.frac_bits + 1, -(-r_bits // p.firing_parts))   # part 0 holds bit F (the load)
        rest = r_bits - w0
        k = p.firing_parts - 1
        while k and -(-rest // k) < 3:   # the top part needs >= 3 bits (_resolved_sign)
            k -= 1
        widths = [w0 + rest] if k == 0 else \
            [w0] + [rest // k + (j >= k - rest % k) for j in range(k)]
        bounds, lo = [], 0
        for w in widths:
            bounds.append((lo, lo + w))
            lo += w
        return bounds

    def elaborate(self, platform):
        p = self.params
        m = Module()
        lanes = p.lanes
        F = p.frac_bits

        # ---- digit generator: one step per cycle, all lanes.
        # Non-restoring division: r = u - (thresholds subtracted so far) may go negative;
        # r >= 0 means the lane fires this step. The next step adds thr if r < 0 (restores
        # thr_t = 2 thr_{t+1} and subtracts thr_{t+1}) and subtracts thr otherwise, so the
        # add/subtract choice is a registered bit (g_sign) and no compare sits in front of
        # a mux. r is kept in parts, each with a pending carry-in from the part below
        # (the carry out of a part is added one step later), so a step is short adders in
        # parallel; only the sign of r resolves the pending carries (all-ones detection).
        g_busy = Signal()
        r_bits = self.r_bits
        bounds = self.parts
        r_part = [[Signal(b - a, name=f"r{n}_{j}") for j, (a, b) in enumerate(bounds)]
                  for n in range(lanes)]
        # r_cy[n][j]: carry into part j (j >= 1) not yet added
        r_cy = [[None] + [Signal(name=f"r{n}_cy{j}") for j in range(1, len(bounds))]
                for n in range(lanes)]
        g_sign = Signal(lanes)       # r < 0
        g_neg = Signal(lanes)        # sign of the lane's accumulator
        # the threshold, one copy per THR_GROUP lanes: each bit drives every lane's adder,
        # and a register per group beats a deep buffer tree on this path. Distinct reset
        # values (never used: thr is loaded with each vector) keep synthesis from merging
        # the copies back into one.
        n_thr = -(-lanes // self.THR_GROUP)
        thr_bits = p.theta_bits + p.t_max - 1
        tag = max(1, (n_thr - 1).bit_length())     # in the top bits: shifts run downwards
        thrs = [Signal(thr_bits, name=f"thr{k}",
                       init=(k << max(0, thr_bits - tag)) % (1 << thr_bits))
                for k in range(n_thr)]
        g_t = Signal(p.t_bits)
        g_t_last = Signal(p.t_bits)
        g_last = Signal()            # the step being computed is the token's last
        g_modality = Signal()

        nx_part = [[None] * len(bounds) for _ in range(lanes)]
        nx_cy = [[None] * len(bounds) for _ in range(lanes)]
        nx_sign = Signal(lanes)
        for n in range(lanes):
            sub = ~g_sign[n]
            thr = thrs[n // self.THR_GROUP]
            thr_x = Cat(thr, Const(0, r_bits - len(thr)))
            op = Signal(r_bits, name=f"op{n}")
            m.d.comb += op.eq(Mux(sub, ~thr_x, thr_x))
            for j, (a, b) in enumerate(bounds):
                # carry-in (the +1 of a subtraction for part 0, else the pending carry)
                # rides on an extra low bit of both operands
                cin = sub if j == 0 else r_cy[n][j]
                sm = Signal(b - a + 2, name=f"sum{n}_{j}")
                m.d.comb += sm.eq(Cat(cin, r_part[n][j]) + Cat(cin, op[a:b]))
                nx_part[n][j] = sm[1:b - a + 1]
                if j + 1 < len(bounds):
                    nx_cy[n][j + 1] = sm[b - a + 1]
            m.d.comb += nx_sign[n].eq(_resolved_sign(nx_part[n], nx_cy[n]))
        g_fire = Signal(lanes)       # the lanes that fire in this step
        m.d.comb += g_fire.eq(~nx_sign)

        # ---- step FIFO (2 entries) between generator and emitter. Its fill level is a
        # register, so the generator's advance (the enable of every r register) and
        # i_stream.ready depend on registered state only, never on o_stream.ready.
        step_layout = data.StructLayout({"mask": lanes, "neg": lanes, "t": p.t_bits,
                                         "last": 1, "modality": 1})
        f_data = [Signal(step_layout, name=f"f_data{n}") for n in range(2)]
        f_wp = Signal()
        f_rp = Signal()
        f_count = Signal(range(3))
        f_full = Signal()
        f_any = Signal()
        m.d.comb += [f_full.eq(f_count == 2), f_any.eq(f_count != 0)]
        head = Signal(step_layout)
        m.d.comb += head.eq(Mux(f_rp, f_data[1], f_data[0]))

        g_step = Signal()            # the generator pushes a step this cycle
        m.d.comb += g_step.eq(g_busy & ~f_full)

        # ---- event emitter: one registered step mask, one event per clock
        e_valid = Signal()
        rem = Signal(lanes)          # lanes of this step not yet sent
        e_single = Signal()          # rem has at most one lane: this event ends the step
        e_neg = Signal(lanes)
        e_t = Signal(p.t_bits)
        e_last = Signal()            # this is the token's last step
        e_modality = Signal()

        low = Signal(lanes)          # lowest set bit of rem (prefix OR, no carry chain)
        m.d.comb += low.eq(Cat(*[rem[n] & ~rem[:n].any() if n else rem[0]
                                 for n in range(lanes)]))
        idx = Signal(p.lane_bits)
        m.d.comb += idx.eq(Cat(*[Cat(*[low[n] for n in range(lanes) if (n >> b) & 1]).any()
                                 for b in range(p.lane_bits)]))

        o = self.o_stream
        m.d.comb += [
            o.valid.eq(e_valid),
            o.payload.index.eq(idx),
            o.payload.sign.eq((low & e_neg).any()),
            o.payload.t.eq(e_t),
            o.payload.last_in_step.eq(e_single),
            o.payload.last_in_token.eq(e_single & e_last),
            o.payload.empty.eq(rem == 0),
            o.payload.modality.eq(e_modality),
            self.busy.eq(g_busy | f_any | e_valid),
        ]

        out_fire = o.valid & o.ready
        # the emitter takes the FIFO head when empty or its step's last event leaves
        e_take = Signal()
        m.d.comb += e_take.eq(~e_valid | (o.ready & e_single))
        f_pop = Signal()
        m.d.comb += f_pop.eq(e_take & f_any)

        with m.If(e_take):
            m.d.sync += e_valid.eq(f_any)
        with m.If(f_pop):
            m.d.sync += [
                rem.eq(head.mask),
                e_single.eq(_at_most(head.mask, 1)),
                e_neg.eq(head.neg),
                e_t.eq(head.t),
                e_last.eq(head.last),
                e_modality.eq(head.modality),
                f_rp.eq(~f_rp),
            ]
        with m.Elif(out_fire):
            # not the step's last event (else e_take): drop the lane just sent
            m.d.sync += [rem.eq(rem & ~low), e_single.eq(_at_most(rem, 2))]

        with m.If(g_step):
            for n in range(2):
                with m.If(f_wp == n):
                    m.d.sync += [
                        f_data[n].mask.eq(g_fire),
                        f_data[n].neg.eq(g_neg),
                        f_data[n].t.eq(g_t),
                        f_data[n].last.eq(g_last),
                        f_data[n].modality.eq(g_modality),
                    ]
            m.d.sync += f_wp.eq(~f_wp)
            for n in range(lanes):
                m.d.sync += [x.eq(y) for x, y in zip(r_part[n], nx_part[n])]
                m.d.sync += [x.eq(y) for x, y in zip(r_cy[n][1:], nx_cy[n][1:])]
            m.d.sync += g_sign.eq(nx_sign)
            m.d.sync += [thr.eq(thr >> 1) for thr in thrs]
            m.d.sync += [g_t.eq(g_t + 1), g_last.eq(g_t + 1 == g_t_last)]
            with m.If(g_last):
                m.d.sync += g_busy.eq(0)
        m.d.sync += f_count.eq(f_count + g_step - f_pop)

        # ---- load a vector. Everything below is computed unconditionally, so that
        # i_stream.valid only drives the register enables (it has a large fan-out) and, in
        # the asic style, the operand isolation of the accumulators.
        i = self.i_stream
        m.d.comb += i.ready.eq(~g_busy | (g_step & g_last))
        T_sel = Signal(p.tcount_bits)
        T_eff = Signal(p.tcount_bits)
        m.d.comb += T_sel.eq(Mux(i.payload.modality, self.t_vision, self.t_text))
        with m.If(T_sel == 0):
            m.d.comb += T_eff.eq(1)
        with m.Elif(T_sel > p.t_max):
            m.d.comb += T_eff.eq(p.t_max)
        with m.Else():
            m.d.comb += T_eff.eq(T_sel)
        half = Signal(p.theta_bits - 1)
        m.d.comb += half.eq(self.theta >> 1)
        half_x = Cat(half, Const(0, max(0, r_bits - len(half))))
        ld_neg = Signal(lanes)
        self._load_operands = []  # the isolated accumulators (asic style), for a test only
        ld_part = [[None] * len(bounds) for _ in range(lanes)]
        ld_cy = [[None] * len(bounds) for _ in range(lanes)]
        for n in range(lanes):
            if p.read_register:
                v = i.payload.acc[n]
            else:
                # The asic PE array offers its accumulators themselves, which change at every
                # event: zero them while no vector is offered, so that the load adders below
                # stay still between tokens (operand isolation). The fpga PE array has an
                # output register.
                v = Signal(signed(p.acc_bits), name=f"v{n}")
                m.d.comb += v.eq(Mux(i.valid, i.payload.acc[n], 0))
                self._load_operands.append(v)
            m.d.comb += ld_neg[n].eq(v < 0)
            # u = |v| << F + half = (w << F) + half + (neg << F), w = |v| - neg = v ^ neg:
            # no negation; each part of r is one adder (neg is the carry-in at bit F)
            w = Signal(p.acc_bits - 1, name=f"w{n}")
            m.d.comb += w.eq(v.as_unsigned() ^ ld_neg[n].replicate(p.acc_bits))
            w_x = Cat(Const(0, F), w, Const(0, max(0, r_bits - F - len(w))))
            for j, (a, b) in enumerate(bounds):
                sm = Signal(b - a + 1, name=f"ld{n}_{j}")
                if j == 0:
                    hi = Signal(b - F + 2, name=f"ld{n}_{j}_f")
                    m.d.comb += hi.eq(Cat(ld_neg[n], w_x[F:b]) + Cat(ld_neg[n], half_x[F:b]))
                    m.d.comb += sm.eq(Cat(half_x[:F], hi[1:]))
                else:
                    m.d.comb += sm.eq(w_x[a:b] + half_x[a:b])
                ld_part[n][j] = sm[:b - a]
                if j + 1 < len(bounds):
                    ld_cy[n][j + 1] = sm[b - a]
        with m.If(i.valid & i.ready):
            for n in range(lanes):
                m.d.sync += [x.eq(y) for x, y in zip(r_part[n], ld_part[n])]
                m.d.sync += [x.eq(y) for x, y in zip(r_cy[n][1:], ld_cy[n][1:])]
            m.d.sync += [
                g_sign.eq(0),            # r = u >= 0: the first step subtracts thr_0
                g_neg.eq(ld_neg),
                g_busy.eq(1),
                *[thr.eq(self.theta << (T_eff - 1)[:p.tcount_bits]) for thr in thrs],
                g_t.eq(0),
                g_t_last.eq((T_eff - 1)[:p.t_bits]),
                g_last.eq(T_eff == 1),
                g_modality.eq(i.payload.modality),
            ]
        return m


def _resolved_sign(parts, carries):
    """Sign of ``r`` kept as unsigned parts (the top one signed) with pending carries.

    ``carries[j]`` (j >= 1) is a carry into part j not yet added. Resolving them is a
    short chain: a part passes a carry up when it is all ones (or all ones above bit 0
    when 2 come in); at most 2 ever arrive at a part (its own pending one and one from
    below), and at most 1 leaves it. The top part read as signed is then short of its true
    value by at most 2, which does not wrap because ``r >= -2**(r_bits-2)`` and the top
    part has at least 3 bits (``TcLifFiring.r_bits``, ``TcLifFiring.parts``).
    """
    ge1 = ge2 = Const(0)         # carries arriving at the current part: >= 1, == 2
    for j, part in enumerate(parts):
        if j:
            c = carries[j]
            ge1, ge2 = c | ge1, c & ge1
        if j + 1 < len(parts):
            upper = part[1:].all() if len(part) > 1 else Const(1)
            out = (ge1 & part.all()) | (ge2 & upper)
            ge1, ge2 = out, Const(0)
    top = parts[-1]
    upper = top[1:].all() if len(top) > 1 else Const(1)
    # top + x >= 0 with x in 0..2: top >= 0, or top == -1 and x >= 1, or top == -2, x == 2
    return top[-1] & ~(ge1 & top.all()) & ~(ge2 & upper)


def _at_most(bits, k):
    """1 when at most ``k`` (1 or 2) of ``bits`` are set: a log-depth tree of saturating
    counts (no adder, no carry chain)."""
    # each node: (any set, at least 2 set, at least 3 set)
    nodes = [(b, None, None) for b in bits]
    while len(nodes) > 1:
        nxt = []
        for a, b in zip(nodes[0::2], nodes[1::2]):
            a1, a2, a3 = a
            b1, b2, b3 = b
            ge2 = a1 & b1
            if a2 is not None:
                ge2 = ge2 | a2
            if b2 is not None:
                ge2 = ge2 | b2
            ge3 = None
            if k == 2:
                terms = [x for x in (a3, b3) if x is not None]
                if a2 is not None:
                    terms.append(a2 & b1)
                if b2 is not None:
                    terms.append(a1 & b2)
                ge3 = terms[0] if terms else None
                for x in terms[1:]:
                    ge3 = ge3 | x
            nxt.append((a1 | b1, ge2, ge3))
        if len(nodes) % 2:
            nxt.append(nodes[-1])
        nodes = nxt
    _, two, three = nodes[0]
    over = two if k == 1 else three
    return Const(1) if over is None else ~over
