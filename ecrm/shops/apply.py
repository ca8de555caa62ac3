"""Writing a webhook's `ShopChanges` through stage 1's own functions, in one transaction.

Shops do not promise to deliver webhooks in order (Shopify says so), so an order's status
never moves back: an `orders/create` arriving after `orders/paid` leaves it paid.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.orders.ingest import OrderIn, find_order, upsert_order
from ecrm.orders.models import OrderStatus
from ecrm.profiles.erase import erase_profile
from ecrm.profiles.ingest import ProfileIn, find_profile, record_event, upsert_profile_batch
from ecrm.profiles.models import Consent, Profile
from ecrm.shops.base import ShopChanges
from ecrm.types import ConsentState

PROGRESS = {OrderStatus.PLACED: 0, OrderStatus.PAID: 1, OrderStatus.FULFILLED: 2}  # the rest are final


async def apply_changes(session: AsyncSession, changes: ShopChanges, now: datetime) -> None:
    if changes.profiles:
        await upsert_profile_batch(session, await _without_stale_grants(session, changes), now)
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


async def _without_stale_grants(session: AsyncSession, changes: ShopChanges) -> list[ProfileIn]:
    """The profiles with each grant left out that would undo a later withdrawal (see ShopChanges)."""
    if not changes.granted_at:
        return changes.profiles
    stmt = (select(Profile.external_id, Consent.channel, Consent.updated_at)
            .join(Consent, Consent.profile_id == Profile.id)
            .where(Profile.external_id.in_({ext for ext, _ in changes.granted_at}),
                   Consent.state == ConsentState.WITHDRAWN.value))
    withdrawn = {(ext, channel): at for ext, channel, at in await session.execute(stmt)}
    kept = []
    for profile in changes.profiles:
        grants = {channel: (profile.external_id, channel.value) for channel in profile.consent
                  if (profile.external_id, channel.value) in changes.granted_at}
        stale = {channel for channel, key in grants.items() if _undoes(withdrawn.get(key), changes.granted_at[key])}
        kept.append(profile.model_copy(update={"consent": {ch: c for ch, c in profile.consent.items()
                                                           if ch not in stale}}) if stale else profile)
    return kept


def _undoes(withdrawn_at: datetime | None, granted_at: datetime | None) -> bool:
    return withdrawn_at is not None and (granted_at is None or granted_at <= withdrawn_at)
