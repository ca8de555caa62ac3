"""`raw_json`: `json_object_text` checks with orjson first and the standard library reads what
orjson refuses, so a body is accepted or refused, and a refusal named, as by `json_object`."""

from __future__ import annotations

import pytest

from ecrm.api.raw_json import json_object, json_object_text
from ecrm.errors import ApiError


def test_a_body_is_read_as_its_text_and_object() -> None:
    raw = '{"name": "Zoë", "total": "19.99", "items": [{"quantity": 2, "price": 9.5}], "paid": true}'.encode()
    assert json_object(raw, None) == (raw.decode(), {"name": "Zoë", "total": "19.99",
                                                     "items": [{"quantity": 2, "price": 9.5}], "paid": True})
    assert json_object_text(raw, "UTF-8") == raw.decode()


def test_the_text_of_what_json_object_accepts_orjson_reading_numbers_otherwise() -> None:
    raw = b'{"id": 123456789012345678901234567890, "big": 1e400}'
    assert json_object(raw, "utf-8")[1]["id"] == 123456789012345678901234567890  # exact, not orjson's float
    assert json_object_text(raw, "utf-8") == raw.decode()


@pytest.mark.parametrize(("raw", "status", "words"), [
    (b'{"id": 1,', 400, "not valid JSON"),
    (b'{"id": 1} x', 400, "not valid JSON"),
    (b"\xff\xfe{}", 400, "not UTF-8"),
    (b'{"total": NaN}', 400, "NaN"),
    (b'{"total": -Infinity}', 400, "Infinity"),
    (b"[1, 2]", 422, "JSON object"),
    (b'{"a": ' * 40 + b"1" + b"}" * 40, 422, "deeper"),
    (b'{"a": ' * 5000 + b"1" + b"}" * 5000, 400, "deeper"),
    (b'{"email": "\\ud800"}', 422, "surrogate"),
    (b'{"email": "a\x01b"}', 400, "not valid JSON"),
])
def test_refusals_are_named_alike(raw: bytes, status: int, words: str) -> None:
    for read in (json_object, json_object_text):
        with pytest.raises(ApiError) as refused:
            read(raw, None)
        assert refused.value.status == status
        assert words in str(refused.value)
