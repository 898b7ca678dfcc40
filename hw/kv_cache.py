"""Spike KV cache: per-head tc-lif bit-plane storage with an AND/popcount Q.K score unit.

See ``docs/kv-cache.md`` for the storage organisation, payload bit layouts, latencies, flags
and how this maps to SDLLM's spiked KV cache. The numerics reference is
:func:`spikemllm.sw.numerics.to_bit_planes` (storage) and
:func:`spikemllm.sw.numerics.popcount_score` (scores); the hardware matches both bit for bit.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .alternating_memory import AlternatingPortMemory, check_alternating_ports
from .registered_memory import RegisteredReadMemory, check_read_register

__all__ = ["SpikeKvCache", "kv_cache_from_params", "score_bound"]


def _flags(*names):
    """One-bit signals called ``names`` (Amaranth cannot see names through tuple unpacking)."""
    return tuple(Signal(name=n) for n in names)


def _clog2(n):
    # Bits to address n items, at least 1 (zero-width ports confuse Verilog drivers).
    return max(1, (n - 1).bit_length())


def _check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")


def score_bound(head_dim, t_q, t_kv):
    """Largest |q.k| the score unit can produce: ``head_dim * (2**t_q - 1) * (2**t_kv - 1)``.

    It holds for any plane contents, even a bit set in both the positive and the negative
    plane, because every element contributes ``(qp - qn) * (kp - kn)`` in {-1, 0, 1} per plane
    pair (see :class:`SpikeKvCache`).
    """
    return head_dim * ((1 << t_q) - 1) * ((1 << t_kv) - 1)


def _carry_save(m, cols, width, name, cut_level=None):
    """Wallace reduction of bit columns (``cols[i]`` holds 1-bit values of weight ``2**i``) to
    at most two bits per column, with full adders (xor3/maj3 cells) and half adders. Returns
    the two rows; their sum is the column sum modulo ``2**width``. Each level is a named
    signal: every bit feeds both a sum and a carry, so nested expressions would be copied
    once per use, doubling per level in the emitted netlist. The levels carry ``keep`` so that
    ABC maps the full adders as built: left free it restructured the trees into slower logic
    (the engine's sky130 fmax was 197 MHz without ``keep``, 208 MHz with it).

    ``cut_level`` puts a register into the tree, loaded every cycle (the FPGA pipeline never
    stalls): after that many levels, or after the last one when the tree is shorter (a
    pipeline stage of one cycle either way)."""
    cols = [list(c) for c in cols[:width]]
    level = 0

    def register(cols):
        flat = [bit for col in cols for bit in col]
        reg = Signal(len(flat), name=f"{name}_cut")
        m.d.sync += reg.eq(Cat(*flat))
        out, k = [], 0
        for col in cols:
            out.append([reg[k + r] for r in range(len(col))])
            k += len(col)
        return out

    while any(len(c) > 2 for c in cols):
        if level == cut_level:
            cols, cut_level = register(cols), None
        nxt = [[] for _ in range(len(cols) + 1)]
        for i, col in enumerate(cols):
            j = 0
            while len(col) - j >= 3:
                a, b, c = col[j:j + 3]
                nxt[i].append(a ^ b ^ c)
                nxt[i + 1].append((a & b) | (a & c) | (b & c))
                j += 3
            if len(col) > 2 and len(col) - j == 2:  # a half adder keeps every column shrinking
                a, b = col[j:]
                nxt[i].append(a ^ b)
                nxt[i + 1].append(a & b)
                j += 2
            nxt[i].extend(col[j:])
        nxt = nxt[:width]
        flat = [bit for col in nxt for bit in col]
        sig = Signal(len(flat), name=f"{name}_csa{level}", attrs={"keep": 1})
        m.d.comb += sig.eq(Cat(*flat))
        k = 0
        cols = []
        for col in nxt:
            cols.append([sig[k + r] for r in range(len(col))])
            k += len(col)
        level += 1
    if cut_level is not None:
        cols = register(cols)
    rows = [Cat(*[c[r] if len(c) > r else Const(0, 1) for c in cols]) for r in (0, 1)]
    return rows[0], rows[1]


def _weighted_sum(m, terms, width, name):
    """``sum(sign * value << shift)`` for ``(value, shift, sign)`` with unsigned values and
    sign +1/-1, as a signed ``width``-bit value (the caller guarantees the sum fits): the
    two rows of :func:`_weighted_rows`, added."""
    return _row_sum(*_weighted_rows(m, terms, width, name), width)


def _row_sum(x, y, width):
    """The signed ``width``-bit value of two carry-save rows."""
    return (x + y)[:width].as_signed()


def _weighted_rows(m, terms, width, name, cut_level=None):
    """:func:`_weighted_sum` before its final adder: two rows whose sum modulo ``2**width``
    is the value. One carry-save tree: a subtrahend enters as its complement plus a constant
    (``-v = ~v - (2**b - 1)`` for b-bit v), all constants folded into one."""
    cols = [[] for _ in range(width)]
    const = 0
    for value, shift, sign in terms:
        bits = ~value if sign < 0 else value
        if sign < 0:
            const -= ((1 << len(value)) - 1) << shift
        for k in range(len(value)):
            if shift + k < width:
                cols[shift + k].append(bits[k])
    const %= 1 << width
    for k in range(width):
        if const >> k & 1:
            cols[k].append(Const(1, 1))
    return _carry_save(m, cols, width, name, cut_level)


class SpikeKvCache(wiring.Component):
    """Spike KV-cache buffer: ``heads`` x ``depth`` tokens of ``t_kv`` ternary bit-plane pairs.

    A cached vector (one token's K, or V, for one head) is the tc-lif unfolding of its integer
    spike counts, exactly :func:`spikemllm.sw.numerics.to_bit_planes`: plane ``t`` (weight
    ``2**(t_kv-1-t)``, most significant first) is a positive and a negative word of
    ``head_dim`` bits, bit ``i`` = element ``i``. One instance holds one kind of vector; the
    engine builds two (K and V). A ``t_kv``-plane cache holds any smaller T too: pad the
    *leading* planes with zeros (tc-lif weights are MSB first).

    **Storage.** One ``lib.memory.Memory`` of ``heads * depth * t_kv`` words, one plane pair
    ``{pos, neg}`` (``2 * head_dim`` bits, 128 for head_dim 64) per word at address
    ``(head * depth + slot) * t_kv + plane``. It has one write port (appends) and one
    synchronous read port shared by reads and the score unit, so it maps to a two-port
    (1R1W) SRAM macro or FPGA block RAM; no memory is built from flip-flops. The write port
    is registered (address, data and enable come from flip-flops, one cycle after a plane is
    presented); no walk can observe that lag (see docs/kv-cache.md).

    **Append** (``append_stream``). One beat ``{head, pos[t_kv], neg[t_kv]}`` is one token's
    vector for one head. It is written one plane per cycle and acknowledged (``ready``) in the
    cycle its last plane is presented, so an append takes ``append_cycles`` (= ``t_kv``) cycles;
    the count of that head rises by one at the end of that cycle. Each head fills
    independently. A beat for a full head (``count == depth``) is *refused*: it is taken in one
    cycle, not stored, and the sticky ``error`` flag is set; the same for ``head >= heads``.
    With ``ring=True`` a full head instead overwrites its oldest token (``count`` stays at
    ``depth``, the logical token 0 becomes the next-oldest). In ring mode appends wait while
    a read or score walk is in progress, and with ``read_register`` also while a walk's
    last plane read is still ahead of the memory (so a walk never sees a half-overwritten
    token); in non-ring mode they run alongside walks (a walk only reads slots below the count it
    sampled, appends only write the slot at the count).

    **Read** (``read_stream`` -> ``read_data_stream``). A request ``{head, token}`` (token 0 =
    oldest stored) is answered by ``t_kv`` beats ``{pos, neg, plane, token, in_range, last}``,
    plane 0 first, ``last`` on plane ``t_kv - 1``. With no backpressure plane ``p`` is valid
    ``READ_LATENCY + p`` cycles after the cycle the request was accepted. A request for a
    token at or beyond the head's count (or a head >= heads) returns zero planes with
    ``in_range = 0``.

    **Score** (``query_stream`` -> ``score_stream``). A query ``{head, pos[t_q], neg[t_q]}``
    is registered; the unit then walks the head's cached keys in token order (oldest first),
    one key plane per cycle with all ``t_q`` query planes in parallel, Horner over the key
    planes::

        term(tk) = sum_tq 2**(t_q-1-tq) * (pop(A_tq) - pop(O_tq))
        A_tq = (qp_tq & kp_tk) | (qn_tq & kn_tk)   # agreeing signs
        O_tq = (qp_tq & kn_tk) | (qn_tq & kp_tk)   # opposing signs
        acc <- 2 * acc + term(tk),  tk = 0 .. t_kv-1,  score = acc

    ``pop(A) - pop(O)`` equals the reference's ``pop(qp&kp) + pop(qn&kn) - pop(qp&kn) -
    pop(qn&kp)`` for *all* bit patterns (per element both are ``(qp-qn)*(kp-kn)``), with two
    popcounts instead of four; there is no multiplier. One beat ``{score, token, empty,
    last}`` leaves per key, ``last`` on the final key; the key count is sampled when the query
    is accepted. A head with no keys answers one beat ``{score 0, empty 1, last 1}``.
    The popcounts are carry-save trees of full adders; stage 1 registers each as two rows
    and stage 2 folds all ``4 * t_q`` rows, weights and signs into ``term`` with one more
    carry-save tree, registered as two rows again; stage 3 adds them to the doubled
    accumulator with a single adder (in the asic style after one more carry-save level).
    Operand isolation: the query register holds zeros except from a query's acceptance
    until its last key plane has left stage 1 (an empty head's query is not loaded), so
    reads and idle cycles do not toggle the trees.
    ``score_bits`` = ``score_bound(head_dim, t_q, t_kv).bit_length() + 1`` (signed), so no
    value of the accumulator, partial or final, can overflow.

    **Timing.** Reads and queries share one walker; it takes a new request when idle (reads
    before queries when both wait). With outputs ready: the first score of a query is valid
    ``score_latency`` = ``t_kv + SCORE_PIPE`` cycles after the query is accepted and the next
    one every ``cycles_per_key`` = ``t_kv`` cycles (n keys: last score at ``t_kv + SCORE_PIPE
    + (n-1)*t_kv``); an empty head's beat comes ``EMPTY_LATENCY`` cycles after acceptance. The
    walker issues one plane read per cycle and takes its next request ``n*t_kv + 1`` cycles
    after accepting a query of n keys (``t_kv + 1`` for a read, 2 for an empty head); with
    ``read_register`` a query right behind a query waits three cycles more. The
    score pipeline is issue -> memory word and popcounts -> weighted sum -> Horner and the
    output register. A stalled output (``ready`` low) freezes the walker and every stage (and
    the other output) without loss; a read beat taken while a held score freezes the
    pipeline leaves a bubble behind it. With ``read_register`` nothing stalls: each output
    has a FIFO (reads come OUTPUT_FIFO_CYCLES = 1 cycle later), ``read_fifo_depth`` =
    ``read_latency`` read beats and ``score_fifo_depth`` = ``(score_latency - t_kv) // t_kv +
    1`` scores, and the walker issues a plane only with a credit for the beat it will make
    (counters of beats issued and not yet taken). A held output stops the walker once its
    FIFO's credits are used up; the beats already issued still arrive. The depths are the
    fewest that keep one read beat per cycle and one score per key with the outputs ready.

    **Flags.** ``count[h]`` tokens stored for head h, ``full[h]`` = ``count[h] == depth``,
    ``error`` sticky. ``clear`` (one cycle or held) empties every head and clears ``error``;
    while it is high appends wait; it restarts an append beat that was part-written (that
    beat is still unacknowledged). A walk in progress finishes on the memory as it is. Reset
    does the same as ``clear`` and also drops everything in flight. Memory contents are never
    reset (they are unreachable once the counts are zero).

    Parameters
    ----------
    heads : int
        KV heads, 1..1024.
    head_dim : int
        Elements per head (bits per plane), 1..4096.
    t_kv : int
        Bit-planes per cached vector (T_kv), 1..15; 8-bit KV is ``t_kv = 7``.
    depth : int
        Tokens per head, 1..2**20 (any integer; the ring wrap is a compare, not a mask).
    t_q : int or None
        Bit-planes per query vector, 1..15; ``None`` means ``t_kv``.
    ring : bool
        Overwrite the oldest token of a full head instead of refusing the append.
    with_score : bool
        Build the score unit (``query_stream``, ``score_stream``). ``False`` suits a V cache:
        only append and read, no popcount logic and no query register.
    read_register : bool
        Register the read address before the memory and the memory word before stage 1
        (default False; see ``HwParams.read_register``). Reads, scores and empty beats all
        come READ_REGISTER_CYCLES = 3 cycles later (address, word, and the word again after
        the bank multiplexer; reads 1 more: output FIFOs, see
        Timing). It is the FPGA pipeline of the score
        unit too: each popcount tree and the weighted-sum tree get a register inside
        (after POP_CUT_LEVELS and TERM_CUT_LEVELS levels), SCORE_CUT_CYCLES = 2 more cycles
        for scores and empty beats. The instance's ``read_latency``, ``score_latency`` and
        ``empty_latency`` include all of these. The memory reads only words that are
        used (an out-of-range request or an empty head reads nothing), so it never reads
        the address being written in the same cycle; its banks carry Yosys's
        ``no_rw_check`` attribute, and FPGA flows build no read-old-data logic for them.
        (A walk in progress when ``clear`` rises is the exception; its answers are
        undefined either way.)
    bram_rows : int
        With ``read_register``: rows per read bank (``HwParams.bram_rows``; 0: one bank).
    sign_magnitude : bool
        With ``read_register``: store each vector as ``t_kv`` magnitude planes (``pos | neg``,
        head_dim bits a word) and one sign word (an element is negative if any of its planes
        is), 8/14 of the bits for t_kv = 7 (``HwParams.kv_sign_magnitude``). Reads and
        scores then see ``pos = mag & ~sign``, ``neg = mag & sign``: the same planes for
        every vector ``to_bit_planes`` makes (each element one sign in every plane); a raw
        pattern that mixes signs in one element reads back as
        :func:`spikemllm.sw.numerics.sign_magnitude_planes` gives it. Same latencies.
    alternating_ports : bool
        Without ``read_register`` (``HwParams.alternating_ports``): the planes are an
        :class:`~spikemllm.hw.alternating_memory.AlternatingPortMemory`, read through the
        SRAM macro's two ports in turn and registered two cycles after their address:
        ALTERNATING_PORTS_CYCLES more read, score and empty latency, and a query right
        behind a query waits two cycles more. Port 0 also writes, in its own cycles, so an
        append plane is taken every other cycle (``append_cycles`` = 2 * t_kv, one more
        when it starts in the other phase; a refused beat still takes one cycle). Appends
        wait while a walk is in progress or being accepted, and no walk is accepted while an
        append is offered, in ring mode or not: the walk in progress finishes, then the
        append, then the next walk.

    Members
    -------
    append_stream : In(stream.Signature(append_layout))
        ``{head, pos: ArrayLayout(unsigned(head_dim), t_kv), neg: ...}``.
    read_stream : In(stream.Signature(read_layout))
        ``{head, token}``.
    read_data_stream : Out(stream.Signature(read_data_layout))
        ``{pos, neg, plane, token, in_range, last}``, ``t_kv`` beats per request.
    query_stream : In(stream.Signature(query_layout))
        ``{head, pos: ArrayLayout(unsigned(head_dim), t_q), neg: ...}``.
    score_stream : Out(stream.Signature(score_layout))
        ``{score: signed(score_bits), token, empty, last}``, one beat per cached key.
        ``query_stream`` and ``score_stream`` exist only with ``with_score=True``.
    clear : In(1)
        Empty every head and clear ``error``.
    count : Out(ArrayLayout(unsigned(count_bits), heads))
        Tokens stored per head.
    full : Out(heads)
        Bit h: head h holds ``depth`` tokens.
    error : Out(1)
        Sticky: an append was refused (head full without ring, or head out of range).
    planes : RegisteredReadMemory or None
        With ``read_register``, the store (its ports are what the tests and the formal
        harness watch for read/write collisions); None otherwise.
    signs : RegisteredReadMemory or None
        With ``sign_magnitude``, the sign words (``heads * depth``); None otherwise.
    """

    READ_LATENCY = 2   # request accepted in cycle c -> plane 0 on read_data_stream in c+2
    SCORE_PIPE = 4     # key planes: issue, memory -> popcounts, weighted sum, Horner -> output
    EMPTY_LATENCY = 5  # query for an empty head accepted in c -> its empty beat valid in c+5
    READ_REGISTER_CYCLES = 3  # added to all three by read_register (address, word, mux)
    #: added to all three by alternating_ports (the row register two cycles after the address)
    ALTERNATING_PORTS_CYCLES = AlternatingPortMemory.READ_LATENCY
    OUTPUT_FIFO_CYCLES = 1    # added to reads by read_register (the read beats' FIFO)
    SCORE_CUT_CYCLES = 2      # added to scores and empty beats by read_register (tree cuts)
    POP_CUT_LEVELS = 2        # read_register: popcount trees cut after this many levels
    TERM_CUT_LEVELS = 4       # read_register: the weighted-sum tree cut after this many

    def __init__(self, *, heads, head_dim, t_kv, depth, t_q=None, ring=False, with_score=True,
                 read_register=False, bram_rows=0, sign_magnitude=False,
                 alternating_ports=False):
        t_q = t_kv if t_q is None else t_q
        try:
            _check_int("heads", heads, 1, 1024)
            _check_int("head_dim", head_dim, 1, 4096)
            _check_int("t_kv", t_kv, 1, 15)
            _check_int("depth", depth, 1, 1 << 20)
            _check_int("t_q", t_q, 1, 15)
            if not isinstance(ring, bool):
                raise ValueError(f"ring must be True or False, not {ring!r}")
            if not isinstance(with_score, bool):
                raise ValueError(f"with_score must be True or False, not {with_score!r}")
            check_read_register(read_register, bram_rows)
            if not isinstance(sign_magnitude, bool):
                raise ValueError(f"sign_magnitude must be True or False, not {sign_magnitude!r}")
            if sign_magnitude and not read_register:
                raise ValueError("sign_magnitude needs read_register (the fpga style), not "
                                 f"read_register={read_register!r}")
            check_alternating_ports(alternating_ports, read_register)
        except ValueError:
            self._MustUse__silence = True  # never built: no "created but never used" warning
            raise
        self.heads, self.head_dim, self.t_kv, self.depth = heads, head_dim, t_kv, depth
        self.t_q, self.ring, self.with_score = t_q, ring, with_score
        self.read_register, self.bram_rows = read_register, bram_rows
        self.sign_magnitude = sign_magnitude
        self.alternating_ports = alternating_ports
        extra = (self.READ_REGISTER_CYCLES if read_register else
                 self.ALTERNATING_PORTS_CYCLES if alternating_ports else 0)
        self.read_latency = self.READ_LATENCY + extra + (
            self.OUTPUT_FIFO_CYCLES if read_register else 0)
        cut = self.SCORE_CUT_CYCLES if read_register else 0
        self.empty_latency = self.EMPTY_LATENCY + extra + cut

        self.head_bits = _clog2(heads)
        self.token_bits = _clog2(depth)
        self.count_bits = depth.bit_length()
        self.plane_bits = _clog2(t_kv)
        self.score_bits = score_bound(head_dim, t_q, t_kv).bit_length() + 1
        self.mem_depth = heads * depth * t_kv
        self.word_bits = head_dim if sign_magnitude else 2 * head_dim
        self.append_cycles = 2 * t_kv if alternating_ports else t_kv
        self.cycles_per_key = t_kv
        self.score_latency = t_kv + self.SCORE_PIPE + extra + cut
        # read_register: a credit is taken when a plane read issues and comes back when its
        # beat leaves the FIFO (latency - cycles before the issue edge); one more credit than
        # beats issued in that round trip keeps one read beat per cycle and one score per key
        self.read_fifo_depth = self.read_latency if read_register else 0
        self.score_fifo_depth = (self.score_latency - t_kv) // t_kv + 1 if read_register else 0

        plane = unsigned(head_dim)
        self.word_layout = data.StructLayout({"pos": plane, "neg": plane})
        self.append_layout = data.StructLayout({
            "head": unsigned(self.head_bits),
            "pos": data.ArrayLayout(plane, t_kv),
            "neg": data.ArrayLayout(plane, t_kv),
        })
        self.read_layout = data.StructLayout({
            "head": unsigned(self.head_bits),
            "token": unsigned(self.token_bits),
        })
        self.read_data_layout = data.StructLayout({
            "pos": plane,
            "neg": plane,
            "plane": unsigned(self.plane_bits),
            "token": unsigned(self.token_bits),
            "in_range": unsigned(1),
            "last": unsigned(1),
        })
        self.query_layout = data.StructLayout({
            "head": unsigned(self.head_bits),
            "pos": data.ArrayLayout(plane, t_q),
            "neg": data.ArrayLayout(plane, t_q),
        })
        self.score_layout = data.StructLayout({
            "score": signed(self.score_bits),
            "token": unsigned(self.token_bits),
            "empty": unsigned(1),
            "last": unsigned(1),
        })
        members = {
            "append_stream": In(stream.Signature(self.append_layout)),
            "read_stream": In(stream.Signature(self.read_layout)),
            "read_data_stream": Out(stream.Signature(self.read_data_layout)),
            "query_stream": In(stream.Signature(self.query_layout)),
            "score_stream": Out(stream.Signature(self.score_layout)),
            "clear": In(1),
            "count": Out(data.ArrayLayout(unsigned(self.count_bits), heads)),
            "full": Out(heads),
            "error": Out(1),
        }
        if not with_score:
            del members["query_stream"], members["score_stream"]
        super().__init__(members)
        self.planes = RegisteredReadMemory(
            shape=unsigned(head_dim) if sign_magnitude else self.word_layout,
            depth=self.mem_depth, bank_rows=bram_rows, no_rw_check=True) if read_register else None
        # sign_magnitude: one sign word per cached vector, read beside each magnitude plane
        self.signs = RegisteredReadMemory(
            shape=unsigned(head_dim), depth=heads * depth, bank_rows=bram_rows,
            no_rw_check=True) if sign_magnitude else None
        for mem in (self.planes, self.signs):
            if mem is not None:
                mem._MustUse__silence = True  # built with this block; it warns for both

    # -- word packing for drivers and golden files (LSB first, fields in layout order) --------

    def _pack_planes(self, planes, n_planes, name):
        word = 0
        if len(planes) != n_planes:
            raise ValueError(f"{name} must have {n_planes} planes, not {len(planes)}")
        for t, p in enumerate(planes):
            if len(p) != self.head_dim:
                raise ValueError(f"{name}[{t}] must have {self.head_dim} elements, not {len(p)}")
            word |= sum(1 << i for i, b in enumerate(p) if b) << (t * self.head_dim)
        return word

    def _pack_vector(self, head, pos, neg, n_planes):
        if not 0 <= head < (1 << self.head_bits):
            raise ValueError(f"head must be in 0..{(1 << self.head_bits) - 1}, not {head!r}")
        plane_span = n_planes * self.head_dim
        return (head | self._pack_planes(pos, n_planes, "pos") << self.head_bits
                | self._pack_planes(neg, n_planes, "neg") << (self.head_bits + plane_span))

    def pack_append(self, head, pos, neg):
        """Payload word of ``append_stream`` from bool planes ``[t_kv][head_dim]``."""
        return self._pack_vector(head, pos, neg, self.t_kv)

    def pack_query(self, head, pos, neg):
        """Payload word of ``query_stream`` from bool planes ``[t_q][head_dim]``."""
        return self._pack_vector(head, pos, neg, self.t_q)

    def pack_read(self, head, token):
        """Payload word of ``read_stream``."""
        if not 0 <= token < (1 << self.token_bits):
            raise ValueError(f"token must be in 0..{(1 << self.token_bits) - 1}, not {token!r}")
        return head | token << self.head_bits

    def unpack_read_data(self, word):
        """``read_data_stream`` payload word -> dict (pos/neg as int bit masks)."""
        return _unpack(self.read_data_layout, word)

    def unpack_score(self, word):
        """``score_stream`` payload word -> dict (score as a signed int)."""
        return _unpack(self.score_layout, word)

    # -- hardware ----------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        H, D, T, Tq, d = self.heads, self.depth, self.t_kv, self.t_q, self.head_dim
        ring = self.ring

        alternate = self.alternating_ports
        if self.read_register:
            m.submodules.planes = mem = self.planes
            wport = SimpleNamespace(en=mem.w_en, addr=mem.w_addr, data=mem.w_data)
            if self.sign_magnitude:
                m.submodules.signs = self.signs
        elif alternate:
            m.submodules.planes = mem = AlternatingPortMemory(shape=self.word_layout,
                                                              depth=self.mem_depth)
            wport = SimpleNamespace(en=mem.w_en, addr=mem.w_addr, data=mem.w_data)
        else:
            m.submodules.planes = mem = memory.Memory(shape=self.word_layout,
                                                      depth=self.mem_depth, init=[])
            wport = mem.write_port()
            rport = mem.read_port(domain="sync")

        firsts = Array(h * D * T for h in range(H))  # each head's first address

        def addr(head, slot, plane):
            if self.read_register:
                # slot * t_kv as shifted adds: Yosys maps a multiply to a DSP block (ECP5:
                # 3.9 ns) even by a constant
                return firsts[head] + _times_constant(slot, T) + plane
            return (head * D + slot) * T + plane

        def wrap(slot):
            return _next_modulo(slot, D)  # depth need not be a power of two

        # Per-head state: tokens stored and (ring mode) the next slot to write.
        counts = Array(Signal(range(D + 1), name=f"count_{h}") for h in range(H))
        wptrs = Array(Signal(range(D), name=f"wptr_{h}") for h in range(H)) if ring else []
        if self.read_register:
            # full flags as flip-flops, set with the count's last step: no count == depth
            # compare in the append's acceptance
            fulls = Array(Signal(name=f"full_{h}") for h in range(H))
        else:
            fulls = Array(counts[h] == D for h in range(H))
        for h in range(H):
            m.d.comb += [self.count[h].eq(counts[h]), self.full[h].eq(fulls[h])]

        def base(head):
            # physical slot of logical token 0 (the oldest)
            if not ring:
                return 0
            return Mux(fulls[head], wptrs[head], 0)

        # Walker (reads and score walks) state, declared here for the append interlock.
        busy = Signal()
        # read_register: the walker issues only with a credit for its output FIFO, so no
        # stage after it ever stalls (no enable on the block RAMs or the pipeline registers)
        stall = Const(0, 1) if self.read_register else Signal()
        accepting = Signal()
        read_pending = Signal()  # read_register: a walk's plane read is still in stage a

        # ---- append ----------------------------------------------------------------------
        ap = self.append_stream
        a_plane = Signal(self.plane_bits)
        a_head = ap.payload.head
        a_head_ok = a_head < H
        a_count = counts[a_head]
        a_full = fulls[a_head]
        a_slot = wptrs[a_head] if ring else a_count
        append_mid = a_plane != 0
        a_blocked = self.clear | (busy | accepting | read_pending if ring else 0)
        # alternating ports: port 0 writes at a phase-0 edge with no read asked for (the
        # walker's busy): a plane taken in a phase-1 cycle with no walk running or starting
        # is written at the next edge (the write port is registered), before any walk can
        # read it. A refused beat writes nothing and is taken in any cycle.
        a_store_ok = Const(1, 1)
        if alternate:
            a_blocked = self.clear | busy | accepting
            a_store_ok = mem.phase == 1

        # The write port is registered: a plane lands one cycle after it is presented, so the
        # memory's write enable (one pin per data bit) is driven by a flip-flop, not by the
        # head/full decision. No walk can see the lag: it reads an appended plane at the
        # earliest t_kv + 1 >= 2 cycles after it was presented (count rises at the ack).
        wr_en = Signal()
        wr_addr = Signal(range(self.mem_depth))
        wr_data = Signal(self.word_layout)
        m.d.comb += [wport.en.eq(wr_en), wport.addr.eq(wr_addr)]
        if self.read_register:
            # plane 0's address of each head's next slot, kept per head and stepped by t_kv
            # (reset and clear: the head's first slot): no multiply before the write address
            a_bases = Array(Signal(range(self.mem_depth), name=f"append_base_{h}",
                                   init=h * D * T) for h in range(H))
            a_base = a_bases[a_head]
            a_addr = a_base + a_plane
        else:
            a_addr = addr(a_head, a_slot, a_plane)
        # address and data are don't-cares without wr_en. The fpga style loads them in every
        # cycle (no enable mux before its block RAMs); the asic style only on an append
        # beat, so that --clock-gating can stop their clocks while nothing is appended.
        m.d.sync += wr_en.eq(0)
        wr_load = [wr_addr.eq(a_addr), wr_data.pos.eq(ap.payload.pos[a_plane]),
                   wr_data.neg.eq(ap.payload.neg[a_plane])]
        if self.read_register:
            m.d.sync += wr_load
        else:
            with m.If(ap.valid & ~a_blocked):
                m.d.sync += wr_load
        if self.sign_magnitude:
            # the magnitude plane, and with plane 0 the vector's sign word: an element is
            # negative if any plane says so (to_bit_planes gives every plane one sign)
            sg = self.signs
            sg_en = Signal()
            sg_addr = Signal(range(H * D))
            sg_data = Signal(d)
            m.d.comb += [wport.data.eq(wr_data.pos | wr_data.neg),
                         sg.w_en.eq(sg_en), sg.w_addr.eq(sg_addr), sg.w_data.eq(sg_data)]
            negative = 0
            for t in range(T):
                negative = negative | ap.payload.neg[t]
            m.d.sync += [sg_en.eq(0), sg_addr.eq(a_head * D + a_slot), sg_data.eq(negative)]
        else:
            m.d.comb += wport.data.eq(wr_data)
        with m.If(ap.valid & ~a_blocked):
            with m.If(~a_head_ok | (a_full if not ring else 0)):
                m.d.comb += ap.ready.eq(1)
                m.d.sync += self.error.eq(1)
            with m.Elif(a_store_ok):
                m.d.sync += wr_en.eq(1)
                if self.sign_magnitude:
                    with m.If(a_plane == 0):
                        m.d.sync += sg_en.eq(1)
                with m.If(a_plane == T - 1):
                    m.d.comb += ap.ready.eq(1)
                    m.d.sync += [a_plane.eq(0), a_count.eq(Mux(a_full, D, a_count + 1))]
                    if ring:
                        m.d.sync += wptrs[a_head].eq(wrap(wptrs[a_head]))
                    if self.read_register:  # a_base: the next slot (non-ring: full at the wrap)
                        m.d.sync += [fulls[a_head].eq(a_full | (a_count == D - 1)),
                                     a_base.eq(Mux(a_slot == D - 1, firsts[a_head], a_base + T))]
                with m.Else():
                    m.d.sync += a_plane.eq(a_plane + 1)

        # ---- walker: accept a read or a query ----------------------------------------------
        rq = self.read_stream
        S = self.with_score
        w_score = Signal()                 # 1: score walk, 0: read
        w_head = Signal(self.head_bits)
        w_slot = Signal(range(D))          # physical slot of the current key
        w_key = Signal(self.token_bits)    # logical token index of the current key
        w_left = Signal(range(D + 1))      # keys left, the current one included
        w_plane = Signal(self.plane_bits)
        w_in_range = Signal()
        w_empty = Signal()
        w_addr = Signal(range(self.mem_depth))  # asic style: the read address, see below
        self._walk = SimpleNamespace(addr=w_addr, head=w_head, slot=w_slot, plane=w_plane,
                                     busy=busy)  # for the address test only

        can_accept = ~busy & ~stall & (~append_mid if ring else 1)
        if alternate:
            # appends wait for walks (port 0), so walks wait for an offered append: neither
            # starves the other
            can_accept = can_accept & ~ap.valid
        m.d.comb += rq.ready.eq(can_accept)
        if S:
            qs = self.query_stream
            # with read_register a query waits while the last walk's final plane is still
            # ahead of stage 1: loading the query register now would change its popcounts
            q_wait = Signal()
            if self.read_register or alternate:
                q_ok = can_accept & ~q_wait
                m.d.comb += [qs.ready.eq(q_ok & ~rq.valid),
                             accepting.eq(can_accept & rq.valid | q_ok & qs.valid)]
            else:
                q_ok = can_accept
                m.d.comb += [qs.ready.eq(can_accept & ~rq.valid),
                             accepting.eq(can_accept & (rq.valid | qs.valid))]
        else:
            m.d.comb += accepting.eq(can_accept & rq.valid)

        r_head, r_token = rq.payload.head, rq.payload.token
        r_in_range = (r_head < H) & (r_token < counts[r_head])
        r_sum = Signal(range(2 * D))
        m.d.comb += r_sum.eq(base(r_head) + r_token)
        r_slot = Mux(r_sum >= D, r_sum - D, r_sum)

        if S:
            # Operand isolation: the query register holds zeros except from the acceptance of
            # a query until its walk's last key plane has left stage 1, so the popcount trees
            # see constant zeros (and do not toggle) during reads, empty heads and idle.
            q_pos = Signal(data.ArrayLayout(unsigned(d), Tq))
            q_neg = Signal(data.ArrayLayout(unsigned(d), Tq))
            self._query_reg = (q_pos, q_neg)  # for the isolation test only
            q_done = Signal()
            if self.read_register:
                with m.If(q_done):
                    m.d.sync += [q_pos.eq(0), q_neg.eq(0)]  # a query accepted now overrides this

        # The key registers take a read's key, a query's first key, or the next key. The
        # fpga style writes them in the acceptance and the issue below (set_key), the asic
        # style in one If chain of their own, after both: two chains leave Yosys no enable.
        def set_key(reg, value):
            return [reg.eq(value)] if self.read_register else []

        accept_read = can_accept & rq.valid
        read_slot = Mux(r_in_range, r_slot, 0)
        # an out-of-range request reads a harmless in-range address, masked later
        read_head = Mux(r_in_range, r_head, 0)
        with m.If(accept_read):
            m.d.sync += [
                busy.eq(1), w_score.eq(0), w_plane.eq(0), *set_key(w_left, 1),
                *set_key(w_key, r_token), w_in_range.eq(r_in_range), w_empty.eq(0),
                w_head.eq(read_head), *set_key(w_slot, read_slot),
            ]
        if S:
            q_head = qs.payload.head
            q_head_ok = q_head < H
            q_n = Mux(q_head_ok, counts[q_head], 0)
            accept_query = q_ok & qs.valid
            query_slot = Mux(q_head_ok, base(q_head), 0)
            query_head = Mux(q_head_ok, q_head, 0)
            with m.Elif(accept_query):
                m.d.sync += [
                    busy.eq(1), w_score.eq(1), w_plane.eq(0), *set_key(w_left, q_n),
                    *set_key(w_key, 0), w_in_range.eq(1), w_empty.eq(q_n == 0),
                    w_head.eq(query_head), *set_key(w_slot, query_slot),
                ]
                if self.read_register:
                    # an empty head's walk keeps the zero query: its popcounts (and term) are 0
                    with m.If(q_n != 0):
                        m.d.sync += [q_pos.eq(qs.payload.pos), q_neg.eq(qs.payload.neg)]
            if not self.read_register:
                # asic: the query register has one enable, so that Yosys sees it and can gate
                # its clock (synth --clock-gating): a query for a non-empty head loads it, the
                # end of a walk clears it, and a query accepted in that cycle wins; an empty
                # head's walk keeps the zero query. (On ecp5 the fpga style keeps the clear
                # and the load apart, as the flip-flops' reset and enable: the one enable, 896
                # loads behind logic, took the engine from 100.8-101.6 to 92.5-98.8 MHz.)
                q_load = qs.valid & qs.ready & (q_n != 0)
                with m.If(q_load | q_done):
                    m.d.sync += [q_pos.eq(Mux(q_load, qs.payload.pos.as_value(), 0)),
                                 q_neg.eq(Mux(q_load, qs.payload.neg.as_value(), 0))]

        # ---- stage 0: issue one plane read per cycle --------------------------------------
        rd = self.read_data_stream
        issue = Signal()
        last_plane = w_empty | (w_plane == T - 1)
        last_key = w_left <= 1
        if self.read_register:
            # the address arithmetic (a multiply by t_kv) ends at a flip-flop, not at block
            # RAMs spread over the chip; stage a's valid is the read enable
            r_addr = Signal(range(self.mem_depth))
            r_used = Signal()  # the word is used: in range, not an empty head's walk
            # Credits: every read plane makes a read beat, a score walk's last plane of a
            # key a score beat. Each counter holds the beats issued and not yet taken.
            rd_owed = Signal(range(self.read_fifo_depth + 1))
            m.d.sync += rd_owed.eq(rd_owed + (issue & ~w_score) - (rd.valid & rd.ready))
            if S:
                so = self.score_stream
                so_owed = Signal(range(self.score_fifo_depth + 1))
                m.d.sync += so_owed.eq(so_owed + (issue & w_score & last_plane)
                                       - (so.valid & so.ready))
                credit = Mux(w_score, ~last_plane | (so_owed != self.score_fifo_depth),
                             rd_owed != self.read_fifo_depth)
            else:
                credit = rd_owed != self.read_fifo_depth
            m.d.comb += issue.eq(busy & credit)
        elif alternate:
            # the memory issues only to a free port, and holds its reads with the pipeline
            m.d.comb += [mem.r_addr.eq(w_addr), mem.r_en.eq(busy),
                         mem.hold.eq(stall), issue.eq(busy & mem.r_ready)]
        else:
            m.d.comb += [issue.eq(busy & ~stall), rport.addr.eq(w_addr), rport.en.eq(issue)]

        s1_valid, s1_score, s1_in_range, s1_empty = _flags("s1_valid", "s1_score", "s1_in_range",
                                                            "s1_empty")
        s1_plane = Signal(self.plane_bits)
        s1_last_plane, s1_last = _flags("s1_last_plane", "s1_last")
        s1_key = Signal(self.token_bits)
        s1 = (s1_valid, s1_score, s1_in_range, s1_empty, s1_plane, s1_last_plane, s1_last,
              s1_key)
        if self.read_register:
            # Stage a holds the read address, the memory word arrives in stage m (each
            # bank's read register), stage x registers it after the bank multiplexer and the
            # sign mask, and stage 1 takes it (and its flags) from there: the popcounts and
            # the read beat start at a register, and the long nets from block RAMs spread
            # over the chip to the multiplexer have a stage of their own.
            a1 = tuple(Signal.like(x, name=f"a1{x.name[2:]}") for x in s1)
            m1 = tuple(Signal.like(x, name=f"m1{x.name[2:]}") for x in s1)
            x1 = tuple(Signal.like(x, name=f"x1{x.name[2:]}") for x in s1)
            m.d.comb += [mem.r_addr.eq(r_addr), mem.r_en.eq(r_used), mem.r_load.eq(1),
                         read_pending.eq(a1[0])]
            if self.sign_magnitude:
                # the sign word is read beside every magnitude plane (same enables)
                s_addr = Signal(range(H * D))
                sg = self.signs
                m.d.comb += [sg.r_addr.eq(s_addr), sg.r_en.eq(r_used), sg.r_load.eq(1)]
                banks_word = Signal(self.word_layout)
                m.d.comb += [banks_word.pos.eq(mem.r_data & ~sg.r_data),
                             banks_word.neg.eq(mem.r_data & sg.r_data)]
            else:
                banks_word = mem.r_data
            word = Signal(self.word_layout, name="word")
            m.d.sync += word.eq(banks_word)  # stage x -> 1 (nothing stalls here)
            if S:  # a score walk's plane still ahead of stage 1 (valid & score)
                m.d.comb += q_wait.eq(a1[0] & a1[1] | m1[0] & m1[1] | x1[0] & x1[1])
            at_issue = a1
        elif alternate:
            # stage a1: a port reads; a2: the word is registered at its end; then stage 1
            a1 = tuple(Signal.like(x, name=f"a1{x.name[2:]}") for x in s1)
            a2 = tuple(Signal.like(x, name=f"a2{x.name[2:]}") for x in s1)
            word = mem.r_data
            if S:  # a score walk's plane still ahead of stage 1 (valid & score)
                m.d.comb += q_wait.eq(a1[0] & a1[1] | a2[0] & a2[1])
            at_issue = a1
        else:
            at_issue, word = s1, rport.data
        i_valid, i_score, i_in_range, i_empty, i_plane, i_last_plane, i_last, i_key = at_issue

        with m.If(issue):
            m.d.sync += [
                i_valid.eq(1), i_score.eq(w_score), i_in_range.eq(w_in_range),
                i_empty.eq(w_empty), i_plane.eq(w_plane), i_last_plane.eq(last_plane),
                i_last.eq(last_key), i_key.eq(w_key),
            ]
            if self.read_register:
                m.d.sync += [r_addr.eq(addr(w_head, w_slot, w_plane)),
                             r_used.eq(w_in_range & ~w_empty)]
                if self.sign_magnitude:
                    m.d.sync += s_addr.eq(w_head * D + w_slot)
            with m.If(last_plane):
                m.d.sync += [w_plane.eq(0), *set_key(w_key, w_key + 1),
                             *set_key(w_slot, wrap(w_slot)), *set_key(w_left, w_left - 1)]
                with m.If(last_key):
                    m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += w_plane.eq(w_plane + 1)
        if self.read_register:
            with m.Else():
                m.d.sync += [i_valid.eq(0), r_used.eq(0)]
            m.d.sync += [a.eq(b) for a, b in zip(m1, a1)]
            m.d.sync += [a.eq(b) for a, b in zip(x1, m1)]
            m.d.sync += [a.eq(b) for a, b in zip(s1, x1)]
        elif alternate:
            with m.Elif(~stall):
                m.d.sync += a1[0].eq(0)
            # a stage loads only while a plane enters or leaves it, so that --clock-gating
            # stops it while the cache idles
            with m.If(~stall):
                with m.If(a1[0] | a2[0]):
                    m.d.sync += [a.eq(b) for a, b in zip(a2, a1)]
                with m.If(a2[0] | s1_valid):
                    m.d.sync += [a.eq(b) for a, b in zip(s1, a2)]
            with m.Elif(rd.valid & rd.ready):
                # a read beat taken while a score stall freezes the pipeline leaves a bubble
                m.d.sync += s1_valid.eq(0)
        else:
            with m.Elif(~stall | (rd.valid & rd.ready)):
                # a read beat taken while a score stall freezes the pipeline leaves a bubble
                # (the walker has already moved past it)
                m.d.sync += s1_valid.eq(0)
        if not self.read_register:
            # the key registers in one chain (see set_key; a walk never issues while accepting)
            with m.If(accept_read):
                m.d.sync += [w_left.eq(1), w_key.eq(r_token), w_slot.eq(read_slot)]
            if S:
                with m.Elif(accept_query):
                    m.d.sync += [w_left.eq(q_n), w_key.eq(0), w_slot.eq(query_slot)]
            with m.Elif(issue & last_plane):
                m.d.sync += [w_left.eq(w_left - 1), w_key.eq(w_key + 1),
                             w_slot.eq(wrap(w_slot))]
            # The read address is addr(w_head, w_slot, w_plane), kept in a register of its
            # own: multiplied out when a walk starts and stepped by one plane after each
            # issue, it leaves the multiply by t_kv out of the path into the macros' bank
            # decode (the engine's worst path at 202.1 MHz). A walk of an empty head ends at
            # its first issue, so its step does not matter.
            with m.If(accept_read):
                m.d.sync += w_addr.eq(addr(read_head, read_slot, 0))
            if S:
                with m.Elif(accept_query):
                    m.d.sync += w_addr.eq(addr(query_head, query_slot, 0))
            with m.Elif(issue):
                m.d.sync += w_addr.eq(Mux(last_plane & (w_slot == D - 1), firsts[w_head],
                                          w_addr + 1))

        # ---- stage 1: memory word -> read beat, or -> popcounts per query plane ------------
        beat = Signal(self.read_data_layout)
        m.d.comb += [
            beat.pos.eq(Mux(s1_in_range, word.pos, 0)),
            beat.neg.eq(Mux(s1_in_range, word.neg, 0)),
            beat.plane.eq(s1_plane),
            beat.token.eq(s1_key),
            beat.in_range.eq(s1_in_range),
            beat.last.eq(s1_last_plane),
        ]
        beat_valid = s1_valid & ~s1_score
        if self.read_register:
            # the beat leaves through a FIFO that its credit keeps from overflowing
            _output_fifo(m, rd, beat_valid, beat, self.read_fifo_depth, "read_fifo")
        else:
            m.d.comb += [rd.valid.eq(beat_valid), rd.payload.eq(beat)]

        if S:
            kp, kn = word.pos, word.neg
            m.d.comb += q_done.eq(~stall & s1_valid & s1_score & s1_last_plane & s1_last)
            s2_valid, s2_first, s2_last_plane, s2_last, s2_empty = _flags(
                "s2_valid", "s2_first", "s2_last_plane", "s2_last", "s2_empty")
            s2_key = Signal(self.token_bits)
            # popcounts in carry-save form (two rows, row sum = count); the carry-propagate
            # adds move into stage 2's tree, keeping stage 1 to AND + full adders
            pop_bits = d.bit_length()
            s2_rows = []
            s2 = (s2_valid, s2_first, s2_last_plane, s2_last, s2_empty, s2_key)
            # asic: a stage loads while a score plane enters or leaves it, so that
            # --clock-gating stops it during reads, appends and idle (its contents are used
            # only with its valid); fpga: no stall, flip-flops without an enable
            s2_load = ~stall if self.read_register else ~stall & (s1_valid & s1_score | s2_valid)
            with m.If(s2_load):
                m.d.sync += _staged(s2, (
                    s1_valid & s1_score, s1_plane == 0, s1_last_plane, s1_last, s1_empty,
                    s1_key), "p1" if self.read_register else None)
            # the FPGA pipeline cuts each adder tree once (LUT levels are slow there)
            pop_cut = self.POP_CUT_LEVELS if self.read_register else None
            for tq in range(Tq):
                qp, qn = q_pos[tq], q_neg[tq]
                # name the bit vectors first: slicing an expression would copy it per bit
                agree_bits = Signal(d, name=f"agree_bits_{tq}")
                oppose_bits = Signal(d, name=f"oppose_bits_{tq}")
                m.d.comb += [agree_bits.eq((qp & kp) | (qn & kn)),
                             oppose_bits.eq((qp & kn) | (qn & kp))]
                for kind, bits, sign in (("agree", agree_bits, 1), ("oppose", oppose_bits, -1)):
                    rows = _carry_save(m, [[bits[i] for i in range(d)]], pop_bits,
                                       f"{kind}_{tq}", pop_cut)
                    for r, row in enumerate(rows):
                        reg = Signal(pop_bits, name=f"s2_{kind}_{tq}_{'xy'[r]}")
                        with m.If(s2_load):
                            m.d.sync += reg.eq(row)
                        s2_rows.append((reg, Tq - 1 - tq, sign))

            # ---- stage 2: weighted sum of the popcounts -> term of this key plane ----------
            # (an empty head's walk has a zero query: its popcounts and term are 0)
            term_bits = (d * ((1 << Tq) - 1)).bit_length() + 1
            s3_valid, s3_first, s3_last_plane, s3_last, s3_empty = _flags(
                "s3_valid", "s3_first", "s3_last_plane", "s3_last", "s3_empty")
            s3_key = Signal(self.token_bits)
            # Both pipelines register the tree's two rows, so its carry-propagate adder moves
            # into stage 3. The FPGA adds them there beside the Horner adder (carry chains are
            # fast); the ASIC's rows are score-wide (their sum modulo 2**score_bits is the
            # term, sign included) and meet the doubled accumulator in one more carry-save
            # level, so stage 3 keeps a single carry-propagate adder. (With the term's adder
            # in stage 2, ABC's mapping of it decided the K cache's fmax: 191 to 210 MHz
            # in the engine, with the same logic.)
            row_bits = term_bits if self.read_register else self.score_bits
            rows = _weighted_rows(m, s2_rows, row_bits, "term",
                                  self.TERM_CUT_LEVELS if self.read_register else None)
            s3_rows = [Signal(row_bits, name=f"s3_term_{r}") for r in "xy"]
            s3_load = [r.eq(v) for r, v in zip(s3_rows, rows)]
            s3_load_en = ~stall if self.read_register else ~stall & (s2_valid | s3_valid)
            with m.If(s3_load_en):
                if self.read_register:
                    m.d.sync += _staged((s3_valid, s3_first, s3_last_plane, s3_last, s3_empty,
                                         s3_key), s2, "p2")
                    m.d.sync += s3_load
                else:
                    m.d.sync += [
                        s3_valid.eq(s2_valid), s3_first.eq(s2_first),
                        s3_last_plane.eq(s2_last_plane), s3_last.eq(s2_last),
                        s3_empty.eq(s2_empty), s3_key.eq(s2_key), *s3_load,
                    ]

            # ---- stage 3: Horner over key planes, score output register --------------------
            so = self.score_stream
            sb = self.score_bits
            acc = Signal(signed(sb))
            acc_next = Signal(signed(sb))
            doubled = Mux(s3_first, 0, acc << 1)
            if self.read_register:
                m.d.comb += acc_next.eq(doubled + _row_sum(*s3_rows, term_bits))
            else:
                m.d.comb += acc_next.eq(_weighted_sum(
                    m, [(doubled[:sb], 0, 1), (s3_rows[0], 0, 1), (s3_rows[1], 0, 1)], sb,
                    "horner"))
            with m.If(~stall & s3_valid):
                m.d.sync += acc.eq(acc_next)
            score = Signal(self.score_layout)
            m.d.comb += [score.score.eq(acc_next), score.token.eq(s3_key),
                         score.empty.eq(s3_empty), score.last.eq(s3_last)]
            score_push = ~stall & s3_valid & s3_last_plane
            if self.read_register:
                _output_fifo(m, so, score_push, score, self.score_fifo_depth, "score_fifo")
            else:
                with m.If(so.ready):
                    m.d.sync += so.valid.eq(0)
                with m.If(score_push):
                    m.d.sync += [so.valid.eq(1), so.payload.eq(score)]

        # A held read beat or a full score register (with a score about to land) freezes the
        # walker and all pipeline stages; the read port holds its data while en is low.
        if not self.read_register:
            score_stall = (s3_valid & s3_last_plane & so.valid & ~so.ready) if S else 0
            m.d.comb += stall.eq((beat_valid & ~rd.ready) | score_stall)

        # ---- clear: empty every head (last, so it wins) ------------------------------------
        with m.If(self.clear):
            m.d.sync += [self.error.eq(0), a_plane.eq(0)]
            m.d.sync += [c.eq(0) for c in counts]
            m.d.sync += [p.eq(0) for p in wptrs]
            if self.read_register:
                m.d.sync += [f.eq(0) for f in fulls]
                m.d.sync += [b.eq(h * D * T) for h, b in enumerate(a_bases)]
        return m


def _output_fifo(m, out, push, data, depth, name):
    """A ``depth``-entry FIFO in front of the output stream ``out``: a circular buffer of
    flip-flops, written at a write pointer and read through a multiplexer at a read pointer.
    ``data`` enters at an edge where ``push`` is high; the pusher must not push into a full
    FIFO (the walker's credits see to that). The entries' load enables depend on ``push``
    and the write pointer only; ``out.ready`` reaches just the read pointer and the count."""
    entries = Array(Signal(out.payload.shape(), name=f"{name}_{i}") for i in range(depth))
    w_ptr = Signal(range(depth), name=f"{name}_w_ptr")
    r_ptr = Signal(range(depth), name=f"{name}_r_ptr")
    count = Signal(range(depth + 1), name=f"{name}_count")
    pop = out.valid & out.ready
    m.d.comb += [out.valid.eq(count != 0), out.payload.eq(entries[r_ptr])]
    with m.If(push):
        m.d.sync += [entries[w_ptr].eq(data), w_ptr.eq(_next_modulo(w_ptr, depth))]
    with m.If(pop):
        m.d.sync += r_ptr.eq(_next_modulo(r_ptr, depth))
    m.d.sync += count.eq(count + push - pop)


def _next_modulo(x, n):
    """``(x + 1) % n`` for ``0 <= x < n`` with a compare, not a divider."""
    return Mux(x == n - 1, 0, x + 1)


def _times_constant(x, k):
    """``x * k`` for a constant ``k`` >= 1, as a sum of shifted copies of ``x``."""
    terms = [x << b for b in range(k.bit_length()) if k >> b & 1]
    return sum(terms[1:], terms[0])


def _staged(dst, src, mid=None):
    """Statements that load the signals ``dst`` from the values ``src``; with ``mid`` (a name
    prefix) through one more register stage, named ``mid`` + each ``dst`` name's tail."""
    if mid is None:
        return [a.eq(b) for a, b in zip(dst, src)]
    regs = [Signal.like(a, name=f"{mid}{a.name[2:]}") for a in dst]
    return [r.eq(b) for r, b in zip(regs, src)] + [a.eq(r) for a, r in zip(dst, regs)]


def _unpack(layout, word):
    out = {}
    word = int(word)
    for name, field in layout:
        width = field.width
        v = (word >> field.offset) & ((1 << width) - 1)
        if field.shape.signed and v >> (width - 1):
            v -= 1 << width
        out[name] = v
    return out


def kv_cache_from_params(params, *, ring=False, t_q=None, with_score=True):
    """:class:`SpikeKvCache` sized by an ``HwParams``-like object.

    Uses the attributes ``heads``, ``head_dim``, ``t_kv``, ``kv_depth`` (depth per head) and,
    when present, ``read_register``, ``bram_rows``, ``kv_sign_magnitude`` and
    ``alternating_ports``.
    """
    return SpikeKvCache(heads=params.heads, head_dim=params.head_dim, t_kv=params.t_kv,
                        depth=params.kv_depth, t_q=t_q, ring=ring, with_score=with_score,
                        read_register=getattr(params, "read_register", False),
                        bram_rows=getattr(params, "bram_rows", 0),
                        sign_magnitude=getattr(params, "kv_sign_magnitude", False),
                        alternating_ports=getattr(params, "alternating_ports", False))
