"""The address-event contract between the reference and the hardware."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from spikemllm.sw import events as E, numerics as nx


def _mixed_tokens(rng, n, d, T_choices=(3, 4)):
    T = rng.choice(T_choices, size=n)
    q = np.zeros((n, d), np.int64)
    spikes = np.zeros((max(T_choices), n, d), np.int8)
    for i, Ti in enumerate(T):
        b = int(Ti) + 1
        q[i] = rng.integers(-nx.qmax(b), nx.qmax(b) + 1, size=d)
        spikes[:Ti, i] = nx.encode(q[i], "tc-lif", b)
    return q, spikes, T


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(2, 40), st.integers(1, 8), st.integers(0, 2 ** 31))
def test_events_accumulate_to_integer_matmul(n, d, lanes, seed):
    rng = np.random.default_rng(seed)
    q, spikes, T = _mixed_tokens(rng, n, d)
    w = rng.integers(-8, 8, size=(lanes, d))
    ev = E.spikes_to_events(spikes, T, modality=(T == 3).astype(int))
    assert np.array_equal(E.accumulate_events(ev, w), q @ w.T)
    assert np.array_equal(E.events_to_counts(ev, d), q)  # the stream decodes to its counts
    assert np.array_equal(E.events_to_spikes(ev, n, d, spikes.shape[0]), spikes)
    # one event per non-zero spike, plus one placeholder per silent step
    silent = sum(int(not spikes[t, i].any()) for i in range(n) for t in range(T[i]))
    assert len(ev) == np.count_nonzero(spikes) + silent
    assert ev["empty"].sum() == silent


def test_event_order_and_markers():
    spikes = np.zeros((3, 2, 4), np.int8)
    spikes[0, 0, [2, 0]] = [1, -1]
    spikes[2, 0, 3] = 1  # step 1 of token 0 is silent
    spikes[1, 1, 1] = -1
    ev = E.spikes_to_events(spikes, T=[3, 2], modality=[0, 1])
    got = [(e["token"], e["t"], e["index"], e["sign"], e["empty"], e["last_in_step"], e["last_in_token"], e["modality"])
           for e in ev]
    assert got == [
        (0, 0, 0, 1, 0, 0, 0, 0), (0, 0, 2, 0, 0, 1, 0, 0),
        (0, 1, 0, 0, 1, 1, 0, 0),
        (0, 2, 3, 0, 0, 1, 1, 0),
        (1, 0, 0, 0, 1, 1, 0, 1),
        (1, 1, 1, 1, 0, 1, 1, 1),
    ]


def test_active_inputs_counts_each_tokens_spiking_indices_once():
    spikes = np.zeros((3, 2, 4), np.int8)
    spikes[:, 0, 2] = [1, -1, 1]     # token 0, index 2 fires at every step: one active input
    spikes[0, 0, 0] = -1
    spikes[1, 1, 2] = 1              # the same index in another token counts again
    ev = E.spikes_to_events(spikes, T=[3, 3])
    assert E.active_inputs(ev) == 3
    assert E.active_inputs(ev[:0]) == 0
    silent = E.spikes_to_events(np.zeros((2, 1, 4), np.int8), T=[2])
    assert len(silent) == 2 and E.active_inputs(silent) == 0   # placeholders only
    with pytest.raises(ValueError, match="last_in_token"):
        E.active_inputs(ev[:-1])


def test_ternary_mode_accumulates_without_doubling():
    rng = np.random.default_rng(5)
    q = rng.integers(-7, 8, size=(3, 10))
    w = rng.integers(-7, 8, size=(4, 10))
    ev = E.spikes_to_events(nx.encode(q, "ternary", 4))
    assert np.array_equal(E.accumulate_events(ev, w, horner=False), q @ w.T)
    assert np.array_equal(E.events_to_counts(ev, 10, horner=False), q)


def test_layout_pack_unpack_round_trip_and_widths():
    layout = E.EventLayout(in_max=4096, t_max=8)
    assert [w for _, w in layout.fields] == [12, 1, 3, 1, 1, 1, 1]
    assert layout.width == 20
    rng = np.random.default_rng(6)
    _, spikes, T = _mixed_tokens(rng, 5, 300)
    ev = E.spikes_to_events(spikes, T)
    back = layout.unpack(layout.pack(ev))
    assert np.array_equal(back, ev)


def test_layout_rejects_values_that_do_not_fit():
    layout = E.EventLayout(in_max=16, t_max=4)
    ev = E.spikes_to_events(np.ones((1, 1, 17), np.int8))
    with pytest.raises(ValueError, match="field 'index' needs more than 4 bits"):
        layout.pack(ev)
    with pytest.raises(ValueError, match=r"t_max must be in 1\.\.15"):
        E.EventLayout(in_max=16, t_max=16)


def test_fire_events_match_fire():
    rng = np.random.default_rng(7)
    acc = rng.integers(-3000, 3000, size=(4, 8))
    T = np.array([4, 3, 4, 3])
    ev, q = E.fire_events(acc, theta=300, frac_bits=2, T=T, modality=[0, 1, 0, 1])
    assert np.array_equal(q, nx.fire(acc, 300, 2, T[:, None]))
    spikes = E.events_to_spikes(ev, 4, 8, 4)
    for i in range(4):
        assert np.array_equal(nx.decode(spikes[:T[i], i], "tc-lif", T[i] + 1), q[i])


def test_weight_rows_round_trip():
    rng = np.random.default_rng(8)
    w = rng.integers(-8, 8, size=(32, 20))
    rows = E.pack_weight_rows(w, 4)
    assert all(0 <= r < 2 ** 128 for r in rows)
    assert rows[0] & 0xF == w[0, 0] & 0xF
    assert np.array_equal(E.unpack_weight_rows(rows, 32, 4), w)
    with pytest.raises(ValueError, match="4-bit two's complement"):
        E.pack_weight_rows(np.array([[8]]), 4)


def test_spikes_beyond_T_are_rejected():
    s = np.zeros((3, 1, 2), np.int8)
    s[2, 0, 0] = 1
    with pytest.raises(ValueError, match="beyond a token's T"):
        E.spikes_to_events(s, T=[2])
