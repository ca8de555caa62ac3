"""Decoding JSON columns: orjson where it gives exactly what `json.loads` gives, else `json.loads`.

A send job decodes every recipient's traits: `json.loads` costs about 3 µs for a small object,
orjson 0.3 µs. They differ in two places. orjson reads integers beyond 64 bits as floats,
losing digits, so text with a run of 19 or more digits goes to `json.loads`. orjson refuses
NaN and Infinity, which `json.loads` accepts, so its errors fall back too.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_LONG_NUMBER = re.compile(r"\d{19}")


def loads(text: str | bytes) -> Any:
    if isinstance(text, str) and _LONG_NUMBER.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)
