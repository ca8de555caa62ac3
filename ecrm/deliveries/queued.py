"""Read a batch's queued recipients: each delivery with its profile, in delivery id order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ecrm.deliveries.models import DELIVERIES
from ecrm.profiles.models import Profile
from ecrm.render.recipient import Recipient

# Core tables, not ORM entities: the hot path skips the ORM's per-statement and per-row work.
PROFILES = cast(Table, Profile.__table__)
D, P = DELIVERIES.c, PROFILES.c
RECIPIENT_COLUMNS = (D.id, P.id, P.external_id, P.email, P.phone, P.first_name, P.last_name, P.locale, P.time_zone,
                     P.traits)

# An outer join: a delivery planned for a profile erased since has no profile (deliveries.models).
_QUEUED = (select(*RECIPIENT_COLUMNS).outerjoin_from(DELIVERIES, PROFILES, D.profile_id == P.id)
           .where(D.send_id == bindparam("b_send"), D.batch == bindparam("b_batch"), D.status == "queued")
           .order_by(D.id))  # built once, see deliveries.claims


async def read_queued(connection: AsyncConnection, send_id: int, batch: int) -> tuple[list[Recipient], list[int]]:
    """The batch's recipients still queued, in delivery id order (chunks are id ranges), and the
    ids of queued deliveries whose profile is gone."""
    rows: Sequence[Any] = (await connection.execute(_QUEUED, {"b_send": send_id, "b_batch": batch})).all()
    return split_erased(rows)


def split_erased(rows: Sequence[Any]) -> tuple[list[Recipient], list[int]]:
    """Rows of (delivery id, profile id, ...profile columns) into recipients and the delivery ids
    whose profile id is NULL."""
    return [Recipient(*row) for row in rows if row[1] is not None], [row[0] for row in rows if row[1] is None]
