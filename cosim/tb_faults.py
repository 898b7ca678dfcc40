"""Fault and stress cocotb tests of the exported ``spike_engine`` and ``spike_kv_cache`` tops.

Runs inside the simulator (see ``tests/cosim/test_cosim_faults.py`` and docs/cosim-faults.md).
The hardware configuration travels in a JSON file named by ``COSIM_FAULTS``
(``{"params": HwParams.to_dict(), "inject": [...]}``); each test writes its measurements to
``COSIM_RESULT_DIR/<test>.json`` before asserting. Engine tests are named ``engine_*`` and
KV-cache tests ``kv_*`` so that ``COCOTB_TEST_FILTER`` picks the ones that fit the top.

Tests (each checks that every expected output is seen exactly once, in order, through the
in-order :class:`~spikemllm.cosim.scoreboard.Scoreboard`, and that the engine's performance
counters equal the testbench's own counts):

* ``engine_reset_mid_token``: synchronous reset in the middle of a token, with traffic in
  flight; afterwards the engine is idle, registers hold their reset values, counters, STATUS
  and the KV counts are zero, and the full stream replayed on the weights loaded before the
  reset (weights survive reset) is bit-exact.
* ``engine_backpressure_storm``: ``o_stream`` and/or ``o_acc`` ready held low for 100..400
  cycles at a time while the input offers an event every cycle.
* ``engine_alternating_modality``: T switches on every token (Tv = 3 / Tt = 4), zero gaps.
* ``engine_kv_ports_capacity`` / ``kv_fill_beyond_capacity``: KV cache filled to capacity
  and beyond (refused, flagged, sticky error, exact ``full``, saturated count), every stored
  token read back and scored, then clear and refill.

``inject`` (testbench self-test, never in the regular suite) makes one expectation wrong per
test so that the pytest side can show each test is able to fail.

All randomness derives from ``COCOTB_RANDOM_SEED``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout

from spikemllm.hw.engine import K_COUNT_BASE, V_COUNT_BASE, SpikeEngine
from spikemllm.hw.kv_cache import kv_cache_from_params
from spikemllm.hw.params import HwParams
from spikemllm.sw import numerics as nx
from spikemllm.sw.events import EventLayout, pack_weight_rows, spikes_to_events

from .bfm import StreamDriver, StreamSink, burst_pause, no_pause, stream_ports
from .scoreboard import Scoreboard
from .stimulus import (EngineCase, KvCase, json_from_env, load_case, random_engine_case,
                       random_kv_case, token_T)
from .tb_engine import (CLOCK_NS, COUNTERS, EVENT_FIELDS, ActivityMonitor, RegisterPort,
                        _acc_decoder, _event_decoder)
from .tb_kv_cache import _mask


CONFIG = json_from_env("COSIM_FAULTS")
PARAMS = HwParams.from_dict(CONFIG["params"]) if CONFIG else None
INJECT = set(CONFIG.get("inject") or []) if CONFIG else set()
#: which parametrisation each injected wrong expectation breaks (one process runs them all)
INJECT_TARGET = {"weights-lost-on-reset": "first-token",
                 "counters-survive-reset": "blocked-output-long-hold",
                 "drop-output": "o_stream", "duplicate-output": "o_acc",
                 "stall-count-off-by-one": "both", "single-T": "tc-lif",
                 "kv-count-unsaturated": "engine_kv_ports_capacity"}


def _injected(what, variant):
    return what in INJECT and INJECT_TARGET[what] == variant
NO_CONFIG = CONFIG is None

#: long backpressure storms: ready low for STORM cycles, then ready for CALM cycles
STORM = (100, 400)
CALM = (5, 40)


# --------------------------------------------------------------------------------------------
# Small additions to the shared BFMs: stopping them (reset) and watching stall runs
# --------------------------------------------------------------------------------------------

class StoppableDriver(StreamDriver):
    """:class:`StreamDriver` that can be stopped (valid dropped) when the DUT is reset."""

    def stop(self):
        self._task.cancel()
        self.valid.value = 0


class StoppableSink(StreamSink):
    """:class:`StreamSink` that can be stopped; a reset may legally drop a pending valid."""

    def stop(self):
        self._task.cancel()
        self.ready.value = 0


def storm_pause(rng, lengths, storm=STORM, calm=CALM):
    """Backpressure storms: ready low for ``storm`` cycles, then high for ``calm`` cycles.

    Every storm length is appended to ``lengths`` (the testbench's record of the storms).
    """
    while True:
        n = rng.randint(*storm)
        lengths.append(n)
        for _ in range(n):
            yield True
        for _ in range(rng.randint(*calm)):
            yield False


class StallRunMonitor:
    """Longest run of cycles with ``valid`` high and ``ready`` low on one stream."""

    def __init__(self, clk, valid, ready):
        self.clk, self.valid, self.ready = clk, valid, ready
        self.longest = 0
        self.runs = 0        # runs of >= 100 cycles
        self._cur = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            if self.valid.value and not self.ready.value:
                self._cur += 1
                self.longest = max(self.longest, self._cur)
            else:
                if self._cur >= 100:
                    self.runs += 1
                self._cur = 0


def _require_config():
    # a filter that names a test runs it even when skipped: say clearly what is missing
    if CONFIG is None:
        raise RuntimeError("COSIM_FAULTS must name the JSON configuration file "
                           "(tests/cosim/test_cosim_faults.py writes it)")


def _rng(salt):
    return random.Random(cocotb.RANDOM_SEED * 1000 + salt)


def _np_seed(salt):
    return (cocotb.RANDOM_SEED * 1000 + salt) % (2 ** 32)


def _write_result(name, result):
    out_dir = os.environ.get("COSIM_RESULT_DIR")
    if out_dir:
        Path(out_dir, f"{name}.json").write_text(json.dumps(result, indent=1, default=int))


def _finish(name, result, problems, sb=None, violations=()):
    mismatches = sb.finish() if sb is not None else 0
    result.update(passed=not problems and mismatches == 0 and not violations,
                  problems=problems, mismatches=mismatches,
                  mismatch_examples=sb.mismatches[:5] if sb is not None else [],
                  violations=list(violations)[:5], inject=sorted(INJECT))
    _write_result(name, result)
    assert not problems, "; ".join(problems)
    assert not violations, list(violations)[:5]
    assert mismatches == 0, f"{mismatches} mismatches, first: {sb.mismatches[:3]}"


async def _bounded(coro, cycles, what, problems):
    try:
        await with_timeout(coro, cycles * CLOCK_NS, "ns")
    except SimTimeoutError:
        problems.append(f"timeout: {what} not done after {cycles} cycles (deadlock?)")
        return False
    return True


# --------------------------------------------------------------------------------------------
# Engine helpers
# --------------------------------------------------------------------------------------------

ENGINE_IN_STREAMS = ("i_stream", "w_stream", "k_append_stream", "k_read_stream",
                     "k_query_stream", "v_append_stream", "v_read_stream")
ENGINE_OUT_STREAMS = ("o_stream", "o_acc", "k_read_data_stream", "k_score_stream",
                      "v_read_data_stream")


async def _hold_reset(dut, edges):
    """Synchronous reset: rst high for ``edges`` rising edges (Amaranth needs >= 2)."""
    dut.rst.value = 1
    await ClockCycles(dut.clk, edges)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


async def _start_engine(dut):
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    for s in ENGINE_IN_STREAMS:
        if hasattr(dut, f"{s}__valid"):
            getattr(dut, f"{s}__valid").value = 0
    for s in ENGINE_OUT_STREAMS:
        if hasattr(dut, f"{s}__ready"):
            getattr(dut, f"{s}__ready").value = 0
    regs = RegisterPort(dut)
    await _hold_reset(dut, 3)
    return regs


async def _configure(regs, case, problems, tap=True):
    config = case.engine_config(tap)
    for name, value in config.items():
        await regs.write(name, value)
    for name, value in config.items():
        got = await regs.read(name)
        if got != value:
            problems.append(f"register {name} read back {got}, wrote {value}")


async def _load_weights(dut, params, weights, problems):
    rows = pack_weight_rows(weights, params.w_bits)
    wdrv = StoppableDriver(dut.clk, *stream_ports(dut, "w_stream"), name="w_stream")
    wdrv.send(addr | (int(row) << params.index_bits) for addr, row in enumerate(rows))
    # a row per cycle, or every other cycle through alternating SRAM ports
    per_row = 2 if params.alternating_ports else 1
    await _bounded(wdrv.wait_idle(), per_row * len(rows) + 20, "weight load", problems)
    wdrv.stop()
    await ClockCycles(dut.clk, 2)


def _expect_engine(sb, case, tap=True, weights=None):
    """Queue the reference's accumulators and output events; returns their counts."""
    w = case.weights if weights is None else weights
    ref = EngineCase(name=case.name, source=case.source, weights=w, events=case.events,
                     t_text=case.t_text, t_vision=case.t_vision, theta=case.theta,
                     frac_bits=case.frac_bits, horner=case.horner)
    acc = ref.expected_acc()
    ev, _ = ref.expected_out_events(acc)
    sb.expect("acc", ({"acc": [int(v) for v in row], "modality": int(m)}
                      for row, m in zip(acc, ref.modality)) if tap else [])
    sb.expect("events", ({f: int(e[f]) for f in EVENT_FIELDS} for e in ev))
    return (len(acc) if tap else 0), len(ev)


class EngineStream:
    """One event stream through the engine: a driver, two monitored sinks, a busy monitor.

    ``on_event`` hooks (word -> list of words to compare) let the self-test inject a lost
    or duplicated output between the sink and the scoreboard.
    """

    def __init__(self, dut, params, sb, *, src_pause=None, ev_pause=None, acc_pause=None,
                 on_event=None):
        self.dut = dut
        self.acc_sink = StoppableSink(dut.clk, *stream_ports(dut, "o_acc"), pause=acc_pause,
                                      name="o_acc")
        self.ev_sink = StoppableSink(dut.clk, *stream_ports(dut, "o_stream"), pause=ev_pause,
                                     name="o_stream")
        dec_acc = _acc_decoder(params)
        dec_ev = _event_decoder(EventLayout(params.lanes, params.t_max))
        self.accs, self.events = [], []
        self.tokens_out = 0

        def got_acc(word):
            d = dec_acc(word)
            self.accs.append(d)
            sb.compare("acc", d)

        def got_event(word):
            d = dec_ev(word)
            self.events.append(d)
            self.tokens_out += d["last_in_token"]
            for w in (on_event(word) if on_event else [word]):
                sb.compare("events", dec_ev(w))

        self.acc_sink.add_callback(got_acc)
        self.ev_sink.add_callback(got_event)
        self.mon = ActivityMonitor(dut, EventLayout(params.in_max, params.t_max).width)
        self.drv = StoppableDriver(dut.clk, *stream_ports(dut, "i_stream"), pause=src_pause,
                                   name="i_stream")

    def stop(self):
        self.drv.stop()
        self.acc_sink.stop()
        self.ev_sink.stop()
        self.mon.running = False
        self.mon._task.cancel()

    async def drain(self, n_acc, n_out):
        await self.drv.wait_idle()
        while (self.acc_sink.received < n_acc or self.ev_sink.received < n_out
               or self.dut.busy.value):
            await RisingEdge(self.dut.clk)
        await ClockCycles(self.dut.clk, 4)  # an extra output would show up here

    def tb_counters(self):
        return {"CYCLES_BUSY": self.mon.busy_cycles, "EVENTS_IN": self.drv.sent,
                "EVENTS_OUT": self.ev_sink.received, "STALL_CYCLES": self.drv.wait_cycles,
                "TOKENS": self.tokens_out, "OUT_STALL_CYCLES": self.ev_sink.backpressure_cycles}

    @property
    def violations(self):
        return self.acc_sink.violations + self.ev_sink.violations


async def _play(stream, words, n_acc, n_out, budget, what, problems, regs):
    """Send ``words``, drain the expected outputs within ``budget`` cycles, stop the BFMs and
    read the counters. Returns ``(sim_cycles, wall_seconds, hw_counters, tb_counters)``."""
    t_wall, t0 = time.perf_counter(), get_sim_time("ns")
    stream.drv.send(words)
    await _bounded(stream.drain(n_acc, n_out), budget, what, problems)
    sim_cycles = int((get_sim_time("ns") - t0) // CLOCK_NS)
    wall = time.perf_counter() - t_wall
    stream.stop()
    return sim_cycles, wall, await _read_counters(regs), stream.tb_counters()


async def _read_counters(regs):
    return {name: await regs.read(name) for name in COUNTERS}


def _compare_counters(hw, tb, problems):
    for name in COUNTERS:
        if hw[name] != tb[name]:
            problems.append(f"counter {name}: hardware {hw[name]}, testbench {tb[name]}")


def _budget(n_ev, n_out, n_tokens, ready_fraction=1.0):
    """Cycle budget (4x the work at the worst ready fraction); running out = deadlock."""
    return 4 * int((n_ev + n_out + 8 * n_tokens) / max(0.01, ready_fraction)) + 2000


# --------------------------------------------------------------------------------------------
# 1. Reset in mid-token
# --------------------------------------------------------------------------------------------

RESET_POINTS = {
    # token to cut, fraction of its events accepted before reset, rst edges, backpressure
    # bursts (probability), o_stream held not ready until the reset (block)
    "first-token": dict(token=0, frac=0.4, hold=2, bp=0.0, block=False),
    "mid-stream-backpressure": dict(token=3, frac=0.6, hold=2, bp=0.3, block=False),
    # everything in flight: token 0 stuck in the firing unit (o_stream valid, not ready),
    # token 1 behind it in the pipeline, token 2 half accumulated; rst 5 edges
    "blocked-output-long-hold": dict(token=2, frac=0.5, hold=5, bp=0.3, block=True),
}


@cocotb.test(skip=NO_CONFIG)
@cocotb.parametrize(point=list(RESET_POINTS))
async def engine_reset_mid_token(dut, point):
    """Reset mid-token: idle, reset values, counters 0, partial token gone, weights kept."""
    _require_config()
    name = f"engine_reset_mid_token-{point}"
    spec = RESET_POINTS[point]
    p = PARAMS
    rng = _rng(1 + list(RESET_POINTS).index(point))
    # T registers away from their reset values (Tt 4 / Tv 3), so the reset visibly restores
    # every configuration register
    case = random_engine_case(p, seed=_np_seed(11), n_tokens=6, in_features=min(p.in_max, 64),
                              density=0.5, t_text=max(1, min(4, p.t_max) - 1),
                              t_vision=max(1, min(3, p.t_max) - 1), name="reset")
    problems = []
    engine = SpikeEngine(params=p)
    if case.theta == engine.reset_values()["THETA"]:
        case.theta += 1
    same = [k for k, v in case.engine_config().items() if engine.reset_values()[k] == v]
    if same:
        problems.append(f"configuration equals the reset values in {same}: reset not observable")
    regs = await _start_engine(dut)
    await _configure(regs, case, problems)
    await _load_weights(dut, p, case.weights, problems)
    # a sticky error and some KV state, which the reset must clear
    await regs.write("HW_LANES", 1)           # read-only: sets STATUS.cfg_error
    kc, vc = kv_cache_from_params(p), kv_cache_from_params(p, with_score=False)
    kv = random_kv_case(p, seed=_np_seed(12), tokens=2, queries=1)
    kdrv = StoppableDriver(dut.clk, *stream_ports(dut, "k_append_stream"), name="k_append")
    vdrv = StoppableDriver(dut.clk, *stream_ports(dut, "v_append_stream"), name="v_append")
    kdrv.send([kc.pack_append(0, kv.k_pos[0, n], kv.k_neg[0, n]) for n in range(2)])
    vdrv.send([vc.pack_append(1, kv.k_pos[1, 0], kv.k_neg[1, 0])])
    await _bounded(kdrv.wait_idle(), 100, "K appends", problems)
    await _bounded(vdrv.wait_idle(), 100, "V appends", problems)
    kdrv.stop()
    vdrv.stop()
    await ClockCycles(dut.clk, 2)
    pre_kv = (await _read_addr(regs, K_COUNT_BASE), await _read_addr(regs, V_COUNT_BASE + 1))
    if pre_kv != (2, 1):
        problems.append(f"K_COUNT[0], V_COUNT[1] = {pre_kv} before reset, expected (2, 1)")
    pre_status = await regs.read("STATUS")
    if not pre_status & 0b10:
        problems.append(f"STATUS = {pre_status:#x}: cfg_error not set by a read-only write")
    await regs.write("COUNTER_CLEAR", 1)
    await RisingEdge(dut.clk)

    # ---- phase 1: stream, cut in mid-token ------------------------------------------------
    ev = case.events
    ends = np.flatnonzero(ev["last_in_token"]) + 1          # event counts at token ends
    start = 0 if spec["token"] == 0 else int(ends[spec["token"] - 1])
    length = int(ends[spec["token"]]) - start
    cut = start + max(1, min(length - 1, int(spec["frac"] * length)))  # events accepted
    sb1 = Scoreboard(log=dut._log)
    n_acc, n_out = _expect_engine(sb1, case)
    bp = (lambda: burst_pause(rng, spec["bp"], 6)) if spec["bp"] else no_pause
    s1 = EngineStream(dut, p, sb1, ev_pause=itertools.repeat(True) if spec["block"] else bp(),
                      acc_pause=bp())
    words = EventLayout(p.in_max, p.t_max).pack(ev).tolist()
    s1.drv.send(words)

    async def until_sent(n):
        while s1.drv.sent < n:
            await RisingEdge(dut.clk)

    await _bounded(until_sent(cut - 2), _budget(cut, n_out, 6, 0.5), "events before reset",
                   problems)
    events_in_seen = await regs.read("EVENTS_IN")    # counter running, snapshot
    await _bounded(until_sent(cut), 2000, "events before reset", problems)
    accepted = s1.drv.sent
    busy_at_reset = int(dut.busy.value)
    out_pending_at_reset = int(dut.o_stream__valid.value) and not int(dut.o_stream__ready.value)
    in_stalled_at_reset = int(dut.i_stream__valid.value) and not int(dut.i_stream__ready.value)
    s1.stop()
    dut.rst.value = 1
    await ClockCycles(dut.clk, spec["hold"])
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    in_token = bool(ev["last_in_token"][accepted - 1] == 0)
    if not in_token:
        problems.append(f"reset point {accepted} is not inside a token")
    if not 0 < events_in_seen <= accepted:
        problems.append(f"EVENTS_IN = {events_in_seen} before reset, {accepted} accepted")
    if not busy_at_reset:
        problems.append("engine not busy at the reset point")
    if spec["block"] and not out_pending_at_reset:
        problems.append("o_stream not pending (valid, not ready) at the reset point")
    # what came out before the reset is a correct prefix (scoreboard): nothing lost inside
    # it, nothing duplicated; the cut token's outputs can never have left
    pre = {"acc": s1.acc_sink.received, "events": s1.ev_sink.received,
           "mismatches": sb1.n_mismatches, "events_in": accepted}
    if sb1.n_mismatches:
        problems += [f"before reset: {m}" for m in sb1.mismatches[:3]]
    if s1.acc_sink.received > spec["token"] or s1.ev_sink.received >= n_out:
        problems.append(f"outputs of the cut token left the engine: {pre}")

    # ---- right after reset: idle, reset values, zero counters --------------------------
    idle = {"busy": int(dut.busy.value), "o_stream__valid": int(dut.o_stream__valid.value),
            "o_acc__valid": int(dut.o_acc__valid.value), "error": int(dut.error.value)}
    if any(idle.values()):
        problems.append(f"not idle after reset: {idle}")
    after = {n: await regs.read(n) for n in engine.reset_values()}
    after_counters = await _read_counters(regs)
    after_status = await regs.read("STATUS")
    after_kv = {"KV_STATUS": await regs.read("KV_STATUS"),
                "K_COUNT": [await _read_addr(regs, K_COUNT_BASE + h) for h in range(p.heads)],
                "V_COUNT": [await _read_addr(regs, V_COUNT_BASE + h) for h in range(p.heads)]}
    if after != engine.reset_values():
        problems.append(f"registers after reset {after}, reset values {engine.reset_values()}")
    want_counters = dict.fromkeys(COUNTERS, 0)
    if _injected("counters-survive-reset", point):   # self-test: a wrong expectation must fail
        want_counters["EVENTS_IN"] = accepted
    if after_counters != want_counters:
        problems.append(f"counters after reset {after_counters}, expected {want_counters}")
    if after_status != 0:
        problems.append(f"STATUS = {after_status:#x} after reset, expected 0")
    if after_kv != {"KV_STATUS": 0, "K_COUNT": [0] * p.heads, "V_COUNT": [0] * p.heads}:
        problems.append(f"KV state after reset {after_kv}")

    # ---- phase 2: the whole stream, weights NOT reloaded, counters NOT cleared -------------
    await _configure(regs, case, problems)
    sb2 = Scoreboard(log=dut._log)
    zero_w = np.zeros_like(case.weights) if _injected("weights-lost-on-reset", point) else None
    n_acc, n_out = _expect_engine(sb2, case, weights=zero_w)
    s2 = EngineStream(dut, p, sb2, ev_pause=bp(), acc_pause=bp())
    sim_cycles, wall, hw, tb = await _play(
        s2, words, n_acc, n_out, _budget(len(words), n_out, case.n_tokens, 0.5),
        "stream after reset", problems, regs)
    _compare_counters(hw, tb, problems)
    if s2.drv.sent != len(words):
        problems.append(f"sent {s2.drv.sent} of {len(words)} events after reset")
    status = await regs.read("STATUS")
    if status & 0b1110:
        problems.append(f"STATUS = {status:#x} after the run")
    result = {"point": point, "rst_edges": spec["hold"], "backpressure": spec["bp"],
              "tokens": case.n_tokens, "events": len(words), "cut_token": spec["token"],
              "events_before_reset": accepted, "events_of_cut_token_before_reset": accepted - start,
              "cut_token_events": length, "before_reset": pre,
              "o_stream_pending_at_reset": bool(out_pending_at_reset),
              "i_stream_stalled_at_reset": bool(in_stalled_at_reset),
              "events_in_snapshot_before_reset": events_in_seen,
              "registers_configured": case.engine_config(),
              "registers_after_reset": after, "counters_after_reset": after_counters,
              "status_before_reset": pre_status, "status_after_reset": after_status,
              "kv_after_reset": after_kv, "kv_counts_before_reset": list(pre_kv),
              "counters_hw": hw, "counters_tb": tb, "expected_events_out": n_out,
              "sim_cycles": sim_cycles, "sim_wall_s": wall}
    _finish(name, result, problems, sb2, s1.violations + s2.violations)


async def _read_addr(regs, addr):
    """Read a register by word address (the K_COUNT/V_COUNT arrays have no REG names)."""
    d = regs.dut
    d.cfg_addr.value = addr
    d.cfg_we.value = 0
    await RisingEdge(d.clk)
    await RisingEdge(d.clk)
    return int(d.cfg_rdata.value)


# --------------------------------------------------------------------------------------------
# 2. Long backpressure storms
# --------------------------------------------------------------------------------------------

@cocotb.test(skip=NO_CONFIG)
@cocotb.parametrize(where=["o_stream", "o_acc", "both"])
async def engine_backpressure_storm(dut, where):
    """Ready low for 100..400 cycles at a time while the input offers every cycle."""
    _require_config()
    name = f"engine_backpressure_storm-{where}"
    p = PARAMS
    rng = _rng(10 + ["o_stream", "o_acc", "both"].index(where))
    case = random_engine_case(p, seed=_np_seed(20), n_tokens=10, in_features=min(p.in_max, 64),
                              density=0.5, name="storm")
    problems = []
    regs = await _start_engine(dut)
    await _configure(regs, case, problems)
    await _load_weights(dut, p, case.weights, problems)
    sb = Scoreboard(log=dut._log)
    n_acc, n_out = _expect_engine(sb, case)
    storms = {"o_stream": [], "o_acc": []}
    ev_pause = storm_pause(rng, storms["o_stream"]) if where in ("o_stream", "both") else None
    acc_pause = storm_pause(rng, storms["o_acc"]) if where in ("o_acc", "both") else None

    injected = {"n": 0}

    def on_event(word):
        # self-test: the 40th output event lost / delivered twice between DUT and scoreboard
        injected["n"] += 1
        if injected["n"] == 40 and _injected("drop-output", where):
            return []
        if injected["n"] == 40 and _injected("duplicate-output", where):
            return [word, word]
        return [word]

    await regs.write("COUNTER_CLEAR", 1)
    await RisingEdge(dut.clk)
    s = EngineStream(dut, p, sb, ev_pause=ev_pause, acc_pause=acc_pause, on_event=on_event)
    runs = {"o_stream": StallRunMonitor(dut.clk, dut.o_stream__valid, dut.o_stream__ready),
            "o_acc": StallRunMonitor(dut.clk, dut.o_acc__valid, dut.o_acc__ready),
            "i_stream": StallRunMonitor(dut.clk, dut.i_stream__valid, dut.i_stream__ready)}
    words = EventLayout(p.in_max, p.t_max).pack(case.events).tolist()
    worst_ready = CALM[0] / (STORM[1] + CALM[0])
    budget = _budget(len(words), n_out, case.n_tokens, worst_ready)
    sim_cycles, wall, hw, tb = await _play(s, words, n_acc, n_out, budget, "storm stream",
                                           problems, regs)
    if _injected("stall-count-off-by-one", where):   # self-test: a wrong expectation must fail
        tb["STALL_CYCLES"] += 1
    _compare_counters(hw, tb, problems)
    if s.drv.sent != len(words):
        problems.append(f"sent {s.drv.sent} of {len(words)} events")
    if s.drv.gap_cycles:
        problems.append(f"the input withheld valid for {s.drv.gap_cycles} cycles")
    for port in (["o_stream", "o_acc"] if where == "both" else [where]):
        if runs[port].longest < STORM[0]:
            problems.append(f"no backpressure storm of >= {STORM[0]} cycles on {port} "
                            f"(longest {runs[port].longest})")
    if hw["STALL_CYCLES"] == 0:
        problems.append("the storms never stalled the input")
    result = {"where": where, "tokens": case.n_tokens, "events_in": len(words),
              "events_out": n_out, "storm_cycles": STORM, "calm_cycles": CALM,
              "storms": {k: len(v) for k, v in storms.items()},
              "storm_ready_low_cycles": {k: sum(v) for k, v in storms.items()},
              "longest_stall_run": {k: m.longest for k, m in runs.items()},
              "stall_runs_ge_100": {k: m.runs for k, m in runs.items()},
              "o_acc_backpressure_cycles": s.acc_sink.backpressure_cycles,
              "counters_hw": hw, "counters_tb": tb, "budget_cycles": budget,
              "sim_cycles": sim_cycles, "sim_wall_s": wall}
    _finish(name, result, problems, sb, s.violations)


# --------------------------------------------------------------------------------------------
# 3. Back-to-back tokens, modality (and so T) alternating every token
# --------------------------------------------------------------------------------------------

def alternating_case(params, seed, *, coding, n_tokens=12, n_in=64, t_text=4, t_vision=3):
    """Tokens v, t, v, t, ...: random tc-lif counts (or ternary spikes), every third token
    nearly empty so that short tokens follow long ones back to back."""
    rng = np.random.default_rng(seed)
    t_text, t_vision = min(t_text, params.t_max), min(t_vision, params.t_max)
    modality = (np.arange(n_tokens) % 2 == 0).astype(np.int64)     # vision first
    T = token_T(modality, t_text, t_vision)
    w = rng.integers(params.w_min, params.w_max + 1, size=(params.lanes, n_in))
    spikes = np.zeros((int(T.max()), n_tokens, n_in), dtype=np.int8)
    for n in range(n_tokens):
        density = 0.03 if n % 3 == 2 else 0.5
        if coding == "tc-lif":
            qm = (1 << int(T[n])) - 1
            q = np.where(rng.random(n_in) < density,
                         rng.choice([-1, 1], n_in) * rng.integers(1, qm + 1, n_in), 0)
            spikes[: T[n], n] = nx.encode(q, "tc-lif", int(T[n]) + 1)
        else:
            s = rng.choice(np.array([-1, 1], dtype=np.int8), size=(int(T[n]), n_in))
            spikes[: T[n], n] = np.where(rng.random((int(T[n]), n_in)) < density, s, 0)
    ev = spikes_to_events(spikes, T, modality)
    horner = coding == "tc-lif"
    case = EngineCase(name=f"alternating-{coding}", source=f"fault:alternating-{coding}",
                      weights=w, events=ev, t_text=t_text, t_vision=t_vision, theta=1,
                      frac_bits=params.frac_bits, horner=horner)
    acc = case.expected_acc()
    # theta: about 0.7 of the largest |acc| per top level, so some lanes saturate, some are 0
    step = max(1, int(np.abs(acc).max(initial=0))) / ((1 << t_text) - 1) * 0.7
    case.theta = int(min(max(1, round(step * (1 << params.frac_bits))),
                         (1 << params.theta_bits) - 1))
    return case


def interleave_modalities(case):
    """``case`` with its tokens reordered so that vision and text tokens alternate (v, t, ...).

    Used on real spike trains (a golden layer with 4 vision then 4 text tokens). Tokens are
    independent for the PE array (accumulators restart at each last_in_token), so the
    reordered stream has the same per-token reference results, in the new order.
    """
    ev = case.events
    ends = np.flatnonzero(ev["last_in_token"]) + 1
    tokens = np.split(ev, ends[:-1])
    vision = [t for t in tokens if t["modality"][-1] == 1]
    text = [t for t in tokens if t["modality"][-1] == 0]
    if not vision or not text:
        raise ValueError(f"case {case.name}: needs tokens of both modalities")
    order = []
    for i in range(max(len(vision), len(text))):
        order += vision[i:i + 1] + text[i:i + 1]
    return EngineCase(name=f"{case.name}-alternating", source=case.source + ":alternating",
                      weights=case.weights, events=np.concatenate(order), t_text=case.t_text,
                      t_vision=case.t_vision, theta=case.theta, frac_bits=case.frac_bits,
                      horner=case.horner, meta=dict(case.meta))


#: random tc-lif counts, random ternary spikes (CTRL.horner = 0) and, when the pytest side
#: found a golden multimodal layer, its real spike trains reordered to alternate
CODINGS = ["tc-lif", "ternary"] + (["real"] if CONFIG and CONFIG.get("real_case") else [])


@cocotb.test(skip=NO_CONFIG)
@cocotb.parametrize(coding=CODINGS)
async def engine_alternating_modality(dut, coding):
    """T switches on every token (Tv = 3 / Tt = 4), no gaps: bit-exact, counters agree."""
    _require_config()
    name = f"engine_alternating_modality-{coding}"
    p = PARAMS
    if coding == "real":
        case = load_case(CONFIG["real_case"])
    else:
        case = alternating_case(p, _np_seed(30 + (coding == "ternary")), coding=coding)
    problems = []
    regs = await _start_engine(dut)
    await _configure(regs, case, problems)
    await _load_weights(dut, p, case.weights, problems)
    sb = Scoreboard(log=dut._log)
    ref = case
    if _injected("single-T", coding):   # self-test: ignore MSTS (every token with Tt) -> must fail
        ref = EngineCase(**{**case.__dict__, "t_vision": case.t_text})
    n_acc, n_out = _expect_engine(sb, ref)
    await regs.write("COUNTER_CLEAR", 1)
    await RisingEdge(dut.clk)
    s = EngineStream(dut, p, sb)
    words = EventLayout(p.in_max, p.t_max).pack(case.events).tolist()
    sim_cycles, wall, hw, tb = await _play(
        s, words, n_acc, n_out, _budget(len(words), n_out, case.n_tokens),
        "alternating stream", problems, regs)
    _compare_counters(hw, tb, problems)
    if s.drv.gap_cycles:
        problems.append(f"input gaps: {s.drv.gap_cycles}")
    # the modality (and with it T) really alternated on both outputs
    acc_mod = [a["modality"] for a in s.accs]
    tok_mod = [e["modality"] for e in s.events if e["last_in_token"]]
    tok_T = []
    steps = 0
    for e in s.events:
        steps += e["last_in_step"]
        if e["last_in_token"]:
            tok_T.append(steps)
            steps = 0
    want_mod = case.modality.tolist()
    if acc_mod != want_mod or tok_mod != want_mod:
        problems.append(f"modality per token: o_acc {acc_mod}, o_stream {tok_mod}, want {want_mod}")
    if tok_T != case.T_out.tolist():
        problems.append(f"steps per output token {tok_T}, want {case.T_out.tolist()}")
    ends = np.flatnonzero(case.events["last_in_token"]) + 1
    events_per_token = np.diff(np.concatenate([[0], ends]))
    result = {"coding": coding, "source": case.source, "horner": case.horner,
              "tokens": case.n_tokens,
              "t_text": case.t_text, "t_vision": case.t_vision, "theta": case.theta,
              "modality": want_mod, "steps_out": tok_T,
              "events_in_per_token": events_per_token.tolist(), "events_in": len(words),
              "events_out": n_out, "counters_hw": hw, "counters_tb": tb,
              "events_per_busy_cycle": (hw["EVENTS_IN"] / hw["CYCLES_BUSY"]
                                        if hw["CYCLES_BUSY"] else None),
              "sim_cycles": sim_cycles, "sim_wall_s": wall}
    _finish(name, result, problems, sb, s.violations)


# --------------------------------------------------------------------------------------------
# 4. KV cache filled to capacity and beyond
# --------------------------------------------------------------------------------------------

def _read_expect(planes_pos, planes_neg, token, t_kv, in_range=True):
    out = []
    for pl in range(t_kv):
        out.append({"pos": _mask(planes_pos[pl]) if in_range else 0,
                    "neg": _mask(planes_neg[pl]) if in_range else 0,
                    "plane": pl, "token": token, "in_range": int(in_range),
                    "last": int(pl == t_kv - 1)})
    return out


def _score_expect(k_pos, k_neg, q_pos, q_neg):
    """Scores of one query (planes [t_q, d]) against keys [n, t_kv, d] of one head."""
    n = k_pos.shape[0]
    if n == 0:
        return [{"score": 0, "token": 0, "empty": 1, "last": 1}]
    one = KvCase(name="q", source="fault", k_pos=k_pos[None], k_neg=k_neg[None],
                 q_pos=q_pos[None, None], q_neg=q_neg[None, None])
    s = one.expected_scores()[0, 0]
    return [{"score": int(s[i]), "token": i, "empty": 0, "last": int(i == n - 1)}
            for i in range(n)]


class KvPorts:
    """Drivers and sinks of one KV cache's streams (standalone top or the engine's k_/v_)."""

    def __init__(self, dut, prefix, sb, channel, *, with_score, rng=None, bp=0.0):
        def port(name):
            return stream_ports(dut, f"{prefix}{name}")

        def pause():
            return burst_pause(rng, bp, 6) if bp else None

        self.append = StoppableDriver(dut.clk, *port("append_stream"), name=f"{prefix}append")
        self.read = StoppableDriver(dut.clk, *port("read_stream"), name=f"{prefix}read")
        self.read_data = StoppableSink(dut.clk, *port("read_data_stream"), pause=pause(),
                                       name=f"{prefix}read_data")
        self.cache = None
        self.query = self.score = None
        if with_score:
            self.query = StoppableDriver(dut.clk, *port("query_stream"), name=f"{prefix}query")
            self.score = StoppableSink(dut.clk, *port("score_stream"), pause=pause(),
                                       name=f"{prefix}score")
        self.channel = channel
        self.sb = sb

    def bind(self, cache):
        self.cache = cache
        ch = self.channel
        self.read_data.add_callback(
            lambda w: self.sb.compare(f"{ch}-read", cache.unpack_read_data(w)))
        if self.score is not None:
            self.score.add_callback(lambda w: self.sb.compare(f"{ch}-score", cache.unpack_score(w)))

    def stop(self):
        for x in (self.append, self.read, self.read_data, self.query, self.score):
            if x is not None:
                x.stop()

    @property
    def violations(self):
        return self.read_data.violations + (self.score.violations if self.score else [])


class KvModel:
    """What the testbench expects a non-ring cache to hold: per head, the accepted vectors."""

    def __init__(self, heads, depth):
        self.depth = depth
        self.pos = [[] for _ in range(heads)]
        self.neg = [[] for _ in range(heads)]
        self.error = False
        self.accepted = self.refused = 0

    def append(self, head, pos, neg):
        if len(self.pos[head]) < self.depth:
            self.pos[head].append(pos)
            self.neg[head].append(neg)
            self.accepted += 1
        else:
            self.refused += 1
            self.error = True

    def clear(self):
        for h in range(len(self.pos)):
            self.pos[h].clear()
            self.neg[h].clear()
        self.error = False

    def counts(self):
        return [len(x) for x in self.pos]

    def full(self):
        return sum(1 << h for h, x in enumerate(self.pos) if len(x) == self.depth)

    def keys(self, head, t_kv, d):
        if not self.pos[head]:
            z = np.zeros((0, t_kv, d), dtype=bool)
            return z, z
        return np.stack(self.pos[head]), np.stack(self.neg[head])


async def _kv_fill(dut, ports, model, items, *, check, problems, step=False):
    """Append ``items`` [(head, pos, neg)]; with ``step`` one at a time, checking after each."""
    cache = ports.cache
    if not step:
        ports.append.send([cache.pack_append(h, pp, nn) for h, pp, nn in items])
        for h, pp, nn in items:
            model.append(h, pp, nn)
        await _bounded(ports.append.wait_idle(), 4 * len(items) * (cache.t_kv + 1) + 50,
                       "appends", problems)
        await ClockCycles(dut.clk, 2)
        await check()
        return
    for h, pp, nn in items:
        ports.append.send([cache.pack_append(h, pp, nn)])
        model.append(h, pp, nn)
        await _bounded(ports.append.wait_idle(), 4 * (cache.t_kv + 1) + 50, "append", problems)
        await ClockCycles(dut.clk, 2)
        await check()


async def _kv_read_all(dut, ports, model, sb, queries, problems, *, past_count=True):
    """Read every stored (head, token) (and one past the count), score ``queries``."""
    cache, ch = ports.cache, ports.channel
    t_kv, d = cache.t_kv, cache.head_dim
    reads, exp_reads = [], []
    for h, n_h in enumerate(model.counts()):
        for n in range(n_h):
            reads.append(cache.pack_read(h, n))
            exp_reads += _read_expect(model.pos[h][n], model.neg[h][n], n, t_kv)
        if past_count and n_h < (1 << cache.token_bits):
            reads.append(cache.pack_read(h, n_h))
            exp_reads += _read_expect(None, None, n_h, t_kv, in_range=False)
    sb.expect(f"{ch}-read", exp_reads)
    n_reads0 = ports.read_data.received
    ports.read.send(reads)
    exp_scores = []
    n_scores0 = ports.score.received if ports.score else 0
    if ports.query is not None:
        for h, qp, qn in queries:
            kp, kn = model.keys(h, t_kv, d)
            exp_scores += _score_expect(kp, kn, qp, qn)
        sb.expect(f"{ch}-score", exp_scores)
        ports.query.send([cache.pack_query(h, qp, qn) for h, qp, qn in queries])

    async def drain():
        await ports.read.wait_idle()
        if ports.query is not None:
            await ports.query.wait_idle()
        while (ports.read_data.received - n_reads0 < len(exp_reads)
               or (ports.score is not None and ports.score.received - n_scores0 < len(exp_scores))):
            await RisingEdge(dut.clk)
        await ClockCycles(dut.clk, 8)   # an extra beat would show up here

    work = len(exp_reads) + len(exp_scores) * t_kv + 10 * (len(reads) + len(queries))
    await _bounded(drain(), 4 * int(work / 0.4) + 500, f"{ch} reads and scores", problems)
    return len(exp_reads), len(exp_scores)


def _kv_vectors(params, seed, tokens):
    c = random_kv_case(params, seed=seed, tokens=tokens, queries=2)
    return c


@cocotb.test(skip=NO_CONFIG)
async def kv_fill_beyond_capacity(dut):
    """spike_kv_cache: fill to depth and beyond, read all back, clear, refill."""
    _require_config()
    name = "kv_fill_beyond_capacity"
    p = PARAMS
    rng = _rng(40)
    depth, heads = p.kv_depth, p.heads
    problems = []
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    for s in ("append_stream", "read_stream", "query_stream"):
        getattr(dut, f"{s}__valid").value = 0
    dut.read_data_stream__ready.value = 0
    dut.score_stream__ready.value = 0
    dut.clear.value = 0
    await _hold_reset(dut, 3)
    sb = Scoreboard(log=dut._log)
    ports = KvPorts(dut, "", sb, "kv", with_score=True, rng=rng, bp=0.3)
    cache = kv_cache_from_params(p)
    ports.bind(cache)
    model = KvModel(heads, depth)
    cnt_bits = cache.count_bits
    checks = {"n": 0, "full_exact": 0}

    def counts():
        word = int(dut.count.value)
        return [(word >> (h * cnt_bits)) & ((1 << cnt_bits) - 1) for h in range(heads)]

    async def check():
        checks["n"] += 1
        want = (model.counts(), model.full(), int(model.error))
        got = (counts(), int(dut.full.value), int(dut.error.value))
        if got != want:
            problems.append(f"after {model.accepted} accepted / {model.refused} refused appends: "
                            f"(count, full, error) = {got}, expected {want}")
        elif got[1]:
            checks["full_exact"] += 1

    A = _kv_vectors(p, _np_seed(41), depth)
    B = _kv_vectors(p, _np_seed(42), 4)        # vectors that must be refused
    C = _kv_vectors(p, _np_seed(43), depth)    # refill after clear
    vec = lambda c, h, n: (h, c.k_pos[h, n], c.k_neg[h, n])   # noqa: E731

    # fill: back to back up to depth - 2, then one at a time up to and past capacity
    t0 = get_sim_time("ns")
    t_wall = time.perf_counter()
    await _kv_fill(dut, ports, model,
                   [vec(A, h, n) for n in range(depth - 2) for h in range(heads)],
                   check=check, problems=problems)
    near = [vec(A, 0, depth - 2), vec(A, 0, depth - 1),        # head 0 full
            vec(A, 1, depth - 2),                              # head 1 one short
            vec(B, 0, 0),                                      # refused: error
            vec(A, 1, depth - 1)]                              # accepted; error stays (sticky)
    await _kv_fill(dut, ports, model, near, check=check, problems=problems, step=True)
    # a burst of refused appends, back to back: each is taken in one cycle
    burst = [vec(B, h, n) for n in range(1, 4) for h in range(heads)]
    c_burst = get_sim_time("ns")
    await _kv_fill(dut, ports, model, burst, check=check, problems=problems)
    burst_cycles = int((get_sim_time("ns") - c_burst) // CLOCK_NS)
    if ports.append.sent != model.accepted + model.refused:
        problems.append(f"append driver sent {ports.append.sent}, model took "
                        f"{model.accepted} + refused {model.refused}")
    if counts() != [depth] * heads:
        problems.append(f"count {counts()} does not saturate at depth {depth}")
    # every stored token read back (refused data must not have overwritten anything), scored
    queries = [(h, A.q_pos[q, h], A.q_neg[q, h]) for q in range(2) for h in range(heads)]
    n_read_beats, n_scores = await _kv_read_all(dut, ports, model, sb, queries, problems)
    await check()                                              # error still set after reads
    full_cycles = int((get_sim_time("ns") - t0) // CLOCK_NS)
    refused_first = model.refused

    # clear, refill with other data: head 0 partly, head 1 to capacity and one more
    dut.clear.value = 1
    await RisingEdge(dut.clk)
    dut.clear.value = 0
    model.clear()
    await ClockCycles(dut.clk, 2)
    await check()
    n0 = depth // 3
    refill = ([vec(C, 0, n) for n in range(n0)] + [vec(C, 1, n) for n in range(depth)]
              + [vec(B, 1, 0)])
    await _kv_fill(dut, ports, model, refill, check=check, problems=problems)
    queries = [(h, C.q_pos[0, h], C.q_neg[0, h]) for h in range(heads)]
    r2, s2 = await _kv_read_all(dut, ports, model, sb, queries, problems)
    # clear once more: an empty head answers one empty score beat
    dut.clear.value = 1
    await RisingEdge(dut.clk)
    dut.clear.value = 0
    model.clear()
    await ClockCycles(dut.clk, 2)
    await check()
    r3, s3 = await _kv_read_all(dut, ports, model, sb, [(0, C.q_pos[1, 0], C.q_neg[1, 0])],
                                problems)
    sim_cycles = int((get_sim_time("ns") - t0) // CLOCK_NS)
    wall = time.perf_counter() - t_wall
    ports.stop()
    result = {"heads": heads, "depth": depth, "t_kv": p.t_kv, "head_dim": p.head_dim,
              "ring_mode_in_export": bool(cache.ring),
              "appends_accepted": model.accepted, "appends_refused": model.refused,
              "refused_before_clear": refused_first, "flag_checks": checks["n"],
              "checks_with_full_set": checks["full_exact"],
              "refused_burst": len(burst), "refused_burst_cycles": burst_cycles,
              "read_beats": ports.read_data.received, "scores": ports.score.received,
              "read_beats_expected": n_read_beats + r2 + r3, "scores_expected": n_scores + s2 + s3,
              "backpressure_cycles": ports.read_data.backpressure_cycles
              + ports.score.backpressure_cycles,
              "cycles_fill_to_readback": full_cycles, "sim_cycles": sim_cycles, "sim_wall_s": wall}
    _finish(name, result, problems, sb, ports.violations)


@cocotb.test(skip=NO_CONFIG)
async def engine_kv_ports_capacity(dut):
    """The engine's K and V caches past capacity: KV_STATUS, STATUS, error port, counts,
    read-back, KV_CLEAR of K alone and then V."""
    _require_config()
    name = "engine_kv_ports_capacity"
    p = PARAMS
    rng = _rng(50)
    depth, heads = p.kv_depth, p.heads
    problems = []
    regs = await _start_engine(dut)
    sb = Scoreboard(log=dut._log)
    K = KvPorts(dut, "k_", sb, "k", with_score=True, rng=rng, bp=0.3)
    V = KvPorts(dut, "v_", sb, "v", with_score=False, rng=rng, bp=0.3)
    K.bind(kv_cache_from_params(p))
    V.bind(kv_cache_from_params(p, with_score=False))
    km, vm = KvModel(heads, depth), KvModel(heads, depth)
    n_checks = {"n": 0}

    async def check():
        n_checks["n"] += 1
        kc = [await _read_addr(regs, K_COUNT_BASE + h) for h in range(heads)]
        vcnt = [await _read_addr(regs, V_COUNT_BASE + h) for h in range(heads)]
        kv_status = await regs.read("KV_STATUS")
        status = await regs.read("STATUS")
        want_kc = km.counts()
        if _injected("kv-count-unsaturated", name) and km.refused:
            want_kc = [c + (c == depth) for c in want_kc]
        want_status = (int(km.error) | int(vm.error) << 1 | int(km.full() != 0) << 2
                       | int(vm.full() != 0) << 3)
        kv_err = int(km.error or vm.error)
        got = (kc, vcnt, kv_status, (status >> 3) & 1, int(dut.error.value))
        want = (want_kc, vm.counts(), want_status, kv_err, kv_err)
        if got != want:
            problems.append(f"(K_COUNT, V_COUNT, KV_STATUS, STATUS.kv_error, error) = {got}, "
                            f"expected {want}")

    A = _kv_vectors(p, _np_seed(51), depth)
    Bv = _kv_vectors(p, _np_seed(52), depth)
    vec = lambda c, h, n: (h, c.k_pos[h, n], c.k_neg[h, n])   # noqa: E731
    t0, t_wall = get_sim_time("ns"), time.perf_counter()
    # K: both heads to capacity, then one refused; V: head 1 full + one refused, head 0 three
    await _kv_fill(dut, K, km, [vec(A, h, n) for n in range(depth) for h in range(heads)],
                   check=check, problems=problems)
    await _kv_fill(dut, V, vm,
                   [vec(Bv, 1, n) for n in range(depth)] + [vec(Bv, 0, n) for n in range(3)],
                   check=check, problems=problems)
    await _kv_fill(dut, K, km, [vec(Bv, 0, 0)], check=check, problems=problems, step=True)
    await _kv_fill(dut, V, vm, [vec(A, 1, 0)], check=check, problems=problems, step=True)
    queries = [(h, A.q_pos[0, h], A.q_neg[0, h]) for h in range(heads)]
    rk, sk = await _kv_read_all(dut, K, km, sb, queries, problems)
    rv, _ = await _kv_read_all(dut, V, vm, sb, [], problems)
    await check()
    # KV_CLEAR bit 0 empties K only: V's error and full stay
    await regs.write("KV_CLEAR", 0b01)
    km.clear()
    await ClockCycles(dut.clk, 2)
    await check()
    await regs.write("KV_CLEAR", 0b10)
    vm.clear()
    await ClockCycles(dut.clk, 2)
    await check()
    # refill K a little after the clear: the new data is what reads back
    await _kv_fill(dut, K, km, [vec(Bv, h, n) for n in range(2) for h in range(heads)],
                   check=check, problems=problems)
    rk2, sk2 = await _kv_read_all(dut, K, km, sb, queries, problems)
    sim_cycles = int((get_sim_time("ns") - t0) // CLOCK_NS)
    wall = time.perf_counter() - t_wall
    K.stop()
    V.stop()
    result = {"heads": heads, "depth": depth, "t_kv": p.t_kv,
              "k_accepted": km.accepted, "k_refused": km.refused,
              "v_accepted": vm.accepted, "v_refused": vm.refused,
              "k_read_beats": K.read_data.received, "k_scores": K.score.received,
              "v_read_beats": V.read_data.received,
              "expected": {"k_read_beats": rk + rk2, "k_scores": sk + sk2, "v_read_beats": rv},
              "register_checks": n_checks["n"], "sim_cycles": sim_cycles, "sim_wall_s": wall}
    _finish(name, result, problems, sb, K.violations + V.violations)
