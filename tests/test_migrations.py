"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from importlib import import_module
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, bindparam, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ecrm.api.apikeys import check_api_key
from ecrm.api.models import ApiKey
from ecrm.api.scopes import ALL_SCOPES
from ecrm.db import Base, Json, UtcDateTime, alembic_config, migrate, session_factory
from ecrm.deliveries.models import SEND_BATCHES, SENDS
from ecrm.models import load_all
from tests.conftest import T0
from tests.databases import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Unlike elsewhere, a database migrated from scratch, not a copy: these tests check the migrations."""
    async with fresh_database(request.param, tmp_path) as url:
        yield url


async def test_migrated_schema_matches_the_models(engine: AsyncEngine) -> None:
    load_all()

    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_upgrading_a_database_with_data_keeps_every_row_and_link(engine: AsyncEngine) -> None:
    """Migrations 0003-0005 rebuild `deliveries` on SQLite; responses must still point at their
    delivery afterwards (a rebuild with foreign keys on would have set them to NULL)."""

    def downgrade(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0002")

    async with engine.begin() as conn:
        await conn.run_sync(downgrade)
        for statement in (
            "INSERT INTO profiles (id, external_id, email, locale, time_zone, traits, created_at, updated_at) "
            "VALUES (1, 'p-1', 'a@example.com', 'en', 'UTC', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            "INSERT INTO campaigns (id, name, source, spec, created_at, updated_at) "
            "VALUES (1, 'c', 'c.yaml', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            "INSERT INTO campaign_runs (id, campaign_id, run_key, spec, status, scheduled_at, plans) "
            "VALUES (1, 1, 'now', '{}', 'done', CURRENT_TIMESTAMP, 1)",
            "INSERT INTO deliveries (id, run_id, batch, profile_id, channel, variant, idempotency_key, status, "
            "attempts, queued_at) VALUES (7, 1, 0, 1, 'email', 'default', '1:main:1:email', 'sent', 1, "
            "CURRENT_TIMESTAMP)",
            "INSERT INTO responses (delivery_id, profile_id, kind, properties, occurred_at) "
            "VALUES (7, 1, 'unsubscribed', '{}', CURRENT_TIMESTAMP)",
        ):
            await conn.execute(text(statement))
    await migrate(engine)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT id, status FROM deliveries"))).all() == [(7, "sent")]
        assert (await conn.execute(text("SELECT delivery_id FROM responses"))).all() == [(7,)]

MIGRATION_0006 = import_module("ecrm.migrations.versions.0006_sends_and_delivery_states")
INTERRUPTED: str = MIGRATION_0006.INTERRUPTED
ERASED: str = MIGRATION_0006.ERASED
RUN_SPEC = {"name": "welcome", "channel": "email", "template": "welcome", "schedule": "now"}
PLANNED = T0 + timedelta(minutes=1)
FINISHED = T0 + timedelta(minutes=5)
# (id, profile, status, error) at 0005, and the (status, reason) 0006 gives each
DELIVERIES_0005 = [
    (11, 1, "sent", None, ("sent", None)),
    (12, 2, "failed", INTERRUPTED, ("unknown", "interrupted")),
    (13, 3, "failed", ERASED, ("skipped", "erased")),
    (14, 4, "failed", "could not compose: x", ("failed", "technical")),
    (15, 5, "failed", "550 no such user", ("failed", "permanent")),
]


def _alembic(to: str, downgrade: bool = False) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        (command.downgrade if downgrade else command.upgrade)(cfg, to)

    return run


async def test_migration_0006_turns_runs_into_sends_and_failures_into_states_and_back(engine: AsyncEngine) -> None:
    """A run becomes a send with the same id (deliveries keep pointing at it), its batches
    become the send's, each `failed` delivery gets the state its error text meant, responses
    keep their link; the downgrade gives the 0005 shape back."""
    at = {"t0": T0, "planned": PLANNED, "finished": FINISHED}
    times = [bindparam(name, type_=UtcDateTime()) for name in at]
    async with engine.begin() as conn:
        await conn.run_sync(_alembic("0005", downgrade=True))
        for i in range(1, 6):
            await conn.execute(text(
                "INSERT INTO profiles (id, external_id, email, locale, time_zone, traits, created_at, updated_at) "
                "VALUES (:id, :ext, :email, 'en', 'UTC', '{}', :t0, :t0)").bindparams(*times[:1]),
                {"id": i, "ext": f"p-{i}", "email": f"p{i}@example.com", "t0": T0})
        await conn.execute(text(
            "INSERT INTO campaigns (id, name, source, spec, created_at, updated_at) "
            "VALUES (3, 'welcome', 'welcome.yaml', :spec, :t0, :t0)").bindparams(
                bindparam("spec", type_=Json), *times[:1]), {"spec": RUN_SPEC, "t0": T0})
        await conn.execute(text(
            "INSERT INTO campaign_runs (id, campaign_id, run_key, spec, status, scheduled_at, plans, started_at, "
            "planned_at, finished_at) VALUES (5, 3, 'now', :spec, 'done', :t0, 1, :t0, :planned, :finished)")
            .bindparams(bindparam("spec", type_=Json), *times), {"spec": RUN_SPEC, **at})
        await conn.execute(text(
            "INSERT INTO run_batches (run_id, batch, done_at, attempt, inflight_first, inflight_last) "
            "VALUES (5, 0, :finished, 2, 11, 13), (5, 1, NULL, 1, NULL, NULL)").bindparams(times[2]),
            {"finished": FINISHED})
        for delivery_id, profile_id, status, error, _ in DELIVERIES_0005:
            await conn.execute(text(
                "INSERT INTO deliveries (id, run_id, batch, profile_id, channel, variant, status, attempts, error, "
                "queued_at) VALUES (:id, 5, 0, :profile, 'email', 'default', :status, 1, :error, :t0)")
                .bindparams(times[0]),
                {"id": delivery_id, "profile": profile_id, "status": status, "error": error, "t0": T0})
        await conn.execute(text(
            "INSERT INTO responses (id, delivery_id, profile_id, kind, properties, occurred_at) "
            "VALUES (21, 13, 3, 'unsubscribed', '{}', :t0)").bindparams(times[0]), {"t0": T0})

    await migrate(engine)
    async with engine.connect() as conn:
        names = ("id", "source_kind", "source_id", "channel", "template", "label", "created_at", "planned_at",
                 "done_at")
        sends = (await conn.execute(select(*(SENDS.c[name] for name in names)))).all()
        assert sends == [(5, "campaign_run", 5, "email", "welcome", "welcome", T0, PLANNED, FINISHED)]
        deliveries = (await conn.execute(text(
            "SELECT id, send_id, status, reason, error FROM deliveries ORDER BY id"))).all()
        assert deliveries == [(i, 5, new[0], new[1], error) for i, _, _, error, new in DELIVERIES_0005]
        batches = (await conn.execute(text(
            "SELECT send_id, batch, attempt, inflight_first, inflight_last FROM send_batches ORDER BY batch"))).all()
        assert batches == [(5, 0, 2, 11, 13), (5, 1, 1, None, None)]
        done = (await conn.execute(select(SEND_BATCHES.c.done_at).order_by(SEND_BATCHES.c.batch))).scalars().all()
        assert done == [FINISHED, None]
        assert (await conn.execute(text("SELECT id, delivery_id FROM responses"))).all() == [(21, 13)]
    async with engine.begin() as conn:  # on PostgreSQL the migration moved the sequence past the old ids
        new_id = (await conn.execute(insert(SENDS).values(
            source_kind="transactional", source_id=1, channel="email", template="t", label="t", created_at=T0)
            .returning(SENDS.c.id))).scalar_one()
        assert new_id > 5

    async with engine.begin() as conn:
        await conn.run_sync(_alembic("0005", downgrade=True))
    async with engine.connect() as conn:
        deliveries = (await conn.execute(text(
            "SELECT id, run_id, status, error FROM deliveries ORDER BY id"))).all()
        assert deliveries == [(i, 5, status, error) for i, _, status, error, _ in DELIVERIES_0005]
        columns = (await conn.execute(text("SELECT * FROM deliveries"))).keys()
        assert "reason" not in columns and "send_id" not in columns
        batches = (await conn.execute(text(
            "SELECT run_id, batch, attempt, inflight_first, inflight_last FROM run_batches ORDER BY batch"))).all()
        assert batches == [(5, 0, 2, 11, 13), (5, 1, 1, None, None)]
        planned = (await conn.execute(text("SELECT planned_at FROM campaign_runs WHERE id = 5")
                                      .columns(planned_at=UtcDateTime()))).scalar_one()
        assert planned == PLANNED
        assert (await conn.execute(text("SELECT id, delivery_id FROM responses"))).all() == [(21, 13)]
        tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        assert "sends" not in tables and "send_batches" not in tables


async def test_migration_0009_gives_old_keys_every_scope_and_live_names_one_key_each(engine: AsyncEngine) -> None:
    """Keys made before scopes keep working with every scope; of live keys sharing a name the
    oldest keeps it and the others become NAME-PREFIX; afterwards the database refuses a second
    live key of one name."""
    keys = {prefix: f"ecrm_{prefix}_{'s' * 43}" for prefix in ("AAAAAAAA", "BBBBBBBB", "CCCCCCCC", "DDDDDDDD")}
    hashes = {prefix: hashlib.sha256(key.encode()).hexdigest() for prefix, key in keys.items()}
    rows = [("AAAAAAAA", "shop", None), ("BBBBBBBB", "shop", None), ("CCCCCCCC", "shop", T0), ("DDDDDDDD", "x", None)]
    async with engine.begin() as conn:
        await conn.run_sync(_alembic("0008", downgrade=True))
        for n, (prefix, name, revoked) in enumerate(rows):
            await conn.execute(text(
                "INSERT INTO api_keys (name, prefix, secret_hash, created_at, revoked_at) "
                "VALUES (:name, :prefix, :hash, :created, :revoked)").bindparams(
                    bindparam("created", type_=UtcDateTime()), bindparam("revoked", type_=UtcDateTime())),
                {"name": name, "prefix": prefix, "hash": hashes[prefix], "created": T0 + timedelta(minutes=n),
                 "revoked": revoked})
    await migrate(engine)
    async with session_factory(engine)() as session:
        found = {prefix: await check_api_key(session, key) for prefix, key in keys.items()}
        names = (await session.execute(select(ApiKey.prefix, ApiKey.name).order_by(ApiKey.id))).all()
    assert found["CCCCCCCC"] is None  # revoked stays revoked
    assert [getattr(found[p], "scopes", None) for p in ("AAAAAAAA", "BBBBBBBB", "DDDDDDDD")] == [ALL_SCOPES] * 3
    assert names == [("AAAAAAAA", "shop"), ("BBBBBBBB", "shop-BBBBBBBB"), ("CCCCCCCC", "shop"), ("DDDDDDDD", "x")]
    with pytest.raises(IntegrityError):
        async with session_factory(engine).begin() as session:
            session.add(ApiKey(name="x", prefix="EEEEEEEE", secret_hash="0" * 64, scopes=ALL_SCOPES, created_at=T0))

    async with engine.begin() as conn:
        await conn.run_sync(_alembic("0008", downgrade=True))
    async with engine.connect() as conn:
        columns = (await conn.execute(text("SELECT * FROM api_keys"))).keys()
        assert "scopes" not in columns
        assert len((await conn.execute(text("SELECT id FROM api_keys"))).all()) == 4
