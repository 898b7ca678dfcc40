"""The OpenSTA internal-power check and its correction, against Liberty tables read by hand."""

import re
import subprocess

import pytest

from spikemllm.hw.sta_power_check import check_internal_power, correct_power_groups
from spikemllm.hw.synth import internal_power_check, parse_sta_report
from spikemllm.hw.tools import find_tool, resolve_liberty, unpack_liberty

needs_sta = pytest.mark.skipif(find_tool("sta") is None, reason="OpenSTA (sta) absent")


def test_correction_scales_internal_and_recomputes_totals():
    groups = {"sequential": {"internal": 4.0, "switching": 1.0, "leakage": 0.5, "total": 5.5},
              "total": {"internal": 6.0, "switching": 2.0, "leakage": 1.0, "total": 9.0}}
    out = correct_power_groups(groups, 0.5)
    assert out["sequential"] == {"internal": 2.0, "switching": 1.0, "leakage": 0.5, "total": 3.5}
    assert out["total"]["total"] == 6.0
    assert groups["total"]["internal"] == 6.0  # input left alone
    assert correct_power_groups(groups, None) == groups


def test_a_probe_that_cannot_run_leaves_the_power_uncorrected(tmp_path):
    """An `sta` that prints no power table: no correction, and the note says why."""
    r = internal_power_check("true", tmp_path)
    assert r["scale"] is None and "probe failed" in r["note"] and "report_power" in r["note"]
    assert correct_power_groups({"total": {"internal": 2.0, "switching": 1.0, "leakage": 0.0,
                                           "total": 3.0}}, r["scale"])["total"]["total"] == 3.0


@needs_sta
def test_probe_finds_one_factor_for_clock_and_output_pins(tmp_path):
    r = check_internal_power(find_tool("sta"), tmp_path)
    assert r["clock_pin_factor"] == pytest.approx(r["output_pin_factor"], rel=1e-3)
    assert r["scale"] == pytest.approx(1.0 / r["clock_pin_factor"])
    assert (tmp_path / "sta_power_check" / "probe_0.0.log").exists()


def _clk_energy_pj(lib_text, cell):
    """Mean of the CLK pin's rise and fall internal energy (first slew point) of ``cell``."""
    c = lib_text[lib_text.index(f'cell ("{cell}")'):]
    clk = c[c.index('pin ("CLK")'):c.index('pin ("D")')]
    first = [float(re.search(r'values\("([-\d.e]+)', clk[clk.index(k):]).group(1))
             for k in ("rise_power", "fall_power")]
    return sum(first) / 2


@needs_sta
@pytest.mark.skipif(resolve_liberty() is None, reason="needs ../shared/pdk/sky130hd_tt.lib.gz")
def test_corrected_flip_flop_clock_power_matches_the_liberty(tmp_path):
    """A sky130 dfxtp_1 whose D never toggles draws only its clock-pin internal power: the
    corrected figure must be 2 transitions per cycle x the Liberty mean energy."""
    sta = find_tool("sta")
    lib = unpack_liberty(resolve_liberty(), tmp_path)
    (tmp_path / "ff.v").write_text(
        "module ff(input clk, input d, output q);\n"
        "  sky130_fd_sc_hd__dfxtp_1 u (.CLK(clk), .D(d), .Q(q));\nendmodule\n")
    (tmp_path / "ff.tcl").write_text("\n".join([
        f"read_liberty {lib.name}", "read_verilog ff.v", "link_design ff",
        "create_clock -name clk -period 5.0 [get_ports clk]",
        "set_power_activity -input -activity 0.0", "report_power -digits 6", "exit", ""]))
    text = subprocess.run([sta, "-no_splash", "-exit", "ff.tcl"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120).stdout
    groups = parse_sta_report(text)["power_mw"]
    scale = check_internal_power(sta, tmp_path)["scale"]
    internal_mw = correct_power_groups(groups, scale)["total"]["internal"]
    e_pj = _clk_energy_pj(lib.read_text(), "sky130_fd_sc_hd__dfxtp_1")
    expected_mw = 2 * 200e6 * e_pj * 1e-12 * 1e3
    assert internal_mw == pytest.approx(expected_mw, rel=0.02)
