"""A 1R1W memory with registered read data, bank by bank: the FPGA RTL style's memories."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .params import clog2, is_pow2

__all__ = ["RegisteredReadMemory", "check_bank_rows", "check_read_register", "result_stall"]


def check_bank_rows(value, name="bank_rows"):
    """ValueError unless ``value`` is 0 (one bank) or a power of two in 2..2**20."""
    if value != 0 and not (is_pow2(value) and 2 <= value <= 1 << 20):
        raise ValueError(f"{name} must be 0 or a power of two in 2..{1 << 20}, not {value!r}")


def check_read_register(read_register, bram_rows):
    """ValueError unless ``read_register`` is a bool and ``bram_rows`` a valid bank size that
    is 0 without it (the blocks' ``read_register``/``bram_rows`` keyword pair)."""
    if not isinstance(read_register, bool):
        raise ValueError(f"read_register must be True or False, not {read_register!r}")
    check_bank_rows(bram_rows, "bram_rows")
    if bram_rows and not read_register:
        raise ValueError(f"bram_rows must be 0 without read_register, not {bram_rows!r}")


def result_stall(m, *, held, ready, next_last, last):
    """The stall of an fpga-style pipeline that ends in an output register (the PE array's,
    the MAC baseline's), as a flip-flop: the pipeline stops while a ``last`` stands before
    the output register and a result is offered and not taken. It is computed a cycle ahead,
    assuming ``ready`` low next cycle, from ``held`` (a result offered and not taken now),
    ``next_last`` (the stage before holds a last) and ``last`` (the output stage holds a
    last), so its net to the block RAMs' read enables starts at a flip-flop; ``ready``
    reaches only its input. Returns the stall (a Value)."""
    go = Signal(init=1)  # ~stall
    m.d.sync += go.eq(Mux(~go, ready, ~(next_last & (held | last))))
    return ~go


class RegisteredReadMemory(wiring.Component):
    """``depth`` words of ``shape`` with one write port and one registered read port.

    The words are split into banks of ``bank_rows`` rows (one bank when ``bank_rows`` is 0
    or at least ``depth``), each its own ``lib.memory.Memory``. Every bank's read data goes
    to its own register, and the bank multiplexer follows the registers. On an FPGA each
    register can then sit next to its block RAMs, and the RAM's slow clock-to-output (ECP5
    DP16KD: 5.83 ns) drives one short net instead of a multiplexer spread over the chip.

    A read takes two clock edges: ``r_addr`` is read at an edge where ``r_en`` is high (every
    bank reads; the memory holds its output otherwise), and the read registers load at an
    edge where ``r_load`` is high. ``r_data`` then holds the word, from flip-flops, until the
    next load. A word written at the edge that reads its address reads the old word.

    Parameters
    ----------
    shape : shape-castable
        One word (``unsigned(n)`` or a ``data.StructLayout``).
    depth : int
        Words, 1..2**20.
    bank_rows : int
        Rows per bank, 0 (one bank) or a power of two 2..2**20.
    no_rw_check : bool
        The user never reads an address at the edge that writes it (or never uses that
        word). The banks then carry Yosys's ``no_rw_check`` attribute: FPGA block RAMs
        return an undefined word on such a collision, and without the attribute Yosys
        builds read-old-data logic around every bank (ECP5: a write-data register, an
        address compare and a multiplexer in front of each read register). Simulation
        still returns the old word; the tests check the promise instead.

    Members
    -------
    w_addr, w_data, w_en : In
        Write port: ``w_data`` goes to ``w_addr`` at an edge where ``w_en`` is high.
    r_addr, r_en, r_load : In
        Read port: address, read enable, read-register load.
    r_data : Out(shape)
        The registered word.
    """

    #: clock edges from ``r_addr`` (with ``r_en``) to the word on ``r_data`` (with ``r_load``
    #: at the second)
    LATENCY = 2

    def __init__(self, *, shape, depth, bank_rows=0, no_rw_check=False):
        try:
            if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 1 << 20:
                raise ValueError(f"depth must be an integer in 1..{1 << 20}, not {depth!r}")
            check_bank_rows(bank_rows)
            if not isinstance(no_rw_check, bool):
                raise ValueError(f"no_rw_check must be True or False, not {no_rw_check!r}")
        except ValueError:
            self._MustUse__silence = True  # never built: no "created but never used" warning
            raise
        self.shape, self.depth, self.no_rw_check = shape, depth, no_rw_check
        self.bank_rows = depth if bank_rows == 0 or bank_rows >= depth else bank_rows
        self.banks = -(-depth // self.bank_rows)
        super().__init__({
            "w_addr": In(range(depth)), "w_data": In(shape), "w_en": In(1),
            "r_addr": In(range(depth)), "r_en": In(1), "r_load": In(1),
            "r_data": Out(shape),
        })

    def elaborate(self, platform):
        m = Module()
        rows, low = self.bank_rows, clog2(self.bank_rows)
        w_bank, r_bank = self.w_addr[low:], self.r_addr[low:]
        regs = []
        for b in range(self.banks):
            mem = memory.Memory(shape=self.shape, depth=min(rows, self.depth - b * rows),
                                init=[], attrs={"no_rw_check": 1} if self.no_rw_check else None)
            m.submodules[f"bank{b}" if self.banks > 1 else "mem"] = mem
            wp, rp = mem.write_port(), mem.read_port()
            reg = Signal(self.shape, name=f"r_data{b}")
            m.d.comb += [wp.addr.eq(self.w_addr), wp.data.eq(self.w_data), rp.addr.eq(self.r_addr),
                         rp.en.eq(self.r_en)]
            m.d.comb += wp.en.eq(self.w_en & (w_bank == b) if self.banks > 1 else self.w_en)
            with m.If(self.r_load):
                m.d.sync += reg.eq(rp.data)
            regs.append(reg)
        if self.banks == 1:
            m.d.comb += self.r_data.eq(regs[0])
            return m
        read_bank = Signal(range(self.banks))    # bank of the word on the memories' outputs
        data_bank = Signal(range(self.banks))    # bank of the word in the registers
        with m.If(self.r_en):
            m.d.sync += read_bank.eq(r_bank)
        with m.If(self.r_load):
            m.d.sync += data_bank.eq(read_bank)
        with m.Switch(data_bank):
            for b, reg in enumerate(regs):
                with m.Case(b):
                    m.d.comb += self.r_data.eq(reg)
        return m
