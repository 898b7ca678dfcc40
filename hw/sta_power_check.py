"""How the installed OpenSTA counts internal power, measured on a flip-flop with known tables.

Liberty gives a pin's ``internal_power`` as the energy of one rising and of one falling
transition. The power is then the pin's transition density times the mean of the two. OpenSTA
2.0.17 (Debian's ``opensta``) adds the two energies instead of averaging them; later versions
divide by the number of edges (``power/Power.cc``: "average non-inf energies"). It therefore
reports every pin's internal power twice over, while switching and leakage power are right.

:func:`check_internal_power` times one flip-flop from a synthetic liberty whose clock-pin and
output-pin tables are known and returns the factor by which ``sta`` over-counts each.
:func:`correct_power_groups` divides the ``report_power`` internal column by it. The check runs
in every sky130 synthesis, so a fixed ``sta`` gives factor 1 and no correction.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["check_internal_power", "correct_power_groups", "PROBE_PERIOD_NS"]

#: clock period of the probe (ns); the factor does not depend on it
PROBE_PERIOD_NS = 10.0
# energies (pJ) per rising / falling transition in the probe liberty
_CLK_RISE, _CLK_FALL = 1.0, 3.0
_Q_RISE, _Q_FALL = 10.0, 30.0
#: output toggles per clock cycle in the second probe run
_Q_ACTIVITY = 0.5


def _table(v):
    return f'index_1 ("0.01, 1.0"); values ("{v}, {v}");'


PROBE_LIBERTY = f"""library (sta_power_probe) {{
  delay_model : table_lookup;
  time_unit : "1ns";
  voltage_unit : "1V";
  current_unit : "1mA";
  capacitive_load_unit (1, pf);
  leakage_power_unit : "1nW";
  pulling_resistance_unit : "1kohm";
  nom_voltage : 1.0;
  nom_temperature : 25.0;
  nom_process : 1.0;
  input_threshold_pct_rise : 50; input_threshold_pct_fall : 50;
  output_threshold_pct_rise : 50; output_threshold_pct_fall : 50;
  slew_lower_threshold_pct_rise : 20; slew_upper_threshold_pct_rise : 80;
  slew_lower_threshold_pct_fall : 20; slew_upper_threshold_pct_fall : 80;
  operating_conditions (probe_oc) {{ voltage : 1.0; process : 1.0; temperature : 25.0; }}
  default_operating_conditions : probe_oc;
  voltage_map (VPWR, 1.0);
  voltage_map (VGND, 0.0);
  power_lut_template (probe_pwr) {{ variable_1 : input_transition_time; index_1 ("0.01, 1.0"); }}
  cell (probe_dff) {{
    area : 1.0;
    pg_pin (VPWR) {{ voltage_name : VPWR; pg_type : primary_power; }}
    pg_pin (VGND) {{ voltage_name : VGND; pg_type : primary_ground; }}
    ff (IQ, IQN) {{ clocked_on : "CLK"; next_state : "D"; }}
    pin (CLK) {{
      direction : input; clock : true; capacitance : 0.001;
      related_power_pin : VPWR; related_ground_pin : VGND;
      internal_power () {{
        related_power_pin : VPWR; related_ground_pin : VGND;
        rise_power (probe_pwr) {{ {_table(_CLK_RISE)} }}
        fall_power (probe_pwr) {{ {_table(_CLK_FALL)} }}
      }}
    }}
    pin (D) {{
      direction : input; capacitance : 0.001;
      timing () {{
        related_pin : "CLK"; timing_type : setup_rising;
        rise_constraint (scalar) {{ values ("0.0"); }}
        fall_constraint (scalar) {{ values ("0.0"); }}
      }}
    }}
    pin (Q) {{
      direction : output; function : "IQ";
      internal_power () {{
        related_pin : "CLK";
        related_power_pin : VPWR; related_ground_pin : VGND;
        rise_power (probe_pwr) {{ {_table(_Q_RISE)} }}
        fall_power (probe_pwr) {{ {_table(_Q_FALL)} }}
      }}
      timing () {{
        related_pin : "CLK"; timing_type : rising_edge;
        cell_rise (scalar) {{ values ("0.1"); }}
        cell_fall (scalar) {{ values ("0.1"); }}
        rise_transition (scalar) {{ values ("0.05"); }}
        fall_transition (scalar) {{ values ("0.05"); }}
      }}
    }}
  }}
}}
"""

PROBE_NETLIST = """module probe(input clk, input d, output q);
  probe_dff u (.CLK(clk), .D(d), .Q(q));
endmodule
"""


def _probe_script(activity):
    # -input seeds register outputs in OpenSTA 2.0.17; newer versions take them from D
    return "\n".join([
        "read_liberty probe.lib", "read_verilog probe.v", "link_design probe",
        f"create_clock -name clk -period {PROBE_PERIOD_NS} [get_ports clk]",
        f"set_power_activity -input -activity {activity}",
        f"set_power_activity -input_ports [get_ports d] -activity {activity}",
        "report_power -digits 6", "exit", ""])


def _internal_w(text):
    from .synth import parse_sta_report
    groups = parse_sta_report(text).get("power_mw")
    if not groups or "total" not in groups:
        raise RuntimeError("no report_power table in the OpenSTA probe output:\n" + text[-2000:])
    return groups["total"]["internal"] * 1e-3


def check_internal_power(sta, work, *, timeout=120):
    """Run the probe with ``sta`` in ``work/sta_power_check``; return the over-count factors.

    Returns ``{"clock_pin_factor", "output_pin_factor", "scale", "note"}``: each factor is the
    reported internal power over the Liberty value (density x mean of rise and fall energy),
    and ``scale`` (``1 / factor``) is what :func:`correct_power_groups` applies. ``scale`` is
    None, with a note, when the two pins disagree, since one scale cannot then be right.
    """
    d = Path(work) / "sta_power_check"
    d.mkdir(parents=True, exist_ok=True)
    (d / "probe.lib").write_text(PROBE_LIBERTY)
    (d / "probe.v").write_text(PROBE_NETLIST)
    f_hz = 1e9 / PROBE_PERIOD_NS
    measured = []
    for activity in (0.0, _Q_ACTIVITY):
        (d / "probe.tcl").write_text(_probe_script(activity))
        r = subprocess.run([sta, "-no_splash", "-exit", "probe.tcl"], cwd=d, capture_output=True,
                           text=True, timeout=timeout)
        (d / f"probe_{activity}.log").write_text(r.stdout + r.stderr)
        measured.append(_internal_w(r.stdout + r.stderr))
    # the clock toggles twice per cycle; Q toggles _Q_ACTIVITY times per cycle
    clk_expected = 2 * f_hz * (_CLK_RISE + _CLK_FALL) / 2 * 1e-12
    q_expected = _Q_ACTIVITY * f_hz * (_Q_RISE + _Q_FALL) / 2 * 1e-12
    k_clk = measured[0] / clk_expected
    k_q = (measured[1] - measured[0]) / q_expected
    out = {"clock_pin_factor": round(k_clk, 6), "output_pin_factor": round(k_q, 6)}
    if k_clk <= 0 or abs(k_clk - k_q) > 1e-3 * k_clk:
        out.update(scale=None, note=("the clock and output pins are over-counted by different "
                                     "factors; internal power is left as OpenSTA reports it"))
    elif abs(k_clk - 1.0) <= 1e-3:
        out.update(scale=1.0, note="OpenSTA averages rise and fall energies; no correction")
    else:
        out.update(scale=1.0 / k_clk,
                   note=(f"OpenSTA counts internal power {k_clk:.3g}x the Liberty value (it adds "
                         "the rise and fall energies instead of averaging them); the internal "
                         f"power is multiplied by {1.0 / k_clk:.4g}"))
    return out


def correct_power_groups(groups, scale):
    """``report_power`` groups (mW, from :func:`~spikemllm.hw.synth.parse_sta_report`) with the
    internal column multiplied by ``scale`` and each total recomputed. None leaves them."""
    if scale is None:
        return {g: dict(v) for g, v in groups.items()}
    out = {}
    for g, v in groups.items():
        internal = v["internal"] * scale
        out[g] = dict(v, internal=internal, total=internal + v["switching"] + v["leakage"])
    return out
