"""The stream BFM (cosim/bfm.py) on a known-good 2-entry FIFO, under Verilator."""

from pathlib import Path

import pytest

from spikemllm.cosim.runner import build_top, run_cocotb

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.cosim


def test_stream_bfm_fifo_no_loss_no_duplicate(tmp_path):
    root = HERE.parents[1] / "build" / "cosim" / "bfm"
    build = build_top("stream_fifo", [HERE / "stream_fifo.v"], root / "stream_fifo")
    res = run_cocotb(build, "tb_stream_fifo", case_path=HERE / "stream_fifo.v",
                     result_path=tmp_path / "result.json", test_dir=tmp_path, seed=1234)
    assert res["passed"], res
    assert res["cocotb_tests"] == 4
