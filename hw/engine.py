"""SpikeEngine: the accelerator top (PE array -> TC-LIF firing), registers and counters."""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .firing import TcLifFiring
from .params import HwParams
from .pe_array import TernaryAccumulatorArray
from .split_accumulator import split_counter
from .streams import acc_vector_layout, event_layout, weight_write_layout

__all__ = ["SpikeEngine", "Register", "REGISTERS", "REG", "ENGINE_ID", "CFG_ADDR_BITS",
           "CFG_DATA_BITS", "COUNTER_BITS", "K_COUNT_BASE", "V_COUNT_BASE", "kv_cache_available"]

ENGINE_ID = 0x53504B45  # "SPKE"
CFG_ADDR_BITS = 8
CFG_DATA_BITS = 32
COUNTER_BITS = 32
#: the asic style's counters keep their low bits in a register of their own
COUNTER_LOW_BITS = 4


@dataclass(frozen=True)
class Register:
    """One 32-bit word of the register map (word address)."""
    addr: int
    name: str
    access: str  # "RO", "RW", "W1C" (read, write 1 to clear), "WO" (reads 0)
    doc: str


#: The register map; docs/architecture.md carries the same table.
REGISTERS = (
    Register(0x00, "ID", "RO", f"constant {ENGINE_ID:#010x} ('SPKE')"),
    Register(0x01, "HW_LANES", "RO", "LANES"),
    Register(0x02, "HW_W_BITS", "RO", "W_BITS"),
    Register(0x03, "HW_T_MAX", "RO", "T_MAX"),
    Register(0x04, "HW_IN_MAX", "RO", "IN_MAX"),
    Register(0x05, "HW_ACC_BITS", "RO", "ACC_BITS"),
    Register(0x06, "HW_FRAC_BITS", "RO", "F, fraction bits of THETA"),
    Register(0x07, "HW_THETA_BITS", "RO", "width of THETA"),
    Register(0x08, "CTRL", "RW", "[0] horner (reset 1: tc-lif doubling; 0: ternary/rate sum), "
             "[1] acc_tap (reset 0: o_acc mirrors the PE array's vectors), "
             "[2] modality_override (reset 0), [3] modality (used for every event when [2] is set)"),
    Register(0x09, "THETA", "RW", "firing step, fixed point with F fraction bits, "
             "1..2**THETA_BITS-1 (reset 2**F = 1.0); other values are refused (cfg_error)"),
    Register(0x0A, "T_TEXT", "RW", "T for modality 0, 1..T_MAX (reset min(4, T_MAX)); others refused"),
    Register(0x0B, "T_VISION", "RW", "T for modality 1, 1..T_MAX (reset min(3, T_MAX)); others refused"),
    Register(0x0C, "IN_FEATURES", "RW", "input features in use, 1..IN_MAX (reset IN_MAX); a "
             "non-empty event with index >= IN_FEATURES sets index_error (it is still processed)"),
    Register(0x0D, "STATUS", "W1C", "[0] busy (RO: layer datapath, not the KV caches), [1] cfg_error (sticky), [2] index_error (sticky), "
             "[3] kv_error (RO: K or V cache error, cleared by KV_CLEAR); write 1 to bit 1 or 2 "
             "to clear it"),
    Register(0x0E, "COUNTER_CLEAR", "WO", "write [0] = 1: zero all performance counters"),
    Register(0x10, "CYCLES_BUSY", "RO", "cycles with work in the engine (input offered or in flight)"),
    Register(0x11, "EVENTS_IN", "RO", "events accepted on i_stream"),
    Register(0x12, "EVENTS_OUT", "RO", "events sent on o_stream"),
    Register(0x13, "STALL_CYCLES", "RO", "cycles with i_stream.valid and not i_stream.ready"),
    Register(0x14, "TOKENS", "RO", "accumulator vectors (tokens) finished by the PE array"),
    Register(0x15, "OUT_STALL_CYCLES", "RO", "cycles with o_stream.valid and not o_stream.ready"),
    Register(0x18, "KV_CLEAR", "WO", "write [0] = 1: empty the K cache and clear its error; "
             "[1] = 1: the same for the V cache"),
    Register(0x19, "KV_STATUS", "RO", "[0] K error (sticky: append refused), [1] V error, "
             "[2] some K head full, [3] some V head full; 0 without KV caches"),
    Register(0x1A, "KV_HEADS", "RO", "heads held by each KV cache (0: engine built without them)"),
    Register(0x1B, "KV_DEPTH", "RO", "tokens per head (KV_DEPTH)"),
    Register(0x1C, "KV_T", "RO", "bit-planes per cached vector (T_KV)"),
)
#: word address of K_COUNT[h] (tokens stored in K-cache head h, RO), h < heads
K_COUNT_BASE = 0x40
#: word address of V_COUNT[h], h < heads
V_COUNT_BASE = 0x80
REG = {r.name: r.addr for r in REGISTERS}


def _kv_cache_module():
    try:
        from . import kv_cache
    except ImportError:  # the KV-cache block is optional
        return None
    return kv_cache


def kv_cache_available():
    """Whether :mod:`spikemllm.hw.kv_cache` (SpikeKvCache) can be built in this tree."""
    return _kv_cache_module() is not None


#: KV-cache streams exposed at the engine top: (engine member, cache, cache member)
KV_PORTS = (("k_append_stream", "k", "append_stream"), ("k_read_stream", "k", "read_stream"),
            ("k_read_data_stream", "k", "read_data_stream"),
            ("k_query_stream", "k", "query_stream"), ("k_score_stream", "k", "score_stream"),
            ("v_append_stream", "v", "append_stream"), ("v_read_stream", "v", "read_stream"),
            ("v_read_data_stream", "v", "read_data_stream"))


class SpikeEngine(wiring.Component):
    """One spike-driven linear layer with its firing unit: events in, next-layer events out.

    ``i_stream`` events go to a :class:`~spikemllm.hw.pe_array.TernaryAccumulatorArray`;
    each token's accumulator vector goes to a :class:`~spikemllm.hw.firing.TcLifFiring`,
    whose ternary spike events leave on ``o_stream``. When CTRL.acc_tap is set the vector is
    also offered on ``o_acc`` (a fork: the vector leaves when both sides took it); when
    acc_tap is clear ``o_acc.valid`` stays low and the tap never stalls the datapath.

    With ``kv_cache`` (the default, when :mod:`spikemllm.hw.kv_cache` exists) the top also
    holds two :class:`~spikemllm.hw.kv_cache.SpikeKvCache` (K with its Q.K score unit, and V)
    sized by ``heads``, ``head_dim``, ``t_kv``, ``kv_depth``; their streams are exposed as
    ``k_append_stream``, ``k_read_stream``, ``k_read_data_stream``, ``k_query_stream``,
    ``k_score_stream``, ``v_append_stream``, ``v_read_stream``, ``v_read_data_stream`` with
    the cache's own payloads (see docs/kv-cache.md); flags, counts and clear are registers.

    Registers are 32-bit words behind a simple port: in a cycle with ``cfg_we`` high,
    ``cfg_data`` is written to word ``cfg_addr``; ``cfg_rdata`` shows word ``cfg_addr`` of
    the previous cycle (one cycle read latency). See :data:`REGISTERS` for the map. Change
    CTRL only while STATUS.busy is 0; THETA and T are latched per token by the firing unit.
    Counters are 32-bit and saturate.

    Parameters
    ----------
    params : HwParams
    kv_cache : bool
        Include the K and V caches (default True; ignored when hw/kv_cache.py is absent).

    Members
    -------
    i_stream : In(stream.Signature(event_layout(in_max, t_max)))
    w_stream : In(stream.Signature(weight_write_layout(params)))
    o_stream : Out(stream.Signature(event_layout(lanes, t_max)))
    o_acc : Out(stream.Signature(acc_vector_layout(params)))
    cfg_addr : In(8)
    cfg_data : In(32)
    cfg_we : In(1)
    cfg_rdata : Out(32)
    busy : Out(1)
        STATUS.busy.
    error : Out(1)
        Any error bit of STATUS.
    k_append_stream, ... : the KV-cache streams listed above (only with ``kv_cache``).
    """

    #: cycles from accepting a token's last event to its first output event (valid high),
    #: with the firing unit idle: PE array latency + firing latency (``self.latency`` adds
    #: the PE array's read register when ``params.read_register`` is set, and its two
    #: alternating-port cycles with ``params.alternating_ports``)
    LATENCY = TernaryAccumulatorArray.LATENCY + TcLifFiring.LATENCY
    #: input events per clock, sustained while the firing unit keeps up
    THROUGHPUT = 1

    def __init__(self, *, params, kv_cache=True):
        if not isinstance(params, HwParams):
            raise ValueError(f"params must be a HwParams, not {params!r}")
        if not isinstance(kv_cache, bool):
            raise ValueError(f"kv_cache must be True or False, not {kv_cache!r}")
        self.params = params
        self.latency = self.LATENCY + (
            TernaryAccumulatorArray.READ_REGISTER_CYCLES if params.read_register else
            TernaryAccumulatorArray.ALTERNATING_PORTS_CYCLES if params.alternating_ports else 0)
        kv = _kv_cache_module() if kv_cache else None
        # K and V caches; only K is scored against Q, so V is built without a score unit
        self.k_cache = kv.kv_cache_from_params(params) if kv else None
        self.v_cache = kv.kv_cache_from_params(params, with_score=False) if kv else None
        members = {}
        if kv:
            caches = {"k": self.k_cache, "v": self.v_cache}
            for name, which, member in KV_PORTS:
                members[name] = caches[which].signature.members[member]
        super().__init__({
            "i_stream": In(stream.Signature(event_layout(params.in_max, params.t_max))),
            "w_stream": In(stream.Signature(weight_write_layout(params))),
            "o_stream": Out(stream.Signature(event_layout(params.lanes, params.t_max))),
            "o_acc": Out(stream.Signature(acc_vector_layout(params))),
            "cfg_addr": In(CFG_ADDR_BITS),
            "cfg_data": In(CFG_DATA_BITS),
            "cfg_we": In(1),
            "cfg_rdata": Out(CFG_DATA_BITS),
            "busy": Out(1),
            "error": Out(1),
        } | members)

    @property
    def has_kv_cache(self):
        return self.k_cache is not None

    def reset_values(self):
        """Register reset values (name -> int)."""
        p = self.params
        return {"CTRL": 1, "THETA": 1 << p.frac_bits, "T_TEXT": min(4, p.t_max),
                "T_VISION": min(3, p.t_max), "IN_FEATURES": p.in_max}

    def elaborate(self, platform):
        p = self.params
        m = Module()
        m.submodules.pe = pe = TernaryAccumulatorArray(params=p)
        m.submodules.firing = fu = TcLifFiring(params=p)
        init = self.reset_values()

        # ---- configuration registers ---------------------------------------------------
        horner = Signal(init=1)
        acc_tap = Signal()
        mod_override = Signal()
        mod_value = Signal()
        theta = Signal(p.theta_bits, init=init["THETA"])
        t_text = Signal(p.tcount_bits, init=init["T_TEXT"])
        t_vision = Signal(p.tcount_bits, init=init["T_VISION"])
        in_features = Signal(p.index_bits + 1, init=init["IN_FEATURES"])
        cfg_error = Signal()
        index_error = Signal()

        # ---- performance counters -----------------------------------------------------
        counter_clear = Signal()

        # ---- data path ----------------------------------------------------------------
        wiring.connect(m, wiring.flipped(self.w_stream), pe.w_stream)
        m.d.comb += [
            pe.i_stream.valid.eq(self.i_stream.valid),
            pe.i_stream.payload.eq(self.i_stream.payload),
            self.i_stream.ready.eq(pe.i_stream.ready),
            pe.horner.eq(horner),
            fu.theta.eq(theta),
            fu.t_text.eq(t_text),
            fu.t_vision.eq(t_vision),
        ]
        with m.If(mod_override):
            m.d.comb += pe.i_stream.payload.modality.eq(mod_value)
        wiring.connect(m, fu.o_stream, wiring.flipped(self.o_stream))

        # Fork of the PE array's vectors to the firing unit and (with acc_tap) to o_acc;
        # each side's "taken" flag keeps valid independent of ready.
        taken_fu = Signal()
        taken_acc = Signal()
        fu_ok = taken_fu | fu.i_stream.ready
        acc_ok = ~acc_tap | taken_acc | self.o_acc.ready
        m.d.comb += [
            fu.i_stream.valid.eq(pe.o_stream.valid & ~taken_fu),
            fu.i_stream.payload.eq(pe.o_stream.payload),
            self.o_acc.valid.eq(pe.o_stream.valid & acc_tap & ~taken_acc),
            self.o_acc.payload.eq(pe.o_stream.payload),
            pe.o_stream.ready.eq(fu_ok & acc_ok),
        ]
        with m.If(pe.o_stream.valid):
            with m.If(pe.o_stream.ready):
                m.d.sync += [taken_fu.eq(0), taken_acc.eq(0)]
            with m.Else():
                with m.If(fu.i_stream.valid & fu.i_stream.ready):
                    m.d.sync += taken_fu.eq(1)
                with m.If(self.o_acc.valid & self.o_acc.ready):
                    m.d.sync += taken_acc.eq(1)

        accept_in = self.i_stream.valid & self.i_stream.ready
        ev = self.i_stream.payload
        with m.If(accept_in & ~ev.empty & (ev.index >= in_features)):
            m.d.sync += index_error.eq(1)

        # ---- KV caches --------------------------------------------------------------
        kv_clear = Signal(2)
        kv_error = Signal()
        kv_status = Signal(4)
        kv_counts = {}
        if self.has_kv_cache:
            m.submodules.k_cache = kc = self.k_cache
            m.submodules.v_cache = vc = self.v_cache
            caches = {"k": kc, "v": vc}
            for name, which, member in KV_PORTS:
                port = getattr(self, name)
                inner = getattr(caches[which], member)
                if member in ("read_data_stream", "score_stream"):
                    wiring.connect(m, inner, wiring.flipped(port))
                else:
                    wiring.connect(m, wiring.flipped(port), inner)
            m.d.comb += [
                kc.clear.eq(kv_clear[0]),
                vc.clear.eq(kv_clear[1]),
                kv_error.eq(kc.error | vc.error),
                kv_status.eq(kc.error | (vc.error << 1) | (kc.full.any() << 2)
                             | (vc.full.any() << 3)),
            ]
            for h in range(p.heads):
                kv_counts[K_COUNT_BASE + h] = kc.count[h]
                kv_counts[V_COUNT_BASE + h] = vc.count[h]

        busy = Signal()
        m.d.comb += [
            busy.eq(self.i_stream.valid | pe.busy | fu.busy | self.o_acc.valid),
            self.busy.eq(busy),
            self.error.eq(cfg_error | index_error | kv_error),
        ]

        # asic style: busy counters' upper bits behind a clock gate (split_counter)
        counter_low_bits = COUNTER_BITS if p.read_register else COUNTER_LOW_BITS
        counters = {
            name: split_counter(m, name=name.lower(), bits=COUNTER_BITS,
                                low_bits=counter_low_bits, inc=inc, clear=counter_clear)
            for name, inc in (
                ("CYCLES_BUSY", busy),
                ("EVENTS_IN", accept_in),
                ("EVENTS_OUT", self.o_stream.valid & self.o_stream.ready),
                ("STALL_CYCLES", self.i_stream.valid & ~self.i_stream.ready),
                ("TOKENS", pe.o_stream.valid & pe.o_stream.ready),
                ("OUT_STALL_CYCLES", self.o_stream.valid & ~self.o_stream.ready))}

        # ---- register port ------------------------------------------------------------
        d = self.cfg_data
        m.d.comb += counter_clear.eq(0)
        with m.If(self.cfg_we):
            with m.Switch(self.cfg_addr):
                with m.Case(REG["CTRL"]):
                    m.d.sync += [horner.eq(d[0]), acc_tap.eq(d[1]), mod_override.eq(d[2]),
                                 mod_value.eq(d[3])]
                with m.Case(REG["THETA"]):
                    with m.If((d == 0) | (d >> p.theta_bits != 0)):
                        m.d.sync += cfg_error.eq(1)
                    with m.Else():
                        m.d.sync += theta.eq(d)
                for name, reg in (("T_TEXT", t_text), ("T_VISION", t_vision)):
                    with m.Case(REG[name]):
                        with m.If((d == 0) | (d > p.t_max)):
                            m.d.sync += cfg_error.eq(1)
                        with m.Else():
                            m.d.sync += reg.eq(d)
                with m.Case(REG["IN_FEATURES"]):
                    with m.If((d == 0) | (d > p.in_max)):
                        m.d.sync += cfg_error.eq(1)
                    with m.Else():
                        m.d.sync += in_features.eq(d)
                with m.Case(REG["STATUS"]):
                    with m.If(d[1]):
                        m.d.sync += cfg_error.eq(0)
                    with m.If(d[2]):
                        m.d.sync += index_error.eq(0)
                with m.Case(REG["COUNTER_CLEAR"]):
                    m.d.comb += counter_clear.eq(d[0])
                with m.Case(REG["KV_CLEAR"]):
                    m.d.comb += kv_clear.eq(d[:2])
                with m.Default():  # read-only or unmapped word
                    m.d.sync += cfg_error.eq(1)

        read_values = {
            "ID": ENGINE_ID, "HW_LANES": p.lanes, "HW_W_BITS": p.w_bits, "HW_T_MAX": p.t_max,
            "HW_IN_MAX": p.in_max, "HW_ACC_BITS": p.acc_bits, "HW_FRAC_BITS": p.frac_bits,
            "HW_THETA_BITS": p.theta_bits,
            "CTRL": horner | (acc_tap << 1) | (mod_override << 2) | (mod_value << 3),
            "THETA": theta, "T_TEXT": t_text, "T_VISION": t_vision, "IN_FEATURES": in_features,
            "STATUS": busy | (cfg_error << 1) | (index_error << 2) | (kv_error << 3),
            "COUNTER_CLEAR": 0,
            **counters,
            "KV_CLEAR": 0,
            "KV_STATUS": kv_status,
            "KV_HEADS": p.heads if self.has_kv_cache else 0,
            "KV_DEPTH": p.kv_depth,
            "KV_T": p.t_kv,
        }
        read_words = {REG[name]: value for name, value in read_values.items()} | kv_counts
        with m.Switch(self.cfg_addr):
            for addr, value in read_words.items():
                with m.Case(addr):
                    m.d.sync += self.cfg_rdata.eq(value)
            with m.Default():
                m.d.sync += self.cfg_rdata.eq(0)
        return m
