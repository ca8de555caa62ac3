"""Order upserts in bulk, for `POST /v1/orders:batch`: many validated orders in a few
statements, by the shop's order id, with the rules of `ingest.upsert_order`.

A new order is inserted; a known one gets the fields its item names, and only when something
changed (so a retried batch changes nothing, `updated_at` included); an item naming another
profile than its order's is refused (`OWNER_CONFLICT`) and changes nothing. Items naming one
order apply in order, as separate posts would.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.db import dialect_insert
from ecrm.orders.ingest import OrderIn
from ecrm.orders.models import Order
from ecrm.profiles import arrays
from ecrm.profiles.ingest import ensure_profiles, profile_ids

OWNER_CONFLICT = "this order belongs to another profile; an order's external_id cannot change"
_COLUMNS = ("status", "total_e4", "currency", "line_items")


@dataclass
class OrderResults:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    conflicts: list[int] = field(default_factory=list)  # indexes of the items naming another profile


@dataclass
class _Stored:
    id: int | None  # None: not inserted yet
    profile_id: int
    columns: dict[str, Any]
    placed_at: datetime
    original: dict[str, Any] = field(default_factory=dict)  # the columns as read


async def upsert_orders(session: AsyncSession, orders: Sequence[OrderIn], now: datetime) -> OrderResults:
    """Create or update `orders` at `now`; conflicting items are counted by index, not written."""
    results = OrderResults()
    if not orders:
        return results
    await _lock_on_sqlite(session, [order.order_id for order in orders])
    stored = await _locked(session, [order.order_id for order in orders])
    known = set(stored)
    owners = await profile_ids(session, {order.external_id for order in orders})
    # no bare profile for an item refused as naming another profile than its stored order's
    wanted = {order.external_id for order in orders
              if order.order_id not in stored or stored[order.order_id].profile_id == owners.get(order.external_id)}
    profiles = owners | await ensure_profiles(session, dict.fromkeys(sorted(wanted - set(owners)), now))
    for index, order in enumerate(orders):
        row = stored.get(order.order_id)
        if row is None:  # its profile is in `profiles`: the order was not stored, so the item was wanted
            stored[order.order_id] = _Stored(None, profiles[order.external_id], order.changes(),
                                             order.placed_at or now)
        elif row.profile_id != profiles.get(order.external_id):
            results.conflicts.append(index)
        else:
            row.columns.update(order.changes())
    new = {oid: row for oid, row in stored.items() if oid not in known}
    await _insert(session, new, now)
    changed = [{"id": row.id, **row.columns, "updated_at": now}
               for oid, row in stored.items() if oid in known and row.columns != row.original]
    if changed:
        await session.execute(update(Order), changed)
    results.created, results.updated = len(new), len(changed)
    results.unchanged = len(known) - len(changed)
    return results


async def _locked(session: AsyncSession, order_ids: list[str]) -> dict[str, _Stored]:
    stmt = (select(Order.order_id, Order.id, Order.profile_id, Order.placed_at,
                   *(getattr(Order, column) for column in _COLUMNS))
            .where(among_order_ids(session, order_ids)).with_for_update())
    return {row[0]: _Stored(row[1], row[2], dict(zip(_COLUMNS, row[4:], strict=True)), row[3],
                            dict(zip(_COLUMNS, row[4:], strict=True)))
            for row in await session.execute(stmt)}


def among_order_ids(session: AsyncSession, order_ids: Collection[str]) -> ColumnElement[bool]:
    """`order_id IN order_ids`: one array parameter on PostgreSQL (a statement prepared once)."""
    if arrays.is_postgresql(session):
        return arrays.text_among(Order.order_id, list(order_ids))
    return Order.order_id.in_(order_ids)


async def _insert(session: AsyncSession, new: dict[str, _Stored], now: datetime) -> None:
    """Insert the new orders; one another transaction inserted meanwhile is a conflict error
    (IntegrityError, answered 409: retry the batch), as the ids it holds may differ."""
    if not new:
        return
    values = [{"order_id": oid, "profile_id": row.profile_id, "placed_at": row.placed_at, "line_items": [],
               **row.columns, "created_at": now, "updated_at": now} for oid, row in new.items()]
    await session.execute(dialect_insert(session, Order), values)


async def _lock_on_sqlite(session: AsyncSession, order_ids: list[str]) -> None:
    # As `ingest._lock_on_sqlite`: a no-op write takes SQLite's write lock before the read.
    if session.get_bind().dialect.name == "sqlite":
        touch = update(Order).where(Order.order_id.in_(order_ids)).values(order_id=Order.order_id)
        await session.execute(touch, execution_options={"synchronize_session": False})
