"""Input pins priced at their cell's clock (hw/synth.py ``input_pin_activity``), against
OpenSTA itself."""

import math
import shutil
import subprocess

import pytest

from spikemllm.hw import synth as S
from spikemllm.hw.tools import find_tool, resolve_liberty, unpack_liberty

LIB = """library (tiny) {
    cell ("inv") {
        pin ("A") { direction : input; }
        pin ("Y") { direction : "output"; function : "!A"; timing () { related_pin : "A"; } }
    }
    cell ("ff") {
        ff ("IQ","IQ_N") { next_state : "D"; clocked_on : "CLK"; }
        pin ("CLK") { clock : true; direction : input; }
        pin ("D") { direction : input; }
        pin ("Q") { internal_power () { related_pin : "CLK"; } direction : output; }
    }
}
"""

NETLIST = r"""module top(clk, en, d, y);
  input clk;
  wire clk;
  wire [1:0] \k.$signal$3 ;
  sky130_fd_sc_hd__dlclkp_1 clock_gate_0 (
    .CLK(clk),
    .GATE(en),
    .GCLK(clock_gate_0_GCLK)
  );
  sky130_fd_sc_hd__dfxtp_1 \r[0]_sky130_fd_sc_hd__dfxtp_1_Q  (
    .CLK(clock_gate_0_GCLK),
    .D(d),
    .Q(\r[0] )
  );
  sky130_fd_sc_hd__xor2_1 \x_sky130_fd_sc_hd__xor2_1_X  (
    .A(\r[0] ),
    .B(\k.$signal$3 [1]),
    .X(x)
  );
endmodule
"""

OUTPUTS = {"sky130_fd_sc_hd__xor2_1": frozenset({"X"}),
           "sky130_fd_sc_hd__dfxtp_1": frozenset({"Q"}),
           "sky130_fd_sc_hd__dlclkp_1": frozenset({"GCLK"})}


def test_liberty_output_pins_reads_each_cells_direction():
    assert S.liberty_output_pins(LIB) == {"inv": frozenset({"Y"}), "ff": frozenset({"Q"})}


def test_netlist_instances_names_pins_and_nets_as_opensta_does():
    inst = S.netlist_instances(NETLIST)
    assert [i[:2] for i in inst] == [
        ("sky130_fd_sc_hd__dlclkp_1", "clock_gate_0"),
        ("sky130_fd_sc_hd__dfxtp_1", "r[0]_sky130_fd_sc_hd__dfxtp_1_Q"),
        ("sky130_fd_sc_hd__xor2_1", "x_sky130_fd_sc_hd__xor2_1_X")]
    assert inst[2][2] == {"A": "r[0]", "B": "k.$signal$3[1]", "X": "x"}


def test_mixed_clock_inputs_are_rescaled_to_their_cells_clock():
    """The xor mixes a gated register (40 ns) with a main-clock net (5 ns): OpenSTA prices it
    per 5 ns, so the register's net, given per 40 ns, is rescaled on the xor's pin only. The
    gated register's data input (main clock) is rescaled the other way, to its clock's 40 ns.
    The clock gate keeps its nets' values."""
    nets = {"r[0]": (0.8, 0.5, 40.0), "k.$signal$3[1]": (0.1, 0.3, 5.0), "x": (0.2, 0.5, 5.0),
            "d": (0.05, 0.5, 5.0), "en": (0.01, 0.1, 5.0)}
    got = S.input_pin_activity(S.netlist_instances(NETLIST), OUTPUTS, nets,
                               skip_cells={S.ICG_CELL[0]})
    assert got == [("r[0]_sky130_fd_sc_hd__dfxtp_1_Q/D", pytest.approx(0.05 * 8), 0.5),
                   ("x_sky130_fd_sc_hd__xor2_1_X/A", pytest.approx(0.8 / 8), 0.5)]
    # all on one clock: nothing to rescale; a cell the Liberty does not know is left alone
    same = {n: (a, d, 5.0) for n, (a, d, _) in nets.items()}
    assert S.input_pin_activity(S.netlist_instances(NETLIST), OUTPUTS, same) == []
    assert S.input_pin_activity(S.netlist_instances(NETLIST), {}, nets) == []


needs_sta_and_liberty = pytest.mark.skipif(
    find_tool("sta") is None or resolve_liberty() is None,
    reason="needs OpenSTA (sta) and ../shared/pdk/sky130hd_tt.lib.gz")

MIXED = r"""module top(clk, en, d, m, y, z);
  input clk; input en; input d; input m; output y; output z;
  wire clk; wire en; wire d; wire m; wire y; wire z;
  wire clock_gate_0_GCLK; wire q1; wire q2; wire x; wire w; wire mq;
  sky130_fd_sc_hd__dlclkp_1 clock_gate_0 (.CLK(clk), .GATE(en), .GCLK(clock_gate_0_GCLK));
  sky130_fd_sc_hd__dfxtp_1 f1 (.CLK(clock_gate_0_GCLK), .D(d), .Q(q1));
  sky130_fd_sc_hd__dfxtp_1 f2 (.CLK(clock_gate_0_GCLK), .D(q1), .Q(q2));
  sky130_fd_sc_hd__dfxtp_1 fm (.CLK(clk), .D(m), .Q(mq));
  sky130_fd_sc_hd__xor2_1 g1 (.A(q1), .B(q2), .X(x));
  sky130_fd_sc_hd__o22ai_1 g2 (.A1(x), .A2(q2), .B1(m), .B2(mq), .Y(w));
  sky130_fd_sc_hd__dfxtp_1 f3 (.CLK(clk), .D(w), .Q(y));
  sky130_fd_sc_hd__dfxtp_1 f4 (.CLK(clock_gate_0_GCLK), .D(w), .Q(z));
endmodule
"""


def _instance_power(sta, work, tcl):
    (work / "p.tcl").write_text(tcl)
    r = subprocess.run([sta, "-no_splash", "-exit", "p.tcl"], cwd=work, capture_output=True,
                       text=True, timeout=120)
    out = {}
    for line in (work / "top.power_by_instance.txt").read_text().splitlines():
        p = line.split()
        if len(p) == 5 and p[4] in ("g1", "g2"):
            out[p[4]] = float(p[0]) + float(p[1])
    return out, r.stdout


@needs_sta_and_liberty
def test_a_mixed_clock_cell_costs_what_it_costs_at_one_clock(tmp_path):
    """Per main cycle, q1 and q2 (behind a gate at duty 1/8) toggle 0.05, x 0.08. g2 mixes
    them with the input port m, so OpenSTA 2.0.17 recomputes its output from its input pins
    (the combinational fan-out of an input port is propagated, whatever is set on it).
    Priced with the gate's clock at 8 x the period, as the flow does, g1 (gated inputs only)
    and g2 must cost what they cost with every clock at the main period and every net per
    main cycle. Without the rescaled pins g2's gated inputs, given per 40 ns, are read per
    5 ns: 8 times too many toggles on those pins, twice the power of the cell."""
    sta = find_tool("sta")
    lib = unpack_liberty(resolve_liberty(), tmp_path).name
    shutil.copy(S.SCRIPTS / "sram_stub.liberty", tmp_path / "sram_stub.liberty")
    (tmp_path / "top.netlist.v").write_text(MIXED)
    per_cycle = {"q1": (0.05, 0.5), "q2": (0.05, 0.5), "x": (0.08, 0.5), "mq": (0.3, 0.5),
                 "w": (0.1, 0.5), "z": (0.04, 0.5), "y": (0.1, 0.5), "d": (0.05, 0.5),
                 "m": (0.3, 0.5), "en": (0.2, 0.125)}
    launch = {"q1": 40.0, "q2": 40.0, "x": 40.0, "z": 40.0}  # the rest: the main clock
    act = {"input_activity": 0.2, "port_activity": {}}

    def priced(gate_period, scaled, pins):
        nets = {n: (a * (launch.get(n, 5.0) / 5.0 if scaled else 1.0), d,
                    launch.get(n, 5.0) if scaled else 5.0) for n, (a, d) in per_cycle.items()}
        (tmp_path / "top.net_activity.txt").write_text(
            "".join(f"{{{n}}} {a:.6g} {d:.6g} {int(n in ('d', 'm', 'en'))}\n"
                    for n, (a, d, _) in nets.items()))
        rescaled = S.input_pin_activity(
            S.netlist_instances(MIXED),
            S.liberty_output_pins((tmp_path / lib).read_text()), nets,
            skip_cells={S.ICG_CELL[0]}) if pins else []
        (tmp_path / "top.pin_activity.txt").write_text(
            "".join(f"{{{p}}} {a:.6g} {d:.6g}\n" for p, a, d in rescaled))
        tcl = S.sta_script("top", lib, 5.0, act, gated_clocks={"clock_gate_0": gate_period},
                           net_activity=True)
        return _instance_power(sta, tmp_path, tcl), rescaled

    (want, _), _ = priced(5.0, scaled=False, pins=False)
    (got, log), rescaled = priced(40.0, scaled=True, pins=True)
    (unfixed, _), _ = priced(40.0, scaled=True, pins=False)
    # g2's gated inputs, and the gated registers' data inputs from the main clock
    assert {p for p, _, _ in rescaled} == {"g2/A1", "g2/A2", "f1/D", "f4/D"}
    assert f"pin activity: {len(rescaled)} of" in log
    assert got["g1"] == pytest.approx(want["g1"], rel=1e-3)
    assert got["g2"] == pytest.approx(want["g2"], rel=1e-3)
    assert unfixed["g2"] > 1.5 * want["g2"] and math.isclose(unfixed["g1"], want["g1"],
                                                             rel_tol=1e-3)
