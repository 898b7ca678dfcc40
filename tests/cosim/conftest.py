"""Shared fixtures of the co-simulation tests: one Verilator build per (configuration, top).

Builds live in build/cosim/<config>/<top> and are reused across pytest runs while the
generated Verilog and the Verilator arguments hash the same (see spikemllm.cosim.runner).
"""

import pytest

from spikemllm.cosim import regression


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
