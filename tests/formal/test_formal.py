"""SymbiYosys proofs of the RTL (spikemllm.hw.formal): every property holds (bmc to the stated
depth, or k-induction), every cover is reached, and every mutant (a weakened property or a
dropped assumption) fails, so no proof can pass vacuously."""

import pytest

from spikemllm.hw import formal as F

pytestmark = pytest.mark.formal

EXPECT = {"check": "PASS", "cover": "PASS", "mutant": "FAIL"}


@pytest.mark.parametrize("task", ["check", "cover", "mutant"])
@pytest.mark.parametrize("proof", F.PROOFS, ids=[p.name for p in F.PROOFS])
def test_proof(proof, task, tmp_path):
    result = F.run_proof(proof, task=task, out_dir=tmp_path, timeout=300)
    assert result.status == EXPECT[task], (
        f"{proof.name} {task} ({result.mode}, depth {result.depth}): {result.status}\n"
        f"{result.log_tail}")
    if task == "mutant":  # it fails for the intended reason, at the weakened property
        assert any(proof.mutant_fails in text for text in result.failed), result.failed


def test_harness_ports_are_free_inputs():
    # every input of the block is a free input of the proof design (nothing tied off)
    h = F.FiringHarness(params=F._FIRING_P)
    names = {p.name for p in h.ports}
    assert {"i_stream__valid", "o_stream__ready", "theta", "t_text", "t_vision"} <= names
    text = h.to_rtlil()
    for name in ("theta", "t_text", "o_stream__ready"):
        assert any(line.startswith("  wire") and " input " in line and line.endswith(f"\\{name}")
                   for line in text.splitlines()), name


def test_run_proof_rejects_unknown_task():
    with pytest.raises(ValueError, match="task must be"):
        F.run_proof(F.PROOFS[0], task="prove-everything")
