"""Address-event representation of spike trains: the hardware/software contract.

The accelerator never sees dense spike tensors. A token's spikes travel as a stream of
address events, one per non-zero spike, token by token, step by step (t = 0 first), index
ascending within a step::

    {index, sign, t, last_in_step, last_in_token, empty, modality}

* ``sign`` is 1 for a -1 spike.
* ``empty`` marks a placeholder event for a step with no spikes at all, so that the step still
  ends (``last_in_step``) and the Horner doubling happens; it adds nothing.
* ``modality`` is the token's tag (0 text, 1 vision); the firing unit uses it to pick T.

:class:`EventLayout` fixes the bit layout (LSB first, in field order). The Amaranth payload
``data.Struct`` is built from it, and the golden ``.hex`` files use it, so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import numerics as nx

__all__ = [
    "MODALITY_TEXT", "MODALITY_VISION", "EVENT_DTYPE", "EventLayout",
    "spikes_to_events", "events_to_spikes", "events_to_counts", "active_inputs",
    "accumulate_events",
    "fire_events",
    "pack_weight_rows", "unpack_weight_rows",
]

MODALITY_TEXT, MODALITY_VISION = 0, 1

#: numpy record of one event; ``token`` is bookkeeping only and is not sent to hardware.
EVENT_DTYPE = np.dtype([
    ("token", np.int64), ("index", np.int64), ("sign", np.uint8), ("t", np.uint8),
    ("last_in_step", np.uint8), ("last_in_token", np.uint8), ("empty", np.uint8),
    ("modality", np.uint8),
])

_PAYLOAD_FIELDS = ("index", "sign", "t", "last_in_step", "last_in_token", "empty", "modality")


def _clog2(n):
    return max(1, int(n - 1).bit_length())


@dataclass(frozen=True)
class EventLayout:
    """Bit layout of one address event for a given IN_MAX and T_MAX.

    Parameters
    ----------
    in_max : int
        Number of input features (rows of the weight memory); ``index`` has clog2(in_max) bits.
    t_max : int
        Largest T per token; ``t`` has clog2(t_max) bits (at least 1).
    """
    in_max: int
    t_max: int

    def __post_init__(self):
        if not isinstance(self.in_max, int) or self.in_max < 2:
            raise ValueError(f"in_max must be an integer >= 2, not {self.in_max!r}")
        if not isinstance(self.t_max, int) or not 1 <= self.t_max <= nx.BITS_MAX - 1:
            raise ValueError(f"t_max must be in 1..{nx.BITS_MAX - 1}, not {self.t_max!r}")

    @property
    def fields(self):
        """``[(name, width), ...]`` LSB first."""
        return [("index", _clog2(self.in_max)), ("sign", 1), ("t", _clog2(self.t_max)),
                ("last_in_step", 1), ("last_in_token", 1), ("empty", 1), ("modality", 1)]

    @property
    def width(self):
        return sum(w for _, w in self.fields)

    def pack(self, events):
        """Events (EVENT_DTYPE array) to integer words (uint64 array)."""
        words = np.zeros(len(events), dtype=np.uint64)
        shift = 0
        for name, width in self.fields:
            v = np.asarray(events[name], dtype=np.uint64)
            if v.size and int(v.max()) >= (1 << width):
                raise ValueError(f"event field {name!r} needs more than {width} bits (max {int(v.max())})")
            words |= v << np.uint64(shift)
            shift += width
        return words

    def unpack(self, words, token=None):
        """Integer words to an EVENT_DTYPE array; ``token`` is recounted from last_in_token."""
        words = np.asarray(words, dtype=np.uint64)
        ev = np.zeros(len(words), dtype=EVENT_DTYPE)
        shift = 0
        for name, width in self.fields:
            ev[name] = (words >> np.uint64(shift)) & np.uint64((1 << width) - 1)
            shift += width
        ends = ev["last_in_token"].astype(np.int64)
        ev["token"] = np.concatenate([[0], np.cumsum(ends)[:-1]]) if len(ev) else []
        return ev


def spikes_to_events(spikes, T=None, modality=0):
    """Dense spikes int8 [T_max, N, in] to the event stream (EVENT_DTYPE array).

    ``T`` (scalar or [N]) is each token's step count (default T_max); rows t >= T_n must be zero.
    ``modality`` is a scalar or [N]. Steps with no spike get one ``empty`` event.
    """
    s = np.asarray(spikes)
    if s.ndim != 3:
        raise ValueError(f"spikes must be [T, tokens, in], not shape {s.shape}")
    T_max, N, _ = s.shape
    Tn = np.broadcast_to(np.asarray(T_max if T is None else T, dtype=np.int64), (N,))
    if N and (Tn.min() < 1 or Tn.max() > T_max):
        raise ValueError(f"T must be in 1..{T_max} (the spikes' first axis), not {Tn!r}")
    mod = np.broadcast_to(np.asarray(modality, dtype=np.int64), (N,))
    if N and (mod.min() < 0 or mod.max() > 1):
        raise ValueError("modality must be 0 (text) or 1 (vision)")
    active = np.arange(T_max)[:, None] < Tn[None, :]  # [T, N]
    if np.any(s[~active]):
        raise ValueError("spikes beyond a token's T must be zero")
    snt = np.transpose(s, (1, 0, 2))  # [N, T, in]
    n, t, i = np.nonzero(snt)
    counts = np.zeros((N, T_max), dtype=np.int64)
    np.add.at(counts, (n, t), 1)
    en, et = np.nonzero((counts == 0) & active.T)
    total = len(n) + len(en)
    ev = np.zeros(total, dtype=EVENT_DTYPE)
    ev["token"] = np.concatenate([n, en])
    ev["t"] = np.concatenate([t, et])
    ev["index"] = np.concatenate([i, np.zeros_like(en)])
    ev["sign"] = np.concatenate([(snt[n, t, i] < 0), np.zeros(len(en), bool)])
    ev["empty"] = np.concatenate([np.zeros(len(n), np.uint8), np.ones(len(en), np.uint8)])
    order = np.lexsort((ev["index"], ev["t"], ev["token"]))
    ev = ev[order]
    ev["modality"] = mod[ev["token"]] if total else []
    if total:
        key_step = ev["token"] * (T_max + 1) + ev["t"]
        ev["last_in_step"] = np.append(key_step[1:] != key_step[:-1], True)
        ev["last_in_token"] = np.append(ev["token"][1:] != ev["token"][:-1], True)
    return ev


def events_to_spikes(events, n_tokens, in_features, t_max):
    """Inverse of :func:`spikes_to_events`: dense int8 [t_max, n_tokens, in_features]."""
    s = np.zeros((t_max, n_tokens, in_features), dtype=np.int8)
    ev = events[events["empty"] == 0]
    s[ev["t"].astype(np.int64), ev["token"], ev["index"]] = np.where(ev["sign"] == 1, -1, 1)
    return s


def events_to_counts(events, in_features, horner=True):
    """The integer activations an event stream encodes: int64 [tokens, in_features].

    Each event's ``(-1)^sign`` is scaled by 2**(number of later step ends in its token) with
    ``horner`` (tc-lif), by 1 without; ``empty`` events count 0. ``accumulate_events`` is
    this matrix times the weights; a dense INT datapath would take it as its input.
    """
    ev = np.asarray(events)
    if len(ev) == 0:
        return np.zeros((0, in_features), dtype=np.int64)
    token_id = _token_ids(ev)
    n_tokens = int(token_id[-1]) + 1
    sign = np.where(ev["sign"] == 1, -1, 1) * (ev["empty"] == 0)
    if horner:
        doubling = (ev["last_in_step"] == 1) & (ev["last_in_token"] == 0)
        # step ends at or after this event in its token = all its ends - ends strictly before
        d = doubling.astype(np.int64)
        cum = np.cumsum(d) - d
        tok_total = np.zeros(n_tokens, dtype=np.int64)
        np.add.at(tok_total, token_id, d)
        first_cum = cum[np.searchsorted(token_id, np.arange(n_tokens))]
        later = tok_total[token_id] - (cum - first_cum[token_id])
        coef = sign.astype(np.int64) << later
    else:
        coef = sign.astype(np.int64)
    M = np.zeros((n_tokens, in_features), dtype=np.int64)
    np.add.at(M, (token_id, ev["index"].astype(np.int64)), coef)
    return M


def _token_ids(ev):
    """Each event's token number, counted from the stream's own ``last_in_token`` flags."""
    if not ev["last_in_token"][-1]:
        raise ValueError("the event stream must end with last_in_token")
    return np.concatenate([[0], np.cumsum(ev["last_in_token"][:-1].astype(np.int64))])


def active_inputs(events):
    """Number of (token, index) pairs with at least one spike: the weight-row reads a datapath
    would make if it read each input's row once per token instead of once per event.

    Non-empty events over this count is how often a token's active input fires across its
    steps, the most a row held for all of a token's steps could be reused.
    """
    ev = np.asarray(events)
    if len(ev) == 0:
        return 0
    spikes = ev["empty"] == 0
    pairs = np.stack([_token_ids(ev)[spikes], ev["index"][spikes].astype(np.int64)])
    return int(np.unique(pairs, axis=1).shape[1])


def accumulate_events(events, w, horner=True):
    """What the PE array computes: per token, acc[o] over events, doubling at each step end.

    Per event: acc += (-1)^sign * w[o, index] (nothing if ``empty``); if ``last_in_step`` and
    not ``last_in_token`` and ``horner``: acc *= 2. At ``last_in_token`` the accumulators are
    emitted and cleared. Returns int64 [tokens, out]. Vectorised: the counts of
    :func:`events_to_counts` times ``w``.
    """
    w = np.asarray(w, dtype=np.int64)
    if len(events) == 0:
        return np.zeros((0, w.shape[0]), dtype=np.int64)
    return nx.exact_matmul(events_to_counts(events, w.shape[1], horner), w.T)


def fire_events(acc, theta, frac_bits, T, modality=0):
    """What the firing unit emits: acc [N, lanes] -> next layer's events (T per token)."""
    acc = np.asarray(acc, dtype=np.int64)
    Tn = np.broadcast_to(np.asarray(T, dtype=np.int64), (acc.shape[0],))
    spikes, q = nx.fire_spikes(acc, theta, frac_bits, Tn[:, None])
    return spikes_to_events(spikes, Tn, modality), q


def pack_weight_rows(w, w_bits):
    """Weight memory image: int [lanes, in] -> one word per input row, lane 0 at the LSB.

    Returns a list of Python ints (rows may exceed 64 bits), each lanes*w_bits wide,
    two's complement per lane.
    """
    w = np.asarray(w, dtype=np.int64)
    lo, hi = -(1 << (w_bits - 1)), (1 << (w_bits - 1)) - 1
    if w.size and (w.min() < lo or w.max() > hi):
        raise ValueError(f"weights must fit {w_bits}-bit two's complement ({lo}..{hi})")
    mask = (1 << w_bits) - 1
    rows = []
    for i in range(w.shape[1]):
        word = 0
        for lane in range(w.shape[0]):
            word |= (int(w[lane, i]) & mask) << (lane * w_bits)
        rows.append(word)
    return rows


def unpack_weight_rows(rows, lanes, w_bits):
    """Inverse of :func:`pack_weight_rows`: words -> int64 [lanes, in]."""
    mask = (1 << w_bits) - 1
    w = np.zeros((lanes, len(rows)), dtype=np.int64)
    for i, word in enumerate(rows):
        for lane in range(lanes):
            v = (int(word) >> (lane * w_bits)) & mask
            w[lane, i] = v - (1 << w_bits) if v >> (w_bits - 1) else v
    return w
