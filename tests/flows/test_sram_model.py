"""The per-bit SRAM model reproduces its cited OpenRAM sky130 macro figures and scales linearly."""

import pytest

from spikemllm.hw.sram_model import (SKY130_OPENRAM, SramMacro, sram_area_um2, sram_energy_pj,
                                     sram_power_mw)

# The cited macro: sky130_sram_1kbyte_1rw1r_32x256_8 (one rw port used for writes, one r port).
MACRO = SramMacro(name="ref", depth=256, width=32, read_ports=1, write_ports=1)
# Its liberty clock-pin figures (OpenRAM: average mW of a cycle) x its 6.875 ns period, in pJ
READ, WRITE, IDLE = ((a + b) / 2 * 6.875 for a, b in
                     ((2.843456, 2.581878), (2.226912, 2.371604), (1.071456, 1.008020)))


def test_area_reproduces_the_macro_lef_size():
    assert sram_area_um2(MACRO) == pytest.approx(493.38 * 400.22)
    assert SKY130_OPENRAM.area_um2_per_bit == pytest.approx(24.10, abs=0.01)


def test_read_and_write_energy_reproduce_the_liberty():
    # One 32-bit read on port 1 with port 0 busy writing: both at their full liberty energy.
    assert READ == pytest.approx(18.6496, rel=1e-5)
    # Each figure is the whole macro's cycle: a read with the write port idle is READ, a cycle
    # with no access IDLE, and a read and a write in one cycle add their excess over idle.
    assert sram_energy_pj(MACRO, reads=1, writes=0, cycles=1) == pytest.approx(READ)
    assert sram_energy_pj(MACRO, reads=0, writes=1, cycles=1) == pytest.approx(WRITE)
    assert sram_energy_pj(MACRO, reads=0, writes=0, cycles=1) == pytest.approx(IDLE)
    assert sram_energy_pj(MACRO, reads=1, writes=1, cycles=1) == pytest.approx(READ + WRITE - IDLE)
    # 10 cycles with 4 reads: 4 read cycles and 6 idle ones
    assert sram_energy_pj(MACRO, reads=4, writes=0, cycles=10) == pytest.approx(4 * READ + 6 * IDLE)


def test_leakage_and_units():
    p = sram_power_mw(MACRO, f_mhz=100.0, read_rate=1.0)
    assert p["leakage"] == pytest.approx(0.0009117994)  # the liberty's cell_leakage_power, mW
    # 18.65 pJ per cycle at 100 MHz = 1.865 mW
    assert p["dynamic"] == pytest.approx(READ * 0.1)
    assert p["total"] == pytest.approx(p["dynamic"] + p["leakage"])


def test_scaling_is_linear_in_bits_and_width():
    big = SramMacro(name="w", depth=4096, width=128)
    assert sram_area_um2(big) == pytest.approx(sram_area_um2(MACRO) * 4096 * 128 / (256 * 32))
    # Access energy follows the word width, not the depth.
    deep = SramMacro(name="d", depth=4096, width=32)
    assert sram_energy_pj(deep, reads=1, writes=0, cycles=1) == pytest.approx(
        sram_energy_pj(MACRO, reads=1, writes=0, cycles=1))
    assert sram_energy_pj(big, reads=1, writes=0, cycles=1) == pytest.approx(
        4 * sram_energy_pj(MACRO, reads=1, writes=0, cycles=1))


def test_a_clock_gated_macro_pays_idle_energy_only_in_no_cycle():
    # ungated, an idle macro pays its idle energy in every cycle; gated, nothing
    assert sram_power_mw(MACRO, f_mhz=100.0, read_rate=0.0)["dynamic"] == pytest.approx(IDLE * 0.1)
    off = sram_power_mw(MACRO, f_mhz=100.0, read_rate=0.0, clock_gated=True)
    assert off["dynamic"] == 0.0 and off["clocked_per_cycle"] == 0.0
    # gated, a read in 3 cycles of 10 and a write in 1 of 10: clocked in 4, each an access
    g = sram_power_mw(MACRO, f_mhz=100.0, read_rate=0.3, write_rate=0.1, clock_gated=True)
    assert g["clocked_per_cycle"] == pytest.approx(0.4)
    assert g["dynamic"] == pytest.approx((0.3 * READ + 0.1 * WRITE) * 0.1)
    # a macro accessed in every cycle gains nothing
    assert sram_power_mw(MACRO, f_mhz=100.0, read_rate=1.0, clock_gated=True)["dynamic"] == (
        pytest.approx(sram_power_mw(MACRO, f_mhz=100.0, read_rate=1.0)["dynamic"]))


def test_power_grows_with_read_rate():
    lo = sram_power_mw(MACRO, f_mhz=200.0, read_rate=0.1)["dynamic"]
    hi = sram_power_mw(MACRO, f_mhz=200.0, read_rate=0.9)["dynamic"]
    assert hi > lo > 0


@pytest.mark.parametrize("kw, match", [
    (dict(f_mhz=0.0, read_rate=1.0), "f_mhz"), (dict(f_mhz=100.0, read_rate=1.5), "read_rate"),
    (dict(f_mhz=100.0, read_rate=0.5, write_rate=-0.1), "write_rate"),
])
def test_bad_rates(kw, match):
    with pytest.raises(ValueError, match=match):
        sram_power_mw(MACRO, **kw)


@pytest.mark.parametrize("kw, field", [(dict(depth=0), "depth"), (dict(width=1.5), "width"),
                                       (dict(read_ports=-1), "read_ports")])
def test_bad_macro(kw, field):
    args = dict(name="m", depth=16, width=8)
    args.update(kw)
    with pytest.raises(ValueError, match=field):
        SramMacro(**args)


def test_source_is_cited():
    assert "sky130_sram_1kbyte_1rw1r_32x256_8" in SKY130_OPENRAM.source
    assert "stimat" in SKY130_OPENRAM.source  # says the figures are estimates
