"""Building stage 1's inputs from a shop's payload, shared by the connectors.

A shop's data is the shop's: a phone number our validator refuses, or a locale we do not
know, must not lose the customer. `profile_input` drops such an optional field (and says so in
the log) rather than failing the whole webhook; a field nothing can do without (an order's
total) fails it with `WebhookPayloadError` naming the field, kept for a retry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ecrm.errors import WebhookPayloadError
from ecrm.orders.ingest import LineItemIn
from ecrm.profiles.ingest import EventIn, ProfileIn, input_errors

logger = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
DROPPABLE = frozenset({"email", "phone", "first_name", "last_name", "locale"})
MAX_TEXT = 200


def text(value: Any) -> str | None:
    """A non-empty string field as text (ids may come as numbers), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str):
        found = str(value).strip()
        return found or None
    return None


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def listing(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def profile_input(data: dict[str, Any]) -> ProfileIn:
    """`data` (None values left out) as a ProfileIn, without the optional fields that do not validate."""
    data = {key: value for key, value in data.items() if value is not None}
    try:
        return ProfileIn.model_validate(data)
    except ValidationError as exc:
        bad = {error.field.split(".")[0] for error in input_errors(exc)}
    if not bad <= DROPPABLE:
        raise WebhookPayloadError(f"the customer's {', '.join(sorted(bad - DROPPABLE))} is not valid",
                                  field=sorted(bad - DROPPABLE)[0])
    logger.info("customer %s: left out %s (not valid)", data.get("external_id"), ", ".join(sorted(bad)))
    return validated(ProfileIn, {key: value for key, value in data.items() if key not in bad})


def validated(model: type[M], data: dict[str, Any], within: str = "") -> M:
    """`model` from `data`, or WebhookPayloadError naming the first bad field (under `within`) and why."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = input_errors(exc)[0]
        field = f"{within}.{first.field}" if within else first.field
        raise WebhookPayloadError(f"{field}: {first.message}", field=field) from None


def amount(value: Any, name: str) -> Decimal:
    """A money amount the shop sends as a string ("19.99") or a JSON number, exactly."""
    try:
        found = Decimal(str(value)) if isinstance(value, str | int | Decimal) and not isinstance(value, bool) else None
    except InvalidOperation:
        found = None
    if found is None or not found.is_finite():
        raise WebhookPayloadError(f"{name} is not an amount such as \"19.99\"", field=name)
    return found


def line_items(items: Iterable[LineItemIn]) -> list[dict[str, Any]]:
    """Line items as a cart event carries them: the shape of an order's line items."""
    return [item.model_dump(mode="json") for item in items]


def cart_event(external_id: str, name: str, cart: dict[str, Any], occurred_at: datetime | str | None) -> EventIn:
    """A `cart_updated` / `checkout_started` event: `cart` holds cart_id, line_items, total,
    currency (and what else the shop tells, e.g. a recovery URL)."""
    return validated(EventIn, {"external_id": external_id, "name": name, "properties": cart,
                               **({"occurred_at": occurred_at} if occurred_at else {})})
