"""Parsers of Yosys / OpenSTA / nextpnr output, on text captured from real runs of the flow."""

import json
import re
import subprocess

import pytest

from spikemllm.hw import synth as S
from spikemllm.hw.tools import find_tool

# OpenSTA 2.0.17 (Debian), `report_checks -path_delay max -digits 3` + `report_power -digits 6`
# on the sky130 netlist of pe_array (lanes=4, in_max=64); the middle of the path is cut.
STA_TEXT = """\
Startpoint: s1_sign_sky130_fd_sc_hd__dfxtp_1_Q
            (rising edge-triggered flip-flop clocked by clk)
Endpoint: acc0[13]_sky130_fd_sc_hd__xnor2_1_A_Y_sky130_fd_sc_hd__nor3_1_B_Y_sky130_fd_sc_hd__dfxtp_1_D
          (rising edge-triggered flip-flop clocked by clk)
Path Group: clk
Path Type: max

   Delay     Time   Description
-----------------------------------------------------------
   0.000    0.000   clock clk (rise edge)
   0.000    0.000   clock network delay (ideal)
   0.000    0.000 ^ s1_sign_sky130_fd_sc_hd__dfxtp_1_Q/CLK (sky130_fd_sc_hd__dfxtp_1)
   0.003    3.724 v acc0[13]_sky130_fd_sc_hd__dfxtp_1_D/D (sky130_fd_sc_hd__dfxtp_1)
            3.724   data arrival time

   5.000    5.000   clock clk (rise edge)
   0.000    5.000   clock network delay (ideal)
   0.000    5.000   clock reconvergence pessimism
            5.000 ^ acc0[13]_sky130_fd_sc_hd__dfxtp_1_D/CLK (sky130_fd_sc_hd__dfxtp_1)
  -0.125    4.875   library setup time
            4.875   data required time
-----------------------------------------------------------
            4.875   data required time
           -3.724   data arrival time
-----------------------------------------------------------
            1.151   slack (MET)


Group                    Internal    Switching      Leakage        Total
                            Power        Power        Power        Power
------------------------------------------------------------------------
Sequential           2.223730e-03 8.292907e-05 1.021075e-09 2.306660e-03  62.8%
Combinational        9.003289e-04 4.687764e-04 1.496648e-09 1.369107e-03  37.2%
Macro                0.000000e+00 0.000000e+00 0.000000e+00 0.000000e+00   0.0%
Pad                  0.000000e+00 0.000000e+00 0.000000e+00 0.000000e+00   0.0%
------------------------------------------------------------------------
Total                3.124062e-03 5.517054e-04 2.517717e-09 3.675770e-03 100.0%
                            85.0%        15.0%         0.0%
"""

STA_VIOLATED = """\
Startpoint: _09799_ (rising edge-triggered flip-flop clocked by clk)
Endpoint: _09746_ (rising edge-triggered flip-flop clocked by clk)
Path Group: clk
Path Type: max
            6.973   data arrival time
            4.920   data required time
           -6.973   data arrival time
-----------------------------------------------------------
           -2.053   slack (VIOLATED)
"""

# nextpnr-ice40 0.11.1 log lines (tab after "Info:" as printed).
NEXTPNR_LOG = """\
Info: Device utilisation:
Info: \t         ICESTORM_LC:     346/   5280     6%
Info: \t        ICESTORM_RAM:       1/     30     3%
Info: \t               SB_IO:       4/     39    10%
Info: Max frequency for clock 'clk$SB_IO_IN_$glb_clk': 46.71 MHz (PASS at 24.00 MHz)
Info: Routing..
Info: Max frequency for clock 'clk$SB_IO_IN_$glb_clk': 41.75 MHz (PASS at 24.00 MHz)
"""

NEXTPNR_REPORT = json.dumps({
    "fmax": {"clk$SB_IO_IN_$glb_clk": {"achieved": 41.75016784667969, "constraint": 24}},
    "utilization": {"ICESTORM_DSP": {"available": 8, "used": 0},
                    "ICESTORM_LC": {"available": 5280, "used": 346},
                    "ICESTORM_RAM": {"available": 30, "used": 1}},
})

# Yosys 0.70 `stat -json -liberty` (trimmed to three cell types).
YOSYS_STAT = json.dumps({
    "creator": "Yosys 0.70",
    "modules": {"\\mac_baseline": {
        "num_cells": 1107, "area": 9102.48, "sequential_area": 3323.1872,
        "num_cells_by_type": {"sky130_fd_sc_hd__dfxtp_1": 166, "sky130_fd_sc_hd__nor2_1": 237,
                              "spk_sram_q": 16}}},
})
YOSYS_STAT_CMOS = json.dumps({
    "modules": {"\\mac_baseline": {"num_cells": 931, "num_cells_by_type": {"$_AND_": 176,
                                                                        "$mem_v2": 1},
                                   "estimated_num_transistors": "5908+"}}})

# Yosys `write_json -selected` of one $mem_v2 (parameters as Yosys writes them).
YOSYS_MEMS = json.dumps({"modules": {"pe_array": {"cells": {
    "weights": {"type": "$mem_v2", "parameters": {
        "ABITS": "00000000000000000000000000000110", "MEMID": "\\weights",
        "RD_CLK_ENABLE": "1", "RD_PORTS": "00000000000000000000000000000001",
        "SIZE": "00000000000000000000000001000000", "WIDTH": "00000000000000000000000000010000",
        "WR_PORTS": "00000000000000000000000000000001"}},
    "other": {"type": "$dff", "parameters": {}}}}}})


def test_sta_timing_and_power():
    r = S.parse_sta_report(STA_TEXT)
    assert r["slack_ns"] == pytest.approx(1.151) and r["met"] is True
    assert r["arrival_ns"] == pytest.approx(3.724)
    assert r["required_ns"] == pytest.approx(4.875)
    assert r["startpoint_signal"] == "s1_sign"
    assert r["endpoint_signal"] == "acc0[13]"
    total = r["power_mw"]["total"]
    assert total["internal"] == pytest.approx(3.124062)  # W -> mW
    assert total["switching"] == pytest.approx(0.5517054)
    assert total["leakage"] == pytest.approx(2.517717e-6)
    assert total["total"] == pytest.approx(3.675770)
    assert r["power_mw"]["sequential"]["internal"] == pytest.approx(2.223730)


def test_sta_violated_slack_is_negative():
    r = S.parse_sta_report(STA_VIOLATED)
    assert r["slack_ns"] == pytest.approx(-2.053) and r["met"] is False
    assert r["startpoint"].startswith("_09799_")
    assert "power_mw" not in r


def test_sta_garbage_gives_nothing():
    assert S.parse_sta_report("Error: cannot read liberty\n") == {}


# `report_checks` at the period the macro-timing bisection found, on pe_array's sky130
# netlist with sram_macro_stub.liberty (lanes=32; the paths are cut), and a second path
# group's worst path (a generated port clock's), with more slack.
STA_MACRO_TEXT = """\
spk_macro_min_period 13.535025076904297
Startpoint: weights.rd[0].bank[3].data[4].q
            (falling edge-triggered flip-flop clocked by clk)
Endpoint: o_stream__payload_sky130_fd_sc_hd__dfxtp_1_Q_744
          (rising edge-triggered flip-flop clocked by clk)
Path Group: clk
Path Type: max
-----------------------------------------------------------
            0.000   slack (MET)

Startpoint: weights.phase_sky130_fd_sc_hd__nor2_1_B_Y_sky130_fd_sc_hd__dfxtp_1_D
            (rising edge-triggered flip-flop clocked by clk)
Endpoint: weights.mem.wr[0].bank[0].col[0].en
          (rising edge-triggered flip-flop clocked by spk_weights.mem_port0)
Path Group: spk_weights.mem_port0
Path Type: max
-----------------------------------------------------------
           12.132   slack (MET)
"""


def test_stub_pins_load_their_nets_as_the_macros_pins_do():
    """Every stub input has the OpenRAM macro's pin capacitance (0.00689 pF); only the chip
    select stub, one per macro and read port, carries the macro's clock pin."""
    lib = (S.SCRIPTS / "sram_stub.liberty").read_text()

    def cell(name):
        body = lib[lib.index(f"cell ({name})"):]
        return body[:body.index("\n  }\n") + 4]

    clk = re.compile(r"pin \(CLK\) \{[^}]*capacitance : ([0-9.]+);")
    d_cap = re.compile(r"pin \(D\) \{\s*direction : input;\s*capacitance : ([0-9.]+);")
    assert float(clk.search(cell("spk_sram_cs"))[1]) == 0.00689
    assert float(clk.search(cell("spk_sram_d"))[1]) == float(clk.search(cell("spk_sram_q"))[1]) == 0
    assert float(d_cap.search(cell("spk_sram_d"))[1]) == float(d_cap.search(cell("spk_sram_cs"))[1]) == 0.00689


def test_sky130_script_makes_the_macro_arrays_trees_real_cells_after_abc():
    ys = S.yosys_sky130_script("pe_array", "sky130hd_tt.lib", 4000)
    for stub, cell in (("spk_sram_buf", S.SRAM_TREE_BUFFER), ("spk_sram_and", S.SRAM_TREE_AND)):
        assert ys.index("abc -D") < ys.index(f"chtype -map {stub} {cell}") < ys.index(
            "write_verilog")
    assert "techmap -map sram_stub_map.v" in ys


def test_macro_stub_liberty_launches_read_data_after_the_falling_edge():
    ideal = (S.SCRIPTS / "sram_stub.liberty").read_text()
    lib = S.sram_macro_stub_liberty()
    q = lib[lib.index("cell (spk_sram_q)"):lib.index("cell (spk_sram_d)")]
    assert "timing_type : falling_edge;" in q and "rising_edge" not in q
    tech = S.SKY130_OPENRAM
    # dout0's tables, by clock transition and load; its worst entry is read_delay_ns
    assert q.count('cell_rise (spk_macro_dout) { values ("2.87, 3.287, 3.375", ') == 1
    assert q.count('"2.877, 3.294, 3.382"') == 2 and tech.read_delay_ns == 3.382
    assert max(map(max, tech.read_delay_table_ns)) == tech.read_delay_ns
    assert 'index_2 ("0.0017225, 0.00689, 0.02756")' in lib
    # the write-side stub (address, data, enable setup) is the ideal one's
    d = lambda text: text[text.index("cell (spk_sram_d)"):]  # noqa: E731
    assert d(lib) == d(ideal)


def test_macro_timing_names_what_limits_the_clock():
    mt = S.macro_timing(STA_MACRO_TEXT)
    assert mt["paths_min_period_ns"] == pytest.approx(13.535025)
    assert mt["min_period_ns"] == mt["paths_min_period_ns"]
    assert mt["limited_by"] == "the read data's path"
    assert mt["startpoint"] == "weights.rd[0].bank[3].data[4].q"   # the least slack of the groups
    assert mt["endpoint"] == "o_stream__payload"
    fast = S.macro_timing(STA_MACRO_TEXT.replace("13.535025076904297", "4.1"))
    assert fast["min_period_ns"] == 6.875 == fast["macro_min_period_ns"]
    assert fast["limited_by"] == "the macro's minimum period"
    with pytest.raises(S.ToolError, match="spk_macro_min_period"):
        S.macro_timing("Error: no design\n")


def test_alternating_memories_time_each_port_on_a_half_rate_clock():
    tcl = S.sta_macro_period_script("pe_array", "lib", 4.5, ["weights.mem"])
    assert ("set spk_port_pins(0) [spk_clk_pins {{weights.mem.rd[0].} {weights.mem.wr[0].}}]"
            in tcl)
    assert "set spk_port_pins(1) [spk_clk_pins {{weights.mem.rd[1].}}]" in tcl
    assert ("create_generated_clock -name spk_weights.mem_port0 -source [get_ports clk] "
            "-edges {1 3 5} $spk_port_pins(0)") in tcl
    assert "-edges {3 5 7} $spk_port_pins(1)" in tcl
    # the generated clocks follow every new core clock of the bisection
    body = tcl[tcl.index("proc spk_slack"):]
    assert body.index("create_clock") < body.index("create_generated_clock") < body.index(
        "return [sta::worst_slack -max]")
    assert "create_generated_clock" not in S.sta_macro_period_script("pe_array", "lib", 4.5)
    # the macro's own limit: half its period for a memory whose ports take turns
    assert S.macro_own_period_ns(False) == 6.875 and S.macro_own_period_ns(True) == 3.4375
    fast = S.macro_timing(STA_MACRO_TEXT.replace("13.535025076904297", "3.0"),
                          alternating=[True])
    assert fast["min_period_ns"] == 3.4375
    # one memory that does not alternate keeps the design at the macro's full period
    assert S.macro_timing(STA_MACRO_TEXT.replace("13.535025076904297", "3.0"),
                          alternating=[True, False])["min_period_ns"] == 6.875


def test_macro_period_script_bisects_from_the_logic_period():
    tcl = S.sta_macro_period_script("pe_array", "sky130hd_tt.lib", 4.5)
    assert "read_liberty sram_macro_stub.liberty" in tcl and "sram_stub.liberty" not in tcl.replace(
        "sram_macro_stub.liberty", "")
    assert "set lo 4.500000" in tcl and "$hi - $lo > 0.002" in tcl
    assert tcl.index('puts "spk_macro_min_period $hi"') < tcl.index("report_checks")


def test_macro_fmax_goal_explains_the_read_path():
    rep = {"fmax_mhz": 225.0, "fmax_mhz_with_sram_macro": 1000 / 13.535,
           "timing_with_sram_macro": S.macro_timing(STA_MACRO_TEXT), "targets": {}}
    g = {g["goal"]: g for g in S.check_goals(rep)}["sky130_fmax_sram_macro"]
    assert g["met"] is False and g["shortfall"] == pytest.approx(200 * 13.535 / 1000)
    assert "3.382 ns after its clock's falling edge" in g["note"]
    assert "13.54 ns period" in g["note"] and "two ports" in g["note"]
    assert "take turns" not in g["note"]
    # the weights alternate, a cache's reads still limit: the note says which take turns
    rep["timing_with_sram_macro"] = dict(rep["timing_with_sram_macro"],
                                         alternating_port_memories=["pe.weights.mem"])
    g = {g["goal"]: g for g in S.check_goals(rep)}["sky130_fmax_sram_macro"]
    assert g["note"].endswith("; the ports of pe.weights.mem already take turns "
                              "(alternating_ports)")
    rep["timing_with_sram_macro"].update(limited_by="the logic", startpoint="a", endpoint="b")
    g = {g["goal"]: g for g in S.check_goals(rep)}["sky130_fmax_sram_macro"]
    assert g["note"].startswith("limited by the logic (a -> b)") and "falling" not in g["note"]


def test_nextpnr_log_takes_the_last_fmax():
    r = S.parse_nextpnr_log(NEXTPNR_LOG)
    assert r["fmax_mhz"] == {"clk$SB_IO_IN_$glb_clk": pytest.approx(41.75)}
    assert r["utilisation"]["ICESTORM_LC"] == (346, 5280)
    assert r["utilisation"]["SB_IO"] == (4, 39)


def test_nextpnr_report_json():
    r = S.parse_nextpnr_report(NEXTPNR_REPORT)
    assert r["fmax_mhz"]["clk$SB_IO_IN_$glb_clk"] == pytest.approx(41.75016784667969)
    assert r["utilisation"]["ICESTORM_RAM"] == (1, 30)


def test_yosys_stat_liberty_area():
    r = S.parse_yosys_stat(YOSYS_STAT, "mac_baseline")
    assert r["cells"] == 1107 and r["area"] == pytest.approx(9102.48)
    assert r["sequential_area"] == pytest.approx(3323.1872)
    assert r["cells_by_type"]["spk_sram_q"] == 16


def test_yosys_stat_partial_transistor_count():
    r = S.parse_yosys_stat(YOSYS_STAT_CMOS, "mac_baseline")
    assert r["transistors"] == 5908 and r["transistors_partial"] is True


def test_yosys_stat_without_modules_is_an_error():
    with pytest.raises(ValueError, match="no modules"):
        S.parse_yosys_stat(json.dumps({"modules": {}}))


def test_yosys_memories():
    mems = S.parse_yosys_memories(YOSYS_MEMS)
    assert mems == [{"name": "weights", "depth": 64, "width": 16, "read_ports": 1,
                     "write_ports": 1, "async_read_ports": 0, "alternating_ports": False}]
    # an AlternatingPortMemory's memory: two read ports and the attribute
    d = json.loads(YOSYS_MEMS)
    cell = d["modules"]["pe_array"]["cells"]["weights"]
    cell["parameters"]["RD_PORTS"] = "00000000000000000000000000000010"
    cell["attributes"] = {"spk_alternating_ports": "00000000000000000000000000000001",
                          "src": "hw/alternating_memory.py:99"}
    (m,) = S.parse_yosys_memories(json.dumps(d))
    assert m["read_ports"] == 2 and m["alternating_ports"] is True


def test_fpga_counts_ecp5_counts_ccu2_as_two_luts():
    c = S._fpga_counts("ecp5", {"LUT4": 387, "CCU2C": 30, "TRELLIS_FF": 166, "DP16KD": 2,
                                "MULT18X18D": 3})
    assert c["lut"] == 387 + 60 and c["ff"] == 166 and c["bram"] == 2 and c["dsp"] == 3


def test_energy_per_op():
    # 10 mW at 100 MHz over 32 lanes at one op per cycle: 10e-3 / (32 * 100e6) J = 3.125 pJ
    assert S.energy_per_op_pj(10.0, 1.0, 32, 100.0) == pytest.approx(3.125)
    assert S.energy_per_op_pj(10.0, 0.5, 32, 100.0) == pytest.approx(6.25)
    assert S.energy_per_op_pj(None, 1.0, 32, 100.0) is None


@pytest.mark.parametrize("text, expect", [
    ("lanes=8,16,32", ("lanes", [8, 16, 32])), ("in-max=64", ("in_max", [64])),
])
def test_parse_sweep(text, expect):
    assert S.parse_sweep(text) == expect


@pytest.mark.parametrize("text", ["lanes", "lanes=", "theta_bits=8,9", "lanes=a,b"])
def test_parse_sweep_rejects(text):
    with pytest.raises(ValueError, match="sweep"):
        S.parse_sweep(text)


def test_parse_targets():
    assert S.parse_targets(None) == (S.TARGETS, False)
    assert S.parse_targets("all") == (S.TARGETS, False)
    assert S.parse_targets("ecp5, sky130") == (("ecp5", "sky130"), True)
    with pytest.raises(ValueError, match="asic"):
        S.parse_targets("sky130,asic")


def test_goals_report_shortfall_and_reduced_fpga_config():
    rep = {"fmax_mhz": 100.0, "mac_over_sop_energy_ratio": 4.0,
           "targets": {"ecp5": {"reduced": True, "params": {"read_register": True},
                                "designs": {"spike_engine": {"fmax_mhz": 120.0}}}}}
    goals = {g["goal"]: g for g in S.check_goals(rep)}
    assert goals["sky130_fmax"]["met"] is False
    assert goals["sky130_fmax"]["shortfall"] == pytest.approx(2.0)
    assert goals["energy_ratio"]["met"] is True and goals["energy_ratio"]["shortfall"] is None
    assert goals["ecp5_fmax"]["met"] is False
    assert goals["ecp5_fmax"]["note"] == ("reduced configuration (the default does not fit); "
                                          "fpga RTL style")
    assert "energy_ratio_pe_array" not in goals  # not measured in this report


def test_ecp5_goal_names_the_seeds_and_the_slowest():
    eng = {"fmax_mhz": 101.6, "fmax_by_seed": {1: 100.8, 2: 101.6, 3: 99.04}}
    rep = {"targets": {"ecp5": {"params": {"read_register": True},
                                "designs": {"spike_engine": eng}}}}
    g = {g["goal"]: g for g in S.check_goals(rep)}["ecp5_fmax"]
    assert g["met"] is True and g["value"] == 101.6
    assert g["note"] == "fpga RTL style; fastest of 3 nextpnr seeds (slowest 99.0 MHz)"


@pytest.mark.parametrize("sram_pj, note", [
    (3.24, "out of reach with this SRAM: the weight SRAM costs 3.24 pJ per SOP and 1/3 of the "
           "MAC lane's 9.26 pJ is 3.09 pJ"),
    (2.0, "the weight SRAM costs 2 pJ per SOP and 1/3 of the MAC lane's 9.26 pJ is 3.09 pJ, "
          "which leaves 1.09 pJ for the PE logic (now 1.58 pJ)")])
def test_pe_ratio_goal_says_what_the_sram_leaves_for_the_logic(sram_pj, note):
    rep = {"targets": {}, "mac_baseline": {"energy_per_mac_pj": 9.26},
           "pe_array": {"energy_per_sop_pj": 1.58 + sram_pj, "energy_per_sop_logic_only_pj": 1.58,
                        "mac_over_sop_energy_ratio": 9.26 / (1.58 + sram_pj)}}
    g = {g["goal"]: g for g in S.check_goals(rep)}["energy_ratio_pe_array"]
    assert g["met"] is False and g["note"] == note
    # with the measured row reuse, what holding a row for a token's steps would leave
    act = {"extra": {"spikes_per_active_input": 1.6}}
    g = {g["goal"]: g for g in S.check_goals(rep, act)}["energy_ratio_pe_array"]
    if sram_pj > 3.09:
        assert g["note"] == note + (
            "; the measured spike trains fire each active input 1.6 times per token, so a row "
            "read once per token and held for its steps would still cost 2.02 pJ per SOP, "
            "2.57x with the present PE logic")
    else:
        assert g["note"] == note
    rep["pe_array"]["energy_per_sop_pj"] = 1.58 + 0.5          # ratio 4.45: met, no note
    rep["pe_array"]["mac_over_sop_energy_ratio"] = 9.26 / 2.08
    g = {g["goal"]: g for g in S.check_goals(rep)}["energy_ratio_pe_array"]
    assert g["met"] is True and g["note"] == ""


def test_bram_estimate_tiles_per_part():
    mems = [{"depth": 4096, "width": 128, "read_ports": 1}]
    assert S.bram_estimate("ice40", mems) == 8 * 16  # 256 x 16 tiles
    assert S.bram_estimate("ecp5", mems) == 4 * 8  # 512 x 36 tiles


def test_shrink_memories_first_then_lanes():
    from spikemllm.hw.params import HwParams

    p = HwParams()
    q = S._shrink(p, {"bram": 3.5}, {"spike_engine"})
    assert q.kv_depth == p.kv_depth // 4 and q.lanes == p.lanes  # 3.5 / 0.9 -> 4x
    q = S._shrink(HwParams(kv_depth=16), {"bram": 1.5}, {"pe_array"})
    assert q.in_max == 2048 and q.kv_depth == 16
    q = S._shrink(p, {"lut": 1.3}, {"pe_array"})
    assert q.lanes == 16 and q.in_max == p.in_max
    assert S._shrink(HwParams(lanes=2), {"lut": 5.0}, {"pe_array"}) is None


def test_shrink_kv_cache_logic_overflow_shrinks_heads_then_head_dim():
    from spikemllm.hw.params import HwParams

    q = S._shrink(HwParams(), {"lut": 1.05}, {"spike_kv_cache"}, {"spike_kv_cache"})
    assert q.heads == 1 and q.lanes == 32
    q = S._shrink(HwParams(heads=1), {"lut": 1.05}, {"spike_kv_cache"}, {"spike_kv_cache"})
    assert q.head_dim == 32


def test_rtl_style_per_target():
    """--rtl-style auto: the fpga style (registered memory reads, one-part firing remainder,
    sign-magnitude KV storage) for ice40/ecp5, the asic style (HwParams defaults) for generic/sky130; asic/fpga apply
    to every target; the MAC baseline follows read_register."""
    base = S.make_params({"lanes": 8})
    assert S.target_params(base, "sky130") == base
    got = {t: (p.read_register, p.bram_rows, p.firing_parts, p.kv_sign_magnitude)
           for t, p in ((t, S.target_params(base, t)) for t in S.TARGETS)}
    parts = base.firing_parts   # the asic style keeps the HwParams default
    assert got == {"generic": (False, 0, parts, False), "sky130": (False, 0, parts, False),
                   "ice40": (True, 2048, 1, True), "ecp5": (True, 2048, 1, True)}
    assert all(S.target_params(base, t, "fpga").read_register for t in S.TARGETS)
    assert not any(S.target_params(base, t, "asic").read_register for t in S.TARGETS)
    with pytest.raises(ValueError, match="rtl_style must be one of auto, asic, fpga, not 'x'"):
        S.target_params(base, "ecp5", "x")
    mac = S.baseline_for(S.target_params(base, "ecp5"))
    assert mac.read_register and mac.bram_rows == 2048 and mac.latency == 5
    mac._MustUse__silence = True  # only inspected


def test_engine_ratio_goal_says_what_the_engine_adds_to_the_pe_array():
    rep = {"targets": {}, "mac_baseline": {"energy_per_mac_pj": 8.0},
           "energy_per_sop_pj": 10.0, "energy_per_sop_logic_only_pj": 6.0,
           "mac_over_sop_energy_ratio": 0.8,
           "pe_array": {"energy_per_sop_pj": 4.0, "energy_per_sop_logic_only_pj": 1.5,
                        "mac_over_sop_energy_ratio": 2.0}}
    g = {g["goal"]: g for g in S.check_goals(rep)}["energy_ratio"]
    assert g["met"] is False
    assert g["note"] == ("the PE array alone costs 4 pJ per SOP; the rest of the engine adds "
                         "4.5 pJ of logic (the firing unit and the idle KV caches, clocked every "
                         "cycle) and 1.5 pJ of SRAM (the idle KV macros' clocks)")
    # with the engine's logic power by block, the note splits its logic per SOP by block
    rep["targets"] = {"sky130": {"designs": {"spike_engine": {
        "energy_per_sop_logic_only_pj": 6.0,
        "power_mw": {"logic_total": 30.0, "logic_by_block": {
            "pe": {"total": 10.0}, "firing": {"total": 15.0}, "top": {"total": 5.0}}}}}}}
    g = {g["goal"]: g for g in S.check_goals(rep)}["energy_ratio"]
    assert g["note"].endswith("; the engine's logic by block: firing 15 mW (50 %; 3 pJ/SOP), "
                              "pe 10 mW (33 %; 2 pJ/SOP), top 5 mW (17 %; 1 pJ/SOP)")
    # a gated engine: its clocks and the KV macros' are gated where they have an enable
    rep["targets"]["sky130"]["designs"]["spike_engine"]["clock_gating"] = {"applied": True}
    del rep["targets"]["sky130"]["designs"]["spike_engine"]["power_mw"]["logic_by_block"]
    g = {g["goal"]: g for g in S.check_goals(rep)}["energy_ratio"]
    assert g["note"] == ("the PE array alone costs 4 pJ per SOP; the rest of the engine adds "
                         "4.5 pJ of logic (the firing unit and the idle KV caches, behind clock "
                         "gates where they have an enable) and 1.5 pJ of SRAM (the KV macros, "
                         "clocks gated by their enables)")
    del rep["pe_array"]                                    # nothing to compare with: no note
    assert {g["goal"]: g for g in S.check_goals(rep)}["energy_ratio"]["note"] == ""


INSTANCE_POWER = """\
     Internal    Switching      Leakage        Total
        Power        Power        Power        Power
----------------------------------------------------
 2.000000e-05 4.000000e-06 1.000000e-12 2.400000e-05 k_cache.term_csa6[18]_sky130_fd_sc_hd__maj3_1_A
 1.000000e-05 1.000000e-06 2.000000e-12 1.100000e-05 k_cache.busy_sky130_fd_sc_hd__dfxtp_1_Q
 3.000000e-05 0.000000e+00 0.000000e+00 3.000000e-05 index_error_sky130_fd_sc_hd__dfxtp_1_Q
 5.000000e-06 5.000000e-06 0.000000e+00 1.000000e-05 acc[3].x_sky130_fd_sc_hd__nor2_1_Y
 0.000000e+00 0.000000e+00 0.000000e+00 0.000000e+00 k_cache.planes.rd[0].bank[1].data[3].q
 0.000000e+00 0.000000e+00 0.000000e+00 0.000000e+00 weights.wr[0].bank[0].col[1].en
 0.000000e+00 0.000000e+00 0.000000e+00 0.000000e+00 weights.wr[0].bank[3].data[40].d
 0.000000e+00 0.000000e+00 0.000000e+00 0.000000e+00 weights.wr[0].bank[2].col[0].addr[2].d
 0.000000e+00 0.000000e+00 0.000000e+00 0.000000e+00 weights.rd[1].bank[0].col[3].en
 1.000000e-05 0.000000e+00 0.000000e+00 1.000000e-05 k_cache.planes.rd_mux[0].banks.sel_sky130_fd_sc_hd__dfxtp_1_Q
"""


def test_instance_power_summed_by_the_block_in_each_cells_name():
    by = S.parse_instance_power(INSTANCE_POWER + "Warning: something\n", {"k_cache"})
    assert set(by) == {"k_cache", "top"}          # SRAM stubs are no cells of a block
    # the bank-select register the stub techmap builds is the k_cache's logic
    assert by["k_cache"]["cells"] == 3 and by["top"]["cells"] == 2
    assert by["k_cache"]["internal"] == pytest.approx(0.04)         # mW
    assert by["k_cache"]["total"] == pytest.approx(0.045)
    assert by["top"]["switching"] == pytest.approx(0.005)   # a dot after "[" is not a path
    assert S.parse_instance_power("Error: no design\n", {"k_cache"}) == {}


def test_cells_named_after_a_port_go_to_the_block_that_drives_it():
    gated = INSTANCE_POWER + (
        " 1.000000e-05 0.000000e+00 0.000000e+00 1.000000e-05 o_acc__payload[3]_sky130_fd_sc_hd__dfxtp_1_Q\n"
        " 2.000000e-05 0.000000e+00 0.000000e+00 2.000000e-05 clock_gate_4\n"
        " 4.000000e-05 0.000000e+00 0.000000e+00 4.000000e-05 clock_gate_4_GCLK_sky130_fd_sc_hd__clkbuf_1_A\n")
    by = S.parse_instance_power(gated, {"k_cache", "pe", "firing"},
                                {"o_acc__payload": "pe", "index_error": "firing"})
    assert set(by) == {"k_cache", "pe", "firing", "clock_gates", "top"}
    assert by["pe"]["cells"] == 1 and by["pe"]["internal"] == pytest.approx(0.01)
    assert by["firing"]["cells"] == 1                         # index_error_sky130_..._Q
    assert by["clock_gates"]["cells"] == 2 and by["clock_gates"]["total"] == pytest.approx(0.06)
    assert by["top"]["cells"] == 1                            # acc[3].x: no port of that name
    assert set(S.parse_instance_power(gated, {"k_cache"})) == {"k_cache", "clock_gates", "top"}
    # a path that is no submodule (a top-level memory's nets, say) is the top's
    assert set(S.parse_instance_power(gated, {"pe"})) == {"clock_gates", "top"}


def test_output_ports_map_to_the_one_submodule_that_drives_every_bit():
    top = {"modules": {"e": {
        "ports": {"o_acc__payload": {"direction": "output", "bits": [5, 6]},
                  "mixed": {"direction": "output", "bits": [5, 9]},
                  "glue": {"direction": "output", "bits": [7]},
                  "const": {"direction": "output", "bits": ["0"]},
                  "i_data": {"direction": "input", "bits": [8]}},
        "cells": {
            "pe": {"type": "e.pe", "port_directions": {"o": "output", "i": "input"},
                   "connections": {"o": [5, 6], "i": [8]}},
            "firing": {"type": "e.firing", "port_directions": {"o": "output", "i": "input"},
                       "connections": {"o": [9], "i": [5, 6]}},
            "$and$1": {"type": "$and", "port_directions": {"Y": "output"},
                       "connections": {"Y": [7]}}}}}}
    assert S.submodule_map(json.dumps(top), "e") == ({"pe", "firing"}, {"o_acc__payload": "pe"})


def test_pnr_misfit_from_messages_or_an_overfull_utilisation_line():
    part = S.FPGA_PARTS["ice40"]
    # nextpnr-ice40 0.11 on a design 26 % over the logic cells: no misfit message, only the
    # utilisation table and "no BELs remaining"
    log = ("Info: Device utilisation:\n"
           "Info: \t         ICESTORM_LC:    6696/   5280   126%\n"
           "Info: \t        ICESTORM_RAM:      16/     30    53%\n"
           "ERROR: Unable to place cell 'x_DFFLC', no BELs remaining to implement cell type "
           "'ICESTORM_LC'\n")
    assert S.pnr_misfit(log, part) == pytest.approx(6696 / 5280)
    assert S.pnr_misfit("Info: Design uses 40 DP16KD, but device only has 30", part) == \
        pytest.approx(40 / 30)
    assert S.pnr_misfit("Failed to expand region (0, 0) |_> (5, 5) of 5400 ICESTORM_LCs",
                        part) == pytest.approx(5400 / 5280)
    fits = "Info: \t         ICESTORM_LC:    4000/   5280    75%\nERROR: something else\n"
    assert S.pnr_misfit(fits, part) is None


def test_an_unused_engine_and_its_kv_caches_are_silenced():
    """A synth run whose targets build their own designs drops the default ones unconverted:
    the engine and the K and V caches it holds are all marked, or Amaranth warns at exit
    ("created but never used") for each cache."""
    from spikemllm.hw.engine import SpikeEngine
    from spikemllm.hw.params import HwParams

    eng = SpikeEngine(params=HwParams(lanes=2, in_max=16, kv_depth=4, heads=1, head_dim=4,
                                      t_max=2))
    parts = (eng, eng.k_cache, eng.v_cache)
    assert not any(c._MustUse__silence for c in parts)
    S._silence_unused(eng)
    assert all(c._MustUse__silence for c in parts)


# the head of a `write_verilog -simple-lhs` sky130 netlist (pe_array), declarations only
NETLIST_HEAD = r"""module pe_array(clk, i_stream__payload, o_stream__valid);
  input clk;
  wire clk;
  input [19:0] i_stream__payload;
  wire [19:0] i_stream__payload;
  output o_stream__valid;
  wire o_stream__valid;
  wire fresh;
  wire \rd__data[21] ;
  wire \rd__data[21]_sky130_fd_sc_hd__and3_1_B_X ;
  wire [0:2] rev;
  sky130_fd_sc_hd__nor2_1 \x_sky130_fd_sc_hd__nor2_1  (
"""


def test_netlist_wires_and_their_opensta_net_names():
    w = S.netlist_wires(NETLIST_HEAD)
    assert w == {"clk": (0, 0), "i_stream__payload": (19, 0), "o_stream__valid": (0, 0),
                 "fresh": (0, 0), "rd__data[21]": (0, 0),
                 "rd__data[21]_sky130_fd_sc_hd__and3_1_B_X": (0, 0), "rev": (0, 2)}
    assert S.net_bit_names("fresh", 0, 0, 1) == ["fresh"]
    assert S.net_bit_names("rd__data[21]", 0, 0, 1) == ["rd__data[21]"]
    assert S.net_bit_names("p", 19, 0, 20)[:2] == ["p[0]", "p[1]"]
    assert S.net_bit_names("rev", 0, 2, 3) == ["rev[2]", "rev[1]", "rev[0]"]   # [0:2]: LSB is 2


def test_sta_script_sets_every_annotated_nets_pins_before_the_power_report():
    act = dict(S.DEFAULT_ACTIVITY)
    plain = S.sta_script("pe_array", "lib.lib", 5.0, act)
    assert "net_activity" not in plain and "set_power_pin_activity" not in plain
    tcl = S.sta_script("pe_array", "lib.lib", 5.0, act, gated_clocks={"clock_gate_0": 50.0},
                       net_activity=True)
    src = tcl.index("[spk_annotate pe_array.net_activity.txt]")
    assert (tcl.index("report_checks") < tcl.index("create_clock -name clock_gate_0")
            < tcl.index("sta::set_power_pin_activity $pin $a $d") < src
            < tcl.index("report_power -digits 6"))
    # the propagated activity stays set: it covers what the file does not name
    assert tcl.index("set_power_activity -input -activity") < src


def test_sta_report_gives_the_annotated_net_count():
    rep = S.parse_sta_report(STA_TEXT + "net activity: 7429 of 7431 nets\n")
    assert rep["nets_annotated"] == 7429 and rep["nets"] == 7431
    assert "nets" not in S.parse_sta_report(STA_TEXT)


def test_sweep_plot_draws_the_issue_targets():
    rows = [{"lanes": 8, "energy_per_mac_pj": 6.9}, {"lanes": 16, "energy_per_mac_pj": 6.6}]
    lines = S.sweep_goal_lines("sky130", rows)
    assert lines["fmax_mhz"] == ([200.0, 200.0], "target 200 MHz")
    ys, label = lines["energy_per_sop_pj"]
    assert ys == pytest.approx([2.3, 2.2]) and label == "target: MAC / 3"
    # a point without its MAC lane gets no ratio line; ecp5 has only its clock goal
    rows[1]["energy_per_mac_pj"] = None
    assert "energy_per_sop_pj" not in S.sweep_goal_lines("sky130", rows)
    assert S.sweep_goal_lines("ecp5", rows) == {"fmax_mhz": ([100.0, 100.0], "target 100 MHz")}
    assert S.sweep_goal_lines("generic", rows) == {}


@pytest.mark.skipif(find_tool("sta") is None, reason="OpenSTA (sta) absent")
@pytest.mark.parametrize("load_pf, delay_ns", [(0.0017225, 2.87), (0.00689, 3.287),
                                               (0.02756, 3.375)])
def test_openSTA_launches_macro_read_data_by_its_load(tmp_path, load_pf, delay_ns):
    """A read-data stub on a 10 ns clock: its data arrives half a period (the falling edge)
    plus the macro's delay at the output's load (an ideal clock: the table's first row)."""
    (tmp_path / "m.lib").write_text(S.sram_macro_stub_liberty())
    (tmp_path / "n.v").write_text("module n (input clk, output d);\n"
                                  "  spk_sram_q q (.CLK(clk), .Q(d));\nendmodule\n")
    (tmp_path / "t.tcl").write_text(
        "read_liberty m.lib\nread_verilog n.v\nlink_design n\n"
        "create_clock -name clk -period 10 [get_ports clk]\n"
        f"set_load {load_pf} [get_ports d]\nset_output_delay 0 -clock clk [get_ports d]\n"
        "report_checks -digits 3\nexit\n")
    out = subprocess.run([find_tool("sta"), "-no_splash", "-exit", "t.tcl"], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    arrival = float(re.search(r"([0-9.]+)\s+data arrival time", out)[1])
    assert arrival == pytest.approx(5.0 + delay_ns, abs=0.002)
