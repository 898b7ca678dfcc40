"""scripts/gpu_baseline.py on CPU with a tiny config: every code path, NVML absent or not."""

import json
import subprocess
import sys
from pathlib import Path

from spikemllm.sw import system_report as sr

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_baseline.py"


def test_help_explains():
    r = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0
    assert "--dry-run" in r.stdout and "NVML" in r.stdout


def test_dry_run_writes_a_report_readable_json(tmp_path):
    out = tmp_path / "gpu.json"
    r = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--batches", "1", "8",
                        "--no-static-cache", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["format"] == "spikemllm-gpu-baseline/1" and d["dry_run"] is True
    assert d["device"] and d["date"]
    reg = d["regimes"]
    for k in ("prefill", "decode_b1_eager", "decode_b1", "decode_b8"):
        assert reg[k]["tokens_per_s"] > 0, k
    if d["energy_source"] is None:               # no NVML here: energy null and said so
        assert all(reg[k]["j_per_token"] is None for k in reg)
        assert any("energy not measured" in n for n in d["notes"])
    # float32 linears of the tiny config: 2 layers of q,o 64x64, k,v 64x32, gate/up/down
    # 64x128, plus the 64 x 1024 LM head
    assert d["runs"]["graph"][0]["weight_bytes"] == 4 * (2 * (64 * 64 * 2 + 64 * 32 * 2
                                                           + 64 * 128 * 3) + 64 * 1024)
    # the system report reads it
    g = sr.load_gpu([str(out)])
    assert g["prefill"]["tokens_per_s"] == reg["prefill"]["tokens_per_s"]
