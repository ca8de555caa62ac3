"""Shopify webhooks: orders, checkouts (carts) and customers, signed with the app's secret.

Shopify signs the raw body with HMAC-SHA256 under the app's client secret and sends it base64
in `X-Shopify-Hmac-Sha256`; `X-Shopify-Webhook-Id` stays the same when Shopify retries a
delivery. Customers become `shopify:<customer id>` profiles; an order or checkout with no
customer but an email becomes `shopify:email:<email>`. Orders are `shopify:<order id>`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar

from ecrm.errors import WebhookPayloadError
from ecrm.orders.ingest import LineItemIn, OrderIn
from ecrm.orders.models import OrderStatus
from ecrm.settings import Settings
from ecrm.shops.base import (
    CART_UPDATED,
    CHECKOUT_STARTED,
    Delivery,
    ShopChanges,
    check_base64_hmac,
    required_header,
)
from ecrm.shops.mapping import amount, cart_event, line_items, listing, mapping, profile_input, text, validated

SOURCE = "shopify"
# email_marketing_consent.state / sms_marketing_consent.state -> ours; pending (double opt-in not
# yet confirmed) and invalid change nothing.
CONSENT_STATES = {"subscribed": "granted", "unsubscribed": "withdrawn", "not_subscribed": "withdrawn",
                  "redacted": "withdrawn"}
# The most advanced state an order payload shows; the topic can only move it forward.
TOPIC_STATUS = {"orders/paid": OrderStatus.PAID, "orders/fulfilled": OrderStatus.FULFILLED}


class ShopifyConnector:
    provider: ClassVar[str] = "shopify"
    topics: ClassVar[tuple[str, ...]] = ("orders/create", "orders/paid", "orders/fulfilled", "checkouts/create",
                                         "checkouts/update", "customers/create", "customers/update",
                                         "customers/redact")
    secret_setting: ClassVar[str] = "ECRM_SHOPS__SHOPIFY_SECRET"

    def __init__(self, secret: str | None) -> None:
        self.secret = secret

    @classmethod
    def from_settings(cls, settings: Settings) -> ShopifyConnector:
        secret = settings.shops.shopify_secret
        return cls(secret.get_secret_value() if secret else None)

    def is_ping(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return False

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        check_base64_hmac(self.secret, body, headers.get("X-Shopify-Hmac-Sha256"), "X-Shopify-Hmac-Sha256",
                          self.secret_setting)

    def delivery(self, headers: Mapping[str, str]) -> Delivery:
        return Delivery(required_header(headers, "X-Shopify-Webhook-Id", 200),
                        required_header(headers, "X-Shopify-Topic", 100),
                        required_header(headers, "X-Shopify-Shop-Domain", 300))

    def map(self, topic: str, payload: dict[str, Any]) -> ShopChanges:
        return MAPPERS.get(topic.split("/")[0], _nothing)(topic, payload)


def _nothing(topic: str, payload: dict[str, Any]) -> ShopChanges:
    return ShopChanges()


def _map_customer(topic: str, payload: dict[str, Any]) -> ShopChanges:
    if topic == "customers/redact":
        return ShopChanges(erase=_redacted(mapping(payload.get("customer"))))
    return _customer(payload, None, None)


def _redacted(customer: dict[str, Any]) -> list[str]:
    ids = [f"shopify:{text(customer.get('id'))}"] if text(customer.get("id")) else []
    email = text(customer.get("email"))
    return ids + ([f"shopify:email:{email.lower()}"] if email else [])


def _customer(customer: dict[str, Any], buyer: dict[str, Any] | None, locale: str | None) -> ShopChanges:
    """The customer object of a customers/* payload, or of an order or checkout (`buyer`: the
    order's own email, phone and buyer_accepts_marketing, used where the customer lacks them)."""
    buyer = buyer or {}
    email = text(customer.get("email")) or text(buyer.get("email"))
    external_id = _external_id(customer, email)
    consent, granted_at = _consent(customer, buyer)
    profile = profile_input({
        "external_id": external_id, "email": email, "phone": text(customer.get("phone")) or text(buyer.get("phone")),
        "first_name": text(customer.get("first_name")), "last_name": text(customer.get("last_name")),
        "locale": locale, "consent": consent,
    })
    return ShopChanges(profiles=[profile], granted_at={(external_id, ch): at for ch, at in granted_at.items()})


def _external_id(customer: dict[str, Any], email: str | None) -> str:
    customer_id = text(customer.get("id"))
    if customer_id:
        return f"shopify:{customer_id}"
    if email:
        return f"shopify:email:{email.lower()}"
    raise WebhookPayloadError("the payload names no customer id and no email", field="customer")


def _consent(customer: dict[str, Any], buyer: dict[str, Any]) -> tuple[dict[str, Any], dict[str, datetime | None]]:
    """The consent Shopify reports, and for each grant the time Shopify says it was given."""
    found, granted_at = {}, {}
    for channel, key in (("email", "email_marketing_consent"), ("sms", "sms_marketing_consent")):
        reported = mapping(customer.get(key))
        state = CONSENT_STATES.get(str(reported.get("state")))
        if state:
            found[channel] = {"state": state, "source": SOURCE}
            granted_at[channel] = _time(reported.get("consent_updated_at"))
    if "email" not in found:  # older payloads: accepts_marketing, or the order's checkbox
        accepts = customer.get("accepts_marketing", buyer.get("buyer_accepts_marketing"))
        if accepts is True:
            found["email"] = {"state": "granted", "source": SOURCE}
            granted_at["email"] = _time(customer.get("accepts_marketing_updated_at") or buyer.get("created_at"))
        elif accepts is False and "accepts_marketing" in customer:
            found["email"] = {"state": "withdrawn", "source": SOURCE}
    return found, {channel: at for channel, at in granted_at.items() if found[channel]["state"] == "granted"}


def _time(value: Any) -> datetime | None:
    try:
        found = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return found if found is not None and found.tzinfo is not None else None


def _map_order(topic: str, payload: dict[str, Any]) -> ShopChanges:
    changes = _customer(mapping(payload.get("customer")), payload, text(payload.get("customer_locale")))
    profile = changes.profiles[0]
    changes.orders.append(validated(OrderIn, {
        "order_id": f"shopify:{_required(payload, 'id', 'the payload')}", "external_id": profile.external_id,
        "status": _order_status(topic, payload), "currency": payload.get("currency"),
        "total": amount(payload.get("total_price"), "total_price"), "placed_at": payload.get("created_at"),
        "line_items": [item.model_dump() for item in _line_items(payload)],
    }))
    return changes


def _required(payload: dict[str, Any], key: str, what: str) -> str:
    """The text of `payload[key]`; a WebhookPayloadError saying `what` has none when it is missing."""
    found = text(payload.get(key))
    if found is None:
        raise WebhookPayloadError(f"{what} has no {key}", field=key)
    return found


def _order_status(topic: str, payload: dict[str, Any]) -> OrderStatus:
    if payload.get("cancelled_at"):
        return OrderStatus.CANCELLED
    if payload.get("financial_status") == "refunded":
        return OrderStatus.REFUNDED
    if payload.get("fulfillment_status") == "fulfilled" or topic == "orders/fulfilled":
        return OrderStatus.FULFILLED
    if payload.get("financial_status") == "paid":
        return OrderStatus.PAID
    return TOPIC_STATUS.get(topic, OrderStatus.PLACED)


def _line_items(payload: dict[str, Any]) -> list[LineItemIn]:
    items = []
    for index, item in enumerate(listing(payload.get("line_items"))):
        item = mapping(item)
        quantity = item.get("quantity")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
            continue  # a line removed by an edit
        items.append(validated(LineItemIn, {
            "sku": text(item.get("sku")), "name": text(item.get("name")) or text(item.get("title")) or "(no name)",
            "quantity": quantity, "unit_price": amount(item.get("price"), f"line_items.{index}.price"),
        }, f"line_items.{index}"))
    return items


def _map_checkout(topic: str, payload: dict[str, Any]) -> ShopChanges:
    customer = mapping(payload.get("customer"))
    if payload.get("completed_at") or not (text(customer.get("id")) or text(payload.get("email"))):
        return ShopChanges()  # an order follows; or nobody to remind yet
    changes = _customer(customer, payload, text(payload.get("customer_locale")))
    profile = changes.profiles[0]
    cart = {
        "cart_id": text(payload.get("cart_token")) or _required(payload, "token", "the checkout"),
        "checkout_id": text(payload.get("token")),
        "line_items": line_items(_line_items(payload)),
        "total": str(amount(payload.get("total_price"), "total_price")),
        "currency": text(payload.get("presentment_currency")) or text(payload.get("currency")),
        "checkout_url": text(payload.get("abandoned_checkout_url")),
        "source": SOURCE,
    }
    name = CHECKOUT_STARTED if topic == "checkouts/create" else CART_UPDATED
    when = payload.get("updated_at") or payload.get("created_at")
    changes.events.append(cart_event(profile.external_id, name, {k: v for k, v in cart.items() if v is not None}, when))
    return changes


MAPPERS: dict[str, Callable[[str, dict[str, Any]], ShopChanges]] = {
    "customers": _map_customer, "orders": _map_order, "checkouts": _map_checkout,
}
