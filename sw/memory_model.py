"""Memory energy, bandwidth and area figures used by the system model (``spikemllm report``).

Every figure here is a *cited estimate*, not a measurement: each carries the source it came
from and, for DRAM, a low/high range so that the report can show how much a conclusion
depends on it. Nothing in this module is tuned to make a result come out one way or another.

DRAM (off-chip, holds the W4 weights and the KV cache)
------------------------------------------------------
``lpddr5``
    LPDDR5-6400 on a 128-bit bus (8 x16 channels): 6.4 Gb/s/pin x 128 pins / 8 = 102.4 GB/s
    peak (JEDEC JESD209-5 maximum data rate 6400 MT/s). Energy 4.5 pJ/bit, range 4-5 pJ/bit.
    This is the range used by the project's issue 8 for LPDDR5 device + interface read energy;
    no primary vendor pJ/bit figure could be checked offline, so treat it as an estimate.
    For scale: a measured LPDDR4 controller PHY alone spends 1.83 pJ/bit on burst reads
    (Kim et al., "A 4266 Mb/s/pin LPDDR4 interface ...", IEEE TCAS-II 65(12), 2018), to which the
    DRAM core's activate/column energy adds.
``hbm3``
    One HBM3 stack: 6.4 Gb/s/pin x 1024 pins / 8 = 819.2 GB/s (JEDEC JESD238). Energy 3.9
    pJ/bit: the HBM2 access energy reported by O'Connor et al., "Fine-Grained DRAM:
    Energy-Efficient DRAM for Extreme Bandwidth Systems", MICRO-50 (2017),
    doi:10.1145/3123939.3124545, used for HBM3 for want of a published per-bit HBM3 figure.
    Range 3-7 pJ/bit (7 pJ/bit is the HBM access energy assumed by HyGCN, HPCA 2020).

On-chip SRAM (weight memory of each engine, activation/event buffer)
--------------------------------------------------------------------
``sky130``: the OpenRAM macro ``sky130_sram_1kbyte_1rw1r_32x256_8`` (VLSIDA/sky130_sram_macros,
typical corner 1.8 V 25 C), taken from the synthesis flow's model
(``spikemllm.hw.sram_model.SKY130_OPENRAM``, whose docstring gives the derivation), so that the
report and ``spikemllm synth`` charge the same figures. One read/write and one read port, as
the engine's weight memory needs (load while reading):

* read 0.5828 pJ/bit, write 0.4940 pJ/bit, idle 0.2234 pJ per word bit per macro-cycle
  without an access (the macro clock is not gated): OpenRAM's liberty gives the average power
  in mW of a clock cycle, so one cycle costs mean(rise, fall) mW x the 6.875 ns
  characterisation period. Each figure is the whole macro's, the other port idle;
* area: LEF ``SIZE 493.38 BY 400.22`` um for 256 x 32 bits = 24.10 um^2/bit (incl. periphery);
* leakage: ``cell_leakage_power 0.0009117994 mW`` per 8192-bit macro.

Large memories are assumed to be tiled from such macros, so energy per bit does not grow with
capacity (optimistic for very large buffers, whose wires would add energy). OpenRAM's
characterisation is itself a SPICE estimate: order-of-magnitude figures, not sign-off data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from spikemllm.hw.sram_model import SKY130_OPENRAM

__all__ = [
    "DramSpec", "SramSpec", "DRAM", "SRAM", "dram", "sram",
    "dram_energy_j", "sram_energy_j", "weight_floor_j",
]


@dataclass(frozen=True)
class DramSpec:
    """Off-chip DRAM: energy per bit moved and peak bandwidth.

    Parameters
    ----------
    name : str
        Preset name (``lpddr5`` or ``hbm3``).
    pj_per_bit : float
        Read/write energy per bit moved across the interface (device + I/O), pJ.
    pj_per_bit_range : tuple of float
        (low, high) of the cited range, pJ/bit.
    bandwidth_gbs : float
        Peak bandwidth, GB/s (10^9 bytes/s). The model uses it as the sustained rate
        (optimistic: real streams reach 70-90% of peak).
    config : str
        The configuration the bandwidth refers to.
    source : str
        Where the figures come from.
    """
    name: str
    pj_per_bit: float
    pj_per_bit_range: tuple
    bandwidth_gbs: float
    config: str
    source: str

    def as_dict(self):
        d = asdict(self)
        d["pj_per_bit_range"] = list(self.pj_per_bit_range)
        d["provenance"] = "cited estimate"
        return d


@dataclass(frozen=True)
class SramSpec:
    """On-chip SRAM per-bit model (energy per bit read/written, area and leakage per bit)."""
    name: str
    read_pj_per_bit: float
    write_pj_per_bit: float
    idle_pj_per_bit: float      # per word bit per clocked macro-cycle without an access
    area_um2_per_bit: float
    leakage_mw_per_bit: float
    source: str

    def as_dict(self):
        d = asdict(self)
        d["provenance"] = "cited"
        return d


DRAM = {
    "lpddr5": DramSpec(
        name="lpddr5", pj_per_bit=4.5, pj_per_bit_range=(4.0, 5.0),
        bandwidth_gbs=6.4 * 128 / 8,
        config="LPDDR5-6400, 128-bit bus (8 x16 channels)",
        source=("cited estimate: LPDDR5 device+interface 4-5 pJ/bit (range used by the project's "
                "issue 8; no primary per-bit vendor figure checked offline; an LPDDR4 controller "
                "PHY alone measures 1.83 pJ/bit on reads, Kim et al., IEEE TCAS-II 65(12) 2018); "
                "bandwidth: JEDEC JESD209-5 6400 MT/s x 128 pins"),
    ),
    "hbm3": DramSpec(
        name="hbm3", pj_per_bit=3.9, pj_per_bit_range=(3.0, 7.0),
        bandwidth_gbs=6.4 * 1024 / 8,
        config="one HBM3 stack, 6.4 Gb/s/pin x 1024 pins",
        source=("cited estimate: 3.9 pJ/bit = HBM2 access energy in O'Connor et al., 'Fine-Grained "
                "DRAM', MICRO-50 2017, doi:10.1145/3123939.3124545 (no published per-bit HBM3 "
                "figure found; range 3-7 pJ/bit, 7 = HyGCN HPCA 2020 assumption); bandwidth: "
                "JEDEC JESD238 6.4 Gb/s/pin x 1024 pins"),
    ),
}


def _sky130_sram():
    t = SKY130_OPENRAM
    return SramSpec(
        name="sky130", read_pj_per_bit=t.read_pj_per_bit, write_pj_per_bit=t.write_pj_per_bit,
        idle_pj_per_bit=t.idle_pj_per_bit, area_um2_per_bit=t.area_um2_per_bit,
        leakage_mw_per_bit=t.leakage_nw_per_bit * 1e-6,
        source="cited: " + t.source + " (spikemllm.hw.sram_model, as in spikemllm synth)")


SRAM = {"sky130": _sky130_sram()}


def dram(name):
    """The DRAM preset ``name``; ValueError naming the allowed ones otherwise."""
    try:
        return DRAM[name]
    except KeyError:
        raise ValueError(f"memory must be one of {sorted(DRAM)}, not {name!r}") from None


def sram(name="sky130"):
    """The SRAM preset ``name``."""
    try:
        return SRAM[name]
    except KeyError:
        raise ValueError(f"sram must be one of {sorted(SRAM)}, not {name!r}") from None


def dram_energy_j(bits, spec):
    """Energy in J to move ``bits`` across the DRAM interface."""
    return float(bits) * spec.pj_per_bit * 1e-12


def sram_energy_j(read_bits, write_bits, spec):
    """Energy in J to read ``read_bits`` and write ``write_bits`` of on-chip SRAM."""
    return (float(read_bits) * spec.read_pj_per_bit + float(write_bits) * spec.write_pj_per_bit) * 1e-12


def weight_floor_j(weight_params, w_bits, pj_per_bit):
    """The physical floor of batch-1 decode: read every weight once from DRAM, in J per token.

    ``weight_params`` are the weights a token must touch (all linear layers including the LM
    head; the embedding is a one-row lookup and is left out). Scales are left out too.
    """
    if weight_params < 0 or w_bits <= 0 or pj_per_bit <= 0:
        raise ValueError(f"floor needs params >= 0, w_bits > 0 and pJ/bit > 0, not "
                         f"{weight_params!r}, {w_bits!r}, {pj_per_bit!r}")
    return float(weight_params) * w_bits * pj_per_bit * 1e-12
