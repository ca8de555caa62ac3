"""A profile's email is validated by EmailStr once per address and remembered: the same address
again gives the same result, and an invalid one is refused every time with EmailStr's message."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ecrm.profiles import ingest
from ecrm.profiles.ingest import ProfileIn


def _error(email: object) -> str:
    with pytest.raises(ValidationError) as caught:
        ProfileIn.model_validate({"external_id": "c-1", "email": email})
    [error] = caught.value.errors(include_url=False)
    return f"{error['loc']} {error['msg']}"


def test_a_valid_address_is_remembered_as_validated_and_an_invalid_one_never(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "VALID_EMAILS", {})
    first = ProfileIn(external_id="c-1", email="Ana.Silva@Example.COM")
    again = ProfileIn(external_id="c-2", email="Ana.Silva@Example.COM")
    assert first.email == again.email == "ana.silva@example.com"
    assert list(ingest.VALID_EMAILS) == ["Ana.Silva@Example.COM"]
    for bad in ("nope", "a@b", 5):
        assert _error(bad) == _error(bad)
    assert _error("nope") == "('email',) value is not a valid email address: An email address must have an @-sign."
    assert list(ingest.VALID_EMAILS) == ["Ana.Silva@Example.COM"]


def test_the_memory_is_emptied_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "VALID_EMAILS", {})
    monkeypatch.setattr(ingest, "VALID_EMAILS_MAX", 3)
    for n in range(5):
        ProfileIn(external_id="c", email=f"p{n}@example.com")
    assert list(ingest.VALID_EMAILS) == ["p3@example.com", "p4@example.com"]
