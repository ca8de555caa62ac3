"""The PostgreSQL import's staging rows, as COPY text: each profile column as the row names it
(NULL when it does not, so the merge keeps the stored value), traits as JSON text of the same
object, the row's line; a value holding COPY's delimiters or its NULL marker comes back as it was."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from ecrm.profiles.copy_import import staging_text
from ecrm.profiles.ingest import PROFILE_COLUMNS, ProfileIn

PROFILES = [
    {"external_id": "c-1"},
    {"external_id": "c-2", "email": "a@example.com", "locale": "th",
     "traits": {"tier": "gold", "é": "x\u2028\x1f\"\\"}},
    {"external_id": "c-3", "phone": "+66812345678", "first_name": "Ana", "last_name": "Silva", "time_zone": "UTC",
     "traits": {"n": 2**70, "nested": {"a": [1, None]}}, "consent": {"email": {"state": "granted", "source": "csv:x"},
                                                                      "sms": {"state": "withdrawn"}}},
    {"external_id": "c-4", "locale": "en"},  # named, though the default: staged
    {"external_id": "c\t5\\N", "first_name": "two\nlines\r", "last_name": "\\N",
     "consent": {"push": {"state": "granted", "source": "csv:a\tb.csv"}}},
]
_UNESCAPED = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def _rows(text: bytes) -> list[list[str | None]]:
    """COPY text read back as PostgreSQL reads it (the escapes `staging_text` writes)."""
    return [[None if value == "\\N" else re.sub(r"\\(.)", lambda m: _UNESCAPED[m.group(1)], value)
             for value in line.split("\t")] for line in text.decode().split("\n")[:-1]]


@pytest.mark.parametrize("data", PROFILES)
def test_a_staging_row_holds_the_columns_the_row_names_and_its_traits(data: dict[str, Any]) -> None:
    profile = ProfileIn.model_validate(data)
    profiles, consents = staging_text([(7, profile)])
    (record,) = _rows(profiles)
    changes = profile.changes()
    assert record[0] == profile.external_id
    assert dict(zip(PROFILE_COLUMNS, record[1:-2], strict=True)) == {
        name: changes.get(name) for name in PROFILE_COLUMNS}
    assert json.loads(record[-2] or "") == profile.traits
    assert record[-1] == "7"
    assert _rows(consents) == [[profile.external_id, channel.value, consent.state.value, consent.source]
                               for channel, consent in profile.consent.items()]


def test_a_batch_is_its_rows_in_order() -> None:
    profiles = [ProfileIn.model_validate(data) for data in PROFILES]
    rows, consents = staging_text(list(enumerate(profiles, start=2)))
    assert [(row[0], row[-1]) for row in _rows(rows)] == [(p.external_id, str(line))
                                                         for line, p in enumerate(profiles, start=2)]
    assert [row[0] for row in _rows(consents)] == ["c-3", "c-3", "c\t5\\N"]
