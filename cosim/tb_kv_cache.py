"""cocotb testbench of the exported ``spike_kv_cache`` top (runs inside the simulator).

One cocotb test per (case, traffic) entry of the ``COSIM_CASES`` manifest. Each test:

1. resets the cache, appends every head's K planes token by token on ``append_stream``
   (random valid gaps in ``stress`` traffic) and checks ``count``, ``full`` and ``error``;
2. reads every (head, token) back on ``read_stream`` and one request past the count, and
   scores every query against its head's keys on ``query_stream``; ``read_data_stream`` and
   ``score_stream`` (random backpressure in ``stress``) are compared in order, bit for bit,
   with the appended planes and :func:`spikemllm.sw.numerics.popcount_score`;
3. when the case fills a head to ``kv_depth``: appends once more and checks the append is
   refused (``error`` set, ``count`` unchanged), then ``clear`` and an empty-head query;
4. writes its measurements to ``COSIM_RESULT_DIR/<id>.json``; a cycle budget catches
   deadlocks.
"""

from __future__ import annotations

import random
import time

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout

from spikemllm.hw.kv_cache import kv_cache_from_params
from spikemllm.hw.params import HwParams

from .bfm import StreamDriver, StreamSink, burst_pause, no_pause, random_pause, stream_ports
from .scoreboard import Scoreboard, finish_case
from .stimulus import json_from_env, load_case

CLOCK_NS = 10


MANIFEST = json_from_env("COSIM_CASES")
ENTRIES = MANIFEST["cases"] if MANIFEST else []


def _mask(bits):
    return sum(1 << i for i, b in enumerate(np.asarray(bits, dtype=bool).tolist()) if b)


async def run_entry(dut, entry_index):
    entry = ENTRIES[entry_index]
    params = HwParams.from_dict(MANIFEST["params"])
    kv = kv_cache_from_params(params)   # its pack/unpack helpers follow the port layouts
    case = load_case(entry["path"])
    log = dut._log
    rng = random.Random(cocotb.RANDOM_SEED + entry_index)
    gap_p, bp_p = entry["pause"]
    stress = entry["traffic"] != "free" and (gap_p or bp_p)

    def src():
        return random_pause(rng, gap_p) if stress else no_pause()

    def sink():
        return burst_pause(rng, bp_p, 6) if stress else no_pause()

    heads, tokens = case.k_pos.shape[0], case.k_pos.shape[1]
    problems = []
    if heads != params.heads or case.k_pos.shape[2] != params.t_kv or case.k_pos.shape[3] != params.head_dim:
        raise ValueError(f"KV case {case.name} shape {case.k_pos.shape} does not fit {params}")
    if tokens > params.kv_depth:
        raise ValueError(f"KV case {case.name}: {tokens} tokens exceed kv_depth={params.kv_depth}")

    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    for name in ("append_stream", "read_stream", "query_stream"):
        getattr(dut, f"{name}__valid").value = 0
    dut.read_data_stream__ready.value = 0
    dut.score_stream__ready.value = 0
    dut.clear.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)

    sb = Scoreboard(log=log)
    cnt_bits = kv.count_bits

    def counts():
        word = int(dut.count.value)
        return [(word >> (h * cnt_bits)) & ((1 << cnt_bits) - 1) for h in range(params.heads)]

    t_wall = time.perf_counter()
    t0 = get_sim_time("ns")
    cycles_budget = 0

    async def bounded(coro, cycles, what):
        try:
            await with_timeout(coro, cycles * CLOCK_NS, "ns")
        except SimTimeoutError:
            problems.append(f"timeout: {what} not done after {cycles} cycles")
            return False
        return True

    # ---- appends -------------------------------------------------------------------------
    app = StreamDriver(dut.clk, *stream_ports(dut, "append_stream"), pause=src(), name="append")
    words = [kv.pack_append(h, case.k_pos[h, n], case.k_neg[h, n])
             for n in range(tokens) for h in range(heads)]
    if case.meta.get("inject") == "k-bit":
        # self-test of the testbench: flip one stored K bit (head 0, token 0, first pos bit)
        words[0] ^= 1 << kv.head_bits
    app.send(words)
    n_app = heads * tokens
    budget = 4 * int(n_app * (params.t_kv + 1) / max(0.05, 1 - gap_p)) + 200
    cycles_budget += budget
    await bounded(app.wait_idle(), budget, "appends")
    await ClockCycles(dut.clk, 2)
    if counts() != [tokens] * heads:
        problems.append(f"count = {counts()} after {tokens} appends per head")
    want_full = (1 << heads) - 1 if tokens == params.kv_depth else 0
    if int(dut.full.value) != want_full:
        problems.append(f"full = {int(dut.full.value):#x}, expected {want_full:#x}")
    if int(dut.error.value):
        problems.append("error set by valid appends")

    # ---- reads and scores, both streams at once ----------------------------------------------
    rd_sink = StreamSink(dut.clk, *stream_ports(dut, "read_data_stream"), pause=sink(), name="read_data")
    sc_sink = StreamSink(dut.clk, *stream_ports(dut, "score_stream"), pause=sink(), name="score")
    rd_sink.add_callback(lambda w: sb.compare("read", kv.unpack_read_data(w)))
    sc_sink.add_callback(lambda w: sb.compare("score", kv.unpack_score(w)))
    reads, exp_reads = [], []
    for h in range(heads):
        for n in range(tokens):
            reads.append(kv.pack_read(h, n))
            for p in range(params.t_kv):
                exp_reads.append({"pos": _mask(case.k_pos[h, n, p]), "neg": _mask(case.k_neg[h, n, p]),
                                  "plane": p, "token": n, "in_range": 1,
                                  "last": int(p == params.t_kv - 1)})
    if tokens < (1 << kv.token_bits):   # one request past the count: zero planes, in_range 0
        reads.append(kv.pack_read(0, tokens))
        exp_reads += [{"pos": 0, "neg": 0, "plane": p, "token": tokens, "in_range": 0,
                       "last": int(p == params.t_kv - 1)} for p in range(params.t_kv)]
    scores = case.expected_scores()  # [queries, heads, tokens]
    queries, exp_scores = [], []
    for qi in range(case.q_pos.shape[0]):
        for h in range(heads):
            queries.append(kv.pack_query(h, case.q_pos[qi, h], case.q_neg[qi, h]))
            exp_scores += [{"score": int(scores[qi, h, n]), "token": n, "empty": 0,
                            "last": int(n == tokens - 1)} for n in range(tokens)]
    sb.expect("read", exp_reads)
    sb.expect("score", exp_scores)
    rdrv = StreamDriver(dut.clk, *stream_ports(dut, "read_stream"), pause=src(), name="read")
    qdrv = StreamDriver(dut.clk, *stream_ports(dut, "query_stream"), pause=src(), name="query")
    rdrv.send(reads)
    qdrv.send(queries)

    async def drain():
        await rdrv.wait_idle()
        await qdrv.wait_idle()
        while rd_sink.received < len(exp_reads) or sc_sink.received < len(exp_scores):
            await RisingEdge(dut.clk)
        await ClockCycles(dut.clk, 8)  # an extra beat would show up here

    work = len(exp_reads) + len(queries) * max(1, tokens) * params.t_kv + 10 * (len(reads) + len(queries))
    budget = 4 * int(work / max(0.05, (1 - gap_p) * (1 - bp_p))) + 500
    cycles_budget += budget
    await bounded(drain(), budget, "reads and scores")

    # ---- capacity: refuse past depth, then clear -----------------------------------------
    refused_checked = False
    if tokens == params.kv_depth and not problems:
        before = counts()
        app.send([kv.pack_append(0, case.k_pos[0, 0], case.k_neg[0, 0])])
        await bounded(app.wait_idle(), 50, "refused append")
        await ClockCycles(dut.clk, 2)
        if not int(dut.error.value):
            problems.append("append to a full head did not set error")
        if counts() != before:
            problems.append(f"append to a full head changed count {before} -> {counts()}")
        dut.clear.value = 1
        await RisingEdge(dut.clk)
        dut.clear.value = 0
        await ClockCycles(dut.clk, 2)
        if counts() != [0] * heads or int(dut.error.value) or int(dut.full.value):
            problems.append(f"clear left count={counts()} error={int(dut.error.value)}")
        sb.expect("score", [{"score": 0, "token": 0, "empty": 1, "last": 1}])
        qdrv.send([kv.pack_query(0, case.q_pos[0, 0], case.q_neg[0, 0])])
        await bounded(qdrv.wait_idle(), 50, "empty-head query")
        n = len(exp_scores) + 1

        async def one():
            while sc_sink.received < n:
                await RisingEdge(dut.clk)
            await ClockCycles(dut.clk, 8)

        await bounded(one(), 200, "empty-head score")
        refused_checked = True
    sim_cycles = int((get_sim_time("ns") - t0) // CLOCK_NS)
    wall = time.perf_counter() - t_wall
    mismatches = sb.finish()
    violations = rd_sink.violations + sc_sink.violations
    result = {
        "passed": not problems and mismatches == 0 and not violations,
        "mismatches": mismatches,
        "mismatch_examples": sb.mismatches[:5],
        "violations": violations[:5],
        "problems": problems,
        "appends": n_app,
        "reads": len(reads),
        "queries": len(queries),
        "scores": sc_sink.received,
        "read_beats": rd_sink.received,
        "capacity_checked": refused_checked,
        "backpressure_cycles": rd_sink.backpressure_cycles + sc_sink.backpressure_cycles,
        "sim_cycles": sim_cycles,
        "sim_wall_s": wall,
    }
    finish_case(entry['id'], result, problems, violations, mismatches, sb)


@cocotb.test(skip=not ENTRIES)
@cocotb.parametrize(entry=list(range(len(ENTRIES))) or [0])
async def kv_cache_case(dut, entry):
    """Replay one manifest entry against the reference model."""
    await run_entry(dut, entry)
