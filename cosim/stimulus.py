"""Stimulus for the co-simulation: engine and KV-cache cases, from golden vectors or generated.

A *case* is everything one cocotb test needs, fixed before the simulator starts: weights,
the input event stream, the configuration registers (theta, Tt/Tv) and the reference
expectations. Cases are written to ``.npz`` files by the pytest / ``spikemllm sim`` side and
read back inside the simulator's embedded Python (the path travels in ``COSIM_CASE``), so the
stimulus is identical across runs and simulators.

The expected outputs are always recomputed with the numerics reference
(:func:`spikemllm.sw.events.accumulate_events`, :func:`~spikemllm.sw.events.fire_events`,
:func:`spikemllm.sw.numerics.popcount_score`); a golden directory's stored expectations are
cross-checked against that reference when the case is built, so a golden file and the
reference can never silently disagree.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikemllm.sw import numerics as nx
from spikemllm.sw.events import (MODALITY_VISION, accumulate_events, fire_events,
                                 spikes_to_events)

__all__ = ["EngineCase", "KvCase", "save_case", "load_case", "random_engine_case",
           "corner_engine_cases", "golden_engine_cases", "golden_activity_cases",
           "random_kv_case", "golden_kv_case", "kv_params_for", "token_T"]


def token_T(modality, t_text, t_vision):
    """T per token from its modality tag and the Tt/Tv registers (MSTS)."""
    modality = np.asarray(modality, dtype=np.int64)
    return np.where(modality == MODALITY_VISION, t_vision, t_text).astype(np.int64)


def _token_modality(events):
    """Modality of each token of an event stream (taken from its last event)."""
    ev = events[events["last_in_token"] == 1]
    return ev["modality"].astype(np.int64)


@dataclass
class EngineCase:
    """One engine test: a weight tile, an event stream and the firing configuration.

    Attributes
    ----------
    name : str
        Short identifier (appears in the summary).
    source : str
        Where the stimulus came from: ``golden:<dir>[#tile]``, ``random`` or ``corner:<kind>``.
    weights : int64 [lanes, in_features]
        Weight tile; ``lanes`` equals the hardware's LANES (pad with zeros), in_features <= IN_MAX.
    events : EVENT_DTYPE array
        Input address events, token by token.
    t_text, t_vision : int
        Values for the Tt/Tv registers; the firing unit emits T = Tv for vision tokens, else Tt.
    theta, frac_bits : int
        Firing threshold (fixed point, frac_bits fraction bits).
    """

    name: str
    source: str
    weights: np.ndarray
    events: np.ndarray
    t_text: int
    t_vision: int
    theta: int
    frac_bits: int
    horner: bool = True
    meta: dict = field(default_factory=dict)

    kind = "engine"

    @property
    def n_tokens(self):
        return int(np.count_nonzero(self.events["last_in_token"]))

    @property
    def modality(self):
        return _token_modality(self.events)

    @property
    def T_out(self):
        return token_T(self.modality, self.t_text, self.t_vision)

    def engine_config(self, tap=True):
        """The SpikeEngine register values (name -> int) that run this case; ``tap`` sets
        CTRL.acc_tap."""
        return {"CTRL": (int(tap) << 1) | int(self.horner), "THETA": self.theta,
                "T_TEXT": self.t_text, "T_VISION": self.t_vision,
                "IN_FEATURES": self.weights.shape[1]}

    def expected_acc(self):
        """Reference accumulators int64 [tokens, lanes] (Horner for tc-lif input)."""
        return accumulate_events(self.events, self.weights, horner=self.horner)

    def expected_out_events(self, acc=None):
        """Reference output events of the firing unit and the integer spike counts q."""
        acc = self.expected_acc() if acc is None else acc
        return fire_events(acc, self.theta, self.frac_bits, self.T_out, self.modality)

    def check_fits(self, params):
        """Raise ValueError if this case does not fit the hardware configuration ``params``."""
        lanes, n_in = self.weights.shape
        if lanes != params.lanes:
            raise ValueError(f"case {self.name}: weights have {lanes} lanes, hardware has {params.lanes}")
        if n_in > params.in_max:
            raise ValueError(f"case {self.name}: {n_in} input features exceed IN_MAX={params.in_max}")
        if self.weights.size and (self.weights.min() < params.w_min or self.weights.max() > params.w_max):
            raise ValueError(f"case {self.name}: weights outside {params.w_bits}-bit range")
        for name in ("t_text", "t_vision"):
            if not 1 <= getattr(self, name) <= params.t_max:
                raise ValueError(f"case {self.name}: {name}={getattr(self, name)} not in 1..{params.t_max}")
        if len(self.events) and int(self.events["t"].max()) >= params.t_max:
            raise ValueError(f"case {self.name}: event t beyond T_MAX={params.t_max}")
        if not 1 <= self.theta < (1 << params.theta_bits):
            raise ValueError(f"case {self.name}: theta={self.theta} does not fit {params.theta_bits} bits")
        if self.frac_bits != params.frac_bits:
            raise ValueError(f"case {self.name}: frac_bits={self.frac_bits}, hardware has {params.frac_bits}")


@dataclass
class KvCase:
    """One KV-cache test: K planes appended per head, Q planes scored against them.

    Attributes
    ----------
    k_pos, k_neg : bool [heads, tokens, t_kv, head_dim]
        Cached K bit-planes (tc-lif, most significant plane first).
    q_pos, q_neg : bool [queries, heads, t_q, head_dim]
        Query bit-planes; each query is scored against every cached K of its head.
    """

    name: str
    source: str
    k_pos: np.ndarray
    k_neg: np.ndarray
    q_pos: np.ndarray
    q_neg: np.ndarray
    meta: dict = field(default_factory=dict)

    kind = "kv"

    def expected_scores(self):
        """Reference scores int64 [queries, heads, tokens] from AND/popcount."""
        nq, heads = self.q_pos.shape[:2]
        out = np.zeros((nq, heads, self.k_pos.shape[1]), dtype=np.int64)
        for qi in range(nq):
            for h in range(heads):
                qp = np.moveaxis(self.q_pos[qi, h], 0, 0)  # [Tq, d]
                qn = self.q_neg[qi, h]
                kp = np.moveaxis(self.k_pos[h], 1, 0)  # [Tk, tokens, d]
                kn = np.moveaxis(self.k_neg[h], 1, 0)
                out[qi, h] = nx.popcount_score(qp, qn, kp, kn)
        return out


# --------------------------------------------------------------------------------------------
# Files: one .npz per case (read by the cocotb test inside the simulator)
# --------------------------------------------------------------------------------------------

def save_case(case, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"kind": case.kind, "name": case.name, "source": case.source, "meta": case.meta}
    arrays = {}
    if case.kind == "engine":
        header.update(t_text=case.t_text, t_vision=case.t_vision, theta=case.theta,
                      frac_bits=case.frac_bits, horner=bool(case.horner))
        arrays.update(weights=case.weights, events=case.events)
    else:
        arrays.update(k_pos=case.k_pos, k_neg=case.k_neg, q_pos=case.q_pos, q_neg=case.q_neg)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
    tmp.replace(path)
    return path


def load_case(path):
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(bytes(z["header"]).decode())
        kind = header.pop("kind")
        if kind == "engine":
            return EngineCase(weights=z["weights"].astype(np.int64), events=z["events"], **header)
        return KvCase(k_pos=z["k_pos"], k_neg=z["k_neg"], q_pos=z["q_pos"], q_neg=z["q_neg"],
                      **header)


# --------------------------------------------------------------------------------------------
# Generated engine stimulus
# --------------------------------------------------------------------------------------------

def _events_from_q(q, T, modality):
    """tc-lif events of integer spike counts q [N, in] with T per token."""
    q = np.asarray(q, dtype=np.int64)
    T = np.asarray(T, dtype=np.int64)
    T_max = int(T.max())
    spikes = np.zeros((T_max,) + q.shape, dtype=np.int8)
    for n in range(q.shape[0]):
        spikes[: T[n], n] = nx.encode(q[n], "tc-lif", int(T[n]) + 1)
    return spikes_to_events(spikes, T, modality)


def _theta_for(acc, T_out, frac_bits, rng, theta_bits):
    """A theta that makes the firing unit use most of its range (some saturation, some zeros)."""
    amax = max(1, int(np.abs(acc).max(initial=0)))
    levels = (1 << int(np.max(T_out))) - 1
    step = amax / levels * rng.uniform(0.4, 1.2)
    return int(min(max(1, round(step * (1 << frac_bits))), (1 << theta_bits) - 1))


def random_engine_case(params, *, seed, n_tokens=6, in_features=None, density=0.35,
                       t_text=None, t_vision=None, mixed=True, name=None):
    """Random weights and random ternary spike trains (tc-lif counts), per-token T by modality."""
    rng = np.random.default_rng(seed)
    n_in = in_features or min(params.in_max, 64)
    t_text = t_text or min(4, params.t_max)
    t_vision = t_vision or min(3, params.t_max)
    w = rng.integers(params.w_min, params.w_max + 1, size=(params.lanes, n_in))
    modality = (rng.random(n_tokens) < 0.5).astype(np.int64) if mixed else np.zeros(n_tokens, np.int64)
    T = token_T(modality, t_text, t_vision)
    q = np.zeros((n_tokens, n_in), dtype=np.int64)
    for n in range(n_tokens):
        qm = (1 << int(T[n])) - 1
        mag = rng.integers(0, qm + 1, size=n_in)
        sgn = rng.choice([-1, 1], size=n_in)
        q[n] = np.where(rng.random(n_in) < density, sgn * mag, 0)
    ev = _events_from_q(q, T, modality)
    acc = accumulate_events(ev, w)
    T_out = token_T(modality, t_text, t_vision)
    theta = _theta_for(acc, T_out, params.frac_bits, rng, params.theta_bits)
    return EngineCase(name=name or f"random-s{seed}", source="random", weights=w, events=ev,
                      t_text=t_text, t_vision=t_vision, theta=theta,
                      frac_bits=params.frac_bits, meta={"seed": int(seed)})


def corner_engine_cases(params, *, seed=0):
    """Corner cases: extreme weights and signs, T = 1 and T = T_MAX, empty steps and tokens,
    single-event tokens, IN_MAX-1 index, saturating and all-zero firing."""
    rng = np.random.default_rng(seed)
    L, tmax = params.lanes, params.t_max
    n_in = min(params.in_max, 32)
    cases = []

    def add(kind, w, q, T, modality, t_text, t_vision, theta=None):
        ev = _events_from_q(q, T, modality)
        acc = accumulate_events(ev, w)
        th = theta if theta is not None else _theta_for(acc, token_T(modality, t_text, t_vision),
                                                        params.frac_bits, rng, params.theta_bits)
        cases.append(EngineCase(name=f"corner-{kind}", source=f"corner:{kind}", weights=w,
                                events=ev, t_text=t_text, t_vision=t_vision, theta=th,
                                frac_bits=params.frac_bits))

    qm = (1 << tmax) - 1
    # every spike +1, every weight at the positive / negative extreme, T = T_MAX: the
    # accumulator's extreme values (within n_in inputs)
    w = np.full((L, n_in), params.w_min, dtype=np.int64)
    w[1::2] = params.w_max
    add("max-positive", w, np.full((3, n_in), qm), np.full(3, tmax), np.zeros(3, np.int64), tmax, tmax)
    add("max-negative", w, np.full((3, n_in), -qm), np.full(3, tmax), np.zeros(3, np.int64), tmax, tmax)
    # T = 1 for every token (one step, no doubling), both modalities
    w = rng.integers(params.w_min, params.w_max + 1, size=(L, n_in))
    q = rng.integers(-1, 2, size=(4, n_in))
    add("t1", w, q, np.ones(4, np.int64), np.array([0, 1, 0, 1]), 1, 1)
    # empty steps and a fully empty token (all-zero q), single-event tokens, the last index
    n_last = params.in_max if params.in_max <= 1024 else n_in
    w = rng.integers(params.w_min, params.w_max + 1, size=(L, n_last))
    q = np.zeros((5, n_last), dtype=np.int64)
    q[1, n_last - 1] = 1                    # one event at the last index, in the last step
    q[2, 0] = -(1 << (tmax - 1))            # one event in the first step, then empty steps
    q[3, [0, n_last - 1]] = [qm, -qm]
    T = np.array([tmax, tmax, tmax, tmax, 1])
    add("empty-and-single", w, q, T, np.zeros(5, np.int64), tmax, tmax)
    # theta = 1 (saturates at 2^T - 1) and a huge theta (fires nothing)
    w = rng.integers(params.w_min, params.w_max + 1, size=(L, n_in))
    q = rng.integers(-qm, qm + 1, size=(3, n_in))
    add("saturate", w, q, np.full(3, tmax), np.zeros(3, np.int64), tmax, tmax, theta=1)
    add("silent", w, q, np.full(3, tmax), np.zeros(3, np.int64), tmax, tmax,
        theta=(1 << params.theta_bits) - 1)
    # MSTS switching on every token with Tv != Tt
    tv, tt = max(1, tmax - 1), tmax
    mod = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    T = token_T(mod, tt, tv)
    q = np.stack([rng.integers(-((1 << int(t)) - 1), (1 << int(t)), size=n_in) for t in T])
    add("msts-switch", w, q, T, mod, tt, tv)
    # ternary / rate input (CTRL.horner = 0: plain sum over steps, no doubling): random
    # ternary spikes in every step, tokens of both modalities
    mod = np.array([0, 1, 1, 0, 1])
    T = token_T(mod, tt, tv)
    spikes = rng.choice(np.array([-1, 0, 1], dtype=np.int8), p=[0.3, 0.4, 0.3],
                        size=(tmax, len(mod), n_in))
    spikes[np.arange(tmax)[:, None] >= T[None, :]] = 0
    ev = spikes_to_events(spikes, T, mod)
    acc = accumulate_events(ev, w, horner=False)
    th = _theta_for(acc, T, params.frac_bits, rng, params.theta_bits)
    cases.append(EngineCase(name="corner-ternary-sum", source="corner:ternary-sum", weights=w,
                            events=ev, t_text=tt, t_vision=tv, theta=th,
                            frac_bits=params.frac_bits, horner=False))
    # accumulator tap off (CTRL.acc_tap = 0): o_acc must stay silent, o_stream unchanged
    tap_off = dataclasses.replace(cases[0], name="corner-acc-tap-off", source="corner:acc-tap-off",
                                  meta={"acc_tap": False})
    cases.append(tap_off)
    return cases


# --------------------------------------------------------------------------------------------
# Golden vectors (spikemllm golden export directories)
# --------------------------------------------------------------------------------------------

def golden_engine_cases(golden_dir, params, *, max_tiles=None, name=None):
    """Engine cases of one linear golden directory, split into LANES-wide output tiles.

    The directory is loaded and verified with :func:`spikemllm.sw.golden.load_golden`. Its
    stored expectations are checked against the reference here (accumulators always; output
    events when one hardware tile covers the golden tile); a disagreement raises ValueError.
    """
    from spikemllm.sw.golden import load_golden

    golden_dir = Path(golden_dir)
    gv = load_golden(golden_dir)
    if gv.kind != "linear":
        raise ValueError(f"golden {golden_dir} is {gv.kind!r}, not a linear layer")
    w = np.asarray(gv.weights, dtype=np.int64)
    events = np.asarray(gv.events)
    horner = bool(gv.horner)
    label = name or golden_dir.name
    ref = accumulate_events(events, w, horner=horner)
    if ref.shape != gv.expected_acc.shape or not np.array_equal(ref, gv.expected_acc):
        raise ValueError(f"golden {golden_dir}: expected accumulators disagree with the reference")
    if gv.frac_bits != params.frac_bits:
        raise ValueError(f"golden {golden_dir}: frac_bits={gv.frac_bits}, hardware has {params.frac_bits}")
    lanes_total, n_in = w.shape
    n_tiles = -(-lanes_total // params.lanes)
    if max_tiles:
        n_tiles = min(n_tiles, max_tiles)
    lanes_valid = int(gv.manifest.get("layer", {}).get("lanes_valid", lanes_total))
    cases = []
    for k in range(n_tiles):
        tile = np.zeros((params.lanes, n_in), dtype=np.int64)
        part = w[k * params.lanes:(k + 1) * params.lanes]
        tile[: len(part)] = part
        case = EngineCase(
            name=f"{label}{'-t%d' % k if n_tiles > 1 else ''}",
            source=f"golden:{golden_dir}" + (f"#{k}" if n_tiles > 1 else ""), weights=tile,
            events=events, t_text=int(gv.t_text_out), t_vision=int(gv.t_vision_out),
            theta=int(gv.theta), frac_bits=int(gv.frac_bits), horner=horner,
            meta={"golden_dir": str(golden_dir), "tile": k, "tiles": n_tiles,
                  "lanes_valid": max(0, min(params.lanes, lanes_valid - k * params.lanes))})
        if not np.array_equal(case.T_out, gv.T_out):
            raise ValueError(f"golden {golden_dir}: T_out per token disagrees with Tt/Tv by modality")
        if params.lanes == lanes_total:
            exp_ev, _ = case.expected_out_events()
            g = gv.expected_out_events
            if len(exp_ev) != len(g) or any(not np.array_equal(exp_ev[f], g[f])
                                            for f in ("index", "sign", "t", "last_in_step",
                                                      "last_in_token", "empty", "modality")):
                raise ValueError(f"golden {golden_dir}: expected output events disagree with the reference")
        cases.append(case)
    return cases


def golden_activity_cases(golden_dirs, params):
    """The first LANES-wide output tile of each linear golden directory, as the engine cases
    on which activity for synthesis is measured (``spikemllm sim`` at the synthesis
    defaults, ``spikemllm synth --sweep`` at every point).

    Raises ValueError, naming the directory, when its first tile has fewer than LANES real
    output channels (the rest would be zero weights, which toggle nothing and would flatter
    the design) or does not fit ``params`` otherwise.
    """
    cases = []
    for d in golden_dirs:
        (case,) = golden_engine_cases(d, params, max_tiles=1)
        if case.meta["lanes_valid"] < params.lanes:
            raise ValueError(f"golden {d}: {case.meta['lanes_valid']} output channels, fewer "
                             f"than LANES={params.lanes} (export it with spikemllm golden "
                             f"--lanes {params.lanes} or more)")
        case.check_fits(params)
        cases.append(case)
    return cases


def golden_kv_case(golden_dir, name=None):
    """KV case of an attention golden directory (K planes and Q planes; scores cross-checked)."""
    from spikemllm.sw.golden import load_golden

    golden_dir = Path(golden_dir)
    gv = load_golden(golden_dir)
    if gv.kind != "attention":
        raise ValueError(f"golden {golden_dir} is {gv.kind!r}, not an attention case")
    case = KvCase(name=name or golden_dir.name, source=f"golden:{golden_dir}",
                  k_pos=np.asarray(gv.k_pos, bool), k_neg=np.asarray(gv.k_neg, bool),
                  q_pos=np.asarray(gv.q_pos, bool), q_neg=np.asarray(gv.q_neg, bool),
                  meta={"golden_dir": str(golden_dir)})
    if not np.array_equal(case.expected_scores(), gv.expected_scores):
        raise ValueError(f"golden {golden_dir}: expected scores disagree with popcount_score")
    return case


def kv_params_for(case, params, *, keep_fitting=False):
    """``params`` with the KV fields (heads, head_dim, t_kv, kv_depth) a KV case needs. With
    ``keep_fitting``, ``params`` itself where its cache already takes the case (the same
    heads, head_dim and t_kv, a slot for every token): a trace recorded there drives the
    netlist that ``spikemllm synth`` makes of ``params``."""
    import dataclasses

    heads, tokens, t_kv, head_dim = case.k_pos.shape
    if keep_fitting and (heads, head_dim, t_kv) == (params.heads, params.head_dim, params.t_kv) \
            and tokens <= params.kv_depth:
        return params
    depth = 1 << max(1, (tokens - 1).bit_length())
    return dataclasses.replace(params, heads=heads, head_dim=head_dim, t_kv=t_kv,
                               t_max=max(params.t_max, t_kv), kv_depth=depth)


# --------------------------------------------------------------------------------------------
# Generated KV stimulus
# --------------------------------------------------------------------------------------------

def random_kv_case(params, *, seed, tokens=None, queries=2, t_q=None, name=None, extreme=False):
    """Random K per (head, token) and Q per head, as tc-lif planes on the t_kv (t_q) grids."""
    rng = np.random.default_rng(seed)
    heads, d, tk = params.heads, params.head_dim, params.t_kv
    tokens = tokens or min(params.kv_depth, 8)
    tq = t_q or tk
    qmk, qmq = (1 << tk) - 1, (1 << tq) - 1
    if extreme:
        k = np.full((heads, tokens, d), qmk)
        k[:, 1::2] = -qmk
        q = np.full((queries, heads, d), qmq)
    else:
        k = rng.integers(-qmk, qmk + 1, size=(heads, tokens, d))
        q = rng.integers(-qmq, qmq + 1, size=(queries, heads, d))
    kp, kn = nx.to_bit_planes(k, tk + 1)   # [Tk, heads, tokens, d]
    qp, qn = nx.to_bit_planes(q, tq + 1)   # [Tq, queries, heads, d]
    return KvCase(name=name or f"kv-random-s{seed}", source="random" if not extreme else "corner:kv-extreme",
                  k_pos=np.moveaxis(kp, 0, 2), k_neg=np.moveaxis(kn, 0, 2),
                  q_pos=np.moveaxis(qp, 0, 2), q_neg=np.moveaxis(qn, 0, 2),
                  meta={"seed": int(seed)})


def json_from_env(var):
    """The JSON file named by environment variable ``var`` (how pytest hands a cocotb
    process its cases), or None when unset or missing."""
    import os

    path = os.environ.get(var)
    if not path or not Path(path).exists():
        return None
    return json.loads(Path(path).read_text())
