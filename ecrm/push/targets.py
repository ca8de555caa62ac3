"""The push subscriptions a push send reads with each batch: every subscription of the batch's
profiles not marked invalid, attached to its recipient as `Recipient.push`. Read in the batch's
own transaction, one query for the batch, and only for push sends: email's read is unchanged."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ecrm.messages import PushTarget
from ecrm.push.models import PushSubscription
from ecrm.render.recipient import Recipient

S = PushSubscription
PG_TARGETS = """SELECT profile_id, id, endpoint, p256dh, auth FROM push_subscriptions
WHERE profile_id = ANY($1::bigint[]) AND invalid_at IS NULL ORDER BY id"""


async def read_targets(connection: AsyncConnection, recipients: Sequence[Recipient]) -> None:
    """Attach the subscriptions of `recipients` (any database, through SQLAlchemy Core)."""
    ids = sorted({r.profile_id for r in recipients})
    rows: list[Any] = []
    for start in range(0, len(ids), 500):  # SQLite takes a bounded number of parameters
        query = (select(S.profile_id, S.id, S.endpoint, S.p256dh, S.auth)
                 .where(S.profile_id.in_(ids[start : start + 500]), S.invalid_at.is_(None)).order_by(S.id))
        rows += (await connection.execute(query)).all()
    attach(recipients, rows)


def attach(recipients: Sequence[Recipient], rows: Iterable[Sequence[Any]]) -> None:
    """Rows of (profile id, subscription id, endpoint, p256dh, auth) onto their recipients."""
    by_profile: dict[int, list[PushTarget]] = {}
    for profile_id, *target in rows:
        by_profile.setdefault(profile_id, []).append(PushTarget(*target))
    for recipient in recipients:
        recipient.push = by_profile.get(recipient.profile_id, [])
