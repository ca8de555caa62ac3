"""WooCommerce webhooks: orders and customers, signed with the webhook's secret.

WooCommerce signs the raw body with HMAC-SHA256 under the secret set on the webhook and sends
it base64 in `X-WC-Webhook-Signature`. Saving a webhook in WooCommerce first posts an unsigned
ping, the form body `webhook_id=N` with no topic: it is answered 200 and nothing is stored.
WooCommerce reports no marketing consent, so consent is left as it is. Customers become
`woocommerce:<customer id>` profiles, guests (customer_id 0) `woocommerce:email:<email>`;
orders are `woocommerce:<order id>`. An order still in `checkout-draft` (the block checkout's
cart) is a `checkout_started` event, not an order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from ecrm.errors import WebhookPayloadError
from ecrm.orders import money
from ecrm.orders.ingest import LineItemIn, OrderIn
from ecrm.orders.models import OrderStatus
from ecrm.profiles.ingest import ProfileIn
from ecrm.settings import Settings
from ecrm.shops.base import CHECKOUT_STARTED, Delivery, ShopChanges, check_base64_hmac, required_header
from ecrm.shops.mapping import amount, cart_event, line_items, listing, mapping, profile_input, text, validated

SOURCE = "woocommerce"
PING = re.compile(rb"webhook_id=\d{1,20}")
STATUSES = {"pending": OrderStatus.PLACED, "on-hold": OrderStatus.PLACED, "processing": OrderStatus.PAID,
            "completed": OrderStatus.FULFILLED, "cancelled": OrderStatus.CANCELLED,
            "failed": OrderStatus.CANCELLED, "trash": OrderStatus.CANCELLED, "refunded": OrderStatus.REFUNDED}
DRAFT = "checkout-draft"


class WooCommerceConnector:
    provider: ClassVar[str] = "woocommerce"
    topics: ClassVar[tuple[str, ...]] = ("order.created", "order.updated", "customer.created", "customer.updated")
    secret_setting: ClassVar[str] = "ECRM_SHOPS__WOOCOMMERCE_SECRET"

    def __init__(self, secret: str | None) -> None:
        self.secret = secret

    @classmethod
    def from_settings(cls, settings: Settings) -> WooCommerceConnector:
        secret = settings.shops.woocommerce_secret
        return cls(secret.get_secret_value() if secret else None)

    def is_ping(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return "X-WC-Webhook-Topic" not in headers and PING.fullmatch(body.strip()) is not None

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        check_base64_hmac(self.secret, body, headers.get("X-WC-Webhook-Signature"), "X-WC-Webhook-Signature",
                          self.secret_setting)

    def delivery(self, headers: Mapping[str, str]) -> Delivery:
        return Delivery(required_header(headers, "X-WC-Webhook-Delivery-ID", 200),
                        required_header(headers, "X-WC-Webhook-Topic", 100),
                        headers.get("X-WC-Webhook-Source", "").strip()[:300])

    def map(self, topic: str, payload: dict[str, Any]) -> ShopChanges:
        resource = topic.split(".")[0]
        if resource == "customer":
            return ShopChanges(profiles=[_customer_profile(payload)])
        if resource == "order":
            return _map_order(payload)
        return ShopChanges()


def _customer_profile(customer: dict[str, Any]) -> ProfileIn:
    customer_id = text(customer.get("id"))
    if not customer_id:
        raise WebhookPayloadError("the customer has no id", field="id")
    billing = mapping(customer.get("billing"))
    return profile_input({
        "external_id": f"woocommerce:{customer_id}", "email": text(customer.get("email")) or text(billing.get("email")),
        "phone": text(billing.get("phone")),
        "first_name": text(customer.get("first_name")) or text(billing.get("first_name")),
        "last_name": text(customer.get("last_name")) or text(billing.get("last_name")),
    })


def _order_profile(order: dict[str, Any]) -> ProfileIn | None:
    """A guest's profile from the billing details; None for a registered customer, whose own
    webhooks (customer.*) carry their details."""
    customer_id = text(order.get("customer_id"))
    if customer_id and customer_id != "0":
        return None
    billing = mapping(order.get("billing"))
    email = text(billing.get("email"))
    if not email:
        raise WebhookPayloadError("the guest order has no billing email", field="billing.email")
    return profile_input({"external_id": f"woocommerce:email:{email.lower()}", "email": email,
                          "phone": text(billing.get("phone")), "first_name": text(billing.get("first_name")),
                          "last_name": text(billing.get("last_name"))})


def _map_order(order: dict[str, Any]) -> ShopChanges:
    order_id = text(order.get("id"))
    if not order_id:
        raise WebhookPayloadError("the order has no id", field="id")
    guest = _order_profile(order)
    external_id = guest.external_id if guest else f"woocommerce:{text(order.get('customer_id'))}"
    profiles = [guest] if guest else []
    currency = text(order.get("currency")) or ""
    items = _line_items(order, currency)
    placed_at = _gmt(order.get("date_created_gmt"))
    if order.get("status") == DRAFT:
        cart = {"cart_id": f"woocommerce:{order_id}", "line_items": line_items(items),
                "total": str(amount(order.get("total"), "total")), "currency": currency, "source": SOURCE}
        return ShopChanges(profiles=profiles, events=[cart_event(external_id, CHECKOUT_STARTED, cart, placed_at)])
    status = STATUSES.get(str(order.get("status")), OrderStatus.PLACED)
    return ShopChanges(profiles=profiles, orders=[validated(OrderIn, {
        "order_id": f"woocommerce:{order_id}", "external_id": external_id, "status": status, "currency": currency,
        "total": amount(order.get("total"), "total"), "placed_at": placed_at,
        "line_items": [item.model_dump() for item in items]})])


def _gmt(value: Any) -> str | None:
    """WooCommerce's `date_created_gmt` ("2026-01-01T09:00:00") is UTC without saying so."""
    found = text(value)
    return f"{found}+00:00" if found and not found.endswith(("Z", "+00:00")) else found


def _line_items(order: dict[str, Any], currency: str) -> list[LineItemIn]:
    items = []
    for index, item in enumerate(listing(order.get("line_items"))):
        item = mapping(item)
        quantity = item.get("quantity")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
            continue
        items.append(validated(LineItemIn, {
            "sku": text(item.get("sku")), "name": text(item.get("name")) or "(no name)", "quantity": quantity,
            "unit_price": _unit_price(item, quantity, currency, index)}, f"line_items.{index}"))
    return items


def _unit_price(item: dict[str, Any], quantity: int, currency: str, index: int) -> Decimal:
    """`price` is subtotal / quantity as a float (8.333333 for 25.00 over 3): when it has more
    decimals than the currency, the subtotal divided by the quantity is rounded to them."""
    price = amount(item.get("price"), f"line_items.{index}.price")
    places = money.decimals(currency) if money.is_currency(currency.upper()) else 2
    if money.places(price) <= places:
        return price
    subtotal = amount(item.get("subtotal"), f"line_items.{index}.subtotal")
    return (subtotal / quantity).quantize(Decimal(1).scaleb(-places))
