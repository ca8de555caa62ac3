"""Carts: the properties of `cart_updated` and `checkout_started` events, validated so that
segments and journeys can rely on their shape.

    {"cart_id": "c-77", "currency": "THB", "total": "59.97",
     "line_items": [{"sku": "TEA-1", "name": "Thai tea", "quantity": 3, "unit_price": "19.99"}],
     "checkout_url": "https://shop.example/cart/c-77", "checkout_id": "9812", "source": "shopify"}

Amounts follow the order's rules (exact decimals, the currency's decimals at most) and are
stored as decimal strings; a JSON number is read by its shortest text (`19.99`, not the
float's binary expansion), so posting numbers works too.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AnyHttpUrl, BeforeValidator, Field

from ecrm.orders import money
from ecrm.orders.ingest import (
    MAX_LINE_ITEMS,
    Amount,
    Currency,
    LineItemIn,
    OrderId,
    PricedIn,
)

CART_EVENTS = frozenset({"cart_updated", "checkout_started"})


def _number_as_text(value: Any) -> Any:
    return repr(value) if isinstance(value, float) else value


def _items_as_text(items: Any) -> Any:
    if not isinstance(items, list):
        return items
    return [{**item, "unit_price": _number_as_text(item.get("unit_price"))} if isinstance(item, dict) else item
            for item in items]


CartAmount = Annotated[Amount, BeforeValidator(_number_as_text)]


class CartIn(PricedIn):
    """A cart as a `cart_updated` / `checkout_started` event's properties."""

    cart_id: OrderId
    currency: Currency  # before the amounts, whose decimals it checks
    total: CartAmount
    line_items: Annotated[list[LineItemIn], BeforeValidator(_items_as_text)] = Field(
        default_factory=list, max_length=MAX_LINE_ITEMS)
    checkout_url: AnyHttpUrl | None = Field(default=None)  # where the customer picks the cart up again
    checkout_id: OrderId | None = None  # the shop's checkout, when it has one beside the cart
    source: Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")] | None = None  # which shop connector sent it

    def stored(self) -> dict[str, Any]:
        """The properties as stored: amounts as decimal strings with the currency's decimals."""
        return {"cart_id": self.cart_id, "currency": self.currency,
                "total": money.format_amount(self.total, self.currency),
                "line_items": self.stored_line_items(),
                **({"checkout_url": str(self.checkout_url)} if self.checkout_url else {}),
                **{key: value for key, value in (("checkout_id", self.checkout_id), ("source", self.source)) if value}}


def cart_properties(properties: dict[str, Any]) -> dict[str, Any]:
    """A cart event's properties validated and normalised (a ValidationError names the field)."""
    return CartIn.model_validate(properties).stored()
