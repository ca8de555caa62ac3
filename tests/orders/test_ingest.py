"""The order input model and `upsert_order`, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.clock import FrozenClock
from ecrm.orders import money
from ecrm.orders.ingest import OrderIn, OrderOwnerConflict, find_order, upsert_order
from ecrm.orders.models import Order
from ecrm.profiles.erase import erase_profile
from ecrm.profiles.ingest import find_profile, input_errors
from ecrm.profiles.models import Profile
from tests.conftest import T0
from tests.rows import count_rows

ORDER: dict[str, Any] = {
    "order_id": "1001", "external_id": "c-1", "status": "placed", "total": "19.99", "currency": "THB",
    "placed_at": "2025-12-31T20:00:00+07:00",
    "line_items": [{"sku": "TEA-1", "name": "ชาไทย", "quantity": 2, "unit_price": "9.99"},
                   {"name": "Gift wrap", "quantity": 1, "unit_price": "1.99"}],
}


def _fields(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        OrderIn.model_validate(data)
    return [err.field for err in input_errors(info.value)]


def test_order_in_keeps_amounts_exact_and_uppercases_the_currency() -> None:
    data = OrderIn.model_validate({**ORDER, "currency": "thb", "total": Decimal("12345678901234.56")})
    assert (data.currency, data.total) == ("THB", Decimal("12345678901234.56"))
    assert data.changes()["total_e4"] == 123456789012345600
    assert data.changes()["line_items"][0] == {"sku": "TEA-1", "name": "ชาไทย", "quantity": 2, "unit_price": "9.99"}


@pytest.mark.parametrize(("change", "fields"), [
    ({"currency": "ABC"}, ["currency"]),
    ({"currency": "BAHT"}, ["currency"]),
    ({"currency": "XXX"}, ["currency"]),
    ({"total": "-0.01"}, ["total"]),
    ({"total": "NaN"}, ["total"]),
    ({"total": "1e14"}, ["total"]),
    ({"total": "19.999"}, ["total"]),  # THB has 2 decimals
    ({"total": "19.5", "currency": "JPY"}, ["total", "line_items.0.unit_price", "line_items.1.unit_price"]),
    ({"status": "shipped"}, ["status"]),
    ({"order_id": " "}, ["order_id"]),
    ({"order_id": "x" * 201}, ["order_id"]),
    ({"order_id": "a\x00b"}, ["order_id"]),
    ({"placed_at": "2025-12-31T20:00:00"}, ["placed_at"]),
    ({"placed_at": "1969-12-31T23:59:59Z"}, ["placed_at"]),
    ({"placed_at": "9999-12-31T23:59:59-12:00"}, ["placed_at"]),
    ({"coupon": "X"}, ["coupon"]),
    ({"line_items": [{"name": "Tea", "quantity": 0, "unit_price": "1"}]}, ["line_items.0.quantity"]),
    ({"line_items": [{"name": "Tea", "quantity": 1.5, "unit_price": "1"}]}, ["line_items.0.quantity"]),
    ({"line_items": [{"name": "Tea", "quantity": "2", "unit_price": "1"}]}, ["line_items.0.quantity"]),
    ({"line_items": [{"name": "Tea", "quantity": 1, "unit_price": "-1"}]}, ["line_items.0.unit_price"]),
    ({"line_items": [{"name": "Tea", "quantity": 1, "unit_price": "1.001"}]}, ["line_items.0.unit_price"]),
    ({"line_items": [{"name": "", "quantity": 1, "unit_price": "1", "sku": "x" * 201}]},
     ["line_items.0.sku", "line_items.0.name"]),
    ({"line_items": [{"name": "Tea", "quantity": 1, "unit_price": "1", "colour": "red"}]}, ["line_items.0.colour"]),
    ({"line_items": [{"name": "Tea", "quantity": 1, "unit_price": "1"}] * 1001}, ["line_items"]),
])
def test_order_in_refuses_bad_fields_naming_each(change: dict[str, Any], fields: list[str]) -> None:
    assert _fields({**ORDER, **change}) == fields


def test_order_in_requires_the_order_the_profile_status_total_and_currency() -> None:
    assert sorted(_fields({})) == ["currency", "external_id", "order_id", "status", "total"]


@pytest.mark.parametrize(("amount", "currency", "shown"), [
    ("20", "THB", "20.00"), ("19.990", "THB", "19.99"), ("500", "JPY", "500"), ("1.5", "KWD", "1.500"),
    ("5000000", "IRR", "5000000"), ("0", "EUR", "0.00"), ("2E+1", "EUR", "20.00"),
])
def test_amounts_show_with_their_currency_decimals(amount: str, currency: str, shown: str) -> None:
    stored = money.to_stored(Decimal(amount))
    assert money.format_amount(money.from_stored(stored), currency) == shown


async def test_an_order_for_an_unknown_profile_creates_it_bare_and_stores_the_order(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        _, created = await upsert_order(session, OrderIn.model_validate(ORDER), T0)
    assert created
    async with sessions() as session:
        found = await find_order(session, "1001")
        profile = await find_profile(session, "c-1")
    assert found is not None and profile is not None
    stored, external_id = found
    assert (external_id, stored.profile_id, profile.email) == ("c-1", profile.id, None)
    assert (stored.status, stored.total_e4, stored.currency) == ("placed", 199900, "THB")
    assert stored.placed_at == datetime(2025, 12, 31, 13, 0, tzinfo=UTC)
    assert stored.line_items[1] == {"sku": None, "name": "Gift wrap", "quantity": 1, "unit_price": "1.99"}
    assert stored.created_at == stored.updated_at == T0


async def test_an_order_without_placed_at_was_placed_when_first_received(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        order, _ = await upsert_order(session, OrderIn.model_validate({**ORDER, "placed_at": None}), T0)
    assert order.placed_at == T0


async def test_a_later_post_updates_what_it_names_and_keeps_placed_at(
        sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    async with sessions.begin() as session:
        await upsert_order(session, OrderIn.model_validate(ORDER), clock.now())
    clock.advance(timedelta(hours=1))
    later = {key: value for key, value in ORDER.items() if key != "line_items"}
    later |= {"status": "refunded", "total": "0", "placed_at": "2026-01-01T00:00:00Z"}
    async with sessions.begin() as session:
        order, created = await upsert_order(session, OrderIn.model_validate(later), clock.now())
    assert not created
    async with sessions() as session:
        stored = await session.get_one(Order, order.id)
    assert (stored.status, stored.total_e4, len(stored.line_items)) == ("refunded", 0, 2)
    assert stored.placed_at == datetime(2025, 12, 31, 13, 0, tzinfo=UTC)
    assert (stored.created_at, stored.updated_at) == (T0, T0 + timedelta(hours=1))


async def test_posting_the_same_order_twice_changes_nothing(
        sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> None:
    for _ in range(2):
        async with sessions.begin() as session:
            order, _ = await upsert_order(session, OrderIn.model_validate(ORDER), clock.now())
        clock.advance(timedelta(minutes=5))
    assert order.updated_at == T0
    assert await count_rows(sessions, Order) == 1


async def test_an_order_posted_under_another_profile_is_refused_and_unchanged(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        await upsert_order(session, OrderIn.model_validate(ORDER), T0)
    with pytest.raises(OrderOwnerConflict, match="'1001'"):
        async with sessions.begin() as session:
            await upsert_order(session, OrderIn.model_validate({**ORDER, "external_id": "c-2", "status": "paid"}), T0)
    async with sessions() as session:
        found = await find_order(session, "1001")
    assert found is not None and (found[0].status, found[1]) == ("placed", "c-1")
    assert await count_rows(sessions, Profile) == 1  # c-2 was rolled back with the refusal


async def test_concurrent_first_posts_of_one_order_store_it_once(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async def post(status: str) -> bool:
        async with sessions.begin() as session:
            return (await upsert_order(session, OrderIn.model_validate({**ORDER, "status": status}), T0))[1]

    created = await asyncio.gather(*(post(status) for status in ("placed", "paid", "fulfilled", "cancelled")))
    assert sorted(created) == [False, False, False, True]
    assert await count_rows(sessions, Order) == 1


async def test_amounts_stay_exact_in_the_database(sessions: async_sessionmaker[AsyncSession]) -> None:
    totals = ["19.99", "0.1", "0.2", "99999999999999.99"]
    async with sessions.begin() as session:
        for i, total in enumerate(totals):
            await upsert_order(session, OrderIn.model_validate({**ORDER, "order_id": f"o-{i}", "total": total}), T0)
    async with sessions() as session:
        stored = list(await session.scalars(select(Order.total_e4).order_by(Order.order_id)))
        summed = await session.scalar(text("SELECT SUM(total_e4) FROM orders WHERE order_id IN ('o-1', 'o-2')"))
    assert [money.from_stored(units) for units in stored] == [Decimal(total) for total in totals]
    assert money.from_stored(summed) == Decimal("0.3")


async def test_erasing_a_profile_erases_its_orders(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        mine, _ = await upsert_order(session, OrderIn.model_validate(ORDER), T0)
        await upsert_order(session, OrderIn.model_validate({**ORDER, "order_id": "1002", "external_id": "c-2"}), T0)
    async with sessions.begin() as session:
        await erase_profile(session, mine.profile_id)
    async with sessions() as session:
        assert list(await session.scalars(select(Order.order_id))) == ["1002"]
