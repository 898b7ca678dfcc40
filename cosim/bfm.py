"""cocotb bus-functional models for Amaranth ``lib.stream`` ports (valid / ready / payload).

Layers, as in the cocotb examples:

* :class:`StreamDriver` puts words on a DUT input stream. A *pause generator* decides, cycle
  by cycle, whether the driver withholds ``valid`` (random valid gaps).
* :class:`StreamSink` drives ``ready`` of a DUT output stream from a pause generator
  (random backpressure) and hands every transfer to its callbacks (the monitor side).
  It also checks the stream rules the DUT must keep: once ``valid`` is high it stays high with
  the payload unchanged until the transfer.
* Pause generators are plain iterators of booleans seeded from one ``random.Random``, so a
  run is reproducible from ``COCOTB_RANDOM_SEED``.

Amaranth exports a stream member ``x`` of a component as top-level ports ``x__valid``,
``x__ready`` and ``x__payload`` (the payload struct flattened, first field at the LSB).
Handshakes are sampled on the rising edge (values before the edge), writes take effect
after it, the usual cocotb convention.
"""

from __future__ import annotations

import itertools
from collections import deque

import cocotb
from cocotb.triggers import Event, RisingEdge

__all__ = ["no_pause", "random_pause", "burst_pause", "StreamDriver", "StreamSink",
           "stream_ports"]


def no_pause():
    """Never pause: valid whenever data is queued, ready always."""
    return itertools.repeat(False)


def random_pause(rng, probability):
    """Pause each cycle independently with ``probability``."""
    while True:
        yield rng.random() < probability


def burst_pause(rng, probability, max_len=8):
    """Bursty pauses: with ``probability`` start a pause of 1..max_len cycles."""
    while True:
        if rng.random() < probability:
            for _ in range(rng.randint(1, max_len)):
                yield True
        else:
            yield False


def stream_ports(dut, name):
    """``(valid, ready, payload)`` handles of stream member ``name`` of an exported component."""
    return (getattr(dut, f"{name}__valid"), getattr(dut, f"{name}__ready"),
            getattr(dut, f"{name}__payload"))


class StreamDriver:
    """Drive words into a DUT input stream, one transfer per accepted cycle.

    ``valid`` is raised independently of ``ready`` (stream rule) and held with the payload
    until the DUT takes the word.
    """

    def __init__(self, clk, valid, ready, payload, pause=None, name="driver"):
        self.clk, self.valid, self.ready, self.payload = clk, valid, ready, payload
        self.pause = pause if pause is not None else no_pause()
        self.name = name
        self.queue = deque()
        self.sent = 0           # transfers completed
        self.gap_cycles = 0     # cycles the driver withheld valid while words were queued
        self.wait_cycles = 0    # cycles valid was high but ready low (DUT stall)
        self._idle = Event()
        self._idle.set()
        self.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send(self, words):
        self.queue.extend(int(w) for w in words)
        if self.queue:
            self._idle.clear()

    async def wait_idle(self):
        await self._idle.wait()

    async def _run(self):
        clk, valid, ready, payload = self.clk, self.valid, self.ready, self.payload
        queue = self.queue
        driving = False
        while True:
            await RisingEdge(clk)
            if driving:
                if ready.value:
                    queue.popleft()
                    self.sent += 1
                    driving = False
                else:
                    self.wait_cycles += 1
            if not driving:
                if queue and not next(self.pause):
                    payload.value = queue[0]
                    valid.value = 1
                    driving = True
                else:
                    if queue:
                        self.gap_cycles += 1
                    valid.value = 0
                    if not queue:
                        self._idle.set()


class StreamSink:
    """Accept words from a DUT output stream with optional backpressure.

    Every transfer calls each callback with the payload as an int. Protocol violations (valid
    dropped or payload changed before the transfer) are counted in ``violations``.
    """

    def __init__(self, clk, valid, ready, payload, pause=None, name="sink"):
        self.clk, self.valid, self.ready, self.payload = clk, valid, ready, payload
        self.pause = pause if pause is not None else no_pause()
        self.name = name
        self.callbacks = []
        self.received = 0
        self.backpressure_cycles = 0  # cycles valid was high and ready low
        self.violations = []
        self.ready.value = 0 if next(self.pause) else 1
        self._task = cocotb.start_soon(self._run())

    def add_callback(self, fn):
        self.callbacks.append(fn)

    async def _run(self):
        clk, valid, ready, payload = self.clk, self.valid, self.ready, self.payload
        pending = None  # payload offered but not taken in the previous cycle
        cycle = 0
        while True:
            await RisingEdge(clk)
            cycle += 1
            v = bool(valid.value)
            if pending is not None:
                if not v:
                    self.violations.append(f"{self.name}: valid dropped before transfer at cycle {cycle}")
                elif int(payload.value) != pending:
                    self.violations.append(f"{self.name}: payload changed before transfer at cycle {cycle}")
            if v and ready.value:
                word = int(payload.value)
                self.received += 1
                pending = None
                for fn in self.callbacks:
                    fn(word)
            elif v:
                self.backpressure_cycles += 1
                pending = int(payload.value)
            else:
                pending = None
            ready.value = 0 if next(self.pause) else 1
