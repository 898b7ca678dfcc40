"""Shared fixtures of the co-simulation tests: one Verilator build per (configuration, top).

Builds live in build/cosim/<config>/<top> and are reused across pytest runs while the
generated Verilog and the Verilator arguments hash the same (see spikemllm.cosim.runner).
"""

import pytest

from spikemllm.cosim import regression
from spikemllm.hw.tools import REPO_ROOT

GOLDEN_ROOT = REPO_ROOT / "build" / "cosim" / "golden"


def _log(msg):
    print(msg)


@pytest.fixture(scope="session")
def cosim_builds():
    """Lazily built configurations: ``cosim_builds(name, kind)`` -> ConfigBuild."""
    cache = {}

    def get(name, kind):
        key = (name, kind)
        if key not in cache:
            cache[key] = regression.build_config(name, kinds=(kind,), log=_log)
        return cache[key]

    return get


def export_cosim_golden(name, model, layer, proj, tokens, modality="text"):
    from spikemllm.sw.config import ConverterConfig
    from spikemllm.sw.golden import export_golden, load_golden

    out = GOLDEN_ROOT / name
    if (out / "manifest.json").exists():
        try:
            # reused only when valid and made with today's default config (else exported again)
            if load_golden(out).manifest["converter_config"] == ConverterConfig().to_dict():
                return out
        except ValueError:
            pass
    export_golden(model, layer, proj, out, tokens=tokens, modality=modality, force=True)
    return out


@pytest.fixture(scope="session")
def golden_linear():
    return [export_cosim_golden("l0q", "minilm", 0, "q", 8),
            export_cosim_golden("qvl-down-mixed", "tiny-qwen2vl", 0, "down", 8, modality="mixed")]


@pytest.fixture(scope="session")
def golden_export():
    """``golden_export(name, model, layer, proj, tokens, modality)`` -> a valid golden dir."""
    return export_cosim_golden
