"""A memory read through the two ports of a 1rw1r SRAM macro in turn, one read per clock at
twice the macro's own clock limit: the ASIC weight memories' read path."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AlternatingPortMemory", "ALTERNATING_PORTS_ATTR", "check_alternating_ports"]

#: Yosys attribute on the memory: the synthesis flow times its port 0 (read/write) and port 1
#: (read) as clocked at half the core clock, rising at the even and the odd core edges
ALTERNATING_PORTS_ATTR = "spk_alternating_ports"


def check_alternating_ports(alternating_ports, read_register):
    """ValueError unless ``alternating_ports`` is a bool, and False with ``read_register``
    (the blocks' ``alternating_ports`` keyword: an asic-style memory, not the fpga style's
    registered block RAMs)."""
    if not isinstance(alternating_ports, bool):
        raise ValueError(f"alternating_ports must be True or False, not {alternating_ports!r}")
    if alternating_ports and read_register:
        raise ValueError("alternating_ports needs read_register=False, not read_register=True")


class AlternatingPortMemory(wiring.Component):
    """``depth`` words of ``shape``, read once per clock through two half-rate ports in turn.

    The cited sky130 OpenRAM macro (:mod:`spikemllm.hw.sram_model`) needs 6.875 ns per
    access on each port and drives its read data 3.382 ns after its clock's *falling* edge.
    Here each of its two ports gets its own clock at half the core clock, 50 % duty: port 0
    (read and write) rises at the edges that end a cycle with ``phase`` 0, port 1 (read) at
    the others. A read issued at a core edge has its word a core period plus 3.382 ns later,
    and the word is registered at the second core edge after its address, from the port that
    read it. One read per clock then needs only a core period of 3.382 ns plus the port
    multiplexer and the register's setup (and at least half the macro's 6.875 ns).

    The memory serves a pipeline that holds as a whole (a stall): reads move through two
    stages, ``a1`` (the port is reading) and ``a2`` (the word is registered at the end of
    this cycle), which advance at each edge where ``hold`` is low, as the consumer's own
    pipeline registers do. A read is issued (``r_en`` and ``r_ready``) only to the port of the
    cycle's phase, and only when that port holds no word still waiting for the register (one
    in ``a1``): a port is never read again before its word is registered, whatever the
    stalls, and a port's output holds while it is not read. A write takes port 0 in a cycle
    of phase 0 (``w_ready``, half the clock rate), and no read is issued in that cycle:
    writes come first, so neither side starves (reads keep the phase-1 cycles). A write does
    not change port 0's read data (the macro updates its output only on a read).

    In the simulation model each port is an ``amaranth.lib.memory`` read port clocked by the
    core clock and enabled in its phase's cycles only, which reads at the same edges as the
    half-rate port; its word is on the port one cycle early, and the register takes it where
    the macro has it. The synthesis flow (``spikemllm synth``) sees the memory's
    :data:`ALTERNATING_PORTS_ATTR` attribute and times each port with its half-rate clock.

    Parameters
    ----------
    shape : shape-castable
        One word.
    depth : int
        Words, 1..2**20.

    Members
    -------
    phase : Out(1)
        0 in a cycle that ends with port 0's clock edge, 1 with port 1's.
    r_addr, r_en : In
        A read of ``r_addr`` is issued at an edge where ``r_en`` and ``r_ready`` are high.
    r_ready : Out(1)
        A read may be issued at this edge: ``hold`` is low, no write takes the port, and the
        phase's port has no word waiting for the register.
    hold : In(1)
        The consumer's pipeline holds: nothing is issued and the reads in flight stay put.
    r_data : Out(shape)
        The read register: a word issued at edge e is on it after the second edge after e
        at which ``hold`` was low, and stays until the next word is registered.
    r_valid : Out(1)
        ``r_data`` was loaded at the last advancing edge (a word, not a bubble).
    w_addr, w_data, w_en : In
        A write of ``w_data`` to ``w_addr`` at an edge where ``w_en`` and ``w_ready`` are high.
    w_ready : Out(1)
        Port 0 can write at this edge (``phase`` 0).
    """

    #: advancing edges from a read's issue to its word on ``r_data``
    READ_LATENCY = 2
    #: reads issued per clock with no stall and no write
    THROUGHPUT = 1
    #: writes per clock at most (port 0 is clocked every other cycle)
    WRITE_THROUGHPUT = 0.5

    def __init__(self, *, shape, depth):
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 1 << 20:
            self._MustUse__silence = True  # never built: no "created but never used" warning
            raise ValueError(f"depth must be an integer in 1..{1 << 20}, not {depth!r}")
        self.shape, self.depth = shape, depth
        super().__init__({
            "phase": Out(1),
            "r_addr": In(range(depth)), "r_en": In(1), "r_ready": Out(1), "hold": In(1),
            "r_data": Out(shape), "r_valid": Out(1),
            "w_addr": In(range(depth)), "w_data": In(shape), "w_en": In(1), "w_ready": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=self.shape, depth=self.depth, init=[],
                                               attrs={ALTERNATING_PORTS_ATTR: 1})
        wp = mem.write_port()
        ports = [mem.read_port(), mem.read_port()]  # port 0's reads, then port 1's

        m.d.sync += self.phase.eq(~self.phase)
        a1_valid, a1_port = Signal(name="a1_valid"), Signal(name="a1_port")  # a port reads
        # its word is registered at this edge
        a2_valid, a2_port = Signal(name="a2_valid"), Signal(name="a2_port")
        write = Signal()
        issue = Signal()
        m.d.comb += [
            self.w_ready.eq(~self.phase),
            write.eq(self.w_en & self.w_ready),
            wp.addr.eq(self.w_addr), wp.data.eq(self.w_data), wp.en.eq(write),
            self.r_ready.eq(~self.hold & ~write & ~(a1_valid & (a1_port == self.phase))),
            issue.eq(self.r_en & self.r_ready),
        ]
        for p, port in enumerate(ports):
            m.d.comb += [port.addr.eq(self.r_addr), port.en.eq(issue & (self.phase == p))]
        with m.If(~self.hold):
            m.d.sync += [a1_valid.eq(issue), a2_valid.eq(a1_valid), self.r_valid.eq(a2_valid)]
            # the port bits (the multiplexer's select) change only with a read: no toggling
            # while the memory idles
            with m.If(issue):
                m.d.sync += a1_port.eq(self.phase)
            with m.If(a1_valid):
                m.d.sync += a2_port.eq(a1_port)
            with m.If(a2_valid):
                m.d.sync += self.r_data.eq(Mux(a2_port, ports[1].data, ports[0].data))
        return m
