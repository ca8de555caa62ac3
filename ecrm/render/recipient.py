"""The row a send job reads for each recipient, and the template context built from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ecrm.messages import PushTarget


@dataclass(slots=True)  # not frozen: built per message, and frozen triples the cost
class Recipient:
    delivery_id: int
    profile_id: int
    external_id: str
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    locale: str
    time_zone: str
    traits: dict[str, Any]
    push: list[PushTarget] | None = None  # the profile's push subscriptions, read for push sends only
    data: dict[str, Any] | None = None  # the send's own values for its templates (`data`)

    def profile_fields(self) -> dict[str, Any]:
        return {
            "external_id": self.external_id, "email": self.email, "phone": self.phone,
            "first_name": self.first_name, "last_name": self.last_name, "locale": self.locale,
            "time_zone": self.time_zone, "traits": self.traits,
        }


def sample_recipient(locale: str, **overrides: Any) -> Recipient:
    """A stand-in profile used to check that every template renders before anything is sent."""
    fields: dict[str, Any] = {
        "delivery_id": 0, "profile_id": 0, "external_id": "sample-1",
        "email": "sample@example.com", "phone": "+15005550006", "first_name": "Sam", "last_name": "Sample",
        "locale": locale, "time_zone": "UTC", "traits": {},
        "push": [PushTarget(0, "https://push.example/sample", "", "")],
    }
    fields.update(overrides)
    return Recipient(**fields)
