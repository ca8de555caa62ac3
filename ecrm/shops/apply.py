"""Writing a webhook's `ShopChanges` through stage 1's own functions, in one transaction.

Shops do not promise to deliver webhooks in order (Shopify says so), so an order's status
never moves back: an `orders/create` arriving after `orders/paid` leaves it paid.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.orders.ingest import OrderIn, find_order, upsert_order
from ecrm.orders.models import OrderStatus
from ecrm.profiles.erase import erase_profile
from ecrm.profiles.ingest import find_profile, record_event, upsert_profile_batch
from ecrm.shops.base import ShopChanges

PROGRESS = {OrderStatus.PLACED: 0, OrderStatus.PAID: 1, OrderStatus.FULFILLED: 2}  # the rest are final


async def apply_changes(session: AsyncSession, changes: ShopChanges, now: datetime) -> None:
    if changes.profiles:
        await upsert_profile_batch(session, changes.profiles, now)
    for order in changes.orders:
        await upsert_order(session, await _not_backwards(session, order), now)
    for event in changes.events:
        await record_event(session, event, now)
    for external_id in changes.erase:
        profile = await find_profile(session, external_id)
        if profile is not None:
            await erase_profile(session, profile.id)


async def _not_backwards(session: AsyncSession, order: OrderIn) -> OrderIn:
    found = await find_order(session, order.order_id)
    if found is None:
        return order
    stored = OrderStatus(found[0].status)
    if stored not in PROGRESS or PROGRESS.get(order.status, 99) < PROGRESS[stored]:
        return order.model_copy(update={"status": stored})
    return order
