"""Entry and exit: `segment_entered` / `segment_exited` events from incoming events and orders,
from the scheduled refresh as time passes, never twice, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from arq import ArqRedis
from pytest_aiohttp import AiohttpClient
from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ecrm.api.apikeys import create_api_key
from ecrm.api.app import create_app
from ecrm.api.keys import TOUCHES
from ecrm.clock import FrozenClock
from ecrm.orders.models import Order
from ecrm.profiles.models import Event, Profile
from ecrm.runtime import Runtime, open_runtime
from ecrm.segments.catalog import catalog_for
from ecrm.segments.jobs import segments_refresh_job, segments_touched_job
from ecrm.segments.members import rule_condition
from ecrm.segments.membership import probing
from ecrm.segments.models import SegmentMember
from ecrm.segments.refresh import begin_refresh, refresh_touched
from ecrm.segments.rules import Audience
from ecrm.settings import Settings
from ecrm.worker import in_process_queue, make_transactional_worker, make_worker
from tests.api.conftest import Client
from tests.conftest import REDIS_URL, T0
from tests.factories import add_profile, add_profiles
from tests.waiting import wait_for

NEW = "name: new\ndescription: joined in the last two hours\nall:\n  - {field: created_at, op: newer_than, value: 2h}\n"
VIP = "name: vip\nall:\n  - {field: external_id, op: starts_with, value: vip-}\n"


@pytest.fixture
def segment_settings(settings: Settings, tmp_path: Path) -> Settings:
    segments = tmp_path / "segments"
    segments.mkdir()
    (segments / "new.yaml").write_text(NEW)
    (segments / "vip.yaml").write_text(VIP)
    return settings.model_copy(update={"segments_dir": segments})


@pytest.fixture
async def runtime(segment_settings: Settings, engine: AsyncEngine, clock: FrozenClock) -> AsyncIterator[Runtime]:
    async with open_runtime(segment_settings, in_process_queue(segment_settings, clock), engine, clock) as rt:
        yield rt


@pytest.fixture
async def auth(sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> dict[str, str]:
    async with sessions.begin() as session:
        return {"Authorization": f"Bearer {await create_api_key(session, 'tests', clock.now())}"}


async def segment_events(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, str, str]]:
    """(external_id, event name, segment) of every entry and exit, in order."""
    stmt = (select(Profile.external_id, Event.name, Event.properties).join(Profile, Profile.id == Event.profile_id)
            .where(Event.name.in_(["segment_entered", "segment_exited"])).order_by(Event.id))
    async with sessions() as session:
        return [(ext, name, props["segment"]) for ext, name, props in await session.execute(stmt)]


async def members(sessions: async_sessionmaker[AsyncSession], segment: str) -> set[str]:
    stmt = (select(Profile.external_id).join(SegmentMember, SegmentMember.profile_id == Profile.id)
            .where(SegmentMember.segment == segment))
    async with sessions() as session:
        return set(await session.scalars(stmt))


async def test_an_event_makes_a_profile_enter_and_time_makes_it_exit_through_the_cron_job(
    aiohttp_client: AiohttpClient, segment_settings: Settings, sessions: async_sessionmaker[AsyncSession],
    clock: FrozenClock, runtime: Runtime, auth: dict[str, str],
) -> None:
    app_clock = FrozenClock(clock.now())  # the app's own refresh loop stays out of the way until it is moved
    app = create_app(segment_settings, app_clock)
    api: Client = await aiohttp_client(app)
    response = await api.post("/v1/events", json={"external_id": "vip-1", "name": "viewed"}, headers=auth)
    assert response.status == 202
    await app[TOUCHES].settled()
    assert await segment_events(sessions) == [("vip-1", "segment_entered", "new"), ("vip-1", "segment_entered", "vip")]
    assert await members(sessions, "new") == {"vip-1"}

    clock.advance(timedelta(hours=1))
    assert await segments_refresh_job({"runtime": runtime}) == 0  # still new
    clock.advance(timedelta(hours=1, seconds=1))
    assert await segments_refresh_job({"runtime": runtime}) == 1
    assert (await segment_events(sessions))[2:] == [("vip-1", "segment_exited", "new")]
    assert await members(sessions, "new") == set() and await members(sessions, "vip") == {"vip-1"}

    # Retries and a second event for the same profile change nothing and write no event.
    assert await segments_refresh_job({"runtime": runtime}) == 0
    profile_id = await _profile_id(sessions, "vip-1")
    assert await segments_touched_job({"runtime": runtime}, [profile_id]) == 0
    app_clock.set(clock.now())
    response = await api.post("/v1/events", json={"external_id": "vip-1", "name": "clicked"}, headers=auth)
    assert response.status == 202
    await app[TOUCHES].settled()
    assert len(await segment_events(sessions)) == 3


async def test_an_order_makes_its_profile_enter(aiohttp_client: AiohttpClient, segment_settings: Settings,
                                                sessions: async_sessionmaker[AsyncSession], clock: FrozenClock,
                                                auth: dict[str, str]) -> None:
    app = create_app(segment_settings, clock)
    api: Client = await aiohttp_client(app)
    order = {"order_id": "o-1", "external_id": "vip-9", "status": "paid", "currency": "EUR", "total": "10.00"}
    assert (await api.post("/v1/orders", json=order, headers=auth)).status == 201
    await app[TOUCHES].settled()
    assert await members(sessions, "vip") == {"vip-9"}


async def test_a_profile_update_makes_it_enter(aiohttp_client: AiohttpClient, segment_settings: Settings,
                                               sessions: async_sessionmaker[AsyncSession], clock: FrozenClock,
                                               auth: dict[str, str]) -> None:
    (segment_settings.segments_dir / "gold.yaml").write_text(
        "name: gold\nrules:\n  - {field: traits.tier, op: eq, value: gold}\n")
    app = create_app(segment_settings, clock)
    api = await aiohttp_client(app)
    profile = {"external_id": "c-1", "traits": {"tier": "silver"}}
    assert (await api.post("/v1/profiles", json=profile, headers=auth)).status == 201
    await app[TOUCHES].settled()
    assert await members(sessions, "gold") == set()
    profile["traits"] = {"tier": "gold"}
    assert (await api.post("/v1/profiles", json=profile, headers=auth)).status == 200
    await app[TOUCHES].settled()
    assert ("c-1", "segment_entered", "gold") in await segment_events(sessions)


async def test_without_redis_the_app_refreshes_whole_segments_as_its_clock_passes(
    aiohttp_client: AiohttpClient, segment_settings: Settings, sessions: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> None:
    await add_profile(sessions, external_id="walk-in", now=clock.now())  # not through the API: no touch
    app = create_app(segment_settings, clock)
    await aiohttp_client(app)
    await clock.until_sleeping()
    clock.advance(timedelta(minutes=segment_settings.segment_refresh_minutes))
    await wait_for_events(sessions, 1)
    assert await segment_events(sessions) == [("walk-in", "segment_entered", "new")]
    await clock.until_sleeping()  # the refresh is over: the loop waits for its next turn
    clock.advance(timedelta(hours=2))
    await wait_for_events(sessions, 2)
    assert (await segment_events(sessions))[1] == ("walk-in", "segment_exited", "new")


async def wait_for_events(sessions: async_sessionmaker[AsyncSession], count: int) -> None:
    async with asyncio.timeout(20):
        while True:
            if len(await segment_events(sessions)) >= count:
                return
            await asyncio.sleep(0.01)


async def test_concurrent_refreshes_of_the_same_profiles_record_each_change_once(
    segment_settings: Settings, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock,
) -> None:
    ids = [await add_profile(sessions, external_id=f"vip-{i}", now=clock.now()) for i in range(30)]
    segments = await catalog_for(segment_settings.segments_dir).segments()
    results = await asyncio.gather(*(refresh_touched(sessions, segments, ids, clock.now()) for _ in range(4)))
    assert sum(r.entered for r in results) == 60  # 30 profiles into two segments
    assert len(await segment_events(sessions)) == 60
    clock.advance(timedelta(hours=3))
    results = await asyncio.gather(*(refresh_touched(sessions, segments, ids, clock.now()) for _ in range(4)))
    assert sum(r.exited for r in results) == 30
    assert len(await segment_events(sessions)) == 90


async def test_the_first_refresh_of_a_segment_streams_everyone_in_and_an_erased_profile_leaves_no_row(
    runtime: Runtime, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock,
) -> None:
    await add_profiles(sessions, 2500, prefix="vip-", now=clock.now())
    assert await segments_refresh_job({"runtime": runtime}) == 5000
    assert await segments_refresh_job({"runtime": runtime}) == 0
    async with sessions.begin() as session:
        await session.execute(delete(Profile).where(Profile.external_id == "vip-7"))
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(SegmentMember)) == 4998


async def test_a_broken_segment_file_is_logged_and_the_others_still_tracked(
    runtime: Runtime, segment_settings: Settings, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (segment_settings.segments_dir / "broken.yaml").write_text("name: broken\nall:\n  - {field: nope, value: 1}\n")
    await add_profile(sessions, external_id="vip-1", now=clock.now())
    with caplog.at_level(logging.ERROR):
        assert await segments_refresh_job({"runtime": runtime}) == 2
    assert "broken.yaml is not tracked" in caplog.text and "broken.yaml:3" in caplog.text


async def test_with_redis_ingest_enqueues_a_job_a_worker_runs(
    aiohttp_client: AiohttpClient, segment_settings: Settings, sessions: async_sessionmaker[AsyncSession],
    clock: FrozenClock, redis: ArqRedis, auth: dict[str, str],
) -> None:
    settings = segment_settings.model_copy(update={"redis_url": REDIS_URL})
    app = create_app(settings, clock)
    api: Client = await aiohttp_client(app)
    for i in range(3):
        response = await api.post("/v1/events", json={"external_id": f"vip-{i}", "name": "viewed"}, headers=auth)
        assert response.status == 202
    await app[TOUCHES].settled()
    campaigns = make_worker(settings, burst=True, poll_delay=0, handle_signals=False, cron_jobs=[])
    try:  # the touches are not on the campaigns' queue, behind their batches
        await campaigns.main()
    finally:
        await campaigns.close()
    assert await members(sessions, "vip") == set()
    worker = make_transactional_worker(settings, burst=True, poll_delay=0, handle_signals=False)
    try:
        await worker.main()
    finally:
        await worker.close()
    assert await members(sessions, "vip") == {"vip-0", "vip-1", "vip-2"}


async def test_ingest_answers_while_the_queue_is_down(
    aiohttp_client: AiohttpClient, segment_settings: Settings, clock: FrozenClock, auth: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(segment_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}), clock)
    api: Client = await aiohttp_client(app)
    response = await api.post("/v1/events", json={"external_id": "vip-1", "name": "viewed"}, headers=auth)
    assert response.status == 202
    await wait_for(lambda: "not handed on" in caplog.text)


async def _profile_id(sessions: async_sessionmaker[AsyncSession], external_id: str) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(Profile.id).where(Profile.external_id == external_id)) or 0)


async def test_a_refresh_plans_each_statement_for_its_own_ids_on_postgresql_and_only_in_its_transaction(
    settings: Settings, sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A generic plan cached while `segment_members` was empty scans every member per id batch
    once the segment is large; the refresh's transactions plan with their parameters instead."""
    if settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite has no plan cache mode; its refresh takes the write lock first instead")
    async with sessions.begin() as session:
        await begin_refresh(session)
        assert await session.scalar(text("SELECT current_setting('plan_cache_mode')")) == "force_custom_plan"
    async with sessions() as session:  # SET LOCAL: the pooled connection goes back as it was
        assert await session.scalar(text("SELECT current_setting('plan_cache_mode')")) == "auto"


RANKED = "name: best\nall:\n  - {metric: monetary, currency: EUR, op: gte, value: 1}\n"  # every buyer
REFERS_TO_RANKED = "name: best_vip\nall:\n  - {segment: best}\n  - {segment: vip}\n"


async def test_an_event_leaves_ranked_segments_to_the_schedule_which_still_tracks_them(
    segment_settings: Settings, runtime: Runtime, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock,
) -> None:
    """RFM ranks every buyer against the others: one order moves other profiles' quintiles, so
    a touch evaluates only unranked segments (a segment referring to a ranked one is ranked)."""
    (segment_settings.segments_dir / "best.yaml").write_text(RANKED)
    (segment_settings.segments_dir / "best_vip.yaml").write_text(REFERS_TO_RANKED)
    profile_id = await add_profile(sessions, external_id="vip-1", now=clock.now())
    async with sessions.begin() as session:
        session.add(Order(order_id="o-1", profile_id=profile_id, status="paid", total_e4=500_000, currency="EUR",
                          placed_at=clock.now(), line_items=[], created_at=clock.now(), updated_at=clock.now()))
    segments = await catalog_for(segment_settings.segments_dir).segments()
    assert {s.name for s in segments if s.audience.ranks_everyone} == {"best", "best_vip"}
    assert await segments_touched_job({"runtime": runtime}, [profile_id]) == 2  # vip and new
    assert await members(sessions, "best") == set() == await members(sessions, "best_vip")
    assert await segments_refresh_job({"runtime": runtime}) == 2
    assert await members(sessions, "best") == {"vip-1"} == await members(sessions, "best_vip")


def test_a_condition_built_for_a_few_profiles_probes_per_profile_on_sqlite_too() -> None:
    audience = Audience.model_validate({"all": [{"event": "viewed", "within": "30d"}]})
    whole = str(select(Profile.id).where(rule_condition(audience, T0)).compile(dialect=sqlite.dialect()))
    with probing():
        few = str(select(Profile.id).where(rule_condition(audience, T0)).compile(dialect=sqlite.dialect()))
    assert "profiles.id IN (SELECT" in whole and "EXISTS" not in whole
    assert "EXISTS" in few and "profiles.id IN" not in few
