"""Hypothesis fuzzing of ConverterConfig.from_dict / from_json.

Every input is either a valid config (which then round-trips through JSON unchanged) or a
ValueError whose message names the offending field; never another exception type.
"""

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikemllm.sw import numerics as nx
from spikemllm.sw.config import ConverterConfig

FUZZ = settings(max_examples=500, deadline=None)
FIELDS = [f.name for f in dataclasses.fields(ConverterConfig)]

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-100, 100), st.integers(),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)

# values that are often valid, so that fuzzing reaches the deeper checks too
plausible = {
    "w_bits": st.integers(0, 18),
    "encoding": st.sampled_from(list(nx.ENCODINGS) + ["TC-LIF", ""]),
    "t_text": st.integers(-1, 20),
    "t_vision": st.integers(-1, 20),
    "layer_t": st.dictionaries(st.sampled_from(["0", "1", "7"]), st.dictionaries(
        st.sampled_from(["text", "vision", "audio"]), st.integers(-1, 20), max_size=2), max_size=2),
    "rotation": st.sampled_from(["gamma-aligned", "gamma-folded", "none", "quarot"]),
    "weight_quantizer": st.sampled_from(["rtn", "mse", "gptq", "awq"]),
    "act_scale": st.sampled_from(["dynamic", "static", "per-tensor"]),
    "static_percentile": st.one_of(st.floats(-10, 200), st.integers(-5, 105)),
    "kv_bits": st.integers(-1, 18),
    "skip": st.lists(st.text(max_size=5), max_size=3),
    "seed": st.integers(-(1 << 40), 1 << 40),
}


@st.composite
def config_dicts(draw):
    d = {}
    for name in draw(st.lists(st.sampled_from(FIELDS), unique=True)):
        d[name] = draw(plausible[name] if draw(st.integers(0, 3)) else json_values)
    if draw(st.integers(0, 9)) == 0:
        d[draw(st.text(min_size=1, max_size=8))] = draw(json_scalars)
    return d


def _check(build, d):
    try:
        cfg = build()
    except ValueError as e:
        msg = str(e)
        named = [k for k in (d if isinstance(d, dict) else ()) if k in msg or repr(k) in msg]
        assert named or "JSON" in msg or "object" in msg, f"error names no field: {msg!r} for {d!r}"
        return None
    assert isinstance(cfg, ConverterConfig)
    cfg.validate()
    again = ConverterConfig.from_json(cfg.to_json())
    assert again == cfg
    assert json.loads(again.to_json()) == json.loads(cfg.to_json())
    return cfg


@FUZZ
@given(config_dicts())
def test_from_dict_is_valid_or_names_the_field(d):
    cfg = _check(lambda: ConverterConfig.from_dict(d), d)
    if cfg is not None:
        for k, v in d.items():
            assert getattr(cfg, k) == v


@FUZZ
@given(st.one_of(config_dicts().map(json.dumps), st.text(max_size=40),
                 json_values.map(json.dumps)))
def test_from_json_is_valid_or_a_clear_error(text):
    try:
        d = json.loads(text)
    except ValueError:
        d = None
    _check(lambda: ConverterConfig.from_json(text), d)


@pytest.mark.parametrize("field,value", [("w_bits", 1), ("w_bits", True), ("encoding", "spiky"),
                                         ("t_text", 0), ("t_vision", 99), ("kv_bits", 17),
                                         ("static_percentile", float("nan")),
                                         ("skip", "lm_head"), ("seed", 1.5),
                                         ("layer_t", {"0": {"audio": 3}})])
def test_known_bad_values_name_their_field(field, value):
    with pytest.raises(ValueError, match=field):
        ConverterConfig.from_dict({field: value})
