"""MSTS: MED measurement and T allocation under an average-T budget."""

import numpy as np
import pytest

from spikemllm.sw import msts
from spikemllm.sw import numerics as nx


def _random_units(seed, n_layers=6, vision=True):
    rng = np.random.default_rng(seed)
    med, counts = {}, {}
    for i in range(n_layers):
        med[str(i)] = {"text": float(rng.uniform(0.01, 0.5))}
        counts[str(i)] = {"text": 40}
        if vision:
            med[str(i)]["vision"] = float(rng.uniform(0.01, 0.5))
            counts[str(i)]["vision"] = 100
    if vision:
        med["visual.0"] = {"vision": float(rng.uniform(0.01, 0.5))}
        counts["visual.0"] = {"vision": 400}
    return med, counts


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("budget", [2.0, 3.0, 3.5, 4.0, 5.25, 8.0])
def test_allocation_respects_budget_and_follows_med(seed, budget):
    med, counts = _random_units(seed)
    lt = msts.allocate(med, counts, budget, "tc-lif")
    avg = msts.average_t(lt, counts)
    assert avg <= budget + 1e-9
    # greedy fills the budget: no unit below the top width can take one more bit
    total = sum(n for per in counts.values() for n in per.values())
    for k, per in lt.items():
        for m, T in per.items():
            b = nx.bits_for_timesteps("tc-lif", T)
            if b < msts.DEFAULT_BITS_RANGE[1]:
                dT = nx.timesteps("tc-lif", b + 1) - T
                assert (avg * total + counts[k][m] * dT) > budget * total + 1e-9
    # among units with the same token count, higher MED never gets fewer timesteps
    units = [(k, m) for k in med for m in med[k]]
    for a in units:
        for b in units:
            if counts[a[0]][a[1]] == counts[b[0]][b[1]] and med[a[0]][a[1]] > med[b[0]][b[1]]:
                assert lt[a[0]][a[1]] >= lt[b[0]][b[1]], "higher MED must not get fewer timesteps"
    for per in lt.values():
        for T in per.values():
            nx.bits_for_timesteps("tc-lif", T)  # valid T


def test_allocation_for_ternary_uses_valid_t():
    med, counts = _random_units(0, vision=False)
    lt = msts.allocate(med, counts, 7.0, "ternary")
    assert msts.average_t(lt, counts) <= 7.0
    assert {T for per in lt.values() for T in per.values()} <= {3, 7, 15, 31, 63, 127, 255}


@pytest.mark.parametrize("budget", [1.0, 8.5, "4"])
def test_budget_out_of_range(budget):
    med, counts = _random_units(0)
    with pytest.raises(ValueError, match="MSTS budget"):
        msts.allocate(med, counts, budget, "tc-lif")


def test_med_of_minilm_and_qwen2vl_modalities(minilm, tiny_qwen2vl):
    from spikemllm.sw.fidelity import make_workload

    w = make_workload(minilm, eval_size=4)
    med, counts = msts.measure_med(minilm.model, "bert", w.med_runs(minilm.model))
    assert list(med) == [str(i) for i in range(6)]
    assert all(0 < per["text"] < 2 and "vision" not in per for per in med.values())
    assert counts["0"]["text"] == int(w.calib_batches[0]["valid"].sum())  # padding left out
    wv = make_workload(tiny_qwen2vl, eval_size=16)
    med, counts = msts.measure_med(tiny_qwen2vl.model, "qwen2_vl", wv.med_runs(tiny_qwen2vl.model))
    assert set(med) == {"0", "1", "visual.0", "visual.1"}
    assert set(med["0"]) == {"text", "vision"} and set(med["visual.0"]) == {"vision"}
    n_img = int((wv.calib_batches[0]["modality"] == 1).sum())
    assert counts["0"]["vision"] == n_img and counts["visual.0"]["vision"] == 4 * n_img  # 2x2 merge
