"""Webhooks stored a group commit at a time and mapped a batch at a time, on both databases:
copies of one delivery in one commit are stored once, concurrent deliveries share a commit
and each gets its own answer, a batch maps as its webhooks would one after another, and a bad
webhook in a batch fails alone while the others are mapped once."""

from __future__ import annotations

import asyncio
import io
import json
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, event, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.api.keys import SHOP_WEBHOOKS
from ecrm.clock import FrozenClock
from ecrm.orders.ingest import OrderIn, upsert_order
from ecrm.orders.models import Order, OrderStatus
from ecrm.profiles.models import Consent, Event, Profile
from ecrm.settings import Settings
from ecrm.shops.base import Delivery
from ecrm.shops.jobs import map_pending, map_received, map_webhooks
from ecrm.shops.models import ReceivedWebhook
from ecrm.shops.store import WebhookWrite, record_webhooks
from tests.rows import count_rows
from tests.shops.conftest import Client, mapped
from tests.shops.payloads import (
    ORDER_ID,
    shopify_checkout,
    shopify_customer,
    shopify_order,
    shopify_redact,
    shopify_request,
)

Sessions = async_sessionmaker[AsyncSession]
N = 20


def write(clock: FrozenClock, delivery_id: str, topic: str, payload: dict[str, Any]) -> WebhookWrite:
    return WebhookWrite("shopify", Delivery(delivery_id, topic, "ecrm-test.myshopify.com"), json.dumps(payload),
                        clock.now())


async def store(sessions: Sessions, writes: list[WebhookWrite]) -> list[int]:
    async with sessions.begin() as session:
        ids = await record_webhooks(session, writes)
    assert None not in ids
    return [webhook_id for webhook_id in ids if webhook_id is not None]


async def rows(sessions: Sessions) -> list[ReceivedWebhook]:
    async with sessions() as session:
        return list(await session.scalars(select(ReceivedWebhook).order_by(ReceivedWebhook.id)))


async def test_copies_of_one_delivery_in_one_commit_are_stored_and_mapped_once(shop_api: Client, sessions: Sessions,
                                                                              clock: FrozenClock) -> None:
    writer = shop_api.app[SHOP_WEBHOOKS]
    writes = [write(clock, f"d-{n % 3}", "orders/create", shopify_order(id=ORDER_ID + n % 3)) for n in range(9)]
    ids = await asyncio.gather(*(writer.submit(w) for w in writes))  # all pending before the writer runs
    await mapped(shop_api)
    assert writer.writes.flushes == 1
    assert ids[3:] == [None] * 6 and None not in ids[:3] and len(set(ids[:3])) == 3  # the first copy is kept
    stored = sorted(await rows(sessions), key=lambda r: r.delivery_id)
    assert [(r.id, r.delivery_id, r.status, r.attempts) for r in stored] == [
        (ids[n], f"d-{n}", "mapped", 1) for n in range(3)]
    assert await count_rows(sessions, Order) == 3


async def test_concurrent_deliveries_share_commits_and_each_gets_its_own_answer(shop_api: Client,
                                                                               sessions: Sessions) -> None:
    async def post(n: int) -> tuple[int, dict[str, Any]]:
        body, headers = shopify_request("orders/create", shopify_order(id=ORDER_ID + n), f"w-{n}")
        response = await shop_api.post("/webhooks/shopify", data=io.BytesIO(body), headers=headers)
        return response.status, await response.json()

    answers = await asyncio.gather(*(post(n) for n in range(N)), *(post(n) for n in range(N)))
    await mapped(shop_api)
    assert [status for status, _ in answers] == [200] * 2 * N
    fresh = [body["id"] for _, body in answers if "id" in body]
    assert len(set(fresh)) == N and sum(body.get("duplicate", False) for _, body in answers) == N
    assert shop_api.app[SHOP_WEBHOOKS].writes.flushes < 2 * N
    stored = await rows(sessions)
    assert sorted(r.id for r in stored) == sorted(fresh)
    assert {(r.status, r.attempts, r.body) for r in stored} == {("mapped", 1, None)}
    async with sessions() as session:
        orders = set(await session.scalars(select(Order.order_id)))
    assert orders == {f"shopify:{ORDER_ID + n}" for n in range(N)}


async def test_a_bad_webhook_in_a_batch_fails_alone_and_the_others_map_once(sessions: Sessions, clock: FrozenClock,
                                                                           shop_settings: Settings) -> None:
    taken = OrderIn(order_id=f"shopify:{ORDER_ID + 2}", external_id="someone-else", status=OrderStatus.PLACED,
                    currency="THB", total=Decimal("1.00"))
    async with sessions.begin() as session:  # the order of the third webhook belongs to someone else
        await upsert_order(session, taken, clock.now())
    ids = await store(sessions, [
        write(clock, "w-0", "orders/create", shopify_order()),
        write(clock, "w-1", "orders/create", shopify_order(id=ORDER_ID + 1, currency="ZZZ")),  # does not map
        write(clock, "w-2", "orders/create", shopify_order(id=ORDER_ID + 2)),  # fails while writing
        write(clock, "w-3", "checkouts/create", shopify_checkout()),
    ])
    assert await map_received(sessions, shop_settings, clock.now()) == {"mapped": 2, "failed": 2}
    stored = await rows(sessions)
    assert [(r.status, r.attempts) for r in stored] == [("mapped", 1), ("failed", 1), ("failed", 1), ("mapped", 1)]
    assert "ISO 4217" in (stored[1].error or "") and "OrderOwnerConflict" in (stored[2].error or "")
    assert stored[1].body is not None and stored[2].body is not None
    async with sessions() as session:
        orders = dict((await session.execute(select(Order.order_id, Order.total_e4))).all())
    assert orders == {f"shopify:{ORDER_ID}": 17_800_000, f"shopify:{ORDER_ID + 2}": 10_000}
    assert await count_rows(sessions, Event) == 1
    # mapped again (another job, `ecrm shop retry`): what is mapped stays mapped once
    assert await map_received(sessions, shop_settings, clock.now()) == {"mapped": 0, "failed": 0}
    assert await map_webhooks(sessions, shop_settings, ids, clock.now()) == {"mapped": 0, "failed": 2}
    assert await map_pending(sessions, shop_settings, clock.now(), clock.now()) == {"mapped": 0, "failed": 2}
    assert [r.attempts for r in await rows(sessions)] == [1, 3, 3, 1]
    assert (await count_rows(sessions, Order), await count_rows(sessions, Event)) == (2, 1)


async def test_a_batch_maps_as_its_webhooks_would_one_after_another(sessions: Sessions, clock: FrozenClock,
                                                                     shop_settings: Settings) -> None:
    """In one batch: paid before create stays paid; a withdrawal holds against a stale grant
    after it; an order before an erasure goes with it, a checkout after it stays."""
    stale_grant = shopify_order("paid", customer=shopify_customer(email_marketing_consent=None))
    await store(sessions, [
        write(clock, "w-0", "orders/paid", shopify_order("paid")),
        write(clock, "w-1", "orders/create", shopify_order()),
        write(clock, "w-2", "customers/update", shopify_customer("unsubscribed")),
        write(clock, "w-3", "orders/paid", stale_grant),  # buyer_accepts_marketing as of 09:00 UTC: stale
    ])
    assert await map_received(sessions, shop_settings, clock.now()) == {"mapped": 4, "failed": 0}
    async with sessions() as session:
        assert await session.scalar(select(Order.status)) == "paid"
        assert (await session.execute(select(Consent.state, Consent.source))).one() == ("withdrawn", "shopify")
    await store(sessions, [
        write(clock, "w-4", "orders/create", shopify_order(id=ORDER_ID + 1)),
        write(clock, "w-5", "customers/redact", shopify_redact()),
        write(clock, "w-6", "checkouts/create", shopify_checkout()),
    ])
    assert await map_received(sessions, shop_settings, clock.now()) == {"mapped": 3, "failed": 0}
    assert (await count_rows(sessions, Profile), await count_rows(sessions, Order),
            await count_rows(sessions, Event)) == (1, 0, 1)


async def test_mappers_at_once_map_each_webhook_once_in_batches(sessions: Sessions, clock: FrozenClock,
                                                                shop_settings: Settings) -> None:
    ids = await store(sessions, [write(clock, f"w-{n}", "checkouts/create", shopify_checkout(
        cart_token=f"cart-{n}", customer=shopify_customer(id=n + 1))) for n in range(N)])
    counts = await asyncio.gather(map_received(sessions, shop_settings, clock.now(), batch=3),
                                  map_received(sessions, shop_settings, clock.now(), batch=7),
                                  map_webhooks(sessions, shop_settings, ids[::-1], clock.now()))
    assert sum(c["mapped"] for c in counts) == N and sum(c["failed"] for c in counts) == 0
    assert {(r.status, r.attempts) for r in await rows(sessions)} == {("mapped", 1)}
    assert (await count_rows(sessions, Event), await count_rows(sessions, Profile)) == (N, N)


async def test_mappers_take_turns_so_webhooks_map_in_the_order_received(
        sessions: Sessions, clock: FrozenClock, shop_settings: Settings) -> None:
    """Another mapper's open transaction holds the checkout's creation: a second mapper waits for
    its turn instead of mapping the update that came after (PostgreSQL; SQLite's write lock does
    the same there)."""
    if sessions.kw["bind"].dialect.name != "postgresql":
        pytest.skip("PostgreSQL's advisory lock; SQLite's mappers take turns by its write lock")
    created, _ = await store(sessions, [write(clock, "w-1", "checkouts/create", shopify_checkout()),
                                        write(clock, "w-2", "checkouts/update", shopify_checkout(total_price="1.00"))])
    async with sessions.begin() as other:  # as a mapper in the middle of its batch
        await other.execute(text("SELECT pg_advisory_xact_lock(hashtext('ecrm:map_webhooks'))"))
        await other.execute(select(ReceivedWebhook.id).where(ReceivedWebhook.id == created).with_for_update())
        second = asyncio.create_task(map_received(sessions, shop_settings, clock.now(), batch=1))
        await asyncio.sleep(0.5)
        assert await count_rows(sessions, Event) == 0  # waiting, not mapping the update first
    assert await second == {"mapped": 2, "failed": 0}
    async with sessions() as session:
        assert list(await session.scalars(select(Event.name).order_by(Event.id))) == \
            ["checkout_started", "cart_updated"]


async def test_every_mapping_statement_on_postgresql_is_planned_with_index_scans_only(
        sessions: Sessions, clock: FrozenClock, shop_settings: Settings) -> None:
    """Mapping finds every row by a key. The worker's connections serve other jobs too, so the
    mapping transaction itself turns sequential scans off: otherwise, on a new database, plans
    cached while the tables were nearly empty went on scanning profiles whole."""
    engine = sessions.kw["bind"]
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's planner settings")
    seen: list[tuple[str, str]] = []

    def note(connection: Connection, _cursor: object, statement: str, *_args: object) -> None:
        if not statement.startswith("SHOW"):
            seen.append((statement.split()[0], connection.exec_driver_sql("SHOW enable_seqscan").scalar_one()))

    await store(sessions, [write(clock, f"w-{n}", "orders/create", shopify_order(id=ORDER_ID + n)) for n in range(3)])
    event.listen(engine.sync_engine, "after_cursor_execute", note)
    try:
        assert await map_received(sessions, shop_settings, clock.now()) == {"mapped": 3, "failed": 0}
        async with sessions() as session:  # the setting lasts as long as the mapping's transaction
            assert await session.scalar(text("SHOW enable_seqscan")) == "on"
    finally:
        event.remove(engine.sync_engine, "after_cursor_execute", note)
    statements = [first for first, _ in seen]
    assert {"SELECT", "UPDATE", "INSERT"} <= set(statements)
    assert seen == [(first, "off") for first in statements]
