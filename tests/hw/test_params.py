"""HwParams: defaults, derived widths, validation, JSON round trip."""

import pytest

from spikemllm.hw.params import HwParams, clog2


def test_defaults_and_acc_bits():
    p = HwParams()
    assert (p.lanes, p.w_bits, p.t_max, p.in_max, p.kv_depth, p.heads, p.head_dim) == \
        (32, 4, 8, 4096, 1024, 2, 64)
    assert p.t_kv == 7 and p.frac_bits == 8 and p.theta_bits == 24
    assert p.acc_bound == 255 * 4096 * 8
    # +-bound fits acc_bits signed, and acc_bits is the smallest width that does
    n = p.acc_bits
    assert -(1 << (n - 1)) <= -p.acc_bound and p.acc_bound <= (1 << (n - 1)) - 1
    assert p.acc_bound > (1 << (n - 2)) - 1
    assert p.row_bits == 128 and p.index_bits == 12 and p.t_bits == 3 and p.tcount_bits == 4


def test_t_kv_default_follows_t_max():
    assert HwParams(t_max=4).t_kv == 4
    assert HwParams(t_max=4, t_kv=2).t_kv == 2


@pytest.mark.parametrize("kwargs, match", [
    ({"lanes": 3}, "lanes must be a power of two"),
    ({"lanes": 0}, "lanes must be in"),
    ({"in_max": 100}, "in_max must be a power of two"),
    ({"head_dim": 48}, "head_dim must be a power of two"),
    ({"kv_depth": 1000}, "kv_depth must be a power of two"),
    ({"t_max": 0}, "t_max must be in 1..15"),
    ({"t_max": 16}, "t_max must be in 1..15"),
    ({"t_max": 4, "t_kv": 5}, "t_kv must be in 1..4"),
    ({"w_bits": 1}, "w_bits must be in 2..16"),
    ({"frac_bits": 30}, "frac_bits must be in 0..24"),
    ({"theta_bits": 8}, "theta_bits must be in 9..32"),
    ({"heads": 0}, "heads must be in 1..64"),
    ({"lanes": 8.0}, "lanes must be an integer"),
    ({"lanes": True}, "lanes must be an integer"),
    ({"read_register": 1}, "read_register must be True or False, not 1"),
    ({"firing_parts": 9}, "firing_parts must be in 1..8, not 9"),
    ({"read_register": True, "bram_rows": 1000}, "bram_rows must be a power of two"),
    ({"bram_rows": 2048}, "bram_rows must be 0 without read_register, not 2048"),
    ({"read_register": True, "kv_sign_magnitude": 1}, "kv_sign_magnitude must be True or False"),
    ({"kv_sign_magnitude": True}, "kv_sign_magnitude needs read_register"),
    ({"alternating_ports": 1}, "alternating_ports must be True or False, not 1"),
    ({"alternating_ports": True, "read_register": True},
     "alternating_ports needs read_register=False, not read_register=True"),
])
def test_invalid(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HwParams(**kwargs)


def test_json_round_trip():
    p = HwParams(lanes=8, w_bits=3, t_max=5, in_max=64, kv_depth=16, heads=1, head_dim=8,
                 t_kv=3, frac_bits=4, theta_bits=12, read_register=True, bram_rows=16,
                 firing_parts=1, kv_sign_magnitude=True)
    text = p.to_json()
    assert '"acc_bits"' in text
    assert HwParams.from_json(text) == p
    with pytest.raises(ValueError, match="unknown HwParams field"):
        HwParams.from_json('{"lanes": 8, "width": 3}')
    with pytest.raises(ValueError, match="not valid JSON"):
        HwParams.from_json("{lanes")


def test_clog2():
    assert [clog2(n) for n in (1, 2, 3, 4, 5, 8, 9)] == [1, 1, 2, 2, 3, 3, 4]
