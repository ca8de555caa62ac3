"""A profile's email is validated by EmailStr once per address and remembered: the same address
again gives the same result, and an invalid one is refused every time with EmailStr's message.
A plain address (`plain_email`) is taken as EmailStr would take it without asking EmailStr."""

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
    first = ProfileIn(external_id="c-1", email="Ána.Silva@Example.COM")  # not plain: EmailStr decides
    again = ProfileIn(external_id="c-2", email="Ána.Silva@Example.COM")
    assert first.email == again.email == "ána.silva@example.com"
    assert list(ingest.VALID_EMAILS) == ["Ána.Silva@Example.COM"]
    for bad in ("nope", "a@b", 5):
        assert _error(bad) == _error(bad)
    assert _error("nope") == "('email',) value is not a valid email address: An email address must have an @-sign."
    assert list(ingest.VALID_EMAILS) == ["Ána.Silva@Example.COM"]


def test_a_plain_address_is_taken_without_email_validator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "VALID_EMAILS", {})
    assert ProfileIn(external_id="c-1", email="Ana.Silva@Example.COM").email == "ana.silva@example.com"
    assert ingest.VALID_EMAILS == {}  # EmailStr was not asked: nothing to remember


def test_the_memory_is_emptied_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "VALID_EMAILS", {})
    monkeypatch.setattr(ingest, "VALID_EMAILS_MAX", 3)
    for n in range(5):
        ProfileIn(external_id="c", email=f"p{n}@exämple.com")
    assert list(ingest.VALID_EMAILS) == ["p3@exämple.com", "p4@exämple.com"]
