"""Order ingest: validate an order from a shop, then upsert it by the shop's order id.

The first post of an `order_id` creates the order (and a bare profile for an `external_id` not
seen before, as events do); a later post updates the fields it names among `status`, `total`,
`currency` and `line_items` (fields it leaves out keep their stored value). `placed_at` stays as
first recorded: a later, different one is ignored. An order belongs to one profile for good: a
post naming another profile is refused (`OrderOwnerConflict`, 409 over HTTP) and changes nothing.
`updated_at` moves only when something really changed, so a repeated post is a no-op.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.db import dialect_insert
from ecrm.errors import EcrmError
from ecrm.orders import money
from ecrm.orders.models import Order, OrderStatus
from ecrm.profiles.ingest import EventTime, Text, ensure_profile, no_nul
from ecrm.profiles.models import Profile

MAX_LINE_ITEMS = 1000
MAX_QUANTITY = 1_000_000


def _amount(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise PydanticCustomError("amount", "must be a number such as \"19.99\"")
    if value < 0:
        raise PydanticCustomError("amount", "must not be negative")
    if value >= money.MAX_AMOUNT:
        raise PydanticCustomError("amount", "must be less than 100,000,000,000,000")
    if money.places(value) > 4:
        raise PydanticCustomError("amount", "must have at most 4 decimals")
    return value


def _currency(value: str) -> str:
    code = value.upper()
    if not money.is_currency(code):
        raise PydanticCustomError("currency", "not an ISO 4217 currency code such as THB, EUR or IRR")
    return code


Amount = Annotated[Decimal, AfterValidator(_amount)]
Currency = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=3),
                     AfterValidator(_currency)]
OrderId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
                    AfterValidator(no_nul)]
Sku = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(no_nul)]
ItemName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
                     AfterValidator(no_nul)]


class LineItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Sku | None = None
    name: ItemName
    quantity: int = Field(gt=0, le=MAX_QUANTITY, strict=True)
    unit_price: Amount


class PricedIn(BaseModel):
    """What an order and a cart share: a total and line items in one currency, whose amounts
    may have no more decimals than the currency has. A model declares `currency`, `total` and
    `line_items`, the currency first (the checks read it)."""

    model_config = ConfigDict(extra="forbid")

    if TYPE_CHECKING:  # declared by each model, in its own order
        currency: str
        line_items: list[LineItemIn]

    @field_validator("total", check_fields=False)
    @classmethod
    def _total_within_currency_decimals(cls, total: Decimal, info: ValidationInfo) -> Decimal:
        return _check_total_decimals(total, info)

    @field_validator("line_items", check_fields=False)
    @classmethod
    def _prices_within_currency_decimals(cls, items: list[LineItemIn], info: ValidationInfo) -> list[LineItemIn]:
        return _check_price_decimals(cls.__name__, items, info)

    def stored_line_items(self) -> list[dict[str, Any]]:
        """The line items as stored, unit prices as decimal strings with the currency's decimals."""
        return [{"sku": item.sku, "name": item.name, "quantity": item.quantity,
                 "unit_price": money.format_amount(item.unit_price, self.currency)} for item in self.line_items]


class OrderIn(PricedIn):
    """An order as a shop sends it; `placed_at` defaults to when it is first received."""

    order_id: OrderId
    external_id: Text
    status: OrderStatus
    currency: Currency  # before the amounts, whose decimals it checks
    total: Amount
    placed_at: EventTime | None = None
    line_items: list[LineItemIn] = Field(default_factory=list, max_length=MAX_LINE_ITEMS)

    def changes(self) -> dict[str, Any]:
        """The order columns this input sets, as stored (placed_at and the profile aside)."""
        stored = {"status": self.status.value, "total_e4": money.to_stored(self.total), "currency": self.currency,
                  "line_items": self.stored_line_items()}
        named = {"status": "status", "total": "total_e4", "currency": "currency", "line_items": "line_items"}
        return {column: stored[column] for field, column in named.items() if field in self.model_fields_set}


def _check_total_decimals(total: Decimal, info: ValidationInfo) -> Decimal:
    """A total with no more decimals than the model's (already validated) currency has."""
    currency = info.data.get("currency")
    if currency is not None and money.places(total) > money.decimals(currency):
        raise PydanticCustomError("currency_decimals", _decimals_message(currency))
    return total


def _check_price_decimals(model: str, items: list[LineItemIn], info: ValidationInfo) -> list[LineItemIn]:
    """Line items whose unit prices have no more decimals than the model's currency has."""
    currency = info.data.get("currency")
    if currency is None:
        return items
    errors: list[InitErrorDetails] = [
        {"type": PydanticCustomError("currency_decimals", _decimals_message(currency)), "loc": (i, "unit_price"),
         "input": str(item.unit_price)}
        for i, item in enumerate(items) if money.places(item.unit_price) > money.decimals(currency)]
    if errors:  # pydantic puts the field's name in front of each location
        raise ValidationError.from_exception_data(model, errors)
    return items


def _decimals_message(currency: str) -> str:
    digits = money.decimals(currency)
    return f"{currency} amounts have at most {digits} decimals" if digits else f"{currency} amounts have no decimals"


class OrderOwnerConflict(EcrmError):
    """The order exists under another profile; an order never changes hands."""

    def __init__(self, order_id: str, external_id: str) -> None:
        self.order_id, self.external_id = order_id, external_id
        super().__init__(f"order {order_id!r} belongs to another profile than {external_id!r}; "
                         "an order's external_id cannot change")


async def find_order(session: AsyncSession, order_id: str) -> tuple[Order, str] | None:
    """The order and its profile's external_id."""
    stmt = (select(Order, Profile.external_id).join(Profile, Profile.id == Order.profile_id)
            .where(Order.order_id == order_id))
    row = (await session.execute(stmt)).first()
    return None if row is None else (row[0], row[1])


async def upsert_order(session: AsyncSession, data: OrderIn, now: datetime) -> tuple[Order, bool]:
    """Create or update the order `data.order_id` at `now`; True when it was created."""
    await _lock_on_sqlite(session, data.order_id)
    profile_id, _ = await ensure_profile(session, data.external_id, now)
    order = await _locked(session, data.order_id)
    if order is None:
        order_pk = await _insert(session, data, profile_id, now)
        if order_pk is not None:
            return await session.get_one(Order, order_pk), True
        order = await _locked(session, data.order_id)  # another transaction created it meanwhile
        assert order is not None
    if order.profile_id != profile_id:
        raise OrderOwnerConflict(data.order_id, data.external_id)
    for column, value in data.changes().items():
        setattr(order, column, value)
    if session.is_modified(order):
        order.updated_at = now
    await session.flush()
    return order, False


async def _insert(session: AsyncSession, data: OrderIn, profile_id: int, now: datetime) -> int | None:
    values = {"order_id": data.order_id, "profile_id": profile_id, "placed_at": data.placed_at or now,
              "line_items": [], **data.changes(), "created_at": now, "updated_at": now}
    stmt = dialect_insert(session, Order).values(values).on_conflict_do_nothing(index_elements=["order_id"])
    return await session.scalar(stmt.returning(Order.id))


async def _locked(session: AsyncSession, order_id: str) -> Order | None:
    stmt = select(Order).where(Order.order_id == order_id).with_for_update().execution_options(populate_existing=True)
    return await session.scalar(stmt)


async def _lock_on_sqlite(session: AsyncSession, order_id: str) -> None:
    # SQLite ignores FOR UPDATE and starts the transaction at the first write: a no-op write
    # first takes the write lock, so two posts of one order cannot both read the old row.
    if session.get_bind().dialect.name == "sqlite":
        touch = update(Order).where(Order.order_id == order_id).values(order_id=Order.order_id)
        await session.execute(touch, execution_options={"synchronize_session": False})
