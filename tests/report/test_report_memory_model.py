"""Memory model: presets, cited per-bit figures and the DRAM floor arithmetic."""

import pytest

from spikemllm.sw import memory_model as mm


def test_presets_bandwidth_from_pin_rate_and_width():
    # LPDDR5-6400 x 128 pins and one HBM3 stack at 6.4 Gb/s x 1024 pins
    assert mm.dram("lpddr5").bandwidth_gbs == pytest.approx(102.4)
    assert mm.dram("hbm3").bandwidth_gbs == pytest.approx(819.2)


@pytest.mark.parametrize("name", sorted(mm.DRAM))
def test_dram_energy_within_cited_range_and_sourced(name):
    d = mm.dram(name)
    lo, hi = d.pj_per_bit_range
    assert lo <= d.pj_per_bit <= hi
    assert "cited" in d.source and d.as_dict()["provenance"] == "cited estimate"


def test_unknown_memory_is_a_clear_error():
    with pytest.raises(ValueError, match="lpddr5"):
        mm.dram("ddr3")


def test_sram_per_bit_figures_from_the_openram_macro():
    s = mm.sram("sky130")
    # OpenRAM liberty clock-pin power: mean of the (1, 0) cycles in mW x the 6.875 ns period,
    # per 32-bit port-cycle; LEF size for 256 x 32 bits
    assert s.read_pj_per_bit == pytest.approx((2.843456 + 2.581878) / 2 * 6.875 / 32)
    assert s.write_pj_per_bit == pytest.approx((2.226912 + 2.371604) / 2 * 6.875 / 32)
    assert s.idle_pj_per_bit == pytest.approx((1.071456 + 1.008020) / 2 * 6.875 / 32)
    assert s.area_um2_per_bit == pytest.approx(493.38 * 400.22 / 8192)
    assert 24.0 < s.area_um2_per_bit < 24.2
    assert "6.875" in s.source and s.as_dict()["provenance"] == "cited"


def test_energy_helpers():
    hbm = mm.dram("hbm3")
    assert mm.dram_energy_j(1e12, hbm) == pytest.approx(3.9)
    s = mm.sram("sky130")
    assert mm.sram_energy_j(32, 0, s) == pytest.approx(18.649586 * 1e-12)  # one 32-bit read


def test_floor_is_params_times_bits_times_pj():
    # Qwen2-7B linear weights (incl. LM head) = 14,140,571,648 FP16 bytes / 2 (reference JSON)
    params = 14_140_571_648 // 2
    assert mm.weight_floor_j(params, 4, 4.5) == pytest.approx(params * 4 * 4.5e-12)
    assert mm.weight_floor_j(params, 4, 4.5) == pytest.approx(0.12726514, rel=1e-6)
    assert mm.weight_floor_j(1_000_000_000, 4, 3.9) == pytest.approx(0.0156)
    with pytest.raises(ValueError):
        mm.weight_floor_j(10, 0, 4.5)
