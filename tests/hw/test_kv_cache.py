"""SpikeKvCache against spikemllm.sw.numerics (to_bit_planes, popcount_score), cycle by cycle."""

from __future__ import annotations

import itertools
import random
import re
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from spikemllm.hw.kv_cache import SpikeKvCache, kv_cache_from_params, score_bound
from spikemllm.sw import numerics as nx


# ---- reference model -------------------------------------------------------------------------

def random_vector(rng, t, d, kind="random"):
    """(q int [d], pos bool [t, d], neg bool [t, d]) of tc-lif planes, as to_bit_planes makes."""
    qm = (1 << t) - 1
    if kind == "random":
        q = np.array([rng.randint(-qm, qm) for _ in range(d)], dtype=np.int64)
    elif kind == "sparse":
        q = np.array([rng.choice((0, 0, 0, rng.randint(-qm, qm))) for _ in range(d)],
                     dtype=np.int64)
    elif kind == "plus":
        q = np.full(d, qm, dtype=np.int64)
    elif kind == "minus":
        q = np.full(d, -qm, dtype=np.int64)
    elif kind == "zero":
        q = np.zeros(d, dtype=np.int64)
    else:
        raise ValueError(kind)
    pos, neg = nx.to_bit_planes(q, t + 1)
    assert pos.shape == (t, d)
    return q, pos, neg


class KvModel:
    """What the cache should hold: per head the stored (q, pos, neg) vectors, oldest first."""

    def __init__(self, heads, depth, ring):
        self.heads, self.depth, self.ring = heads, depth, ring
        self.clear()

    def clear(self):
        self.tokens = [[] for _ in range(self.heads)]
        self.error = False

    def append(self, head, vec):
        if head >= self.heads:
            self.error = True
            return
        toks = self.tokens[head]
        if len(toks) == self.depth:
            if not self.ring:
                self.error = True
                return
            toks.pop(0)
        toks.append(vec)

    def read_beats(self, cache, head, token):
        ok = head < self.heads and token < len(self.tokens[head])
        beats = []
        for p in range(cache.t_kv):
            if ok:
                _, pos, neg = self.tokens[head][token]
                pw, nw = _bits(pos[p]), _bits(neg[p])
            else:
                pw = nw = 0
            beats.append(dict(pos=pw, neg=nw, plane=p, token=token, in_range=int(ok),
                              last=int(p == cache.t_kv - 1)))
        return beats

    def score_beats(self, head, qvec):
        toks = self.tokens[head] if head < self.heads else []
        if not toks:
            return [dict(score=0, token=0, empty=1, last=1)]
        q, qp, qn = qvec
        kp = np.stack([t[1] for t in toks], axis=1)  # [T, n, d]
        kn = np.stack([t[2] for t in toks], axis=1)
        scores = nx.popcount_score(qp, qn, kp, kn)
        # the popcount form is the integer dot product (sanity of the reference itself)
        assert np.array_equal(scores, np.stack([t[0] for t in toks]) @ q)
        return [dict(score=int(s), token=i, empty=0, last=int(i == len(toks) - 1))
                for i, s in enumerate(scores)]


def _bits(plane):
    return sum(1 << i for i, b in enumerate(plane) if b)


# ---- cycle-by-cycle harness -----------------------------------------------------------------

class Traffic:
    """Drives the three input streams and takes the two output streams, checking every beat,
    the flags each cycle, and recording the cycle of every transfer."""

    def __init__(self, cache, *, seed=0, p_valid=1.0, p_ready=1.0, p_clear=0.0,
                 reset_at=None, max_cycles=20_000):
        self.cache = cache
        self.rng = random.Random(seed)
        self.p_valid, self.p_ready, self.p_clear = p_valid, p_ready, p_clear
        self.reset_at, self.max_cycles = reset_at, max_cycles
        self.model = KvModel(cache.heads, cache.depth, cache.ring)
        self.appends, self.reads, self.queries = [], [], []  # pending items
        self.log = {"append": [], "read": [], "query": [], "read_data": [], "score": [],
                    "refused": [], "clear": []}
        self.exp_read, self.exp_score = [], []
        self.checks = 0
        self.force_clear = False  # clear at the next quiet cycle
        self.hooks = {}  # cycle -> callable(self) run before that cycle is driven
        self.probes = []  # callable(self, ctx) run every cycle before it is driven
        self.rw_cycles = 0  # read_register: cycles that both read and wrote the memory

    def run(self):
        c = self.cache
        top = Module()
        top.submodules.dut = c
        top.domains.sync = cd = ClockDomain("sync")
        sim = Simulator(top)
        sim.add_clock(1e-8)
        srcs = [("append", c.append_stream, self.appends), ("read", c.read_stream, self.reads)]
        sinks = [("read_data", c.read_data_stream, self.exp_read, c.unpack_read_data)]
        if c.with_score:
            srcs.append(("query", c.query_stream, self.queries))
            sinks.append(("score", c.score_stream, self.exp_score, c.unpack_score))

        async def tb(ctx):
            held = {name: False for name, _, _ in srcs}
            in_reset = 0
            idle = 0
            for cycle in range(self.max_cycles):
                if cycle in self.hooks:
                    self.hooks[cycle](self)
                if self.reset_at is not None and cycle == self.reset_at:
                    in_reset = 2
                ctx.set(cd.rst, 1 if in_reset else 0)
                if in_reset:
                    for name in held:
                        held[name] = False
                    self.exp_read.clear()
                    self.exp_score.clear()
                    self.model.clear()
                    for _, s, _ in srcs:
                        ctx.set(s.valid, 0)
                    ctx.set(c.clear, 0)
                    in_reset -= 1
                    await ctx.tick()
                    continue
                self._check_flags(ctx)
                for probe in self.probes:
                    probe(self, ctx)
                # clear only with no walk outstanding, so every expectation stays defined
                quiet = not self.exp_read and not self.exp_score
                do_clear = quiet and (self.force_clear or self.rng.random() < self.p_clear)
                self.force_clear &= not do_clear
                ctx.set(c.clear, int(do_clear))
                for name, s, items in srcs:
                    p_valid = (self.p_valid.get(name, 1.0) if isinstance(self.p_valid, dict)
                               else self.p_valid)
                    if not held[name] and items and self.rng.random() < p_valid:
                        held[name] = True
                    offer = held[name] and not (do_clear and name != "append")
                    ctx.set(s.valid, int(offer))
                    if held[name]:
                        ctx.set(s.payload.as_value(), items[0]["word"])
                for name, s, _, _ in sinks:
                    p_ready = (self.p_ready.get(name, 1.0) if isinstance(self.p_ready, dict)
                               else self.p_ready)
                    ctx.set(s.ready, int(self.rng.random() < p_ready))
                # outputs
                busy_out = False
                for name, s, exp, unpack in sinks:
                    if ctx.get(s.valid):
                        busy_out = True
                        if ctx.get(s.ready):
                            got = unpack(ctx.get(s.payload.as_value()))
                            assert exp, f"cycle {cycle}: unexpected {name} beat {got}"
                            want = exp.pop(0)
                            assert got == want, f"cycle {cycle}: {name} {got} != {want}"
                            self.log[name].append((cycle, got))
                            self.checks += 1
                # input handshakes: walks sample the counts before this cycle's append lands
                fired = {name: held[name] and ctx.get(s.valid) and ctx.get(s.ready)
                         for name, s, _ in srcs}
                if fired["read"]:
                    it = self.reads.pop(0)
                    self.exp_read += self.model.read_beats(c, it["head"], it["token"])
                    self.log["read"].append(cycle)
                    held["read"] = False
                if fired.get("query"):
                    it = self.queries.pop(0)
                    self.exp_score += self.model.score_beats(it["head"], it["vec"])
                    self.log["query"].append(cycle)
                    held["query"] = False
                if fired["append"]:
                    it = self.appends.pop(0)
                    refused = it["head"] >= c.heads or (
                        not c.ring and len(self.model.tokens[it["head"]]) == c.depth)
                    self.model.append(it["head"], it["vec"])
                    (self.log["refused"] if refused else self.log["append"]).append(cycle)
                    held["append"] = False
                if do_clear:
                    self.model.clear()
                    self.log["clear"].append(cycle)
                self._check_no_rw_collision(ctx, cycle)
                await ctx.tick()
                pending = any(held.values()) or self.appends or self.reads or self.queries
                if pending or self.exp_read or self.exp_score or busy_out:
                    idle = 0
                elif cycle >= max(self.hooks, default=0):
                    idle += 1
                    if idle > 2 * c.t_kv + 8:
                        self._check_flags(ctx)
                        self.cycles = cycle
                        return
            raise AssertionError(f"traffic did not drain in {self.max_cycles} cycles")

        sim.add_testbench(tb)
        sim.run()
        return self

    def _check_no_rw_collision(self, ctx, cycle):
        # read_register promises never to read the address being written (its memories are
        # no_rw_check: an FPGA block RAM returns an undefined word then)
        for mem in (self.cache.planes, self.cache.signs):
            if mem is None or not (ctx.get(mem.w_en) and ctx.get(mem.r_en)):
                continue
            self.rw_cycles += mem is self.cache.planes
            addr = ctx.get(mem.w_addr)
            assert ctx.get(mem.r_addr) != addr, \
                f"cycle {cycle}: reads address {addr} as it is written"

    def _check_flags(self, ctx):
        c, mdl = self.cache, self.model
        counts = ctx.get(c.count.as_value())
        full = ctx.get(c.full)
        for h in range(c.heads):
            n = (counts >> (h * c.count_bits)) & ((1 << c.count_bits) - 1)
            assert n == len(mdl.tokens[h]), f"count[{h}] = {n}, expected {len(mdl.tokens[h])}"
            assert (full >> h) & 1 == int(n == c.depth), f"full[{h}] wrong at count {n}"
        assert ctx.get(c.error) == int(mdl.error), "error flag differs from the model"

    # item builders
    def append(self, head, vec):
        self.appends.append(dict(word=self.cache.pack_append(head, vec[1], vec[2]), head=head,
                                 vec=vec))

    def read(self, head, token):
        self.reads.append(dict(word=self.cache.pack_read(head, token), head=head, token=token))

    def query(self, head, vec):
        self.queries.append(dict(word=self.cache.pack_query(head, vec[1], vec[2]), head=head,
                                 vec=vec))


#: the ``rr`` parameter of the tests: the asic style, the fpga style (read_register), the
#: fpga style with sign-magnitude storage (what the FPGA flow builds), and the asic style
#: with the planes read through alternating SRAM ports
STYLES = [False, True, "sign_magnitude", "alternating"]
STYLE_IDS = ["plain", "read_register", "sign_magnitude", "alternating_ports"]


def fpga(rr):
    """The style registers its reads (read_register)."""
    return rr in (True, "sign_magnitude")


def make(**kw):
    if kw.get("read_register") == "sign_magnitude":
        kw.update(read_register=True, sign_magnitude=True)
    if kw.get("read_register") == "alternating":
        kw.update(read_register=False, alternating_ports=True)
    if kw.get("read_register"):
        kw.setdefault("bram_rows", 8)  # banked reads: several banks even at these sizes
    return SpikeKvCache(**kw)


# ---- tests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("rr", STYLES, ids=STYLE_IDS)
@pytest.mark.parametrize("ring", [False, True])
@pytest.mark.parametrize("seed", [1, 2])
def test_random_traffic_gaps_backpressure(ring, seed, rr):
    """Random appends/reads/queries (heads 3, depth 5: neither a power of two; some heads out
    of range, some tokens out of range) with random valid gaps and ready backpressure."""
    c = make(heads=3, head_dim=12, t_kv=3, depth=5, ring=ring, read_register=rr)
    # reads and queries trickle in over the whole run, so they see every fill level
    tr = Traffic(c, seed=seed, p_valid=dict(append=0.3, read=0.12, query=0.08), p_ready=0.55,
                 p_clear=0.008)
    tr.hooks[200] = lambda t: setattr(t, "force_clear", True)
    rng = random.Random(100 + seed)
    for _ in range(100):
        head = rng.choice([0, 1, 1, 2, 2, 2, 3])  # 3 is out of range (2-bit head field)
        tr.append(head, random_vector(rng, 3, 12, rng.choice(["random", "sparse"])))
    for _ in range(60):
        tr.read(rng.randrange(4), rng.choice([0, 1, 2, 3, 4, 6]))
    for _ in range(40):
        tr.query(rng.randrange(4), random_vector(rng, 3, 12))
    tr.run()
    assert not tr.appends and not tr.reads and not tr.queries
    scores = [b for _, b in tr.log["score"]]
    reads = [b for _, b in tr.log["read_data"]]
    assert len(reads) == 60 * 3 and sum(b["last"] for b in scores) == 40
    # the run covered the interesting cases, not just empty heads (the random clears leave
    # ring seed 2 with 8 of 60 reads in range in the read_register styles)
    assert sum(b["in_range"] for b in reads) >= 3 * 8
    assert sum(not b["empty"] for b in scores) >= 40
    assert tr.log["refused"] and tr.log["clear"]
    # the collision monitor saw reads beside writes (ring mode never overlaps them)
    assert tr.rw_cycles >= 10 if fpga(rr) and not ring else tr.rw_cycles == 0, tr.rw_cycles


@pytest.mark.parametrize("rr", [False, "alternating"], ids=["asic", "alternating"])
def test_walk_read_address_steps_with_the_walker(rr):
    """The asic style keeps the read address in a register, stepped by one plane per issue
    and reset to the head's first slot at the ring's wrap: in every busy cycle of a walk over
    a non-empty head it equals (head * depth + slot) * t_kv + plane."""
    heads, depth, T = 3, 5, 3
    c = make(heads=heads, head_dim=8, t_kv=T, depth=depth, ring=True, read_register=rr)
    tr = Traffic(c, seed=31, p_valid=dict(append=0.4, read=0.15, query=0.1), p_ready=0.6)
    rng = random.Random(32)
    for _ in range(40):
        tr.append(rng.randrange(heads), random_vector(rng, T, 8))
    for _ in range(30):
        tr.read(rng.randrange(heads), rng.randrange(depth))
    for _ in range(20):
        tr.query(rng.randrange(heads), random_vector(rng, T, 8))
    wraps, checked = set(), 0

    def probe(t, ctx):
        nonlocal checked
        w = c._walk                               # made by elaborate()
        if ctx.get(w.busy) and ctx.get(c.count[ctx.get(w.head)]):
            head, slot, plane = ctx.get(w.head), ctx.get(w.slot), ctx.get(w.plane)
            assert ctx.get(w.addr) == (head * depth + slot) * T + plane, (head, slot, plane)
            checked += 1
            if slot == 0 and plane == 0:
                wraps.add(head)

    tr.probes.append(probe)
    tr.run()
    assert not tr.reads and not tr.queries
    assert checked > 200 and wraps == set(range(heads))


@pytest.mark.parametrize("rr", STYLES, ids=STYLE_IDS)
def test_v_cache_without_score_unit(rr):
    """with_score=False (a V cache): no query/score ports, appends and reads as before."""
    c = make(heads=2, head_dim=8, t_kv=4, depth=3, with_score=False, read_register=rr)
    assert not hasattr(c, "query_stream") and not hasattr(c, "score_stream")
    tr = Traffic(c, seed=21, p_valid=dict(append=0.5, read=0.2), p_ready=0.6)
    rng = random.Random(22)
    for _ in range(12):
        tr.append(rng.randrange(2), random_vector(rng, 4, 8))
    for _ in range(20):
        tr.read(rng.randrange(2), rng.randrange(4))
    tr.run()
    beats = [b for _, b in tr.log["read_data"]]
    assert len(beats) == 20 * 4 and sum(b["in_range"] for b in beats) >= 4 * 5
    assert tr.log["refused"]
    v = verilog.convert(make(heads=2, head_dim=8, t_kv=4, depth=3, with_score=False),
                        name="spike_v_cache")
    assert "query_stream" not in v and "popcount" not in v and "agree" not in v


def test_fill_beyond_capacity_refused_and_flagged():
    d, T, depth = 8, 2, 4
    c = make(heads=2, head_dim=d, t_kv=T, depth=depth)
    tr = Traffic(c)
    rng = random.Random(5)
    vecs = [random_vector(rng, T, d) for _ in range(depth + 3)]
    for v in vecs:
        tr.append(0, v)

    def reads(t):
        for tok in range(depth):
            t.read(0, tok)
        t.read(1, 0)  # head 1 holds nothing

    tr.hooks[T * depth + 3] = reads  # after the refused appends
    tr.run()  # count/full/error are checked against the model every cycle
    mdl = tr.model
    assert len(mdl.tokens[0]) == depth and len(mdl.tokens[1]) == 0
    assert [v[0].tolist() for v in mdl.tokens[0]] == [v[0].tolist() for v in vecs[:depth]]
    assert mdl.error and len(tr.log["refused"]) == 3 and len(tr.log["append"]) == depth
    # stored appends take t_kv cycles each, refused ones one cycle each, back to back
    acc = tr.log["append"] + tr.log["refused"]
    assert acc == [T - 1 + T * i for i in range(depth)] + [T * depth + i for i in range(3)]
    # the read past head 1's count comes back as zeros with in_range = 0
    beats = [b for _, b in tr.log["read_data"]]
    assert [b["in_range"] for b in beats] == [1] * (T * depth) + [0] * T
    assert all(b["pos"] == 0 and b["neg"] == 0 for b in beats[-T:])


def test_clear_empties_and_clears_error():
    d, T, depth = 8, 2, 3
    c = make(heads=1, head_dim=d, t_kv=T, depth=depth)
    tr = Traffic(c)
    rng = random.Random(6)
    for _ in range(depth + 1):
        tr.append(0, random_vector(rng, T, d))

    def do_clear(t):
        t.force_clear = True

    def after_clear(t):
        for _ in range(2):
            t.append(0, random_vector(rng, T, d))

    tr.hooks[T * depth + 4] = do_clear
    tr.hooks[T * depth + 5] = after_clear
    tr.hooks[T * depth + 5 + 2 * T + 1] = lambda t: t.read(0, 1)
    tr.run()
    assert tr.log["clear"] == [T * depth + 4]
    assert len(tr.log["refused"]) == 1 and not tr.model.error
    assert len(tr.model.tokens[0]) == 2
    assert [b["in_range"] for _, b in tr.log["read_data"]] == [1] * T


def test_clear_restarts_part_written_append():
    d, T = 8, 3
    c = make(heads=1, head_dim=d, t_kv=T, depth=4)
    tr = Traffic(c)
    rng = random.Random(14)
    first, second = random_vector(rng, T, d), random_vector(rng, T, d)
    tr.append(0, first)   # planes in cycles 0..2, acknowledged in cycle 2
    tr.append(0, second)  # plane 0 in cycle 3, then clear in cycle 4 (plane 1 pending)
    tr.hooks[4] = lambda t: setattr(t, "force_clear", True)

    def reads(t):
        t.read(0, 0)
        t.read(0, 1)

    tr.hooks[12] = reads
    tr.run()
    assert tr.log["clear"] == [4]
    # the second beat restarts from plane 0 after the clear: planes in 5..7, ack in 7
    assert tr.log["append"] == [2, 7]
    beats = [b for _, b in tr.log["read_data"]]
    assert [b["pos"] for b in beats[:T]] == [_bits(p) for p in second[1]]
    assert [b["neg"] for b in beats[:T]] == [_bits(p) for p in second[2]]
    assert [b["in_range"] for b in beats] == [1] * T + [0] * T


@pytest.mark.parametrize("rr", STYLES, ids=STYLE_IDS)
def test_ring_mode_wraps_read_and_score(rr):
    d, T, depth = 8, 3, 5  # depth not a power of two: the wrap is a compare
    c = make(heads=2, head_dim=d, t_kv=T, depth=depth, ring=True, read_register=rr)
    tr = Traffic(c, p_valid=0.7, p_ready=0.7, seed=3)
    rng = random.Random(8)
    vecs = [random_vector(rng, T, d) for _ in range(2 * depth + 1)]
    for v in vecs:
        tr.append(1, v)

    def then_read(t):
        for tok in range(depth + 1):
            t.read(1, tok)
        t.query(1, random_vector(rng, T, d))

    tr.hooks[T * len(vecs) * 3] = then_read  # after all appends have landed
    tr.run()
    assert not tr.model.error and len(tr.log["append"]) == len(vecs)
    beats = [b for _, b in tr.log["read_data"]]
    got = [beats[T * k:T * (k + 1)] for k in range(depth)]
    for k, v in enumerate(vecs[-depth:]):
        assert [b["pos"] for b in got[k]] == [_bits(p) for p in v[1]]
        assert [b["neg"] for b in got[k]] == [_bits(p) for p in v[2]]
    assert [b["in_range"] for b in beats[T * depth:]] == [0] * T
    assert [b["token"] for _, b in tr.log["score"]] == list(range(depth))


@pytest.mark.parametrize("rr", STYLES, ids=STYLE_IDS)
@pytest.mark.parametrize("T", [5, 7])
def test_ring_overwrite_waits_for_a_held_read(rr, T):
    """Ring mode: a read of the oldest token, held by backpressure, still returns that token
    when an append to the full head arrives meanwhile. The append waits while the walk has
    planes left to read from the memory: without read_register the held output freezes the
    walk, so the append waits for the release; with it the walk stops only when its credits
    (read_fifo_depth = 6 beats) run out, so a 7-plane read holds the append until the
    release and a 5-plane read, all of it in the FIFO, does not."""
    d = 8
    c = make(heads=1, head_dim=d, t_kv=T, depth=2, ring=True, read_register=rr)
    tr = Traffic(c)
    rng = random.Random(3)
    for _ in range(2):
        tr.append(0, random_vector(rng, T, d))

    def read_and_hold(t):
        t.read(0, 0)
        t.p_ready = dict(read_data=0.0)

    start = 2 * c.append_cycles + 6  # after the two appends (20 at one plane per cycle)
    release = start + 40
    tr.hooks[start] = read_and_hold
    tr.hooks[start + 2] = lambda t: t.append(0, random_vector(rng, T, d))
    tr.hooks[release] = lambda t: setattr(t, "p_ready", 1.0)
    tr.run()
    assert len(tr.log["read_data"]) == T  # each beat was checked against the oldest token
    assert tr.log["read"] == [start]
    assert c.read_fifo_depth == (6 if fpga(rr) else 0)
    if not fpga(rr) or T > c.read_fifo_depth:
        assert tr.log["append"][-1] > release  # the overwrite waited for the held read
    else:
        assert tr.log["append"][-1] < release  # the read had left the memory


@pytest.mark.parametrize("rr", STYLES, ids=STYLE_IDS)
@pytest.mark.parametrize("T", [3, 7])
def test_read_latency(rr, T):
    """Plane p of a read is valid read_latency + p cycles after the request is taken, one
    beat per cycle (with read_register: read_fifo_depth credits cover a 7-plane read)."""
    d, depth = 8, 4
    c = make(heads=2, head_dim=d, t_kv=T, depth=depth, read_register=rr)
    tr = Traffic(c)
    rng = random.Random(9)
    for _ in range(3):
        tr.append(1, random_vector(rng, T, d))

    def reads(t):
        for tok in (0, 2, 1, 3):
            t.read(1, tok)

    tr.hooks[3 * c.append_cycles + 2] = reads  # after the appends (+1: their first phase)
    tr.run()
    accepted = tr.log["read"]
    beats = [cyc for cyc, _ in tr.log["read_data"]]
    assert len(beats) == 4 * T
    for k, a in enumerate(accepted):
        assert beats[k * T:(k + 1) * T] == [a + c.read_latency + p for p in range(T)]
    # read_register: address, word, mux, FIFO; alternating ports: two read stages
    assert c.read_latency == 2 + (4 if fpga(rr) else 2 if rr else 0)
    # the walker takes the next request when it has issued the last plane of the previous one
    assert all(b - a == T + 1 for a, b in zip(accepted, accepted[1:]))


@pytest.mark.parametrize("rr", STYLES, ids=STYLE_IDS)
@pytest.mark.parametrize("T,n", [(1, 5), (3, 4), (7, 3)])
def test_score_latency_and_throughput(T, n, rr):
    d, depth = 8, 6
    c = make(heads=2, head_dim=d, t_kv=T, depth=depth, read_register=rr)
    tr = Traffic(c)
    rng = random.Random(T)
    for _ in range(n):
        tr.append(0, random_vector(rng, T, d))

    def queries(t):
        t.query(0, random_vector(rng, T, d))
        t.query(1, random_vector(rng, T, d))  # empty head
        t.query(0, random_vector(rng, T, d, "minus"))

    tr.hooks[n * c.append_cycles + 2] = queries  # after the appends
    tr.run()
    q0, q1, q2 = tr.log["query"]
    sc = tr.log["score"]
    assert [cyc for cyc, _ in sc[:n]] == [q0 + c.score_latency + k * c.cycles_per_key
                                         for k in range(n)]
    assert sc[n] == (q1 + c.empty_latency, dict(score=0, token=0, empty=1, last=1))
    assert [cyc for cyc, _ in sc[n + 1:]] == [q2 + c.score_latency + k * T for k in range(n)]
    # the walker takes the next request n * t_kv + 1 cycles after a query (2: empty head);
    # a query behind a query waits three more cycles with read_register, two with
    # alternating ports (until the last walk's planes have reached stage 1)
    wait, extra = (3, 5) if fpga(rr) else (2, 2) if rr else (0, 0)
    assert q1 - q0 == n * T + 1 + wait and q2 - q1 == 2 + wait
    assert c.score_latency == T + 4 + extra
    assert c.empty_latency == 5 + extra


def test_read_beat_taken_during_score_stall():
    """A read accepted right behind a score walk reaches stage 1 while a held score output
    freezes the pipeline: the beat on stage 1 when the stall starts still leaves exactly once
    (the stall leaves a bubble behind it), and the rest follow once the score is taken.
    (read_register has output FIFOs instead: see the next test.)"""
    rr = False
    d, T, n, release = 8, 3, 2, 30
    c = make(heads=1, head_dim=d, t_kv=T, depth=4, read_register=rr)
    tr = Traffic(c, p_ready=dict(read_data=1.0, score=0.0))
    rng = random.Random(15)
    for _ in range(n):
        tr.append(0, random_vector(rng, T, d))
    tr.hooks[n * T + 1] = lambda t: t.query(0, random_vector(rng, T, d))
    tr.hooks[n * T + 2] = lambda t: t.read(0, 1)  # waits for the walker behind the query
    tr.hooks[release] = lambda t: t.p_ready.update(score=1.0)
    tr.run()  # every beat is checked against the model: a repeated read beat fails here
    (q,), (a,) = tr.log["query"], tr.log["read"]
    assert a == q + n * T + 1
    beats = [cyc for cyc, _ in tr.log["read_data"]]
    scores = [cyc for cyc, _ in tr.log["score"]]
    # key 1's last plane reaches the Horner stage (and stalls, key 0 still held) in the
    # cycle read plane k is valid, one cycle before it would be valid at the output
    k = q + c.score_latency + (n - 1) * T - 1 - (a + c.read_latency)
    assert k == (2 if rr else 0)
    assert beats[:k + 1] == [a + c.read_latency + p for p in range(k + 1)]
    assert beats[k] < release < (beats[k + 1] if k + 1 < T else release + 1)
    assert len(beats) == T and scores[0] == release and len(scores) == n


@pytest.mark.parametrize("over", [0, 1])
def test_output_credits_decouple_a_held_score(over):
    """read_register: the walker issues a key's last plane only with a credit for its score
    (score_fifo_depth = 4 at t_kv 3), and nothing stalls. With the score output held, a query
    of 4 keys leaves all scores in the FIFO and the read behind it comes at its usual
    latency; with 5 keys the walker waits at key 4's last plane, and the read is taken only
    after the release. Every beat leaves once (Traffic checks each)."""
    d, T, release = 8, 3, 60
    c = make(heads=1, head_dim=d, t_kv=T, depth=5, read_register=True)
    assert c.score_fifo_depth == (c.score_latency - T) // T + 1 == 4
    n = c.score_fifo_depth + over
    tr = Traffic(c, p_ready=dict(read_data=1.0, score=0.0))
    rng = random.Random(16)
    for _ in range(n):
        tr.append(0, random_vector(rng, T, d))
    tr.hooks[n * T + 1] = lambda t: t.query(0, random_vector(rng, T, d))
    tr.hooks[n * T + 2] = lambda t: t.read(0, 1)
    tr.hooks[release] = lambda t: t.p_ready.update(score=1.0)
    tr.run()
    beats = [cyc for cyc, _ in tr.log["read_data"]]
    scores = [cyc for cyc, _ in tr.log["score"]]
    (a,) = tr.log["read"]
    assert len(beats) == T and len(scores) == n and scores[0] == release
    assert beats == [a + c.read_latency + p for p in range(T)]
    if over:
        assert a > release  # key 4's score had no credit: the walker waited
    else:
        assert beats[-1] < release


@pytest.mark.parametrize("rr", STYLES, ids=STYLE_IDS)
def test_query_register_zero_outside_score_walks(rr):
    """Operand isolation: the query register (the popcount trees' other operand) holds zeros
    whenever no score is outstanding, so memory words read for reads, and idle cycles, do not
    toggle the trees; an empty head's query is not loaded at all."""
    c = make(heads=2, head_dim=8, t_kv=3, depth=4, read_register=rr)
    tr = Traffic(c, p_valid=0.6, p_ready=0.6, seed=16)
    rng = random.Random(17)
    tr.query(1, random_vector(rng, 3, 8, "plus"))  # alone, to an empty head: never loaded
    for _ in range(5):
        tr.append(0, random_vector(rng, 3, 8))  # head 1 stays empty

    def traffic(t):
        for _ in range(10):
            t.read(rng.randrange(2), rng.randrange(4))
            t.query(rng.randrange(2), random_vector(rng, 3, 8, "plus"))

    # the rest comes later: with alternating ports no walk starts while appends are offered
    later = 12 + (5 * c.append_cycles if c.alternating_ports else 0)
    tr.hooks[later] = traffic
    seen = []

    def probe(t, ctx):
        q = ctx.get(c._query_reg[0].as_value()) | ctx.get(c._query_reg[1].as_value())
        if all(b["empty"] for b in t.exp_score):  # nothing but empty heads outstanding
            assert q == 0, "query register loaded outside a score walk"
        seen.append(q != 0)

    tr.probes.append(probe)
    tr.run()
    assert any(seen) and not seen[-1]  # loaded during walks, cleared at the end
    assert tr.log["query"][0] < later and tr.log["score"][0][1]["empty"]
    assert sum(b["empty"] for _, b in tr.log["score"]) >= 2


@pytest.mark.parametrize("rr", STYLES, ids=STYLE_IDS)
@pytest.mark.parametrize("T,Tq", [(1, 1), (2, 2), (3, 5), (7, 7), (7, 1)])
def test_score_extremes(T, Tq, rr):
    """All +max, all -max, zeros and random planes, T = 1 .. T_kv, Tq != T."""
    d = 16
    kinds = ["plus", "minus", "zero", "random", "sparse", "plus"]
    c = make(heads=1, head_dim=d, t_kv=T, t_q=Tq, depth=len(kinds), read_register=rr)
    tr = Traffic(c, p_valid=0.8, p_ready=0.6, seed=T * 10 + Tq)
    rng = random.Random(T * 100 + Tq)
    for k in kinds:
        tr.append(0, random_vector(rng, T, d, k))

    def queries(t):
        for k in ["plus", "minus", "zero", "random", "sparse"]:
            t.query(0, random_vector(rng, Tq, d, k))

    tr.hooks[len(kinds) * T * 3] = queries
    tr.run()
    scores = [b["score"] for _, b in tr.log["score"]]
    assert len(scores) == 5 * len(kinds)
    extreme = d * ((1 << T) - 1) * ((1 << Tq) - 1)
    assert extreme == score_bound(d, Tq, T)
    assert scores[0] == extreme and scores[1] == -extreme  # plus.plus, plus.minus
    assert scores[len(kinds)] == -extreme and scores[len(kinds) + 1] == extreme
    assert scores[2 * len(kinds):3 * len(kinds)] == [0] * len(kinds)
    assert c.score_bits == extreme.bit_length() + 1


@pytest.mark.parametrize("d,T", [(1, 1), (1, 2), (2, 1), (1, 3), (2, 2)])
def test_score_exhaustive_small(d, T):
    """Every key vector of a tiny head cached, every query vector scored against them."""
    qm = (1 << T) - 1
    vals = [np.array(v, dtype=np.int64)
            for v in itertools.product(range(-qm, qm + 1), repeat=d)]
    c = make(heads=1, head_dim=d, t_kv=T, depth=len(vals))
    tr = Traffic(c, p_ready=0.8, seed=d * 10 + T)
    for v in vals:
        tr.append(0, (v, *nx.to_bit_planes(v, T + 1)))

    def queries(t):
        for v in vals:
            t.query(0, (v, *nx.to_bit_planes(v, T + 1)))

    tr.hooks[len(vals) * T + 1] = queries
    tr.run()
    got = np.array([b["score"] for _, b in tr.log["score"]]).reshape(len(vals), len(vals))
    k = np.stack(vals)
    assert np.array_equal(got, k @ k.T)  # every q.k of the grid


@pytest.mark.parametrize("T", [1, 2])
def test_score_exhaustive_raw_bits(T):
    """Every (pos, neg) bit pattern of a 1-element head, both-set included, for keys and
    queries: the OR-merged agree/oppose form equals popcount_score on all of them."""
    pats = list(itertools.product([False, True], repeat=2 * T))
    planes = [(np.array(p[:T]).reshape(T, 1), np.array(p[T:]).reshape(T, 1)) for p in pats]
    c = make(heads=1, head_dim=1, t_kv=T, depth=len(planes))
    tr = Traffic(c, p_ready=0.7, seed=T)
    for kp, kn in planes:
        tr.appends.append(dict(word=c.pack_append(0, kp, kn), head=0, vec=(None, kp, kn)))
    kp_all = np.stack([p[0] for p in planes], axis=1)  # [T, n, 1]
    kn_all = np.stack([p[1] for p in planes], axis=1)
    want = []

    def queries(t):
        for qp, qn in planes:
            t.queries.append(dict(word=c.pack_query(0, qp, qn), head=0, vec=(None, qp, qn)))
            want.extend(nx.popcount_score(qp, qn, kp_all, kn_all).tolist())

    tr.hooks[len(planes) * T + 1] = queries
    n = len(planes)
    tr.model.score_beats = lambda head, vec: [
        dict(score=int(s), token=i, empty=0, last=int(i == n - 1))
        for i, s in enumerate(nx.popcount_score(vec[1], vec[2], kp_all, kn_all))]
    tr.run()
    assert [b["score"] for _, b in tr.log["score"]] == want and len(want) == n * n


def test_score_matches_reference_with_invalid_planes():
    """Planes with a bit set in both pos and neg (not a tc-lif encoding) still give exactly
    popcount_score: the agree/oppose form is the same function of the bits."""
    d, T, n = 8, 3, 5
    c = make(heads=1, head_dim=d, t_kv=T, depth=n)
    tr = Traffic(c, p_ready=0.5, seed=4)
    rng = np.random.default_rng(11)
    kp, kn = rng.random((T, n, d)) < 0.5, rng.random((T, n, d)) < 0.5
    qp, qn = rng.random((T, d)) < 0.5, rng.random((T, d)) < 0.5
    for i in range(n):
        tr.appends.append(dict(word=c.pack_append(0, kp[:, i], kn[:, i]), head=0,
                               vec=(None, kp[:, i], kn[:, i])))

    def query(t):
        t.queries.append(dict(word=c.pack_query(0, qp, qn), head=0, vec=None))
        t.exp_score_ref = nx.popcount_score(qp, qn, kp, kn)

    tr.hooks[n * T + 2] = query
    # the model's own check uses integers; here compare against popcount_score directly
    tr.model.score_beats = lambda head, vec: [
        dict(score=int(s), token=i, empty=0, last=int(i == n - 1))
        for i, s in enumerate(nx.popcount_score(qp, qn, kp, kn))]
    tr.run()
    assert [b["score"] for _, b in tr.log["score"]] == tr.exp_score_ref.tolist()


def test_sign_magnitude_store_reads_back_raw_planes_as_the_reference_says():
    """sign_magnitude with raw patterns (signs mixed within an element, bits set in pos and
    neg): reads and scores equal the reference on sign_magnitude_planes of what was
    appended; tc-lif vectors come back unchanged (the other tests)."""
    d, T, n = 8, 3, 4
    c = make(heads=1, head_dim=d, t_kv=T, depth=n, read_register="sign_magnitude")
    assert c.word_bits == d and c.signs.depth == n
    tr = Traffic(c, p_ready=0.6, seed=5)
    rng = np.random.default_rng(12)
    kp, kn = rng.random((T, n, d)) < 0.5, rng.random((T, n, d)) < 0.5
    qp, qn = rng.random((T, d)) < 0.4, rng.random((T, d)) < 0.4
    sp, sn = nx.sign_magnitude_planes(kp, kn)
    assert (sp != kp).any()  # the patterns do change
    for i in range(n):
        tr.appends.append(dict(word=c.pack_append(0, kp[:, i], kn[:, i]), head=0,
                               vec=(None, sp[:, i], sn[:, i])))  # the model holds what reads back

    def then(t):
        for i in range(n):
            t.read(0, i)
        t.queries.append(dict(word=c.pack_query(0, qp, qn), head=0, vec=None))

    tr.hooks[n * T + 2] = then
    tr.model.score_beats = lambda head, vec: [
        dict(score=int(v), token=i, empty=0, last=int(i == n - 1))
        for i, v in enumerate(nx.popcount_score(qp, qn, sp, sn))]
    tr.run()
    assert len(tr.log["read_data"]) == n * T and len(tr.log["score"]) == n


@pytest.mark.parametrize("rr", STYLES, ids=STYLE_IDS)
def test_reset_mid_stream(rr):
    c = make(heads=2, head_dim=8, t_kv=3, depth=4, read_register=rr)
    tr = Traffic(c, p_valid=0.7, p_ready=0.6, seed=12, reset_at=25)
    rng = random.Random(13)
    for _ in range(12):
        tr.append(rng.randrange(2), random_vector(rng, 3, 8))
    for _ in range(8):
        tr.read(rng.randrange(2), rng.randrange(4))
        tr.query(rng.randrange(2), random_vector(rng, 3, 8))
    tr.run()
    # beats were in flight at the reset: some work happened before and plenty after it
    assert any(cyc < 25 for cyc in tr.log["append"]) and any(cyc > 27 for cyc in tr.log["append"])
    assert any(cyc > 27 for cyc, _ in tr.log["score"])
    assert any(cyc > 27 for cyc, _ in tr.log["read_data"])


def test_constructor_validation():
    ok = dict(heads=2, head_dim=8, t_kv=3, depth=4)
    for key, bad in [("heads", 0), ("head_dim", 0), ("t_kv", 16), ("depth", 0), ("t_kv", 2.0),
                     ("t_q", 0), ("ring", 1), ("with_score", None), ("read_register", 1),
                     ("bram_rows", 3), ("sign_magnitude", 1), ("sign_magnitude", True),
                     ("alternating_ports", 1)]:
        with pytest.raises(ValueError, match=key):
            SpikeKvCache(**{**ok, key: bad})  # sign_magnitude=True needs read_register
    with pytest.raises(ValueError, match="alternating_ports needs read_register=False"):
        SpikeKvCache(**ok, read_register=True, alternating_ports=True)


def test_from_params_and_port_names():
    p = SimpleNamespace(heads=2, head_dim=64, t_kv=7, kv_depth=16)
    c = kv_cache_from_params(p)
    assert (c.heads, c.head_dim, c.t_kv, c.depth, c.t_q, c.ring) == (2, 64, 7, 16, 7, False)
    assert not c.read_register  # an HwParams-like object without the field
    assert c.word_bits == 128 and c.mem_depth == 2 * 16 * 7
    assert c.score_bits == (64 * 127 * 127).bit_length() + 1
    c._MustUse__silence = True  # only inspected, never simulated
    try:
        from spikemllm.hw.params import HwParams
    except ImportError:
        HwParams = None
    if HwParams is not None:
        hp = HwParams(heads=2, head_dim=16, kv_depth=8, read_register=True)
        c2 = kv_cache_from_params(hp)
        assert (c2.heads, c2.head_dim, c2.t_kv, c2.depth) == (2, 16, hp.t_kv, 8)
        assert c2.read_register and not c2.alternating_ports
        c2._MustUse__silence = True
        c3 = kv_cache_from_params(HwParams(heads=2, head_dim=16, kv_depth=8,
                                           alternating_ports=True))
        assert c3.alternating_ports and c3.append_cycles == 2 * c3.t_kv
        assert c3.read_latency == SpikeKvCache.READ_LATENCY + 2
        c3._MustUse__silence = True
    # the port list is a contract with the cosim drivers (docs/kv-cache.md)
    v = verilog.convert(make(heads=2, head_dim=8, t_kv=3, depth=4), name="spike_kv_cache")
    ports = sorted(re.findall(r"^\s*(?:input|output)\s+(?:\[[^\]]*\]\s*)?(\w+)", v, re.M))
    assert ports == sorted([
        "clk", "rst", "clear", "count", "full", "error",
        "append_stream__valid", "append_stream__ready", "append_stream__payload",
        "read_stream__valid", "read_stream__ready", "read_stream__payload",
        "read_data_stream__valid", "read_data_stream__ready", "read_data_stream__payload",
        "query_stream__valid", "query_stream__ready", "query_stream__payload",
        "score_stream__valid", "score_stream__ready", "score_stream__payload"])
