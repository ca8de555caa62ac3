"""JSON columns decode exactly as `json.loads` would, on orjson's fast path or off it."""

from __future__ import annotations

import json

import pytest

from ecrm import jsontext


@pytest.mark.parametrize("text", [
    '{"points": 1234, "tier": "gold", "tags": ["a", "ب"], "ok": true, "none": null}',
    '{"card": 123456789012345678901234567890}',  # beyond 64 bits: orjson would give a float
    '{"big": -9223372036854775809, "small": 9223372036854775807}',
    '{"ratio": NaN, "top": Infinity}',  # orjson refuses these
    '{"pi": 3.141592653589793, "tiny": 1e-300}',
    '[]',
])
def test_decoding_matches_the_standard_library(text: str) -> None:
    decoded, expected = jsontext.loads(text), json.loads(text)
    assert repr(decoded) == repr(expected)
    assert [type(v) for v in _values(decoded)] == [type(v) for v in _values(expected)]


def test_bad_json_is_still_an_error() -> None:
    with pytest.raises(ValueError):
        jsontext.loads('{"points": ')


def _values(value: object) -> list[object]:
    if isinstance(value, dict):
        return [v for item in value.values() for v in _values(item)]
    if isinstance(value, list):
        return [v for item in value for v in _values(item)]
    return [value]
