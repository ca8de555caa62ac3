"""Read-side of deliveries: how a send's deliveries stand, counted by locale and status, and
by the state machine's reasons."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.deliveries.models import Delivery
from ecrm.profiles.models import Profile


@dataclass
class DeliveryCounts:
    by_locale: dict[str, dict[str, int]] = field(default_factory=dict)  # locale -> status -> count
    reasons: list[tuple[str, str, int]] = field(default_factory=list)  # (status, reason, count), most first

    def total(self, status: str | None = None) -> int:
        return sum(n for counts in self.by_locale.values() for s, n in counts.items() if status in (None, s))


async def count_deliveries(session: AsyncSession, send_ids: Sequence[int]) -> DeliveryCounts:
    counts = DeliveryCounts()
    rows = await session.execute(
        select(Profile.locale, Delivery.status, func.count()).join(Profile, Profile.id == Delivery.profile_id)
        .where(Delivery.send_id.in_(send_ids)).group_by(Profile.locale, Delivery.status))
    table: dict[str, dict[str, int]] = defaultdict(dict)
    for locale, status, count in rows:
        table[locale][status] = count
    counts.by_locale = dict(sorted(table.items()))
    reasons = await session.execute(
        select(Delivery.status, Delivery.reason, func.count())
        .where(Delivery.send_id.in_(send_ids), Delivery.reason.is_not(None))
        .group_by(Delivery.status, Delivery.reason).order_by(func.count().desc()))
    counts.reasons = [(str(status), str(reason), int(n)) for status, reason, n in reasons]
    return counts
