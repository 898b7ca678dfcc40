"""spike_kv_cache under cocotb + Verilator: append, read back, AND/popcount scores, capacity."""

import pytest

from spikemllm.cosim import regression
from spikemllm.cosim.stimulus import random_kv_case

pytestmark = pytest.mark.cosim


@pytest.mark.parametrize("config", ["lanes8", "lanes32", "lanes8_fpga"])
def test_kv_cache_scores_and_readback_bit_exact(config, cosim_builds, tmp_path):
    cb = cosim_builds(config, "kv")
    p = cb.params
    cases = [random_kv_case(p, seed=1, tokens=5, queries=2),
             random_kv_case(p, seed=2, tokens=p.kv_depth, queries=1),   # full heads + refusal
             random_kv_case(p, seed=3, tokens=3, queries=1, extreme=True)]
    run = regression.run_cases(cb, "kv", cases, traffic=("free", "stress"), seed=77,
                               work_dir=tmp_path)
    bad = [(c["id"], c.get("problems"), c.get("mismatch_examples"), c.get("error"))
           for c in run["cases"] if not c.get("passed")]
    assert run["process_passed"] and not bad, (run["error"], bad)
    for c in run["cases"]:
        assert c["mismatches"] == 0
    full = [c for c in run["cases"] if c["name"] == "kv-random-s2"]
    assert full and all(c["capacity_checked"] for c in full)
    assert sum(c["backpressure_cycles"] for c in run["cases"] if c["traffic"] == "stress") > 0


def test_kv_testbench_catches_a_corrupted_key(cosim_builds, tmp_path):
    cb = cosim_builds("lanes8", "kv")
    case = random_kv_case(cb.params, seed=9, tokens=4, queries=1)
    case.meta["inject"] = "k-bit"
    run = regression.run_cases(cb, "kv", [case], traffic=("free",), seed=1, work_dir=tmp_path)
    (res,) = run["cases"]
    assert not res["passed"] and res["mismatches"] > 0
