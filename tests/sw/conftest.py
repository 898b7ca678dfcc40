"""Shared fixtures of the converter tests: models load once per session."""

from pathlib import Path

import pytest

TINYSTORIES = Path(__file__).resolve().parents[2].parent / "shared" / "models" / "tinystories-656k"


@pytest.fixture(scope="session")
def minilm():
    from spikemllm.sw.models import load_model
    return load_model("minilm")


@pytest.fixture(scope="session")
def tiny_llama():
    from spikemllm.sw.models import load_model
    return load_model("tiny-llama")


@pytest.fixture(scope="session")
def tiny_qwen2vl():
    from spikemllm.sw.models import load_model
    return load_model("tiny-qwen2vl")


@pytest.fixture(scope="session")
def tinystories():
    if not (TINYSTORIES / "config.json").is_file():
        pytest.skip(f"tinystories-656k not found at {TINYSTORIES}")
    from spikemllm.sw.models import load_model
    return load_model(str(TINYSTORIES))
