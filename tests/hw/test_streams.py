"""The Amaranth payload layouts have exactly the software bit layouts."""

import numpy as np
import pytest
from amaranth.hdl import Shape

from spikemllm.hw.params import HwParams
from spikemllm.hw.streams import (acc_vector_layout, event_layout, pack_acc_vector,
                                  unpack_acc_vector, weight_write_layout)
from spikemllm.sw.events import EVENT_DTYPE, EventLayout, pack_weight_rows


@pytest.mark.parametrize("in_max, t_max", [(2, 1), (16, 4), (4096, 8), (1 << 20, 15), (100, 7)])
def test_event_layout_matches_pack(in_max, t_max):
    sw = EventLayout(in_max, t_max)
    hw = event_layout(in_max, t_max)
    assert Shape.cast(hw).width == sw.width
    rng = np.random.default_rng(in_max + t_max)
    ev = np.zeros(64, dtype=EVENT_DTYPE)
    ev["index"] = rng.integers(0, in_max, 64)
    ev["t"] = rng.integers(0, t_max, 64)
    for f in ("sign", "last_in_step", "last_in_token", "empty", "modality"):
        ev[f] = rng.integers(0, 2, 64)
    words = sw.pack(ev)
    for e, word in zip(ev, words):
        c = hw.const({n: int(e[n]) for n, _ in sw.fields})
        assert c.as_value().value == int(word)


def test_weight_write_layout():
    p = HwParams(lanes=4, w_bits=3, t_max=4, in_max=8)
    lay = weight_write_layout(p)
    w = np.array([[-4, 3, 0, -1, 2, 1, -2, 3]] * 4) * np.array([[1], [-1], [1], [0]])
    w = np.clip(w, -4, 3)
    rows = pack_weight_rows(w, 3)
    for addr, row in enumerate(rows):
        c = lay.const({"addr": addr, "data": row})
        assert c.as_value().value == addr | (row << p.index_bits)
    assert Shape.cast(lay).width == p.index_bits + p.row_bits


def test_acc_vector_layout_round_trip():
    p = HwParams(lanes=4, w_bits=4, t_max=3, in_max=16)
    lay = acc_vector_layout(p)
    n = p.acc_bits
    acc = [-(1 << (n - 1)), (1 << (n - 1)) - 1, 0, -1]
    word = pack_acc_vector(p, acc, 1)
    c = lay.const({"acc": acc, "modality": 1})
    assert c.as_value().value == word
    assert unpack_acc_vector(p, word) == (acc, 1)
    with pytest.raises(ValueError, match="does not fit"):
        pack_acc_vector(p, [1 << n, 0, 0, 0])
