"""Per-bit SRAM area and access-energy model for ASIC estimates (the memories are never
synthesised into flip-flops; ``spikemllm synth`` blackboxes them and adds these figures).

The figures are ESTIMATES extrapolated linearly from one published sky130 OpenRAM macro:

``sky130_sram_1kbyte_1rw1r_32x256_8`` (32-bit words x 256, one read/write port and one
read port), generated with OpenRAM and published in https://github.com/VLSIDA/sky130_sram_macros
(the macros that open_pdks ships as ``sky130_sram_macros``):

- area: LEF ``sky130_sram_1kbyte_1rw1r_32x256_8.lef`` (commit 0178860d), ``SIZE 493.38 BY
  400.22`` um = 197,460 um^2 for 8,192 bits -> 24.10 um^2/bit (array plus periphery);
- energy: liberty ``sky130_sram_1kbyte_1rw1r_32x256_8_TT_1p8V_25C.lib`` (commit 261a97b2,
  TT, 1.8 V, 25 C). OpenRAM writes the *average power in mW* of one clock cycle at the
  characterisation period into the clock pin's ``rise_power`` (a cycle reading or writing 1)
  and ``fall_power`` (reading or writing 0), not an energy per edge as Liberty defines it:
  its characteriser measures ``.meas tran ... avg`` of V x I over the cycle and scales it by
  1e3 (OpenRAM ``compiler/characterizer/delay.py``, ``power_measure`` "average power between
  two time points"; ``lib.py`` ``add_clk_control_power``), the cycle being the minimum period
  (``delay.analyze`` step 4), and its maintainer: "the power is in milliwatts" (OpenRAM issue
  #118). One access therefore costs mean(rise, fall) mW x ``minimum_period`` 6.875 ns:

  - read on port 1, ``clk1`` when ``!csb1``: mean(2.843456, 2.581878) = 2.712667 mW ->
    18.65 pJ per 32-bit read -> 0.5828 pJ/bit;
  - write on port 0, ``clk0`` when ``!csb0 & !web0``: mean(2.226912, 2.371604) mW -> 15.81 pJ
    per 32-bit write -> 0.4940 pJ/bit;
  - no access, ``clk1`` when ``csb1``: mean(1.071456, 1.008020) mW -> 7.148 pJ per cycle ->
    0.2234 pJ per word bit per cycle (the macro clock is not gated). OpenRAM measures it with
    every port deselected and clocked, and each access figure with the other port deselected
    and clocked (``simulation.py``: ``add_noop_clock_one_port`` and ``add_read`` put a noop on
    every other port), so idle is charged once per macro-cycle, not per port;
  - ``cell_leakage_power`` 0.0009117994 mW -> 0.1113 nW/bit;
  - ``minimum_period`` 6.875 ns (145.5 MHz): the macro's own clock limit, and
    ``min_pulse_width`` 3.4375 ns, high and low;
  - read data: ``dout0``/``dout1`` are ``timing_type : falling_edge`` of their port clock,
    ``cell_rise``/``cell_fall`` 2.870..3.382 ns (``dout0``) and 3.024..3.164 ns (``dout1``)
    over the slew and load table: a word read at a rising edge is valid 3.382 ns (the
    table's worst) after the following falling edge, i.e. after half a clock period more.
    ``spikemllm synth`` times the logic behind the memories with dout0's table
    (``SramTech.read_delay_table_ns``, by clock transition and load; OpenSTA looks it up at
    each output's real load, one multiplexer input: about 2.9 ns) for
    ``fmax_mhz_with_sram_macro`` (until 2026-12-06 02:30 UTC with the worst entry, 3.382 ns,
    ``SramTech.read_delay_ns``, for every output); the address,
    data and enable setups are negative (-1.77..-0.25 ns) and are taken as 0.

  (Read as Liberty energies, rise + fall pJ per cycle, the same numbers give 0.1695 pJ/bit
  per read, 3.4x less; the flow used that reading until 2026-11-29.)

Scaling assumptions (stated in docs/synthesis.md): area and leakage scale with the number of
bits; access energy scales with the word width (a W-bit word is W/32 macros side by side);
depth does not change the per-bit energy (only the addressed bank of a deep memory is charged:
the other banks' clocks are taken to be gated). OpenRAM's characterisation is itself a SPICE
estimate, so treat these as order-of-magnitude figures, not sign-off data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["SramTech", "SramMacro", "SKY130_OPENRAM", "sram_area_um2", "sram_power_mw",
           "sram_energy_pj"]


@dataclass(frozen=True)
class SramTech:
    """Per-bit SRAM figures of one technology (see the module docstring for the source)."""

    name: str
    area_um2_per_bit: float
    read_pj_per_bit: float
    write_pj_per_bit: float
    idle_pj_per_bit: float
    leakage_nw_per_bit: float
    min_period_ns: float
    min_pulse_width_ns: float
    read_delay_ns: float
    source: str
    #: the read data's delay from the falling edge and its transition (ns), by the clock's
    #: transition (ns, rows) and the output's load (pF, columns); read_delay_ns is the worst
    read_table_slew_ns: tuple = ()
    read_table_load_pf: tuple = ()
    read_delay_table_ns: tuple = ()
    read_transition_table_ns: tuple = ()

    def to_dict(self):
        return asdict(self)


_MACRO_BITS = 32 * 256
_MACRO_AREA = 493.38 * 400.22
_MACRO_PERIOD_NS = 6.875  # liberty minimum_period: OpenRAM's characterisation period
_MACRO_PULSE_NS = 3.4375  # liberty min_pulse_width, high and low
_MACRO_READ_NS = 3.382    # dout cell_rise/cell_fall, worst of the table, from the falling edge
_MACRO_WORD = 32


def _access_pj_per_bit(power_1_mw, power_0_mw):
    """OpenRAM liberty clock-pin (rise, fall) = average mW of a cycle accessing 1 / 0."""
    return (power_1_mw + power_0_mw) / 2 * _MACRO_PERIOD_NS / _MACRO_WORD


#: sky130 OpenRAM figures, from sky130_sram_1kbyte_1rw1r_32x256_8 (see module docstring).
SKY130_OPENRAM = SramTech(
    name="sky130 OpenRAM (sky130_sram_1kbyte_1rw1r_32x256_8, TT 1.8 V 25 C)",
    area_um2_per_bit=_MACRO_AREA / _MACRO_BITS,
    read_pj_per_bit=_access_pj_per_bit(2.843456, 2.581878),
    write_pj_per_bit=_access_pj_per_bit(2.226912, 2.371604),
    idle_pj_per_bit=_access_pj_per_bit(1.071456, 1.008020),
    leakage_nw_per_bit=0.0009117994 * 1e6 / _MACRO_BITS,
    min_period_ns=_MACRO_PERIOD_NS,
    min_pulse_width_ns=_MACRO_PULSE_NS,
    read_delay_ns=_MACRO_READ_NS,
    # dout0's cell_rise (= cell_fall) and rise_transition tables; dout1's are faster
    read_table_slew_ns=(0.00125, 0.005, 0.04),
    read_table_load_pf=(0.0017225, 0.00689, 0.02756),
    read_delay_table_ns=((2.87, 3.287, 3.375), (2.87, 3.287, 3.375), (2.877, 3.294, 3.382)),
    read_transition_table_ns=((0.056, 0.112, 0.345), (0.055, 0.112, 0.345),
                              (0.055, 0.112, 0.345)),
    source="VLSIDA/sky130_sram_macros sky130_sram_1kbyte_1rw1r_32x256_8: LEF SIZE 493.38 x "
           "400.22 um (commit 0178860d); TT_1p8V_25C liberty clk internal_power (OpenRAM's "
           "average mW per cycle, x minimum_period 6.875 ns), cell_leakage_power, "
           "minimum_period, min_pulse_width and the dout falling_edge delays "
           "(commit 261a97b2). Estimates, linear per-bit extrapolation.",
)


@dataclass(frozen=True)
class SramMacro:
    """One memory of the design: ``depth`` words of ``width`` bits with its port counts."""

    name: str
    depth: int
    width: int
    read_ports: int = 1
    write_ports: int = 1

    def __post_init__(self):
        for field in ("depth", "width"):
            v = getattr(self, field)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"SramMacro.{field} must be an int >= 1, not {v!r}")
        for field in ("read_ports", "write_ports"):
            v = getattr(self, field)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"SramMacro.{field} must be an int >= 0, not {v!r}")

    @property
    def bits(self):
        return self.depth * self.width


def _rate(name, value):
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in 0..1 (accesses per port per cycle), "
                         f"not {value!r}")
    return float(value)


def sram_area_um2(mem, tech=SKY130_OPENRAM):
    """Area of ``mem`` in um^2 (bits x per-bit area, periphery included via the macro)."""
    return mem.bits * tech.area_um2_per_bit


def sram_energy_pj(mem, *, reads, writes, cycles, tech=SKY130_OPENRAM):
    """Dynamic energy (pJ) of ``reads`` word reads and ``writes`` word writes over ``cycles``.

    The macro's figures are whole-macro energies per cycle: OpenRAM clocks every port in every
    cycle and deselects the ports it does not exercise, so its idle figure is the whole macro
    with no access, and an access figure already holds the other ports' idle clocking. A
    clocked cycle costs the idle energy, and each access adds its excess over idle: exact at
    the characterised points, linear between them.
    """
    return mem.width * (cycles * tech.idle_pj_per_bit
                        + reads * (tech.read_pj_per_bit - tech.idle_pj_per_bit)
                        + writes * (tech.write_pj_per_bit - tech.idle_pj_per_bit))


def sram_power_mw(mem, *, f_mhz, read_rate, write_rate=0.0, clock_gated=False,
                  tech=SKY130_OPENRAM):
    """Power (mW) of ``mem`` at ``f_mhz`` with each read port reading ``read_rate`` words per
    cycle and each write port writing ``write_rate`` words per cycle.

    With ``clock_gated`` the macro's clock is gated by its ports' enables (one clock gate in
    front of the macro), so it is clocked only in cycles with an access and pays no idle
    energy otherwise. Those cycles are taken to be ``reads + writes`` (capped at 1), as if no
    two accesses shared a cycle: the smallest saving the gate can give.

    Returns ``{"dynamic": ..., "leakage": ..., "total": ..., "clocked_per_cycle": ...}``
    (power in mW).
    """
    if not isinstance(f_mhz, (int, float)) or f_mhz <= 0:
        raise ValueError(f"f_mhz must be > 0, not {f_mhz!r}")
    read_rate = _rate("read_rate", read_rate)
    write_rate = _rate("write_rate", write_rate)
    reads, writes = read_rate * mem.read_ports, write_rate * mem.write_ports
    clocked = min(1.0, reads + writes) if clock_gated else 1.0
    e_cycle_pj = sram_energy_pj(mem, reads=reads, writes=writes, cycles=clocked, tech=tech)
    dynamic = e_cycle_pj * f_mhz * 1e-3  # pJ * MHz = uW; -> mW
    leakage = mem.bits * tech.leakage_nw_per_bit * 1e-6
    return {"dynamic": dynamic, "leakage": leakage, "total": dynamic + leakage,
            "clocked_per_cycle": clocked}
