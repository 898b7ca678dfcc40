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
typical corner 1.8 V 25 C), the same macro and figures as the synthesis flow
(``spikemllm.hw.sram_model.SKY130_OPENRAM``; a test keeps the two equal). One read/write and one
read port, as the engine's weight memory needs (load while reading):

* read: ``clk1`` when ``!csb1``: 2.843456 + 2.581878 pJ per 32-bit read = 0.1695 pJ/bit;
* write: ``clk0`` when ``!csb0 & !web0``: 2.226912 + 2.371604 pJ per 32-bit write = 0.1437 pJ/bit;
* idle: a deselected port still clocked (``clk1`` when ``csb1``): 1.071456 + 1.008020 pJ per
  cycle = 0.0650 pJ per word bit per idle port-cycle (the macro clock is not gated);
* area: LEF ``SIZE 493.38 BY 400.22`` um for 256 x 32 bits = 24.10 um^2/bit (incl. periphery);
* leakage: ``cell_leakage_power 0.0009117994 mW`` per 8192-bit macro.

Liberty internal power is energy per clock edge in pF*V^2 = pJ. Large memories are assumed to
be tiled from such macros, so energy per bit does not grow with capacity (optimistic for very
large buffers, whose wires would add energy). OpenRAM's characterisation is itself a SPICE
estimate: order-of-magnitude figures, not sign-off data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
    idle_pj_per_bit: float      # per word bit per clocked port-cycle without an access
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

_MACRO_BITS = 256 * 32
SRAM = {
    "sky130": SramSpec(
        name="sky130",
        read_pj_per_bit=(2.843456 + 2.581878) / 32,
        write_pj_per_bit=(2.226912 + 2.371604) / 32,
        idle_pj_per_bit=(1.071456 + 1.008020) / 32,
        area_um2_per_bit=493.38 * 400.22 / _MACRO_BITS,
        leakage_mw_per_bit=0.0009117994 / _MACRO_BITS,
        source=("cited: OpenRAM macro sky130_sram_1kbyte_1rw1r_32x256_8 (VLSIDA/sky130_sram_macros), "
                "TT 1.8 V 25 C liberty internal power (read 2.843+2.582 pJ, write 2.227+2.372 pJ, "
                "idle port 1.071+1.008 pJ per 32-bit port-cycle), LEF SIZE 493.38 x 400.22 um, "
                "cell_leakage_power 0.000912 mW; same figures as spikemllm.hw.sram_model"),
    ),
}


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
