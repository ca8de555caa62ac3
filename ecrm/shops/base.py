"""The shop connector interface: one class per shop, pure, sync and framework-free.

A connector verifies a request (raising `WebhookSignatureError`), names its delivery (id,
topic, shop) and maps a verified payload to `ShopChanges`: the profiles to upsert (with the
marketing consent the shop reports), the orders to upsert, the cart events to record and the
profiles to erase. The API stores the raw body first and maps it later (`ecrm.shops.jobs`),
so a mapping that fails keeps the webhook for a retry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

from ecrm.errors import WebhookPayloadError, WebhookSignatureError
from ecrm.orders.ingest import OrderIn
from ecrm.profiles.ingest import EventIn, ProfileIn

CART_UPDATED, CHECKOUT_STARTED = "cart_updated", "checkout_started"


@dataclass(frozen=True)
class Delivery:
    """What the headers say about one webhook delivery."""

    id: str
    topic: str
    shop: str


@dataclass
class ShopChanges:
    """What one webhook asks of stage 1, applied in this order: profiles, orders, events, erasures.

    A grant the shop reports never undoes a withdrawal recorded here after the shop's time for
    it (someone who used our unsubscribe link stays unsubscribed when the shop resends its stale
    `subscribed`); a grant with no time never undoes a withdrawal at all."""

    profiles: list[ProfileIn] = field(default_factory=list)
    orders: list[OrderIn] = field(default_factory=list)
    events: list[EventIn] = field(default_factory=list)
    erase: list[str] = field(default_factory=list)  # external ids
    # (external id, channel) of a granted consent -> when the shop says it was given (None: unknown)
    granted_at: dict[tuple[str, str], datetime | None] = field(default_factory=dict)


class ShopConnector(Protocol):
    provider: ClassVar[str]  # the registry key and the webhook path: /webhooks/<provider>
    topics: ClassVar[tuple[str, ...]]  # the topics a shop should subscribe to (`ecrm shop connect`)
    secret_setting: ClassVar[str]  # where its secret goes, for messages and `ecrm shop connect`
    secret: str | None

    def is_ping(self, body: bytes, headers: Mapping[str, str]) -> bool: ...

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None: ...

    def delivery(self, headers: Mapping[str, str]) -> Delivery: ...

    def map(self, topic: str, payload: dict[str, Any]) -> ShopChanges: ...


def check_base64_hmac(secret: str | None, body: bytes, signature: str | None, header: str, setting: str) -> None:
    """Raise `WebhookSignatureError` unless `signature` is the base64 HMAC-SHA256 of `body` under
    `secret` (how Shopify and WooCommerce both sign), compared in constant time."""
    if not secret:
        raise WebhookSignatureError(f"no secret is configured for these webhooks: set {setting}")
    if not signature:
        raise WebhookSignatureError(f"the {header} header is missing")
    try:
        given = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookSignatureError(f"the {header} header is not base64") from None
    expected = hmac.digest(secret.encode(), body, hashlib.sha256)
    if not hmac.compare_digest(given, expected):
        raise WebhookSignatureError(f"the {header} signature does not match the body: check {setting}")


def required_header(headers: Mapping[str, str], name: str, max_length: int) -> str:
    value = headers.get(name, "").strip()
    if not value:
        raise WebhookPayloadError(f"the {name} header is missing", field=name)
    if len(value) > max_length or not value.isprintable():
        raise WebhookPayloadError(f"the {name} header is not a valid value", field=name)
    return value
