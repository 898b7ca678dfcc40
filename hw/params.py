"""Hardware parameters of the accelerator: one frozen dataclass shared by every block.

The RTL generators (:mod:`spikemllm.hw.engine`, :mod:`spikemllm.hw.kv_cache`), the Verilog
export and the synthesis flow all take a :class:`HwParams`; ``params.json`` next to the
exported Verilog is its :meth:`HwParams.to_json`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from spikemllm.sw import numerics as nx

from .alternating_memory import check_alternating_ports

__all__ = ["HwParams", "clog2", "is_pow2"]


def clog2(n):
    """Bits needed to address ``n`` items (at least 1): clog2(1) = 1, clog2(8) = 3, clog2(9) = 4."""
    return max(1, int(n - 1).bit_length())


def is_pow2(n):
    return isinstance(n, int) and n > 0 and not n & (n - 1)


def _int_in(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, not {value!r}")


def _pow2_in(name, value, lo, hi):
    _int_in(name, value, lo, hi)
    if not is_pow2(value):
        raise ValueError(f"{name} must be a power of two in {lo}..{hi}, not {value!r}")


@dataclass(frozen=True)
class HwParams:
    """Generator parameters of the spike accelerator (all blocks).

    Parameters
    ----------
    lanes : int
        Output channels computed in parallel by the PE array (LANES), power of two, 2..1024.
        A weight-memory row holds ``lanes`` weights; the firing unit's output event index has
        ``clog2(lanes)`` bits.
    w_bits : int
        Signed weight width (W_BITS), 2..16. Weights are two's complement in
        ``-2**(w_bits-1) .. 2**(w_bits-1) - 1`` (the quantiser uses the symmetric part).
    t_max : int
        Largest number of timesteps per token (T_MAX), 1..15 (``EventLayout`` limit: tc-lif
        with b-bit spike counts uses T = b - 1 <= 15). The T registers (Tt, Tv) accept 1..t_max.
    in_max : int
        Input features (IN_MAX) = weight-memory depth, power of two, 2..2**20. Every event
        index addresses an existing row, so no out-of-range read exists.
    kv_depth : int
        Tokens the spike KV cache holds per head, power of two, 2..2**16.
    heads : int
        KV heads held by the spike KV cache, 1..64.
    head_dim : int
        Head dimension (bits per KV bit-plane), power of two, 2..1024.
    t_kv : int
        Bit-planes per cached K/V vector, 1..t_max. Default (None) resolves to min(7, t_max):
        K and V are quantised to the 8-bit grid (qmax 127) and kept as tc-lif planes
        (T = bits - 1), the INT8-KV setting; ``t_kv = 3`` is the INT4-KV setting. After
        construction ``t_kv`` is always an int.
    frac_bits : int
        Fraction bits F of the fixed-point firing threshold theta (real step = theta / 2**F),
        0..24. Default 8.
    theta_bits : int
        Width of the theta register, frac_bits+1..32. Default 24: with F = 8 the firing step
        can be 1/256 .. 65535.996.
    read_register : bool
        Register every memory's read data before it is used (default False). It adds one
        cycle of latency to the PE array and the dense MAC baseline, and to the KV caches
        four to reads (their read address is registered too, the word again after the bank
        multiplexer, and the read beats leave through a FIFO) and five to scores; and one word of
        flip-flops per memory. FPGA block RAMs have a slow clock-to-output (ECP5
        DP16KD 5.83 ns without its output register), which otherwise starts every critical
        path; the FPGA synthesis flow turns it on. An ASIC SRAM macro is timed from its own
        output, so the default keeps the shorter pipeline.
    bram_rows : int
        With ``read_register``: rows per read bank of every memory, 0 (one bank) or a power
        of two 2..2**20 (default 0). Each bank's read data is registered on its own and the
        bank multiplexer follows the registers
        (:class:`~spikemllm.hw.registered_memory.RegisteredReadMemory`); no extra cycle. The
        FPGA flow uses 2048, the depth of an ECP5 DP16KD at 9-bit width.
    firing_parts : int
        Parts of the firing unit's per-lane remainder, each with its own adder, 1..8
        (default 5: every sky130 LANES point, gated and ungated, makes 200 MHz with it; see
        docs/synthesis-runs.md). Split, a step is short adders in parallel whose carries are
        added one step later: fast in standard cells (each part more is one pending-carry flip-flop
        per lane and one more part in the sign resolution). An FPGA's carry logic is fast
        over the whole width, and there the pending-carry resolution costs more than it
        saves; the FPGA synthesis flow uses 1 (see :class:`~spikemllm.hw.firing.TcLifFiring`).
    kv_sign_magnitude : bool
        With ``read_register``: the KV caches store each vector as ``t_kv`` magnitude planes
        and one sign word instead of ``t_kv`` positive/negative plane pairs (default False):
        (t_kv + 1) / (2 t_kv) of the bits, 8/14 at t_kv = 7. Every vector ``to_bit_planes``
        makes reads back and scores unchanged (see
        :class:`~spikemllm.hw.kv_cache.SpikeKvCache`). The FPGA flow turns it on: at the
        default sizes it is what lets the engine's memories fit an LFE5U-85F.
    alternating_ports : bool
        Without ``read_register`` (the ASIC style): read every memory (the PE array's and the
        dense MAC baseline's weights, the KV caches' planes) through the SRAM macro's two
        ports in turn, each clocked every other cycle
        (:class:`~spikemllm.hw.alternating_memory.AlternatingPortMemory`). Default (None):
        ``not read_register``, so True in the asic style and False in the fpga style.
        The cited OpenRAM macro allows 145 MHz per port and drives its read data 3.382 ns
        after its clock's falling edge; so read, it no longer limits the clock to about
        70 MHz. Two more cycles of latency in the PE array, the MAC baseline and the KV
        caches' reads and scores; weights and KV planes written every other cycle, and KV
        appends and walks take turns.

    Derived
    -------
    acc_bits : int
        Signed accumulator width. For a valid event stream (each input index at most once
        per step, at most T_MAX steps per token) the Horner accumulator obeys
        ``|acc| <= (2**T_MAX - 1) * IN_MAX * 2**(W_BITS - 1)`` (every step adds at most
        IN_MAX weights of magnitude <= 2**(W_BITS-1), step t weighted by 2**(T-1-t); the
        ternary/rate mode without doubling adds at most T_MAX * IN_MAX such weights, which is
        smaller). ``acc_bits = bound.bit_length() + 1`` holds +-bound, so overflow is
        impossible; intermediate values (partial steps, doubled partial sums) obey the same
        bound.
    t_bits : int
        Width of the event ``t`` field (clog2(t_max)); ``tcount_bits`` (clog2(t_max + 1))
        holds a T value 1..t_max.
    """

    lanes: int = 32
    w_bits: int = 4
    t_max: int = 8
    in_max: int = 4096
    kv_depth: int = 1024
    heads: int = 2
    head_dim: int = 64
    t_kv: int = None  # resolved to min(7, t_max) in __post_init__
    frac_bits: int = 8
    theta_bits: int = 24
    read_register: bool = False
    bram_rows: int = 0
    firing_parts: int = 5
    kv_sign_magnitude: bool = False
    alternating_ports: bool = None  # resolved to not read_register in __post_init__

    def __post_init__(self):
        _pow2_in("lanes", self.lanes, 2, 1024)
        _int_in("w_bits", self.w_bits, nx.BITS_MIN, nx.BITS_MAX)
        _int_in("t_max", self.t_max, 1, nx.BITS_MAX - 1)
        _pow2_in("in_max", self.in_max, 2, 1 << 20)
        _pow2_in("kv_depth", self.kv_depth, 2, 1 << 16)
        _int_in("heads", self.heads, 1, 64)
        _pow2_in("head_dim", self.head_dim, 2, 1024)
        if self.t_kv is None:
            object.__setattr__(self, "t_kv", min(7, self.t_max))
        _int_in("t_kv", self.t_kv, 1, self.t_max)
        _int_in("frac_bits", self.frac_bits, 0, 24)
        _int_in("theta_bits", self.theta_bits, self.frac_bits + 1, 32)
        if not isinstance(self.read_register, bool):
            raise ValueError(f"read_register must be True or False, not {self.read_register!r}")
        if self.bram_rows != 0:
            _pow2_in("bram_rows", self.bram_rows, 2, 1 << 20)
            if not self.read_register:
                raise ValueError(f"bram_rows must be 0 without read_register, not {self.bram_rows!r}")
        _int_in("firing_parts", self.firing_parts, 1, 8)
        if not isinstance(self.kv_sign_magnitude, bool):
            raise ValueError(f"kv_sign_magnitude must be True or False, not "
                             f"{self.kv_sign_magnitude!r}")
        if self.kv_sign_magnitude and not self.read_register:
            raise ValueError("kv_sign_magnitude needs read_register, not read_register=False")
        if self.alternating_ports is None:
            object.__setattr__(self, "alternating_ports", not self.read_register)
        check_alternating_ports(self.alternating_ports, self.read_register)
        if self.acc_bits > 64:
            raise ValueError(f"acc_bits = {self.acc_bits} exceeds 64 (t_max={self.t_max}, "
                             f"in_max={self.in_max}, w_bits={self.w_bits}); lower one of them")

    # ---- derived ---------------------------------------------------------------------------
    @property
    def acc_bound(self):
        """Largest |accumulator| of a valid event stream: (2**T_MAX - 1) * IN_MAX * 2**(W_BITS-1)."""
        return ((1 << self.t_max) - 1) * self.in_max * (1 << (self.w_bits - 1))

    @property
    def acc_bits(self):
        return self.acc_bound.bit_length() + 1

    @property
    def index_bits(self):
        return clog2(self.in_max)

    @property
    def lane_bits(self):
        return clog2(self.lanes)

    @property
    def t_bits(self):
        return clog2(self.t_max)

    @property
    def tcount_bits(self):
        return clog2(self.t_max + 1)

    @property
    def row_bits(self):
        """Width of one weight-memory row: lanes * w_bits."""
        return self.lanes * self.w_bits

    @property
    def w_min(self):
        return -(1 << (self.w_bits - 1))

    @property
    def w_max(self):
        return (1 << (self.w_bits - 1)) - 1

    # ---- serialisation ---------------------------------------------------------------------
    def to_dict(self):
        return asdict(self)

    def to_json(self, derived=True):
        """JSON text; with ``derived`` the derived widths are added under ``"derived"``."""
        d = self.to_dict()
        if derived:
            d["derived"] = {"acc_bits": self.acc_bits, "acc_bound": self.acc_bound,
                            "index_bits": self.index_bits, "lane_bits": self.lane_bits,
                            "t_bits": self.t_bits, "tcount_bits": self.tcount_bits,
                            "row_bits": self.row_bits}
        return json.dumps(d, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names - {"derived"})
        if unknown:
            raise ValueError(f"unknown HwParams field(s) {unknown}; allowed: {sorted(names)}")
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_json(cls, text):
        """Inverse of :meth:`to_json` (the ``derived`` block, if present, is ignored)."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"HwParams JSON is not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise ValueError(f"HwParams JSON must be an object, not {type(d).__name__}")
        return cls.from_dict(d)
