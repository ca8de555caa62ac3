"""Writing webhooks' `ShopChanges` through stage 1's own functions, in one transaction.

Shops do not promise to deliver webhooks in order (Shopify says so), so an order's status
never moves back: an `orders/create` arriving after `orders/paid` leaves it paid.

`apply_changes` writes one webhook's changes; `apply_in_order` writes many webhooks' with the
outcome of `apply_changes` called for each in turn, but in a few statements per run of them:
profiles of the run upserted together (in order), then orders, then events. An erasure is
applied at its place, between runs, so nothing of an earlier webhook outlives it and nothing
of a later one is erased. An order that belongs to another profile raises `OrderOwnerConflict`
for the whole call, as `upsert_order` raises it for its webhook.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.orders.bulk import among_order_ids, upsert_orders
from ecrm.orders.ingest import OrderIn, OrderOwnerConflict, find_order, upsert_order
from ecrm.orders.models import Order, OrderStatus
from ecrm.profiles.erase import erase_profile
from ecrm.profiles.ingest import (
    ProfileIn,
    among_external_ids,
    find_profile,
    record_event,
    record_events,
    upsert_profile_batch,
)
from ecrm.profiles.models import Consent, Profile
from ecrm.shops.base import ShopChanges
from ecrm.types import ConsentState

PROGRESS = {OrderStatus.PLACED: 0, OrderStatus.PAID: 1, OrderStatus.FULFILLED: 2}  # the rest are final
Withdrawals = dict[tuple[str, str], datetime]  # (external id, channel) -> when it was withdrawn


async def apply_changes(session: AsyncSession, changes: ShopChanges, now: datetime) -> None:
    if changes.profiles:
        withdrawn = await _withdrawals(session, {ext for ext, _ in changes.granted_at})
        await upsert_profile_batch(session, _without_stale_grants(changes, withdrawn), now)
    for order in changes.orders:
        await upsert_order(session, await _not_backwards(session, order), now)
    for event in changes.events:
        await record_event(session, event, now)
    for external_id in changes.erase:
        profile = await find_profile(session, external_id)
        if profile is not None:
            await erase_profile(session, profile.id)


async def apply_in_order(session: AsyncSession, batch: Sequence[ShopChanges], now: datetime) -> None:
    """Apply each of `batch` as `apply_changes` would, one after another (see the module)."""
    run: list[ShopChanges] = []
    for changes in batch:
        if changes.erase:
            await _apply_run(session, run, now)
            await apply_changes(session, changes, now)
            run = []
        else:
            run.append(changes)
    await _apply_run(session, run, now)


async def _apply_run(session: AsyncSession, run: Sequence[ShopChanges], now: datetime) -> None:
    profiles = await _profiles_in_order(session, run, now)
    if profiles:
        await upsert_profile_batch(session, profiles, now)
    orders = await _forward_only(session, [order for changes in run for order in changes.orders])
    if orders:
        conflicts = (await upsert_orders(session, orders, now)).conflicts
        if conflicts:
            raise OrderOwnerConflict(orders[conflicts[0]].order_id, orders[conflicts[0]].external_id)
    events = [(event, now) for changes in run for event in changes.events]
    if events:
        await record_events(session, events)


async def _profiles_in_order(session: AsyncSession, run: Sequence[ShopChanges], now: datetime) -> list[ProfileIn]:
    """The run's profiles, each without the grants that would undo a withdrawal stored before
    the run or made by an earlier webhook of it (at `now`, as `set_consents` would record it)."""
    withdrawn = await _withdrawals(session, {ext for changes in run for ext, _ in changes.granted_at})
    kept: list[ProfileIn] = []
    for changes in run:
        for profile in _without_stale_grants(changes, withdrawn):
            kept.append(profile)
            for channel, consent in profile.consent.items():
                key = (profile.external_id, channel.value)
                if consent.state is ConsentState.WITHDRAWN:
                    withdrawn.setdefault(key, now)  # a withdrawal of a withdrawn consent keeps its time
                else:
                    withdrawn.pop(key, None)
    return kept


async def _not_backwards(session: AsyncSession, order: OrderIn) -> OrderIn:
    found = await find_order(session, order.order_id)
    return order if found is None else _forward(order, OrderStatus(found[0].status))


async def _forward_only(session: AsyncSession, orders: Sequence[OrderIn]) -> list[OrderIn]:
    """`orders` in order, each not moving its order's status back from the stored one or an
    earlier item's. Stored orders are locked here, in one order everywhere (no deadlock)."""
    if not orders:
        return []
    stmt = (select(Order.order_id, Order.status).where(among_order_ids(session, {o.order_id for o in orders}))
            .order_by(Order.order_id).with_for_update())
    status = {order_id: OrderStatus(found) for order_id, found in await session.execute(stmt)}
    kept = []
    for order in orders:
        stored = status.get(order.order_id)
        order = order if stored is None else _forward(order, stored)
        status[order.order_id] = order.status
        kept.append(order)
    return kept


def _forward(order: OrderIn, stored: OrderStatus) -> OrderIn:
    if stored not in PROGRESS or PROGRESS.get(order.status, 99) < PROGRESS[stored]:
        return order.model_copy(update={"status": stored})
    return order


async def _withdrawals(session: AsyncSession, external_ids: Collection[str]) -> Withdrawals:
    if not external_ids:
        return {}
    stmt = (select(Profile.external_id, Consent.channel, Consent.updated_at)
            .join(Consent, Consent.profile_id == Profile.id)
            .where(among_external_ids(session, external_ids), Consent.state == ConsentState.WITHDRAWN.value))
    return {(ext, channel): at for ext, channel, at in await session.execute(stmt)}


def _without_stale_grants(changes: ShopChanges, withdrawn: Withdrawals) -> list[ProfileIn]:
    """The profiles with each grant left out that would undo a later withdrawal (see ShopChanges)."""
    if not changes.granted_at:
        return changes.profiles
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
