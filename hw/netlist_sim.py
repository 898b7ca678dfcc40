"""Cycle simulation of a Yosys gate-level netlist on traffic recorded from the RTL.

``spikemllm synth --clock-gating`` needs the enable duty of every clock gate (ICG) that
Yosys's ``clockgate`` inserts, on real traffic: OpenSTA then prices each gated group of
flip-flops at a clock of its own (docs/synthesis.md). This module gives it:

* :class:`PortTrace`: every port of a design, sampled at every clock edge of an Amaranth
  simulation (:func:`record_ports` adds the recorder), stored as bits in an ``.npz`` file;
* :class:`GateNetlist`: the fine-grained netlist Yosys writes with ``write_json`` before
  ``dfflibmap`` (``$_AND_``, ``$_MUX_``, ... gates; ``$_DFF_``/``$_SDFF*_``/``$_DFFE_``
  flip-flops; ICG cells with ``GATE``/``CLK``/``GCLK`` pins; the flow's SRAM macro-array
  stubs, rebuilt into memories from their instance names and the ``<top>.mems.json``
  geometry, and the buffers of their address and data trees).
  :meth:`GateNetlist.simulate` drives its inputs from a trace, checks every output against
  the trace at every cycle, and counts the cycles each ICG's enable is high. It also takes
  the mapped sky130 netlist with every cell replaced by its Liberty function (the same
  gates and ``$_DFF_P_``), for which it counts every net's toggles and ones: the per-net
  activity that ``spikemllm synth`` gives OpenSTA.

The check is what makes the duty trustworthy: a netlist that disagrees with the RTL on any
output bit in any cycle raises :class:`NetlistMismatch`.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["PortTrace", "component_ports", "trace_misfit", "record_ports", "GateNetlist",
           "GatingRun", "NetlistMismatch"]

#: two-input (or one- or three-input) gates: input pins in order
_GATES = {"$_AND_": ("A", "B"), "$_OR_": ("A", "B"), "$_XOR_": ("A", "B"), "$_NOT_": ("A",),
          "$_MUX_": ("A", "B", "S"), "$_ANDNOT_": ("A", "B"), "$_ORNOT_": ("A", "B"),
          "$_NAND_": ("A", "B"), "$_NOR_": ("A", "B"), "$_XNOR_": ("A", "B"), "$_BUF_": ("A",)}
_FF_RE = re.compile(r"^\$_(DFF|DFFE|SDFF|SDFFE|SDFFCE)_([PN01]+)_$")
#: instance names of scripts/synth/sram_stub_map.v's cells, after flatten: per port and bank
#: of 256 words, each 32-bit macro's address bits and enable (``col[c]``) and the bank's data
_STUB_RE = re.compile(r"^(?P<mem>.+)\.(?P<dir>rd|wr)\[(?P<p>\d+)\]\.bank\[(?P<b>\d+)\]\."
                      r"(?:col\[(?P<c>\d+)\]\.(?:addr\[(?P<i>\d+)\]\.d|(?P<en>en))"
                      r"|data\[(?P<j>\d+)\]\.(?P<pin>q|d))$")
#: words and data bits of one macro (sram_stub_map.v)
_MACRO_WORDS, _MACRO_WIDTH = 256, 32


class NetlistMismatch(ValueError):
    """The netlist's outputs differ from the trace's."""


@dataclass
class PortTrace:
    """Every port of a design at every clock edge: ``bits[cycle]`` holds the ports' values
    side by side (port ``k`` in ``bits[:, offsets[k]:offsets[k] + widths[k]]``, LSB first).
    ``params`` is the configuration the design was built with (``HwParams.to_dict()``), where
    the recorder knows it."""
    names: list
    inputs: list                   # bool per port: driven by the testbench
    widths: list
    bits: np.ndarray               # uint8 [cycles, sum(widths)]
    source: str = ""
    params: dict | None = None

    @property
    def cycles(self):
        return self.bits.shape[0]

    def port(self, k):
        lo = sum(self.widths[:k])
        return self.bits[:, lo:lo + self.widths[k]]

    def save(self, path):
        np.savez_compressed(path, bits=np.packbits(self.bits, axis=1),
                            meta=np.frombuffer(json.dumps(
                                {"names": self.names, "inputs": self.inputs,
                                 "widths": self.widths, "cycles": self.cycles,
                                 "source": self.source, "params": self.params}).encode(),
                                dtype=np.uint8))

    @staticmethod
    def header(path):
        """The trace's metadata (names, inputs, widths, cycles, source, params) without its
        bits."""
        with np.load(path, allow_pickle=False) as z:
            return json.loads(bytes(z["meta"]).decode())

    @classmethod
    def load(cls, path):
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            total = sum(meta["widths"])
            bits = np.unpackbits(z["bits"], axis=1, count=total)
        if bits.shape[0] != meta["cycles"]:
            raise ValueError(f"{path}: {bits.shape[0]} cycles stored, {meta['cycles']} stated")
        return cls(meta["names"], meta["inputs"], meta["widths"], bits, meta.get("source", ""),
                   meta.get("params"))


def component_ports(dut):
    """``[(name, is_input, value), ...]``: every port of ``dut`` (a ``wiring.Component``),
    named as Amaranth's RTLIL backend names it."""
    from amaranth.hdl import Value
    from amaranth.lib import wiring

    return [("__".join(str(p) for p in path), member.flow == wiring.In, Value.cast(value))
            for path, member, value in dut.signature.flatten(dut)]


def trace_misfit(dut, trace_paths):
    """Why the traces at ``trace_paths`` cannot drive ``dut``'s netlist (a port the design
    lacks, or of another width: a trace of another configuration), or None when they fit.
    Reads only the traces' headers, so a flow can tell before it synthesises."""
    ports = {n: len(v) for n, _, v in component_ports(dut)}
    for path in trace_paths:
        meta = PortTrace.header(path)
        for name, width in zip(meta["names"], meta["widths"]):
            if name not in ports:
                return f"{Path(path).name}: port {name!r} is not a port of the design"
            if ports[name] != width:
                return (f"{Path(path).name}: port {name}: {width} bits in the trace, "
                        f"{ports[name]} in the design")
    return None


def record_ports(sim, dut):
    """Add a background testbench to ``sim`` that samples every port of ``dut`` (a
    ``wiring.Component``, ports named as Amaranth's RTLIL backend names them) at every clock
    edge from the start. Returns a callable that builds the :class:`PortTrace` after
    ``sim.run()``."""
    ports = component_ports(dut)
    sigs = [v for _, _, v in ports]
    rows = []

    async def recorder(ctx):
        while True:
            _, _, *vals = await ctx.tick().sample(*sigs)
            rows.append(vals)

    sim.add_testbench(recorder, background=True)

    def build(source=""):
        widths = [len(v) for _, _, v in ports]
        bits = np.zeros((len(rows), sum(widths)), dtype=np.uint8)
        lo = 0
        for k, w in enumerate(widths):
            col = np.array([r[k] & ((1 << w) - 1) for r in rows], dtype=object)
            for b in range(w):
                bits[:, lo + b] = (col >> b) & 1
            lo += w
        return PortTrace([n for n, _, _ in ports], [i for _, i, _ in ports], widths, bits,
                         source)
    return build


@dataclass
class GatingRun:
    """What :meth:`GateNetlist.simulate` measured."""
    cycles: int
    duty: dict                     # ICG instance -> fraction of cycles its enable was high
    flop_toggles: int              # Q transitions of every flip-flop
    clocked_edges: float           # clock edges the flip-flops received (gated ones fewer)
    flops: int
    gated_flops: int
    checked_output_bits: int = 0
    #: with ``count_nets``: per net bit (the netlist's bit numbers), the cycles in which it
    #: differs from the cycle before, and the cycles in which it is 1 (zero-delay: one
    #: value per cycle, no glitches)
    net_toggles: np.ndarray = None
    net_ones: np.ndarray = None


class GateNetlist:
    """A Yosys JSON netlist (one flattened module) ready to simulate; see the module doc."""

    def __init__(self, netlist_json, top, mems_json=None, *, icg_pins=("GATE", "CLK", "GCLK")):
        d = json.loads(Path(netlist_json).read_text())
        if top not in d.get("modules", {}):
            raise ValueError(f"{netlist_json}: no module {top!r}")
        m = d["modules"][top]
        hi = 1
        for v in m["netnames"].values():
            hi = max([hi] + [b for b in v["bits"] if isinstance(b, int)])
        for c in m["cells"].values():
            for bits in c["connections"].values():
                hi = max([hi] + [b for b in bits if isinstance(b, int)])
        self.c0, self.c1 = hi + 1, hi + 2       # constant 0 (also x, z) and 1
        self.n = hi + 3

        def bit(b):
            if isinstance(b, int):
                return b
            return self.c1 if b == "1" else self.c0
        self.ports = {n: ([bit(b) for b in p["bits"]], p["direction"])
                      for n, p in m["ports"].items()}
        #: every wire's bits as the JSON gives them (net numbers, or "0"/"1"/"x" constants)
        self.netnames = {n: w["bits"] for n, w in m["netnames"].items()}
        gate_pin, clk_pin, gclk_pin = icg_pins
        gates, ffs, stubs = [], [], []
        self.icgs = {}                           # GCLK net -> (name, GATE net)
        for name, c in m["cells"].items():
            t, con = c["type"], c["connections"]
            if t in _GATES:
                gates.append((t, [bit(con[p][0]) for p in _GATES[t]], bit(con["Y"][0])))
            elif _FF_RE.match(t):
                ffs.append((t, {k: bit(v[0]) for k, v in con.items()}))
            elif gclk_pin in con and gate_pin in con:
                self.icgs[bit(con[gclk_pin][0])] = (name, bit(con[gate_pin][0]))
            elif t == "spk_sram_buf":               # the macro array's address trees
                gates.append(("$_BUF_", [bit(con["A"][0])], bit(con["X"][0])))
            elif t == "spk_sram_and":
                gates.append(("$_AND_", [bit(con["A"][0]), bit(con["B"][0])], bit(con["X"][0])))
            elif t.startswith("spk_sram"):
                stubs.append((name, {k: bit(v[0]) for k, v in con.items()}))
            elif t == "$scopeinfo":
                continue
            else:
                raise ValueError(f"{netlist_json}: cell {name} of type {t} cannot be simulated")
        self._levelize(gates)
        self._flops(ffs)
        self._memories(stubs, mems_json, top)

    def _levelize(self, gates):
        driver = {out: k for k, (_, _, out) in enumerate(gates)}
        users = defaultdict(list)
        indeg = [0] * len(gates)
        for k, (_, ins, _) in enumerate(gates):
            for b in ins:
                if b in driver:
                    indeg[k] += 1
                    users[driver[b]].append(k)
        level = [0] * len(gates)
        ready = [k for k, n in enumerate(indeg) if n == 0]
        seen = 0
        while ready:
            k = ready.pop()
            seen += 1
            for u in users[k]:
                level[u] = max(level[u], level[k] + 1)
                indeg[u] -= 1
                if indeg[u] == 0:
                    ready.append(u)
        if seen != len(gates):
            raise ValueError("the netlist has a combinational loop")
        groups = defaultdict(list)
        for k, (t, _, _) in enumerate(gates):
            groups[(level[k], t)].append(k)
        self._plan = [(t, [np.array([gates[k][1][j] for k in ks]) for j in range(len(_GATES[t]))],
                       np.array([gates[k][2] for k in ks]))
                      for (_, t), ks in sorted(groups.items())]

    def _flops(self, ffs):
        q, d, r, e, rv, over, gate = [], [], [], [], [], [], []
        self._launch = []                         # (net a clock edge drives, its clock net)
        for t, con in ffs:
            kind, pol = _FF_RE.match(t).groups()
            if "N" in pol or (kind.startswith("SDFF") and pol[2] not in "01"):
                raise ValueError(f"flip-flop type {t} is not supported")
            q.append(con["Q"])
            d.append(con["D"])
            r.append(con.get("R", self.c0))
            e.append(con.get("E", self.c1))
            rv.append(int(pol[2]) if kind.startswith("SDFF") else 0)
            over.append(kind == "SDFFE")          # reset overrides enable
            gate.append(self.icgs[con["C"]][1] if con["C"] in self.icgs else self.c1)
            self._launch.append((con["Q"], con["C"]))
        self._q, self._d, self._r, self._e, self._gate = map(
            lambda x: np.array(x, dtype=np.int64), (q, d, r, e, gate))
        self._rv = np.array(rv, dtype=np.uint8)
        self._over = np.array(over, dtype=np.uint8)
        self.flops = len(ffs)
        self.gated_flops = sum(con["C"] in self.icgs for _, con in ffs)

    def _memories(self, stubs, mems_json, top):
        """Rebuild each memory from its stubs: per port, per bank of 256 words, the enable
        and address nets of its first macro (the others' are the same nets) and the bank's
        data nets, by bit, with the write enable of each 32-bit macro."""
        self.mems = {}
        if not stubs:
            return
        if mems_json is None:
            raise ValueError("the netlist has SRAM stubs: give the <top>.mems.json geometry")
        cells = json.loads(Path(mems_json).read_text())["modules"][top]["cells"].values()
        geo = {c["parameters"]["MEMID"].lstrip("\\"): c["parameters"] for c in cells}
        for name, con in stubs:
            mt = _STUB_RE.match(name)
            if not mt:
                raise ValueError(f"SRAM stub {name}: not a name sram_stub_map.v gives")
            mem = self.mems.setdefault(mt["mem"], {"rd": defaultdict(dict), "wr": defaultdict(dict)})
            bank = mem[mt["dir"]][int(mt["p"])].setdefault(
                int(mt["b"]), {"en": {}, "addr": {}, "data": {}})
            if mt["en"]:
                bank["en"][int(mt["c"])] = con["D"]
            elif mt["i"] is not None:
                if mt["c"] == "0":
                    bank["addr"][int(mt["i"])] = con["D"]
            elif mt["pin"] == "q":
                self._launch.append((con["Q"], con.get("CLK", self.c0)))
                bank["data"][int(mt["j"])] = con["Q"]
            else:
                bank["data"][int(mt["j"])] = con["D"]
        for mname, mem in self.mems.items():
            if mname not in geo:
                raise ValueError(f"memory {mname} is not in {mems_json}")
            p = geo[mname]
            size, width = int(p["SIZE"], 2), int(p["WIDTH"], 2)
            if "1" in p.get("RD_TRANSPARENCY_MASK", "0"):
                raise ValueError(f"memory {mname}: transparent read ports are not supported")
            if "1" in p.get("OFFSET", "0"):
                raise ValueError(f"memory {mname}: a memory with an address offset is not "
                                 "supported")
            init = p.get("INIT", "")
            arr = np.zeros((size, width), dtype=np.uint8)
            if len(init) == size * width and set(init) <= {"0", "1"}:
                arr = np.array([int(ch) for ch in init[::-1]], dtype=np.uint8).reshape(size, width)
            mem.update(arr=arr, size=size, width=width)
            for port in list(mem["rd"].values()) + list(mem["wr"].values()):
                for bank in port.values():
                    bank["addr_bits"] = np.array([bank["addr"][i] for i in sorted(bank["addr"])])
                    bank["data_bits"] = np.array([bank["data"][i] for i in range(width)])
            for port in mem["rd"].values():
                for bank in port.values():
                    bank["q"] = np.zeros(width, dtype=np.uint8)
            for port in mem["wr"].values():
                for bank in port.values():
                    bank["we"] = [(bank["en"][c], slice(_MACRO_WIDTH * c, _MACRO_WIDTH * (c + 1)))
                                  for c in sorted(bank["en"])]

    def launch_periods(self, period, gate_periods=None):
        """Per net bit, the shortest period of the clocks whose edges reach it: ``period``
        from the inputs and from flip-flops and SRAM outputs on the main clock,
        ``gate_periods[gate]`` from those behind clock gate ``gate`` (the main period for a
        gate not named), ``inf`` for a net only constants drive. OpenSTA 2.0.17 reads a
        net's activity per period of the fastest clock launching into it, so this turns
        toggles per main cycle into its units."""
        gate_periods = gate_periods or {}
        per = np.full(self.n, np.inf)
        for bits, direction in self.ports.values():
            if direction == "input":
                per[bits] = period
        for q, clk in self._launch:
            icg = self.icgs.get(clk)
            per[q] = gate_periods.get(icg[0], period) if icg else period
        for _, a, out in self._plan:               # in level order
            per[out] = np.minimum.reduce([per[x] for x in a])
        per[[self.c0, self.c1]] = np.inf
        return per

    def _eval(self, v):
        for t, a, out in self._plan:
            if t == "$_AND_":
                v[out] = v[a[0]] & v[a[1]]
            elif t == "$_OR_":
                v[out] = v[a[0]] | v[a[1]]
            elif t == "$_XOR_":
                v[out] = v[a[0]] ^ v[a[1]]
            elif t == "$_MUX_":
                v[out] = np.where(v[a[2]] == 1, v[a[1]], v[a[0]])
            elif t == "$_NOT_":
                v[out] = 1 - v[a[0]]
            elif t == "$_ANDNOT_":
                v[out] = v[a[0]] & (1 - v[a[1]])
            elif t == "$_ORNOT_":
                v[out] = v[a[0]] | (1 - v[a[1]])
            elif t == "$_NAND_":
                v[out] = 1 - (v[a[0]] & v[a[1]])
            elif t == "$_NOR_":
                v[out] = 1 - (v[a[0]] | v[a[1]])
            elif t == "$_XNOR_":
                v[out] = 1 - (v[a[0]] ^ v[a[1]])
            else:                                   # $_BUF_
                v[out] = v[a[0]]

    def _next_state(self, v):
        """The flip-flops' values after this clock edge, and which of them it reached."""
        clocked = v[self._gate]
        r = v[self._r]
        upd = clocked & (v[self._e] | (r & self._over))
        return np.where(upd == 1, np.where(r == 1, self._rv, v[self._d]), v[self._q]), clocked

    @staticmethod
    def _word(v, bits):
        return int(np.dot(v[bits].astype(np.int64), 1 << np.arange(len(bits), dtype=np.int64)))

    def simulate(self, trace, *, reset_port="rst", count_nets=False, reset_cycles=0):
        """Run ``trace`` (a :class:`PortTrace`) through the netlist from the reset state.

        Every flip-flop starts at its reset value (Amaranth starts registers at ``init``, the
        value its reset gives them) and every memory at its ``INIT``; ``reset_port`` is held
        low. Raises :class:`NetlistMismatch` at the first cycle where an output differs.
        With ``count_nets`` it also counts every net bit's toggles and ones
        (:attr:`GatingRun.net_toggles`, :attr:`GatingRun.net_ones`). ``reset_cycles``
        clock edges with ``reset_port`` high and every other input low come first, neither
        checked nor counted: a mapped netlist's flip-flops have no reset value of their own
        (the reset is logic in front of them), so this is what puts them at ``init``.
        """
        ins, outs = [], []
        for k, name in enumerate(trace.names):
            if name not in self.ports:
                raise ValueError(f"trace port {name!r} is not a port of the netlist")
            bits, direction = self.ports[name]
            if len(bits) != trace.widths[k]:
                raise ValueError(f"port {name}: {trace.widths[k]} bits in the trace, "
                                 f"{len(bits)} in the netlist")
            (ins if trace.inputs[k] else outs).append((name, np.array(bits), trace.port(k)))
        v = np.zeros(self.n, dtype=np.uint8)
        v[self.c1] = 1
        v[self._q] = self._rv
        if reset_port in self.ports:    # no cell drives an input: it stays low
            v[self.ports[reset_port][0]] = 0
        for _ in range(reset_cycles):
            if reset_port not in self.ports:
                raise ValueError(f"reset_cycles: the netlist has no port {reset_port!r}")
            for _, bits, _ in ins:
                v[bits] = 0
            v[self.ports[reset_port][0]] = 1
            self._eval(v)
            v[self._q] = self._next_state(v)[0]
            v[self.ports[reset_port][0]] = 0
        names = sorted(self.icgs.values())
        gate_bits = np.array([g for _, g in names], dtype=np.int64)
        on = np.zeros(len(names), dtype=np.int64)
        toggles, edges = 0, 0.0
        net_toggles = net_ones = prev = None
        if count_nets:
            net_toggles = np.zeros(self.n, dtype=np.int64)
            net_ones = np.zeros(self.n, dtype=np.int64)
        for cyc in range(trace.cycles):
            for _, bits, vals in ins:
                v[bits] = vals[cyc]
            for mem in self.mems.values():
                for port in mem["rd"].values():
                    for bank in port.values():
                        v[bank["data_bits"]] = bank["q"]
            self._eval(v)
            if count_nets:
                if prev is not None:
                    net_toggles += v != prev
                net_ones += v
                prev = v.copy()
            for name, bits, vals in outs:
                if not np.array_equal(v[bits], vals[cyc]):
                    raise NetlistMismatch(
                        f"cycle {cyc}: port {name} is {self._word(v, bits):#x} in the netlist, "
                        f"{self._word(vals[cyc], np.arange(len(bits))):#x} in the trace")
            if len(names):
                on += v[gate_bits]
            for mem in self.mems.values():           # read-first: a read sees the old word
                for port in mem["rd"].values():
                    for b, bank in port.items():    # a macro not selected holds its output
                        if v[bank["en"][0]]:
                            a = _MACRO_WORDS * b + self._word(v, bank["addr_bits"])
                            bank["q"] = (mem["arr"][a].copy() if a < mem["size"]
                                         else np.zeros(mem["width"], dtype=np.uint8))
                for port in mem["wr"].values():
                    for b, bank in port.items():
                        cols = [c for en, c in bank["we"] if v[en]]
                        if not cols:
                            continue
                        a = _MACRO_WORDS * b + self._word(v, bank["addr_bits"])
                        for c in cols if a < mem["size"] else ():
                            mem["arr"][a][c] = v[bank["data_bits"][c]]
            new, clocked = self._next_state(v)
            toggles += int(np.count_nonzero(new != v[self._q]))
            edges += float(clocked.sum())
            v[self._q] = new
        return GatingRun(cycles=trace.cycles,
                         duty={n: c / max(1, trace.cycles) for (n, _), c in zip(names, on)},
                         flop_toggles=toggles, clocked_edges=edges, flops=self.flops,
                         gated_flops=self.gated_flops,
                         checked_output_bits=sum(len(b) for _, b, _ in outs) * trace.cycles,
                         net_toggles=net_toggles, net_ones=net_ones)
