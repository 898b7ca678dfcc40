"""cocotb self-test of the stream BFM (driver, sink, pause generators) on a 2-entry FIFO."""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

from spikemllm.cosim.bfm import StreamDriver, StreamSink, burst_pause, no_pause, random_pause, stream_ports


@cocotb.test()
@cocotb.parametrize(mode=["free", "gaps", "backpressure", "both"])
async def fifo_passes_every_word_once_in_order(dut, mode):
    rng = random.Random(cocotb.RANDOM_SEED)
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    src = random_pause(rng, 0.3) if mode in ("gaps", "both") else no_pause()
    bp = burst_pause(rng, 0.2, 6) if mode in ("backpressure", "both") else no_pause()
    drv = StreamDriver(dut.clk, *stream_ports(dut, "i_stream"), pause=src)
    sink = StreamSink(dut.clk, *stream_ports(dut, "o_stream"), pause=bp, name="o_stream")
    got = []
    sink.add_callback(got.append)
    words = [rng.randrange(1 << 16) for _ in range(500)]
    drv.send(words)

    async def drain():
        await drv.wait_idle()
        while len(got) < len(words):
            await RisingEdge(dut.clk)
        await ClockCycles(dut.clk, 5)

    await with_timeout(drain(), 100_000, "ns")
    assert got == words, "lost, duplicated or reordered words"
    assert not sink.violations, sink.violations
    if mode == "free":
        # 2-entry FIFO with both sides free: one word per clock after the fill latency
        assert drv.wait_cycles == 0
    if mode in ("backpressure", "both"):
        assert sink.backpressure_cycles > 0 and drv.wait_cycles > 0
    if mode in ("gaps", "both"):
        assert drv.gap_cycles > 0
    out = os.environ.get("COSIM_RESULT")
    if out:
        with open(out + f".{mode}", "w") as f:
            json.dump({"mode": mode, "words": len(got), "stalls": drv.wait_cycles}, f)
