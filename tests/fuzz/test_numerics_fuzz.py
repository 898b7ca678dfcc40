"""Hypothesis fuzzing of the numerics reference and the event contract.

Valid inputs must give the exact documented result; invalid inputs must raise ValueError
(never another exception type, never a silent wrong result). Example counts are fixed by
``settings(max_examples=...)`` and recorded in docs/reliability.md.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from spikemllm.sw import events as sev
from spikemllm.sw import numerics as nx

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

encodings = st.sampled_from(nx.ENCODINGS)
valid_bits = st.integers(nx.BITS_MIN, 8)


def _closed_form(v, theta, F, T):
    """q = sign(v) * min(floor((|v| * 2**F + floor(theta/2)) / theta), 2**T - 1), in Python ints."""
    u = (abs(v) << F) + theta // 2
    q = min(u // theta, (1 << T) - 1)
    return -q if v < 0 else q


# ---- encode / decode ---------------------------------------------------------------------------

@FUZZ
@given(encoding=encodings, bits=valid_bits, data=st.data())
def test_encode_decode_round_trip(encoding, bits, data):
    qm = nx.qmax(bits)
    q = data.draw(hnp.arrays(np.int64, hnp.array_shapes(max_dims=3, max_side=5),
                             elements=st.integers(-qm, qm)))
    s = nx.encode(q, encoding, bits)
    T = nx.timesteps(encoding, bits)
    assert s.shape == (T,) + q.shape and s.dtype == np.int8
    assert set(np.unique(s)) <= {-1, 0, 1}
    np.testing.assert_array_equal(nx.decode(s, encoding, bits), q)


@FUZZ
@given(encoding=encodings, bits=valid_bits, data=st.data())
def test_encode_refuses_out_of_range_and_non_integers(encoding, bits, data):
    qm = nx.qmax(bits)
    bad = data.draw(st.one_of(st.integers(qm + 1, 10 ** 6), st.integers(-10 ** 6, -qm - 1),
                              st.floats(allow_nan=True, allow_infinity=True)
                              .filter(lambda x: not (np.isfinite(x) and x == round(x)
                                                     and -qm <= x <= qm))))
    q = np.array([0, bad], dtype=np.float64 if isinstance(bad, float) else np.int64)
    with pytest.raises(ValueError):
        nx.encode(q, encoding, bits)


@FUZZ
@given(bits=st.one_of(st.integers(-5, nx.BITS_MIN - 1), st.integers(nx.BITS_MAX + 1, 99),
                      st.floats(), st.text(max_size=3), st.none(), st.booleans()),
       encoding=st.one_of(encodings, st.text(max_size=8)))
def test_bad_bits_or_encoding_raise_value_error(bits, encoding):
    with pytest.raises(ValueError):
        nx.encode(np.zeros(3, np.int64), encoding, bits)
    with pytest.raises(ValueError):
        nx.decode(np.zeros((1, 3), np.int8), encoding, bits)


@FUZZ
@given(encoding=encodings, bits=valid_bits, data=st.data())
def test_decode_refuses_wrong_steps_and_non_ternary_spikes(encoding, bits, data):
    T = nx.timesteps(encoding, bits)
    n = data.draw(st.integers(1, 4))
    if data.draw(st.booleans()):
        steps = data.draw(st.integers(0, T + 3).filter(lambda k: k != T))
        s = np.zeros((steps, n), np.int8)
    else:
        s = np.zeros((T, n), np.int64)
        s[data.draw(st.integers(0, T - 1)), 0] = data.draw(st.sampled_from([-5, -2, 2, 3, 100]))
    with pytest.raises(ValueError):
        nx.decode(s, encoding, bits)


# ---- firing unit ---------------------------------------------------------------------------------

@FUZZ
@given(v=st.lists(st.integers(-(1 << 30), 1 << 30), min_size=1, max_size=16),
       theta=st.integers(1, 1 << 20), F=st.integers(0, 24), T=st.integers(1, 15))
def test_fire_equals_closed_form_and_neuron(v, theta, F, T):
    q = nx.fire(np.array(v), theta, F, T)
    spikes, q_neuron = nx.fire_spikes(np.array(v), theta, F, T)
    want = [_closed_form(x, theta, F, T) for x in v]
    assert q.tolist() == want
    assert q_neuron.tolist() == want
    weights = nx.step_weights("tc-lif", T)
    assert (np.tensordot(weights, spikes.astype(np.int64), axes=1)).tolist() == want


@FUZZ
@given(theta=st.one_of(st.integers(-10, 0), st.floats(), st.text(max_size=2), st.none()),
       F=st.one_of(st.integers(0, 24), st.integers(25, 99), st.integers(-9, -1), st.floats()),
       T=st.one_of(st.integers(1, 15), st.integers(16, 40), st.integers(-3, 0)))
def test_fire_refuses_bad_theta_frac_bits_and_T(theta, F, T):
    good_theta = isinstance(theta, int) and theta >= 1
    good_F = isinstance(F, int) and 0 <= F <= 24
    good_T = isinstance(T, int) and 1 <= T <= 15
    if good_theta and good_F and good_T:
        return
    for fn in (nx.fire, nx.fire_spikes):
        with pytest.raises(ValueError):
            fn(np.array([3, -7]), theta, F, T)


# ---- events --------------------------------------------------------------------------------------

@st.composite
def spike_tensors(draw):
    T_max = draw(st.integers(1, 6))
    N = draw(st.integers(1, 4))
    n_in = draw(st.integers(2, 9))
    s = draw(hnp.arrays(np.int8, (T_max, N, n_in), elements=st.sampled_from([-1, 0, 0, 1])))
    Tn = np.array(draw(st.lists(st.integers(1, T_max), min_size=N, max_size=N)))
    s[np.arange(T_max)[:, None] >= Tn[None, :]] = 0
    mod = np.array(draw(st.lists(st.integers(0, 1), min_size=N, max_size=N)))
    return s, Tn, mod


@FUZZ
@given(spike_tensors())
def test_events_round_trip_and_pack(args):
    s, Tn, mod = args
    T_max, N, n_in = s.shape
    ev = sev.spikes_to_events(s, Tn, mod)
    np.testing.assert_array_equal(sev.events_to_spikes(ev, N, n_in, T_max), s)
    # one event per spike plus one empty event per spike-less step; one token end per token
    assert len(ev) == np.count_nonzero(s) + sum(
        int(not s[t, n].any()) for n in range(N) for t in range(Tn[n]))
    assert int(ev["last_in_token"].sum()) == N
    layout = sev.EventLayout(max(2, n_in), T_max)
    back = layout.unpack(layout.pack(ev))
    for name, _ in layout.fields:
        np.testing.assert_array_equal(back[name], ev[name])
    np.testing.assert_array_equal(back["token"], ev["token"])


@FUZZ
@given(spike_tensors(), st.integers(2, 6), st.data())
def test_accumulate_events_equals_dense_horner(args, w_bits, data):
    s, Tn, mod = args
    T_max, N, n_in = s.shape
    lanes = data.draw(st.integers(1, 4))
    lo, hi = -(1 << (w_bits - 1)), (1 << (w_bits - 1)) - 1
    w = data.draw(hnp.arrays(np.int64, (lanes, n_in), elements=st.integers(lo, hi)))
    ev = sev.spikes_to_events(s, Tn, mod)
    acc = sev.accumulate_events(ev, w, horner=True)
    for n in range(N):
        want = [sum((1 << (Tn[n] - 1 - t)) * int(s[t, n, i]) * int(w[o, i])
                    for t in range(Tn[n]) for i in range(n_in)) for o in range(lanes)]
        assert acc[n].tolist() == want
    np.testing.assert_array_equal(sev.unpack_weight_rows(sev.pack_weight_rows(w, w_bits),
                                                         lanes, w_bits), w)


@FUZZ
@given(in_max=st.one_of(st.integers(-3, 1), st.floats(), st.text(max_size=2), st.none()),
       t_max=st.one_of(st.integers(-3, 0), st.integers(15, 40), st.floats(), st.none()))
def test_event_layout_refuses_bad_sizes(in_max, t_max):
    with pytest.raises(ValueError):
        sev.EventLayout(in_max, t_max)


@FUZZ
@given(spike_tensors(), st.data())
def test_event_pack_refuses_fields_that_do_not_fit(args, data):
    s, Tn, mod = args
    ev = sev.spikes_to_events(s, Tn, mod)
    layout = sev.EventLayout(max(2, s.shape[2]), s.shape[0])
    field = data.draw(st.sampled_from(["index", "t", "sign"]))
    width = dict(layout.fields)[field]
    ev[field][data.draw(st.integers(0, len(ev) - 1))] = (1 << width) + data.draw(st.integers(0, 5))
    with pytest.raises(ValueError, match=field):
        layout.pack(ev)


@FUZZ
@given(shape=st.sampled_from([(3,), (2, 3), (1, 1, 1, 1)]), T=st.integers(-2, 9), data=st.data())
def test_spikes_to_events_refuses_bad_shapes_T_and_modality(shape, T, data):
    s = np.zeros(shape, np.int8)
    if len(shape) == 3 and 1 <= T <= shape[0]:
        mod = data.draw(st.sampled_from([-1, 2, 7]))
        with pytest.raises(ValueError, match="modality"):
            sev.spikes_to_events(s, T, mod)
    else:
        with pytest.raises(ValueError):
            sev.spikes_to_events(s, T)
