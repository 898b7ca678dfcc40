"""Pins the bit-exact arithmetic of spikemllm.sw.numerics (the project's contract)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from spikemllm.sw import numerics as nx

BITS = range(2, 9)


# --- grid and T ------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", nx.ENCODINGS)
@pytest.mark.parametrize("bits", BITS)
def test_round_trip_exhaustive(encoding, bits):
    q = np.arange(-nx.qmax(bits), nx.qmax(bits) + 1)
    s = nx.encode(q, encoding, bits)
    assert s.dtype == np.int8
    assert set(np.unique(s)) <= {-1, 0, 1}
    assert np.array_equal(nx.decode(s, encoding, bits), q)


@pytest.mark.parametrize("bits", BITS)
def test_timesteps_follow_the_formulas(bits):
    L = 2 ** bits
    assert nx.timesteps("rate", bits) == L - 1
    assert nx.timesteps("ternary", bits) == 2 ** (bits - 1) - 1
    assert nx.timesteps("tc-lif", bits) == int(np.log2(L)) - 1
    for enc in nx.ENCODINGS:
        assert nx.encode(np.zeros(3, int), enc, bits).shape == (nx.timesteps(enc, bits), 3)
        assert nx.bits_for_timesteps(enc, nx.timesteps(enc, bits)) == bits


def test_rate_spikes_are_binary_and_ternary_spikes_carry_sign():
    assert nx.encode(np.array([-3]), "rate", 3).min() == 0
    s = nx.encode(np.array([-3, 2]), "ternary", 3)
    assert s[:, 0].tolist() == [-1, -1, -1] and s[:, 1].tolist() == [1, 1, 0]


def test_tc_lif_is_msb_first_binary_digits_with_sign():
    s = nx.encode(np.array([5, -6]), "tc-lif", 4)  # T = 3, d = 4, 2, 1
    assert s[:, 0].tolist() == [1, 0, 1]
    assert s[:, 1].tolist() == [-1, -1, 0]
    assert nx.step_weights("tc-lif", 3).tolist() == [4, 2, 1]


def test_tc_lif_neuron_soft_reset_equals_encoder():
    # The neuron view: v = q; fire sign(v) when |v| >= d_t, subtract. Same spikes as encode.
    bits = 6
    T = nx.timesteps("tc-lif", bits)
    q = np.arange(-nx.qmax(bits), nx.qmax(bits) + 1)
    v = q.copy()
    spikes = []
    for d in nx.step_weights("tc-lif", T):
        f = np.abs(v) >= d
        spikes.append(np.where(f, np.sign(v), 0))
        v = v - np.where(f, np.sign(v) * d, 0)
    assert np.array_equal(np.array(spikes), nx.encode(q, "tc-lif", bits))


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [1, 17, 0, -3, 4.0, True])
def test_bits_out_of_range_is_rejected_with_name_and_range(bits):
    with pytest.raises(ValueError, match=r"bits must be .*2\.\.16"):
        nx.qmax(bits)


def test_q_out_of_range_is_rejected():
    with pytest.raises(ValueError, match=r"q must be in -7\.\.7"):
        nx.encode(np.array([8]), "tc-lif", 4)


@pytest.mark.parametrize("encoding,bits,wrong_T", [("tc-lif", 4, 4), ("ternary", 4, 3), ("rate", 3, 8)])
def test_T_disagreeing_with_encoding_is_rejected(encoding, bits, wrong_T):
    with pytest.raises(ValueError, match=r"T must be \d+ for encoding"):
        nx.encode(np.array([1]), encoding, bits, T=wrong_T)


def test_unknown_encoding_and_bad_spikes_are_rejected():
    with pytest.raises(ValueError, match="encoding must be one of"):
        nx.encode(np.array([1]), "binary", 4)
    with pytest.raises(ValueError, match=r"spikes must be in -1\.\.1"):
        nx.decode(np.full((3, 2), 2), "tc-lif", 4)
    with pytest.raises(ValueError, match="T=3 steps"):
        nx.decode(np.zeros((4, 2)), "tc-lif", 4)
    with pytest.raises(ValueError, match="T for encoding 'ternary' must be one of"):
        nx.bits_for_timesteps("ternary", 4)


# --- quantisers ------------------------------------------------------------------------------

def test_weight_quantizer_per_output_channel():
    rng = np.random.default_rng(1)
    W = rng.normal(size=(6, 10)) * np.arange(1, 7)[:, None]
    w, s = nx.quantize_weights(W, 4)
    assert np.allclose(s, np.abs(W).max(axis=1) / 7)
    assert np.abs(w).max() == 7 and np.all(np.abs(w).max(axis=1) == 7)
    assert np.all(np.abs(w * s[:, None] - W) <= s[:, None] / 2 + 1e-12)


def test_zero_channel_and_zero_token_quantise_to_zero():
    w, s = nx.quantize_weights(np.zeros((2, 4)), 4)
    assert np.all(w == 0) and np.all(s == 1)
    q, s = nx.quantize_dynamic(np.zeros((3, 5)), 5)
    assert np.all(q == 0)


def test_dynamic_per_token_and_static_per_layer():
    x = np.array([[0.5, -1.0, 0.25], [4.0, 2.0, -8.0]])
    q, s = nx.quantize_dynamic(x, 5)
    assert s[:, 0].tolist() == [1 / 15, 8 / 15]
    assert q[0].tolist() == [8, -15, 4]  # 7.5 rounds half to even
    assert q[1].tolist() == [8, 4, -15]
    scale = nx.static_scale(x, 5)
    assert scale == 8 / 15
    assert nx.quantize_static(x * 3, 5, scale).min() == -15  # saturates
    with pytest.raises(ValueError, match="scale must be a positive finite scalar"):
        nx.quantize_static(x, 5, 0.0)


# --- Hadamard --------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 8, 12, 384, 96])
def test_fwht_equals_dense_orthonormal_matrix(n):
    b = nx.hadamard_block_size(n)
    assert n % b == 0 and b & (b - 1) == 0 and (n // b) % 2 == 1
    H = nx.hadamard_matrix(n)
    assert np.allclose(H @ H.T, np.eye(n))
    assert np.allclose(H, H.T)
    blk = H[:b, :b] * np.sqrt(b)
    assert np.allclose(np.abs(blk), 1)  # +-1 entries: adds and subtracts only
    x = np.random.default_rng(n).normal(size=(3, n))
    assert np.allclose(nx.fwht(x), x @ H)
    assert np.allclose(nx.fwht(nx.fwht(x)), x)


def test_fwht_preserves_linear_layer_output():
    rng = np.random.default_rng(2)
    x, W = rng.normal(size=(5, 48)), rng.normal(size=(7, 48))
    assert np.allclose(nx.fwht(x) @ nx.fwht(W).T, x @ W.T)


def test_fwht_rejects_bad_block():
    with pytest.raises(ValueError, match="block must be a power of two dividing 12"):
        nx.fwht(np.zeros(12), block=8)


# --- firing unit -----------------------------------------------------------------------------

def _closed_form_bruteforce(v, theta, F, T):
    # exact rational: round half away from zero of |v| * 2^F / theta, saturate, restore the sign
    from fractions import Fraction
    import math
    n = math.floor(Fraction(abs(int(v)) * 2 ** F, theta) + Fraction(1, 2))
    return int(np.sign(v)) * min(n, 2 ** T - 1)


def test_fire_exhaustive_small():
    v = np.arange(-300, 301)
    for F in (0, 2):
        for theta in range(1, 40):
            for T in (1, 2, 3, 5):
                spikes, q = nx.fire_spikes(v, theta, F, T)
                assert np.array_equal(q, nx.fire(v, theta, F, T))
                d = nx.step_weights("tc-lif", T)[:, None]
                assert np.array_equal((d * spikes).sum(axis=0), q)
                assert np.all(np.abs(q) <= 2 ** T - 1)


def test_fire_rounds_half_away_from_zero_for_even_theta():
    # theta = 4, F = 0: step 4; v = 6 -> 1.5 -> 2, v = -6 -> -2, v = 5 -> 1.25 -> 1
    assert nx.fire(np.array([6, -6, 5, -5, 2, -2, 1]), 4, 0, 4).tolist() == [2, -2, 1, -1, 1, -1, 0]
    for v in range(-50, 51):
        for theta in (1, 2, 3, 4, 5, 6, 7, 10, 13):
            assert nx.fire(np.array([v]), theta, 1, 4)[0] == _closed_form_bruteforce(v, theta, 1, 4)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-2 ** 40, 2 ** 40), min_size=1, max_size=20),
       st.integers(1, 2 ** 20), st.integers(0, 16), st.integers(1, 15))
def test_fire_random_large(v, theta, F, T):
    v = np.array(v, dtype=np.int64)
    spikes, q = nx.fire_spikes(v, theta, F, T)
    expect = np.sign(v) * np.minimum(((np.abs(v) << F) + theta // 2) // theta, 2 ** T - 1)
    assert np.array_equal(q, expect)
    assert np.array_equal(nx.fire(v, theta, F, T), expect)


def test_fire_T_per_token():
    v = np.array([[100, -100], [100, -100]])
    T = np.array([[2], [4]])
    spikes, q = nx.fire_spikes(v, 8, 0, T)
    assert q.tolist() == [[3, -3], [13, -13]]  # 12.5 -> 13 (half away), token 0 saturates at 3
    assert spikes.shape == (4, 2, 2) and np.all(spikes[2:, 0] == 0)


def test_fire_bad_arguments():
    with pytest.raises(ValueError, match="theta must be a positive integer"):
        nx.fire(np.array([1]), 0, 4, 3)
    with pytest.raises(ValueError, match=r"frac_bits must be an integer in 0\.\.24"):
        nx.fire(np.array([1]), 3, 30, 3)
    with pytest.raises(ValueError, match=r"T must be in 1\.\.15"):
        nx.fire(np.array([1]), 3, 0, 16)
    with pytest.raises(ValueError, match="step must be a positive finite number"):
        nx.theta_for_step(0.0, 4)
    assert nx.theta_for_step(1.5, 4) == 24


# --- spike-driven linear ---------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.sampled_from(nx.ENCODINGS), st.integers(2, 6), st.integers(1, 5), st.integers(1, 40),
       st.integers(1, 9), st.integers(2, 8), st.integers(0, 2 ** 31))
def test_spike_linear_equals_exact_integer_matmul(encoding, a_bits, n, d_in, d_out, w_bits, seed):
    rng = np.random.default_rng(seed)
    q = rng.integers(-nx.qmax(a_bits), nx.qmax(a_bits) + 1, size=(n, d_in))
    w = rng.integers(-nx.qmax(w_bits), nx.qmax(w_bits) + 1, size=(d_out, d_in))
    r = nx.spike_linear(nx.encode(q, encoding, a_bits), w, encoding, bits=a_bits)
    assert r.acc.dtype == np.int64
    assert np.array_equal(r.acc, q @ w.T)
    nnz = np.count_nonzero(nx.encode(q, encoding, a_bits))
    assert r.spikes == nnz and r.sops == nnz * d_out


def test_spike_linear_horner_with_T_per_token():
    rng = np.random.default_rng(3)
    T = np.array([4, 2, 3, 1])
    w = rng.integers(-7, 8, size=(5, 16))
    spikes = np.zeros((4, 4, 16), np.int8)
    q = np.zeros((4, 16), np.int64)
    for n, Tn in enumerate(T):
        q[n] = rng.integers(-nx.qmax(Tn + 1), nx.qmax(Tn + 1) + 1, size=16)
        spikes[:Tn, n] = nx.encode(q[n], "tc-lif", Tn + 1)
    assert np.array_equal(nx.spike_linear(spikes, w, "tc-lif", T=T).acc, q @ w.T)


def test_spike_linear_large_values_stay_exact():
    q = np.full((1, 4), 2 ** 14 - 1)
    w = np.full((1, 4), 2 ** 15 - 1)
    r = nx.spike_linear(nx.encode(q, "tc-lif", 16), w, "tc-lif")
    assert r.acc[0, 0] == 4 * (2 ** 14 - 1) * (2 ** 15 - 1)
    assert nx.exact_matmul(np.array([[2 ** 40]]), np.array([[2 ** 20]]))[0, 0] == 2 ** 60


def test_spike_linear_bad_input():
    with pytest.raises(ValueError, match=r"w must be \[out, 3\]"):
        nx.spike_linear(np.zeros((2, 1, 3), np.int8), np.zeros((2, 4)), "tc-lif")
    with pytest.raises(ValueError, match="bits is required"):
        nx.spike_linear(np.zeros((3, 1, 3), np.int8), np.zeros((2, 3)), "rate")


# --- spiked KV cache -------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.integers(2, 8), st.integers(2, 8), st.integers(1, 70), st.integers(1, 6), st.integers(0, 2 ** 31))
def test_popcount_score_equals_integer_dot(qbits, kbits, d, n_keys, seed):
    rng = np.random.default_rng(seed)
    q = rng.integers(-nx.qmax(qbits), nx.qmax(qbits) + 1, size=(3, d))
    k = rng.integers(-nx.qmax(kbits), nx.qmax(kbits) + 1, size=(n_keys, d))
    qp, qn = nx.to_bit_planes(q, qbits)
    kp, kn = nx.to_bit_planes(k, kbits)
    assert np.array_equal(nx.from_bit_planes(kp, kn), k)
    assert np.array_equal(nx.popcount_score(qp, qn, kp, kn), q @ k.T)


def test_popcount_score_equals_dequantised_dot_product():
    rng = np.random.default_rng(4)
    Q, K = rng.normal(size=(2, 4, 16)), rng.normal(size=(6, 4, 16))  # [tokens, heads, head_dim]
    qi, sq = nx.quantize_kv(Q, 6)
    ki, sk = nx.quantize_kv(K, 5)
    for h in range(4):
        qp, qn = nx.to_bit_planes(qi[:, h], 6)
        kp, kn = nx.to_bit_planes(ki[:, h], 5)
        score = nx.popcount_score(qp, qn, kp, kn) * sq[:, h] * sk[:, h, 0][None, :]
        deq = (qi[:, h] * sq[:, h]) @ (ki[:, h] * sk[:, h]).T
        assert np.allclose(score, deq)
        assert np.allclose(score, Q[:, h] @ K[:, h].T, atol=0.35 * np.abs(Q[:, h] @ K[:, h].T).max())


def test_bit_planes_are_disjoint_and_reject_overlap():
    pos, neg = nx.to_bit_planes(np.array([[3, -3, 0]]), 3)
    assert not np.any(pos & neg)
    with pytest.raises(ValueError, match="both the positive and the negative plane"):
        nx.from_bit_planes(np.ones((2, 3), bool), np.ones((2, 3), bool))


def test_sign_magnitude_planes_keep_tc_lif_vectors_and_define_raw_ones():
    """A sign-magnitude KV store (one sign per element) returns every to_bit_planes vector
    unchanged; a raw element with mixed signs takes the negative sign in every plane."""
    rng = np.random.default_rng(3)
    q = rng.integers(-127, 128, size=(5, 64))
    pos, neg = nx.to_bit_planes(q, 8)
    sp, sn = nx.sign_magnitude_planes(pos, neg)
    assert np.array_equal(sp, pos) and np.array_equal(sn, neg)
    raw_p = np.array([[1, 0, 1], [0, 1, 1]], bool)   # element 0: +, element 1: -, element 2: +/-
    raw_n = np.array([[0, 1, 0], [0, 0, 1]], bool)
    sp, sn = nx.sign_magnitude_planes(raw_p, raw_n)
    assert sp.tolist() == [[1, 0, 0], [0, 0, 0]]
    assert sn.tolist() == [[0, 1, 1], [0, 1, 1]]
    with pytest.raises(ValueError, match="one shape"):
        nx.sign_magnitude_planes(raw_p, raw_n[:1])
