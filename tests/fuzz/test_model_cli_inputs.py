"""Bad model directories and converter configs through the CLI: one clean error line (exit 2),
no traceback, and no partial output directory.

``load_model`` itself (missing dir, bad config.json, pickle-only weights) is covered in
tests/numerics/test_config_models_cli.py; these tests add the ``spikemllm convert`` path.
"""

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikemllm.cli import main as cli_main
from spikemllm.sw.config import ConverterConfig


def _convert(*args):
    return subprocess.run([sys.executable, "-m", "spikemllm", "convert", *args],
                          capture_output=True, text=True, timeout=300)


def _llama_dir(path, weights):
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    for name, data in weights.items():
        (path / name).write_bytes(data)
    return path


@pytest.mark.parametrize("weights,match", [
    ({"pytorch_model.bin": b"not unpickled"}, "only pickle weights.*--trust-pickle"),
    ({"model.pt": b"x", "notes.txt": b"y"}, "only pickle weights.*--trust-pickle"),
    ({}, "no weights found"),
])
def test_convert_refuses_pickle_only_and_missing_weights(tmp_path, weights, match):
    model = _llama_dir(tmp_path / "model", weights)
    out = tmp_path / "out"
    r = _convert("--model", str(model), "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines and re.search(match, lines[-1]), r.stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temp dir left behind


def test_convert_refuses_unsupported_and_broken_config(tmp_path):
    for name, text, match in [("gpt2", json.dumps({"model_type": "gpt2"}),
                               "unsupported architecture"),
                              ("broken", "{not json", "not valid JSON")]:
        model = tmp_path / name
        model.mkdir()
        (model / "config.json").write_text(text)
        out = tmp_path / f"out-{name}"
        r = _convert("--model", str(model), "--out", str(out))
        assert r.returncode == 2 and "Traceback" not in r.stderr and match in r.stderr, r.stderr
        assert not out.exists()


@settings(max_examples=40, deadline=None)
@given(field=st.sampled_from(["w_bits", "encoding", "t_text", "kv_bits", "rotation", "seed",
                              "static_percentile", "colour"]),
       value=st.one_of(st.integers(-5, 40), st.text(max_size=5), st.none(), st.floats(),
                       st.lists(st.integers(), max_size=2)))
def test_convert_with_a_fuzzed_config_file_fails_cleanly_before_any_output(field, value):
    try:
        ConverterConfig.from_dict({field: value})
        return  # a valid config would start a real conversion: not what this test is about
    except ValueError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = tmp / "config.json"
        cfg.write_text(json.dumps({field: value}))
        out = tmp / "out"
        rc = cli_main(["convert", "--model", "tiny-llama", "--out", str(out),
                       "--config", str(cfg)])
        assert rc == 2
        assert not out.exists()
        assert sorted(p.name for p in tmp.iterdir()) == ["config.json"]

