"""Stream payload layouts shared by the hardware blocks.

Every layout here is an Amaranth ``data.StructLayout`` whose bit order (LSB first, fields in
order) is the software contract, so golden ``.hex`` words and cocotb drivers need no
translation:

* :func:`event_layout` is built field by field from :class:`spikemllm.sw.events.EventLayout`;
  ``Const`` of a packed word equals ``EventLayout.pack`` (tested).
* :func:`weight_write_layout` is ``{addr, data}`` with ``data`` one weight-memory row as
  :func:`spikemllm.sw.events.pack_weight_rows` packs it (lane 0 at the LSB).
* :func:`acc_vector_layout` is ``{acc[LANES] (signed, lane 0 at the LSB), modality}``.
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from spikemllm.sw.events import EventLayout

from .params import HwParams, clog2

__all__ = ["event_layout", "weight_write_layout", "acc_vector_layout", "pack_acc_vector",
           "unpack_acc_vector", "EventLayout"]


def event_layout(in_max, t_max):
    """``data.StructLayout`` of one address event, identical to ``EventLayout(in_max, t_max)``."""
    ev = in_max if isinstance(in_max, EventLayout) else EventLayout(in_max, t_max)
    return data.StructLayout({name: unsigned(width) for name, width in ev.fields})


def weight_write_layout(params: HwParams):
    """``{addr: clog2(in_max), data: lanes*w_bits}``: one weight-memory row write."""
    return data.StructLayout({"addr": unsigned(clog2(params.in_max)),
                              "data": unsigned(params.row_bits)})


def acc_vector_layout(params: HwParams):
    """``{acc: LANES x signed(acc_bits), modality: 1}``, lane 0 at the LSB."""
    return data.StructLayout({"acc": data.ArrayLayout(signed(params.acc_bits), params.lanes),
                              "modality": unsigned(1)})


def pack_acc_vector(params: HwParams, acc, modality=0):
    """Integer word of an accumulator-vector payload (for drivers and golden files)."""
    if len(acc) != params.lanes:
        raise ValueError(f"acc must have {params.lanes} lanes, not {len(acc)}")
    n, word = params.acc_bits, 0
    for lane, v in enumerate(acc):
        v = int(v)
        if not -(1 << (n - 1)) <= v < (1 << (n - 1)):
            raise ValueError(f"acc[{lane}] = {v} does not fit signed {n} bits")
        word |= (v & ((1 << n) - 1)) << (lane * n)
    return word | (int(modality) & 1) << (params.lanes * n)


def unpack_acc_vector(params: HwParams, word):
    """Inverse of :func:`pack_acc_vector`: ``(list of lane ints, modality)``."""
    n, word = params.acc_bits, int(word)
    acc = []
    for lane in range(params.lanes):
        v = (word >> (lane * n)) & ((1 << n) - 1)
        acc.append(v - (1 << n) if v >> (n - 1) else v)
    return acc, (word >> (params.lanes * n)) & 1
