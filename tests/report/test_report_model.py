"""System model arithmetic on hand-computed cases."""

from dataclasses import replace

import pytest

from spikemllm.sw import memory_model as mm
from spikemllm.sw import system_report as sr

ZERO_DRAM = mm.DramSpec("zero", 0.0, (0.0, 0.0), 100.0, "test", "test")
ZERO_SRAM = mm.SramSpec("zero", 0.0, 0.0, 0.0, 1.0, 0.0, "test")

TINY = sr.ModelShape(name="tiny", layers=1, hidden=64, intermediate=128, heads=2, kv_heads=2,
                     vocab=0, lm_head=False, gated_mlp=False, causal=True, source="test")


def hw(**kw):
    base = dict(lanes=32, w_bits=4, in_max=4096, t_max=8, engines=1, fmax_mhz=100.0,
                events_per_cycle=1.0, e_sop_pj=0.5, e_mac_pj=2.0, leakage_mw=0.0,
                mac_leakage_mw=0.0, logic_area_um2=None, mac_logic_area_um2=None,
                engine_sram_area_um2=None, mac_sram_area_um2=None, mac_fmax_mhz=100.0,
                event_bits=20, t_kv=4, buffer_kib=1024.0,
                dram=ZERO_DRAM, sram=ZERO_SRAM)
    base.update(kw)
    return sr.Hardware(**base)


def stats(rate, T=4):
    return sr.FiringStats(rates={r: {"text": rate, "vision": rate} for r in sr.ROLES},
                          T={"text": T, "vision": T}, provenance="test")


def test_qwen2vl_7b_weight_params_match_the_reference_gemv_bytes():
    # q,o: 3584^2; k,v: 3584x512; gate/up/down: 3584x18944; x28 layers; + LM head 3584x152064
    per_layer = 2 * 3584 * 3584 + 2 * 3584 * 512 + 3 * 3584 * 18944
    assert sr.QWEN2VL_7B.weight_params() == 28 * per_layer + 3584 * 152064 == 7_070_285_824
    assert 2 * sr.QWEN2VL_7B.weight_params() == 14_140_571_648   # reference gemv_chain bytes


def test_events_per_token():
    nz, empty = sr.events_per_token(0.25, 4, 8)
    assert nz == 8.0
    assert empty == pytest.approx(4 * 0.75 ** 8)
    assert sr.events_per_token(0.0, 3, 100) == (0.0, 3.0)      # every step is one empty event
    with pytest.raises(ValueError):
        sr.events_per_token(1.5, 4, 8)


def test_tiles_passes_and_cycles():
    assert sr.output_tiles(3584, 32) == 112
    assert sr.output_tiles(100, 32) == 4
    assert sr.tile_passes(3584, 32, 64) == 2
    assert sr.tile_passes(100, 32, 1) == 4
    assert sr.tile_passes(100, 32, 8) == 1
    assert sr.spike_cycles(1000, 64, 32, 1, 1.0) == 2000
    assert sr.spike_cycles(1000, 64, 32, 1, 0.5) == 4000
    assert sr.spike_cycles(1000, 64, 32, 2, 1.0) == 1000
    assert sr.dense_cycles(3584, 3584, 32, 64) == 3584 * 2


def test_token_block_and_dataflow_choice():
    assert sr.token_block(1000, 300) == 3
    assert sr.token_block(100, 300) == 1
    assert sr.layer_weight_traffic(3, 3, 100, 50, 2, True) == (100, 0.0, 1, "fits")
    # blocked: 100 x ceil(10/3) = 400; spill: 100 + 50 x (2 passes + 1 write) = 250
    assert sr.layer_weight_traffic(10, 3, 100, 50, 2, True) == (100, 150, 1, "act-spill")
    # blocked 10 x 4 = 40 beats spilling 1000-bit activations
    assert sr.layer_weight_traffic(10, 3, 10, 1000, 2, True) == (40, 0.0, 4, "token-blocked")


def test_weight_and_kv_bits():
    assert sr.weight_dram_bits(64, 32, 4) == 64 * 32 * 4 + 32 * 16
    assert sr.kv_bits_per_token_layer(512, 7, "spike") == 2 * 512 * 8   # sign-magnitude
    assert sr.kv_bits_per_token_layer(512, 7, "spike", "planes") == 2 * 512 * 14
    assert sr.kv_bits_per_token_layer(512, 7, "dense") == 2 * 512 * 8
    assert sr.kv_bits_per_token_layer(512, 7, "dense", "planes") == 2 * 512 * 8
    with pytest.raises(ValueError, match="kv_format must be one of"):
        sr.kv_bits_per_token_layer(512, 7, "spike", "int8")
    assert sr.attention_macs(64, 10) == 1280


def test_decode_step_hand_computed():
    """One decode token through a 1-layer 64/128 model, rate 0.25, T 4, 1 engine, context 10."""
    h = hw()
    r = sr.model_regime(TINY, stats(0.25), h, "decode", 1, 0, 0, 10, "spike")
    # events: 0.25 x 4 x 64 = 64 into q,k,v,o,up; 128 into down
    assert r["ops"]["events"] == pytest.approx(5 * 64 + 128, rel=1e-6)
    # SOPs = events x out: 4 x 64x64 + 64x128 + 128x64
    assert r["ops"]["sops"] == pytest.approx(4 * 64 * 64 + 64 * 128 + 128 * 64)
    # cycles: q,k,v,o 64 ev x 2 tiles; up 64 x 4 tiles; down 128 x 2; + attention 1280 / 32
    assert r["cycles"] == pytest.approx(4 * 128 + 256 + 256 + 1280 / 32, rel=1e-6)
    assert r["compute_time_s"] == pytest.approx(r["cycles"] / 100e6)
    # DRAM weights: sum of n*m*4 + m*16
    wbits = 4 * (64 * 64 * 4 + 64 * 16) + (64 * 128 * 4 + 128 * 16) + (128 * 64 * 4 + 64 * 16)
    assert r["dram_bits"]["weights"] == wbits
    assert r["dram_bits"]["activations"] == 0
    # KV: write 1 token + read 10; K and V of kv_dim 64, T_kv (=4) magnitude planes + a sign
    assert r["dram_bits"]["kv"] == 11 * 2 * 64 * 5
    # ... or 2 x T_kv bit-planes, which changes nothing else
    p = sr.model_regime(TINY, stats(0.25), replace(h, kv_format="planes"), "decode", 1, 0, 0,
                        10, "spike")
    assert p["dram_bits"]["kv"] == 11 * 2 * 64 * 8
    assert {k: v for k, v in p["dram_bits"].items() if k != "kv"} == \
        {k: v for k, v in r["dram_bits"].items() if k != "kv"}
    assert r["dram_bits"]["embedding"] == 64 * 16
    # compute energy: (SOPs + firing T per output) x 0.5 pJ + attention MACs x 2 pJ
    firing = 4 * (64 * 4) + 128 * 4 + 64 * 4
    assert r["energy_j"]["compute"] == pytest.approx(((32768 + firing) * 0.5 + 1280 * 2.0) * 1e-12,
                                                     rel=1e-9)
    e = r["energy_j"]
    assert r["j_per_token"] == pytest.approx(e["compute"] + e["sram"] + e["dram"] + e["static"])


def test_dense_decode_hand_computed():
    h = hw()
    r = sr.model_regime(TINY, stats(0.25), h, "decode", 1, 0, 0, 10, "dense")
    macs = 4 * 64 * 64 + 64 * 128 + 128 * 64
    assert r["ops"]["macs"] == macs
    # one activation per cycle per pass: q,k,v,o 64 x 2; up 64 x 4; down 128 x 2; + attention
    assert r["cycles"] == pytest.approx(4 * 128 + 256 + 256 + 40)
    requant = 4 * 64 + 128 + 64
    assert r["energy_j"]["compute"] == pytest.approx(((macs + requant) * 2.0 + 1280 * 2.0) * 1e-12)


def test_sram_and_dram_energy_charged_per_bit():
    h = hw(dram=mm.dram("hbm3"), sram=mm.sram("sky130"))
    r = sr.model_regime(TINY, stats(0.25), h, "decode", 1, 0, 0, 10, "spike")
    bits = sum(r["dram_bits"].values())
    assert r["energy_j"]["dram"] == pytest.approx(bits * 3.9e-12)
    s, wm, sp = r["sram_bits"], r["weight_memory"], h.sram
    row = 32 * 4
    # every bit at its full access energy; the weight macros' idle cycles are busy cycles
    # without a row access (an access cycle holds the idle clocking already)
    idle_cycles = wm["busy_cycles"] - wm["rows_read"] - wm["rows_written"]
    assert r["energy_j"]["sram"] == pytest.approx(
        (s["read"] * sp.read_pj_per_bit + s["write"] * sp.write_pj_per_bit
         + idle_cycles * row * sp.idle_pj_per_bit) * 1e-12)
    # each non-empty event reads one 32-lane x 4-bit row per output tile
    weight_reads = (4 * 64 * 2 + 64 * 4 + 128 * 2) * row
    assert s["read"] >= weight_reads and wm["rows_read"] * row <= s["read"]


def test_static_energy_is_leakage_times_time():
    h = hw(leakage_mw=10.0, sram=mm.sram("sky130"))
    r = sr.model_regime(TINY, stats(0.25), h, "decode", 1, 0, 0, 10, "spike")
    watts = 10e-3 + h.sram_bits() * mm.sram("sky130").leakage_mw_per_bit * 1e-3
    assert r["energy_j"]["static"] == pytest.approx(watts * r["time_s"])


def test_time_is_the_slower_of_compute_and_dram():
    slow = mm.DramSpec("slow", 1.0, (1.0, 1.0), 1e-6, "t", "t")   # 1 kB/s
    r = sr.model_regime(TINY, stats(0.25), hw(dram=slow), "decode", 1, 0, 0, 10, "spike")
    assert r["bound"] == "dram" and r["time_s"] == pytest.approx(r["dram_time_s"])
    assert r["dram_time_s"] == pytest.approx(sum(r["dram_bits"].values()) / 8 / 1e3)


def test_batch8_shares_one_weight_read():
    h = hw()
    r1 = sr.model_regime(TINY, stats(0.25), h, "decode", 1, 0, 0, 10, "spike")
    r8 = sr.model_regime(TINY, stats(0.25), h, "decode", 8, 0, 0, 10, "spike")
    assert r8["dram_bits"]["weights"] == r1["dram_bits"]["weights"]
    assert r8["tokens"] == 8


def test_prefill_reuses_weights_only_while_activations_fit():
    big = hw(buffer_kib=1024.0)
    small = hw(buffer_kib=0.25)        # 2048 bits: a few tokens of events per block
    rb = sr.model_regime(TINY, stats(0.25), big, "prefill", 1, 0, 64, 0, "spike")
    rs = sr.model_regime(TINY, stats(0.25), small, "prefill", 1, 0, 64, 0, "spike")
    one_read = sr.model_regime(TINY, stats(0.25), big, "decode", 1, 0, 0, 0, "spike")
    assert rb["dram_bits"]["weights"] == one_read["dram_bits"]["weights"]
    assert all(d["dataflow"] == "fits" for d in rb["dataflow"].values())
    assert all(d["dataflow"] != "fits" for d in rs["dataflow"].values())
    assert (rs["dram_bits"]["weights"] + rs["dram_bits"]["activations"]
            > rb["dram_bits"]["weights"])


def test_crossover_matches_the_hand_solution():
    """e_sop = e_mac and free memory: spike (r T n m + T m) = dense (n m + m) per layer when
    every layer has n = 64 ... except down (n = 128); solve the sum exactly."""
    h = hw(e_sop_pj=1.0, e_mac_pj=1.0)
    # spike ops(r) = r*T*sum(n*m) + T*sum(m); dense = sum(n*m) + sum(m * chunks)
    nm = 4 * 64 * 64 + 64 * 128 + 128 * 64
    ms = 4 * 64 + 128 + 64
    T = 4
    expect = (nm + ms - T * ms) / (T * nm)
    got = sr.crossover_firing_rate(TINY, stats(0.25), h, "decode", 1, 0, 0, 10)
    assert got == pytest.approx(expect, abs=1e-5)


def test_crossover_edge_cases():
    cheap = hw(e_sop_pj=0.001, e_mac_pj=10.0)
    assert sr.crossover_firing_rate(TINY, stats(0.25), cheap, "decode", 1, 0, 0, 10) is None
    dear = hw(e_sop_pj=100.0, e_mac_pj=0.001)
    assert sr.crossover_firing_rate(TINY, stats(0.25), dear, "decode", 1, 0, 0, 10) == 0.0


def test_area_counts_engines_and_buffer():
    h = hw(engines=4, logic_area_um2=1000.0, sram=mm.sram("sky130"), buffer_kib=1.0)
    per_bit = mm.sram("sky130").area_um2_per_bit
    expect = (4 * (1000.0 + 4096 * 32 * 4 * per_bit) + 8192 * per_bit) * 1e-6
    assert h.area_mm2("spike") == pytest.approx(expect)


def test_dies_are_reticle_fields_of_area():
    per_bit = mm.sram("sky130").area_um2_per_bit
    small = hw(engines=4, logic_area_um2=1000.0, sram=mm.sram("sky130"), buffer_kib=1.0)
    assert small.area_mm2("spike") < sr.RETICLE_MM2[0] and small.dies("spike") == 1
    # 400 mm^2 of weight SRAM per engine (+0.2 mm^2 of buffer): 858 mm^2 per die
    for engines, dies in ((2, 1), (3, 2), (4, 2), (5, 3)):
        big = hw(engines=engines, logic_area_um2=0.0, engine_sram_area_um2=400e6,
                 sram=mm.sram("sky130"), buffer_kib=1.0)
        assert big.area_mm2("spike") == pytest.approx(engines * 400.0 + 8192 * per_bit * 1e-6)
        assert big.dies("spike") == dies
        # the most engines one die holds: 2 (800.2 mm^2), whatever the count configured
        assert big.engines_on_one_die("spike") == 2
    assert hw(engines=1, engine_sram_area_um2=900e6, sram=mm.sram("sky130"),
              buffer_kib=1.0).engines_on_one_die("spike") == 0


def test_floor_function():
    assert sr.floor_j_per_token(7_070_285_824, 4, 4.5) == pytest.approx(0.127265, rel=1e-5)


def test_weight_loading_bounds_a_pass():
    """Decode at a low rate: a tile's 64 weight rows take 64 cycles to load, more than its
    0.1 x 4 x 64 = 25.6 events, so each pass lasts 64 cycles."""
    r = sr.model_regime(TINY, stats(0.1), hw(), "decode", 1, 0, 0, 0, "spike")
    # q,k,v,o: 2 passes x 64; up: 4 passes x 64; down: 2 passes x 128 rows
    assert r["cycles"] == pytest.approx(4 * 2 * 64 + 4 * 64 + 2 * 128)
    assert all(d["load_bound"] for d in r["dataflow"].values())


def test_sram_idle_energy_of_ungated_weight_memories():
    """The weight memories cost the macro's idle energy in every busy engine-cycle; a row read
    or write adds only its excess over idle, and the activation buffer pays full energies."""
    spec = mm.SramSpec("t", 0.05, 0.03, 0.01, 1.0, 0.0, "test")
    r = sr.model_regime(TINY, stats(0.1), hw(sram=spec), "decode", 1, 0, 0, 0, "spike")
    tiles = {"q": 2, "k": 2, "v": 2, "o": 2, "up": 4, "down": 2}
    n = {"q": 64, "k": 64, "v": 64, "o": 64, "up": 64, "down": 128}
    busy = sum(tiles[k] * n[k] for k in tiles)                        # load-bound passes
    reads = sum(tiles[k] * 0.1 * 4 * n[k] for k in tiles)             # non-empty events
    writes = busy                                                      # a row loaded per cycle
    row = 32 * 4
    assert r["sram_idle_j"] == pytest.approx(busy * row * 0.01e-12, rel=1e-6)
    buffer_r = r["sram_bits"]["read"] - reads * row
    buffer_w = r["sram_bits"]["write"] - writes * row
    expect = (busy * row * 0.01 + reads * row * (0.05 - 0.01) + writes * row * (0.03 - 0.01)
              + buffer_r * 0.05 + buffer_w * 0.03) * 1e-12
    assert r["energy_j"]["sram"] == pytest.approx(expect, rel=1e-6)


def test_score_unit_prices_the_spike_designs_q_kt_only():
    """With e_score_elem_pj the spike design's Q.K^T (half the attention MACs: 640 of 1280
    here) costs that per element instead of the MAC energy; the dense design is unchanged."""
    base = sr.model_regime(TINY, stats(0.25), hw(), "decode", 1, 0, 0, 10, "spike")
    scored = sr.model_regime(TINY, stats(0.25), hw(e_score_elem_pj=5.0), "decode", 1, 0, 0, 10,
                             "spike")
    assert scored["energy_j"]["compute"] - base["energy_j"]["compute"] == pytest.approx(
        640 * (5.0 - 2.0) * 1e-12, rel=1e-9)
    assert scored["cycles"] == base["cycles"]
    dense = [sr.model_regime(TINY, stats(0.25), h, "decode", 1, 0, 0, 10, "dense")
             for h in (hw(), hw(e_score_elem_pj=5.0))]
    assert dense[0]["energy_j"] == dense[1]["energy_j"]
