"""The PostgreSQL import's staging rows: each profile column as the row names it (None when it
does not, so the merge keeps the stored value), traits as JSON text of the same object."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ecrm.profiles.copy_import import staging_rows
from ecrm.profiles.ingest import PROFILE_COLUMNS, ProfileIn

PROFILES = [
    {"external_id": "c-1"},
    {"external_id": "c-2", "email": "a@example.com", "locale": "th",
     "traits": {"tier": "gold", "é": "x\u2028\x1f\"\\"}},
    {"external_id": "c-3", "phone": "+66812345678", "first_name": "Ana", "last_name": "Silva", "time_zone": "UTC",
     "traits": {"n": 2**70, "nested": {"a": [1, None]}}, "consent": {"email": {"state": "granted", "source": "csv:x"},
                                                                      "sms": {"state": "withdrawn"}}},
    {"external_id": "c-4", "locale": "en"},  # named, though the default: staged
]


@pytest.mark.parametrize("data", PROFILES)
def test_a_staging_row_holds_the_columns_the_row_names_and_its_traits(data: dict[str, Any]) -> None:
    profile = ProfileIn.model_validate(data)
    rows = staging_rows([profile], {profile.external_id: 7})
    (record,) = rows.profiles
    changes = profile.changes()
    assert record[0] == profile.external_id
    assert dict(zip(PROFILE_COLUMNS, record[1:-2], strict=True)) == {
        name: changes.get(name) for name in PROFILE_COLUMNS}
    assert json.loads(record[-2]) == profile.traits
    assert record[-1] == 7
    assert rows.consents == [(profile.external_id, channel.value, consent.state.value, consent.source)
                             for channel, consent in profile.consent.items()]
