"""Accumulator and counter registers split in two, so that a clock gate can stop their upper
bits."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned

__all__ = ["split_accumulator", "split_counter"]


def split_accumulator(m, *, name, bits, low_bits, operand, load, load_value, double=None):
    """Build ``acc <- Mux(double, s << 1, s)``, ``s = Mux(load, load_value, acc + operand)``,
    as two registers: the low ``low_bits`` bits, which load in every cycle, and the upper
    ``bits - low_bits`` bits, which load only when they change.

    ``acc + operand`` changes the upper bits only when the low bits' add carries out of
    them or, for a negative operand, does not (a borrow); ``load`` and ``double`` change
    them too. The upper register's enable is exactly that, so behind a clock gate
    (``spikemllm synth --clock-gating``) its flip-flops are clocked only in those cycles:
    with small operands a few percent of the adds. The arithmetic is that of one ``bits``-bit
    two's complement register, bit for bit, wrap-around included.

    ``m`` is the :class:`~amaranth.hdl.Module` to add the registers to (``sync`` domain,
    reset to 0). ``low_bits`` is 1..``bits``; ``bits`` gives one register, unsplit.
    ``operand`` and ``load_value`` are signed and must lie in ``-2**low_bits ..
    2**low_bits - 1`` (at most ``low_bits + 1`` bits wide), so that their upper bits are all
    copies of the sign. ``load`` and ``double`` (None: never) are 1-bit.

    Returns the accumulator, a signed ``bits``-bit value (the two registers side by side).
    """
    if not isinstance(bits, int) or bits < 2:
        raise ValueError(f"bits must be an integer of at least 2, not {bits!r}")
    if not isinstance(low_bits, int) or not 1 <= low_bits <= bits:
        raise ValueError(f"low_bits must be an integer in 1..{bits}, not {low_bits!r}")
    for what, v in (("operand", operand), ("load_value", load_value)):
        shape = v.shape()
        if not shape.signed or shape.width > low_bits + 1:
            raise ValueError(f"{what} must be signed and at most {low_bits + 1} bits wide "
                             f"(low_bits + 1), not {shape!r}")
    if double is None:
        double = 0
    if low_bits == bits:  # nothing above the low bits: one register
        acc = Signal(signed(bits), name=name)
        s = Mux(load, load_value, acc + operand)
        m.d.sync += acc.eq(Mux(double, s << 1, s))
        return acc
    lo = Signal(unsigned(low_bits), name=f"{name}_lo")
    hi = Signal(signed(bits - low_bits), name=f"{name}_hi")
    lo_sum = Signal(unsigned(low_bits + 1), name=f"{name}_lo_sum")
    # both sign-extended to low_bits + 1: the low bits, then the sign
    op = Signal(signed(low_bits + 1), name=f"{name}_operand")
    ld = Signal(signed(low_bits + 1), name=f"{name}_load_value")
    m.d.comb += [op.eq(operand), ld.eq(load_value), lo_sum.eq(lo + op[:low_bits])]
    carry, negative = lo_sum[low_bits], op[-1]
    # the upper bits of acc + operand: hi + carry - (1 if the operand is negative)
    hi_sum = Mux(carry == negative, hi, Mux(carry, hi + 1, hi - 1))
    s_lo = Mux(load, ld[:low_bits], lo_sum[:low_bits])
    s_hi = Mux(load, ld[-1].replicate(bits - low_bits), hi_sum)
    m.d.sync += lo.eq(Mux(double, Cat(0, s_lo[:-1]), s_lo))
    with m.If(load | double | (carry != negative)):
        m.d.sync += hi.eq(Mux(double, Cat(s_lo[-1], s_hi[:-1]), s_hi))
    return Cat(lo, hi).as_signed()


def split_counter(m, *, name, bits, low_bits, inc, clear):
    """Build a saturating ``bits``-bit counter: 0 when ``clear``, else ``+1`` when ``inc`` and
    it is below ``2**bits - 1``; as two registers, the low ``low_bits`` bits and the upper
    bits, which load only when the low bits carry.

    Both registers load only in the cycles they change, so behind a clock gate the upper
    bits of a counter that counts in every cycle are clocked at one edge in
    ``2**low_bits``. ``low_bits`` is 1..``bits``; ``bits`` gives one register, unsplit.
    ``m`` is the :class:`~amaranth.hdl.Module` (``sync`` domain, reset to 0); ``inc`` and
    ``clear`` are 1-bit. Returns the count, an unsigned ``bits``-bit value.
    """
    if not isinstance(bits, int) or bits < 1:
        raise ValueError(f"bits must be a positive integer, not {bits!r}")
    if not isinstance(low_bits, int) or not 1 <= low_bits <= bits:
        raise ValueError(f"low_bits must be an integer in 1..{bits}, not {low_bits!r}")
    if low_bits == bits:
        count = lo = Signal(bits, name=name)
    else:
        lo = Signal(low_bits, name=f"{name}_lo")
        hi = Signal(bits - low_bits, name=f"{name}_hi")
        count = Cat(lo, hi)
    with m.If(clear):
        m.d.sync += count.eq(0)
    with m.Elif(inc & (count != (1 << bits) - 1)):
        m.d.sync += lo.eq(lo + 1)
        if low_bits < bits:
            with m.If(lo.all()):
                m.d.sync += hi.eq(hi + 1)
    return count
