"""cocotb testbench of the exported ``spike_engine`` top (runs inside the simulator).

One cocotb test per (case, traffic) entry of the ``COSIM_CASES`` manifest (written by
:func:`spikemllm.cosim.regression.run_cases`). Each test:

1. resets the engine (synchronous reset, held 3 edges), checks the ID and HW_* registers
   against the configuration, writes CTRL (Horner + accumulator tap), THETA, T_TEXT,
   T_VISION and IN_FEATURES, and loads the weight tile through ``w_stream``;
2. asks the reference model (:mod:`spikemllm.sw.events`) for the expected accumulators and
   output events and queues them in the in-order scoreboard;
3. clears the performance counters, drives the events on ``i_stream`` (random valid gaps in
   ``stress`` traffic) while sinks take ``o_acc`` and ``o_stream`` (random backpressure in
   ``stress``), each transfer compared bit for bit;
4. waits for the engine to drain under a cycle budget (timeout = deadlock), reads every
   performance counter back and checks it against the testbench's own counts;
5. writes the measurements to ``COSIM_RESULT_DIR/<id>.json``.

Randomness (pauses) comes from ``random.Random(COCOTB_RANDOM_SEED + entry index)``.
"""

from __future__ import annotations

import random
import time

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout

from spikemllm.hw.engine import ENGINE_ID, REG
from spikemllm.hw.params import HwParams
from spikemllm.hw.mac_baseline import activation_bits, input_toggles
from spikemllm.sw.events import EventLayout, active_inputs, events_to_counts, pack_weight_rows

from .bfm import StreamDriver, StreamSink, burst_pause, no_pause, random_pause, stream_ports
from .scoreboard import Scoreboard, finish_case
from .stimulus import json_from_env, load_case

EVENT_FIELDS = ("index", "sign", "t", "last_in_step", "last_in_token", "empty", "modality")
COUNTERS = ("CYCLES_BUSY", "EVENTS_IN", "EVENTS_OUT", "STALL_CYCLES", "TOKENS", "OUT_STALL_CYCLES")
CLOCK_NS = 10


MANIFEST = json_from_env("COSIM_CASES")
ENTRIES = MANIFEST["cases"] if MANIFEST else []


# --------------------------------------------------------------------------------------------
# Register port
# --------------------------------------------------------------------------------------------

class RegisterPort:
    """``cfg_addr`` / ``cfg_data`` / ``cfg_we`` writes; reads with one cycle latency."""

    def __init__(self, dut):
        self.dut = dut
        dut.cfg_we.value = 0
        dut.cfg_addr.value = 0
        dut.cfg_data.value = 0

    async def write(self, name, value):
        d = self.dut
        d.cfg_addr.value = REG[name]
        d.cfg_data.value = int(value)
        d.cfg_we.value = 1
        await RisingEdge(d.clk)
        d.cfg_we.value = 0

    async def read(self, name):
        d = self.dut
        d.cfg_addr.value = REG[name]
        d.cfg_we.value = 0
        await RisingEdge(d.clk)   # cfg_rdata latches word cfg_addr here
        await RisingEdge(d.clk)   # ... and is visible (pre-edge value) here
        return int(d.cfg_rdata.value)


# --------------------------------------------------------------------------------------------
# Monitors: decode payload words, compare in the scoreboard
# --------------------------------------------------------------------------------------------

def _acc_decoder(params):
    n, lanes = params.acc_bits, params.lanes
    mask = (1 << n) - 1

    def decode(word):
        acc = []
        for lane in range(lanes):
            v = (word >> (lane * n)) & mask
            acc.append(v - (1 << n) if v >> (n - 1) else v)
        return {"acc": acc, "modality": (word >> (lanes * n)) & 1}

    return decode


def _event_decoder(layout):
    fields = []
    shift = 0
    for name, width in layout.fields:
        fields.append((name, shift, (1 << width) - 1))
        shift += width

    def decode(word):
        return {name: (word >> s) & m for name, s, m in fields}

    return decode


class ActivityMonitor:
    """Counts cycles with ``busy`` high and the toggles of the input payload bits."""

    def __init__(self, dut, width):
        self.dut = dut
        self.width = width
        self.busy_cycles = 0
        self.cycles = 0
        self.toggles = 0
        self.running = True
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        d = self.dut
        prev = None
        while self.running:
            await RisingEdge(d.clk)
            self.cycles += 1
            if d.busy.value:
                self.busy_cycles += 1
            word = int(d.i_stream__payload.value)
            if prev is not None:
                self.toggles += (word ^ prev).bit_count()
            prev = word


async def _reset(dut):
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def _pauses(rng, traffic, gap_p, bp_p):
    if traffic == "free" or (gap_p == 0 and bp_p == 0):
        return no_pause, no_pause
    return (lambda: random_pause(rng, gap_p)), (lambda: burst_pause(rng, bp_p, 6))


async def run_entry(dut, entry_index):
    entry = ENTRIES[entry_index]
    params = HwParams.from_dict(MANIFEST["params"])
    case = load_case(entry["path"])
    log = dut._log
    rng = random.Random(cocotb.RANDOM_SEED + entry_index)
    gap_p, bp_p = entry["pause"]
    src_pause, sink_pause = _pauses(rng, entry["traffic"], gap_p, bp_p)
    in_layout = EventLayout(params.in_max, params.t_max)
    out_layout = EventLayout(params.lanes, params.t_max)

    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    dut.i_stream__valid.value = 0
    dut.w_stream__valid.value = 0
    dut.o_stream__ready.value = 0
    dut.o_acc__ready.value = 0
    regs = RegisterPort(dut)
    await _reset(dut)

    # ---- identity and configuration ------------------------------------------------------
    problems = []
    ident = {"ID": ENGINE_ID, "HW_LANES": params.lanes, "HW_W_BITS": params.w_bits,
             "HW_T_MAX": params.t_max, "HW_IN_MAX": params.in_max, "HW_ACC_BITS": params.acc_bits,
             "HW_FRAC_BITS": params.frac_bits, "HW_THETA_BITS": params.theta_bits}
    for name, want in ident.items():
        got = await regs.read(name)
        if got != want:
            problems.append(f"register {name} = {got:#x}, expected {want:#x}")
    n_in = case.weights.shape[1]
    tap = bool(case.meta.get("acc_tap", True))
    config = case.engine_config(tap)
    for name, value in config.items():
        await regs.write(name, value)
    for name, value in config.items():
        got = await regs.read(name)
        if got != value:
            problems.append(f"register {name} read back {got}, wrote {value}")
    status = await regs.read("STATUS")
    if status & 0b110:
        problems.append(f"STATUS = {status:#x} after configuration (error bit set)")

    # ---- weights -------------------------------------------------------------------------
    rows = pack_weight_rows(case.weights, params.w_bits)
    inject = case.meta.get("inject")
    if inject == "weight-bit":
        # self-test of the testbench: flip lane 0's LSB in the first row an event reads
        first = int(case.events["index"][case.events["empty"] == 0][0])
        rows[first] ^= 1
    wdrv = StreamDriver(dut.clk, *stream_ports(dut, "w_stream"), name="w_stream")
    wdrv.send(addr | (row << params.index_bits) for addr, row in enumerate(rows))
    # a row per cycle, or every other cycle through alternating SRAM ports
    per_row = 2 if params.alternating_ports else 1
    await with_timeout(wdrv.wait_idle(), (per_row * len(rows) + 20) * CLOCK_NS, "ns")
    await ClockCycles(dut.clk, 2)

    # ---- reference model -> scoreboard ---------------------------------------------------
    sb = Scoreboard(log=log)
    exp_acc = case.expected_acc()
    exp_ev, _ = case.expected_out_events(exp_acc)
    modality = case.modality
    # with the tap off nothing may appear on o_acc: any transfer is an "extra output"
    sb.expect("acc", ({"acc": [int(v) for v in row], "modality": int(m)}
                      for row, m in zip(exp_acc, modality)) if tap else [])
    sb.expect("events", ({f: int(e[f]) for f in EVENT_FIELDS} for e in exp_ev))
    dec_acc = _acc_decoder(params)
    dec_ev = _event_decoder(out_layout)

    # ---- stream the events ---------------------------------------------------------------
    await regs.write("COUNTER_CLEAR", 1)
    await RisingEdge(dut.clk)
    acc_sink = StreamSink(dut.clk, *stream_ports(dut, "o_acc"), pause=sink_pause(), name="o_acc")
    ev_sink = StreamSink(dut.clk, *stream_ports(dut, "o_stream"), pause=sink_pause(), name="o_stream")
    acc_sink.add_callback(lambda w: sb.compare("acc", dec_acc(w)))
    ev_sink.add_callback(lambda w: sb.compare("events", dec_ev(w)))
    tokens_out = []   # tokens seen on o_stream (last_in_token), the testbench's TOKENS count
    ev_sink.add_callback(lambda w: tokens_out.append(1) if dec_ev(w)["last_in_token"] else None)
    mon = ActivityMonitor(dut, in_layout.width)
    drv = StreamDriver(dut.clk, *stream_ports(dut, "i_stream"), pause=src_pause(), name="i_stream")
    words = in_layout.pack(case.events)
    if inject == "drop-event":
        # self-test of the testbench: lose one non-empty event on the way to the DUT
        inner = np.flatnonzero((case.events["empty"] == 0) & (case.events["last_in_step"] == 0))
        k = int(inner[len(inner) // 2])
        words = np.delete(words, k)
        n_ev_case = len(case.events)
    else:
        n_ev_case = len(words)

    n_ev, n_out = len(words), len(exp_ev)
    # generous budget: every event, output event and token with the worst pause rate, x4
    budget = 4 * int((n_ev + n_out + 8 * case.n_tokens) / max(0.05, (1 - gap_p) * (1 - bp_p))) + 2000
    t_wall = time.perf_counter()
    t_sim0 = get_sim_time("ns")
    drv.send(words.tolist())

    async def drain():
        await drv.wait_idle()
        n_acc = len(exp_acc) if tap else 0
        while acc_sink.received < n_acc or ev_sink.received < n_out or dut.busy.value:
            await RisingEdge(dut.clk)
        await ClockCycles(dut.clk, 4)  # an extra output would show up here

    timed_out = False
    try:
        await with_timeout(drain(), budget * CLOCK_NS, "ns")
    except SimTimeoutError:
        timed_out = True
        problems.append(f"timeout: not drained after {budget} cycles (deadlock or lost output); "
                        f"sent {drv.sent}/{n_ev}, acc {acc_sink.received}/{len(exp_acc) if tap else 0}, "
                        f"events {ev_sink.received}/{n_out}")
    sim_cycles = int((get_sim_time("ns") - t_sim0) // CLOCK_NS)
    wall = time.perf_counter() - t_wall
    mon.running = False

    # ---- counters: hardware vs testbench ------------------------------------------------
    hw = {name: await regs.read(name) for name in COUNTERS}
    tb = {"CYCLES_BUSY": mon.busy_cycles, "EVENTS_IN": drv.sent, "EVENTS_OUT": ev_sink.received,
          "STALL_CYCLES": drv.wait_cycles, "TOKENS": len(tokens_out),
          "OUT_STALL_CYCLES": ev_sink.backpressure_cycles}
    for name in COUNTERS:
        if hw[name] != tb[name]:
            problems.append(f"counter {name}: hardware {hw[name]}, testbench {tb[name]}")
    if not timed_out:
        if drv.sent != n_ev_case:
            problems.append(f"sent {drv.sent} events, case has {n_ev_case}")
    status = await regs.read("STATUS")
    if status & 0b110:
        problems.append(f"STATUS = {status:#x} after the run (error bit set)")
    mismatches = sb.finish()
    violations = acc_sink.violations + ev_sink.violations

    mac_toggles, mac_bits = input_toggles(
        events_to_counts(case.events, n_in, horner=case.horner),
        a_bits=activation_bits(params.t_max), in_max=params.in_max)
    # firing rate of the input: spikes / (steps x inputs), steps counted from the stream itself
    nonempty = int(np.count_nonzero(case.events["empty"] == 0))
    slots = int(np.count_nonzero(case.events["last_in_step"])) * n_in
    result = {
        "passed": not problems and mismatches == 0 and not violations,
        "mismatches": mismatches,
        "mismatch_examples": sb.mismatches[:5],
        "violations": violations[:5],
        "problems": problems,
        "tokens": case.n_tokens,
        "events_in": hw["EVENTS_IN"],
        "events_out": hw["EVENTS_OUT"],
        "cycles_busy": hw["CYCLES_BUSY"],
        "stall_cycles": hw["STALL_CYCLES"],
        "out_stall_cycles": hw["OUT_STALL_CYCLES"],
        "valid_gap_cycles": drv.gap_cycles,
        "events_per_busy_cycle": hw["EVENTS_IN"] / hw["CYCLES_BUSY"] if hw["CYCLES_BUSY"] else None,
        # sustained input rate: accepted events per cycle with an event offered
        "events_per_offered_cycle": (hw["EVENTS_IN"] / (hw["EVENTS_IN"] + hw["STALL_CYCLES"])
                                     if hw["EVENTS_IN"] else None),
        "counters_hw": hw,
        "counters_tb": tb,
        "sim_cycles": sim_cycles,
        "sim_wall_s": wall,
        "spike_density": nonempty / slots if slots else None,
        "input_spikes": nonempty,
        "input_spike_slots": slots,
        # (token, index) pairs that fire at all: the row reads of a once-per-token datapath
        "input_active_inputs": active_inputs(case.events),
        "input_toggles": mon.toggles,
        "input_bit_cycles": mon.cycles * in_layout.width,
        # the same activations as a dense INT stream, for the MAC baseline's power
        "mac_input_toggles": mac_toggles,
        "mac_input_bit_cycles": mac_bits,
        "lanes": params.lanes,
        "in_features": n_in,
    }
    finish_case(entry['id'], result, problems, violations, mismatches, sb)


@cocotb.test(skip=not ENTRIES)
@cocotb.parametrize(entry=list(range(len(ENTRIES))) or [0])
async def engine_case(dut, entry):
    """Replay one manifest entry against the reference model."""
    await run_entry(dut, entry)
