"""Fault and stress co-simulation (cosim/tb_faults.py) on the small configuration (lanes8).

Reuses the regression's Verilator builds (``cosim_builds`` in conftest.py: build/cosim/lanes8,
hash-cached), so no extra model is compiled. One simulator process runs all engine tests and
one all KV-cache tests; each pytest test below checks the records those cocotb tests wrote.
See docs/cosim-faults.md.
"""

import json
import os
from pathlib import Path

import pytest

from spikemllm.cosim.runner import run_cocotb
from spikemllm.cosim.stimulus import golden_engine_cases, save_case
from spikemllm.cosim.tb_faults import interleave_modalities
from spikemllm.hw.tools import REPO_ROOT

pytestmark = pytest.mark.cosim

CONFIG = "lanes8"
SEED = 4242
TB = "spikemllm.cosim.tb_faults"
GOLDEN_MIXED = REPO_ROOT / "build" / "cosim" / "golden" / "qvl-down-mixed"


def run_faults(cb, kind, work, test_filter, inject=(), real_case=None):
    """Run the tb_faults tests matching ``test_filter`` on the built ``kind`` top."""
    work = Path(work).resolve()   # the simulator runs with work as its directory
    results = work / "results"
    results.mkdir(parents=True, exist_ok=True)
    for old in results.glob("*.json"):   # records of an earlier run must not count
        old.unlink()
    config = work / "faults.json"
    real = str(Path(real_case).resolve()) if real_case else None
    config.write_text(json.dumps({"params": cb.params.to_dict(), "inject": list(inject),
                                  "real_case": real}))
    seed = int(os.environ.get("COCOTB_RANDOM_SEED", SEED))
    res = run_cocotb(cb.builds[kind], TB, case_path=config, result_path=work / "run.json",
                     test_dir=work, seed=seed, log_file=work / "sim.log",
                     extra_env={"COSIM_FAULTS": str(config), "COSIM_RESULT_DIR": str(results),
                                "COCOTB_TEST_FILTER": test_filter})
    records = {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}
    return res, records


def real_alternating_case(params, work):
    """The tiny Qwen2-VL mixed golden layer (4 vision, then 4 text tokens; written by
    test_cosim_golden.py / spikemllm sim) reordered v, t, v, t, ...; None when absent."""
    if not (GOLDEN_MIXED / "manifest.json").exists():
        return None
    try:
        (case,) = golden_engine_cases(GOLDEN_MIXED, params, max_tiles=1)
    except ValueError:   # stale or half-written: test_cosim_golden.py rewrites it
        return None
    return save_case(interleave_modalities(case), Path(work) / "real-alternating.npz")


@pytest.fixture(scope="module")
def engine_run(cosim_builds, golden_linear, tmp_path_factory):
    # golden_linear exports the real mixed-modality layer first, whatever the test order
    cb = cosim_builds(CONFIG, "engine")
    work = tmp_path_factory.mktemp("faults-engine")
    real = real_alternating_case(cb.params, work)
    return run_faults(cb, "engine", work, r"\.engine_", real_case=real)


@pytest.fixture(scope="module")
def kv_run(cosim_builds, tmp_path_factory):
    cb = cosim_builds(CONFIG, "kv")
    return run_faults(cb, "kv", tmp_path_factory.mktemp("faults-kv"), r"\.kv_")


def _records(run, prefix, n):
    res, records = run
    got = {k: v for k, v in records.items() if k.startswith(prefix)}
    assert got and (n is None or len(got) == n), (prefix, sorted(records), res)
    bad = {k: (v["problems"], v["mismatch_examples"], v["violations"])
           for k, v in got.items() if not v["passed"]}
    assert not bad, bad
    for v in got.values():
        assert v["mismatches"] == 0 and not v["violations"]
    return got


def test_engine_fault_process_passed(engine_run):
    res, records = engine_run
    assert res["passed"], res
    n_real = any(k.endswith("-real") for k in records)
    assert res["cocotb_tests"] == 9 + n_real and res["cocotb_failed"] == 0


def test_reset_mid_token(engine_run):
    recs = _records(engine_run, "engine_reset_mid_token", 3)
    for r in recs.values():
        # the cut really was inside a token, with the engine busy and counting
        assert 0 < r["events_of_cut_token_before_reset"] < r["cut_token_events"]
        assert 0 < r["events_in_snapshot_before_reset"] <= r["events_before_reset"]
        assert r["kv_counts_before_reset"] == [2, 1] and r["status_before_reset"] & 0b10
        # after reset: counters, STATUS and KV counts zero (registers checked in the TB)
        assert set(r["counters_after_reset"].values()) == {0}
        assert r["status_after_reset"] == 0 and r["kv_after_reset"]["KV_STATUS"] == 0
        # the replay on the pre-reset weights: every counter equals the testbench's count
        assert r["counters_hw"] == r["counters_tb"]
        assert r["counters_hw"]["EVENTS_IN"] == r["events"]
        assert r["counters_hw"]["EVENTS_OUT"] == r["expected_events_out"]
        assert r["counters_hw"]["TOKENS"] == r["tokens"]
    assert {r["rst_edges"] for r in recs.values()} == {2, 5}
    # outputs had left before the reset (and were a correct prefix) ...
    assert recs["engine_reset_mid_token-mid-stream-backpressure"]["before_reset"]["events"] > 0
    # ... or were stuck: token 0 waiting on o_stream, token 2 half accumulated
    blocked = recs["engine_reset_mid_token-blocked-output-long-hold"]
    assert blocked["o_stream_pending_at_reset"] and blocked["before_reset"]["events"] == 0
    assert blocked["before_reset"]["acc"] == 2   # tokens 0 and 1 reached the PE output


def test_backpressure_storms(engine_run):
    recs = _records(engine_run, "engine_backpressure_storm", 3)
    for r in recs.values():
        assert r["counters_hw"] == r["counters_tb"]
        assert r["counters_hw"]["EVENTS_IN"] == r["events_in"]
        assert r["counters_hw"]["EVENTS_OUT"] == r["events_out"]
        assert r["counters_hw"]["STALL_CYCLES"] > 0
        ports = ["o_stream", "o_acc"] if r["where"] == "both" else [r["where"]]
        for port in ports:
            assert r["longest_stall_run"][port] >= r["storm_cycles"][0]
            assert r["stall_runs_ge_100"][port] >= 2
        if "o_stream" in ports:
            assert r["counters_hw"]["OUT_STALL_CYCLES"] >= 100
        # stalls propagate to the input for hundreds of cycles
        assert r["longest_stall_run"]["i_stream"] >= 50
        assert r["sim_cycles"] < r["budget_cycles"]


def test_alternating_modality_back_to_back(engine_run):
    recs = {k: v for k, v in _records(engine_run, "engine_alternating_modality", None).items()
            if not k.endswith("-real")}
    assert len(recs) == 2
    for r in recs.values():
        assert r["counters_hw"] == r["counters_tb"]
        assert r["modality"] == [1 - (n % 2) for n in range(r["tokens"])]
        assert r["steps_out"] == [r["t_vision"] if m else r["t_text"] for m in r["modality"]]
        assert (r["t_text"], r["t_vision"]) == (4, 3)
        assert r["counters_hw"]["TOKENS"] == r["tokens"]
    assert {r["horner"] for r in recs.values()} == {True, False}


def test_alternating_modality_real_spike_trains(engine_run):
    """Real tiny Qwen2-VL spike trains, tokens reordered so that T switches on every token."""
    records = engine_run[1]
    if "engine_alternating_modality-real" not in records:
        pytest.skip(f"no valid golden layer at {GOLDEN_MIXED} (test_cosim_golden.py or "
                    "`spikemllm sim` writes it)")
    (r,) = _records(engine_run, "engine_alternating_modality-real", 1).values()
    assert r["source"].startswith("golden:")
    assert r["counters_hw"] == r["counters_tb"]
    assert r["modality"] == [1 - (n % 2) for n in range(r["tokens"])]
    assert r["steps_out"] == [r["t_vision"] if m else r["t_text"] for m in r["modality"]]
    assert len(set(r["steps_out"])) == 2


def test_engine_kv_ports_past_capacity(engine_run):
    (r,) = _records(engine_run, "engine_kv_ports_capacity", 1).values()
    depth, heads = r["depth"], r["heads"]
    assert r["k_accepted"] == heads * depth + 2 * heads and r["k_refused"] == 1
    assert r["v_accepted"] == depth + 3 and r["v_refused"] == 1
    assert r["k_read_beats"] == r["expected"]["k_read_beats"]
    assert r["k_scores"] == r["expected"]["k_scores"]
    assert r["v_read_beats"] == r["expected"]["v_read_beats"]


def test_kv_cache_fill_beyond_capacity(kv_run):
    res, _ = kv_run
    assert res["passed"] and res["cocotb_tests"] == 1, res
    (r,) = _records(kv_run, "kv_fill_beyond_capacity", 1).values()
    depth, heads = r["depth"], r["heads"]
    assert not r["ring_mode_in_export"]
    # first fill: heads x depth accepted, 1 + 6 refused; refill: 1 more refused
    assert r["refused_before_clear"] == 1 + r["refused_burst"]
    assert r["appends_refused"] == r["refused_before_clear"] + 1
    assert r["appends_accepted"] == heads * depth + depth // 3 + depth
    # refused appends are taken in one cycle each (plus the 2 check cycles)
    assert r["refused_burst_cycles"] <= r["refused_burst"] + 4
    assert r["read_beats"] == r["read_beats_expected"] and r["scores"] == r["scores_expected"]
    assert r["checks_with_full_set"] > 0 and r["backpressure_cycles"] > 0


#: injected wrong expectations (testbench self-test): the record each must break, and how
INJECTED = {
    "weights-lost-on-reset": ("engine_reset_mid_token-first-token", "mismatch"),
    "counters-survive-reset": ("engine_reset_mid_token-blocked-output-long-hold",
                               "counters after reset"),
    "drop-output": ("engine_backpressure_storm-o_stream", "mismatch"),
    "duplicate-output": ("engine_backpressure_storm-o_acc", "mismatch"),
    "stall-count-off-by-one": ("engine_backpressure_storm-both", "counter STALL_CYCLES"),
    "single-T": ("engine_alternating_modality-tc-lif", "mismatch"),
    "kv-count-unsaturated": ("engine_kv_ports_capacity", "K_COUNT"),
}


def test_fault_tests_fail_on_wrong_expectations(cosim_builds, tmp_path):
    """Each fault test must fail when one of its expectations is made wrong on purpose
    (one simulator process, every engine test, each with its own injected error)."""
    cb = cosim_builds(CONFIG, "engine")
    res, records = run_faults(cb, "engine", tmp_path, r"\.engine_", inject=sorted(INJECTED))
    assert res["cocotb_tests"] == 9 and res["cocotb_failed"] == len(INJECTED), res
    broken = {name for name, _ in INJECTED.values()}
    for name, r in records.items():
        assert r["passed"] == (name not in broken), (name, r["problems"])
    for inject, (name, what) in INJECTED.items():
        r = records[name]
        if what == "mismatch":
            assert r["mismatches"] > 0, (inject, r)
        else:
            assert any(what in p for p in r["problems"]), (inject, r["problems"])
