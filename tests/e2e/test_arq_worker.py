"""The same campaign through arq on real Redis: enqueue, work, re-launch, and a worker
stopped in the middle of a batch, whose job is then finished by another worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from arq import ArqRedis
from arq.constants import in_progress_key_prefix
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.deliveries.claims import INTERRUPTED
from ecrm.deliveries.models import Delivery, SendBatch
from ecrm.profiles.models import Profile
from ecrm.settings import Settings
from ecrm.worker import WorkerSettings
from tests.conftest import ROOT
from tests.factories import add_profiles
from tests.smtp import SmtpServer
from tests.waiting import wait_for
from tests.workers import launch_on_arq, with_redis, work_until_idle

WELCOME = ROOT / "campaigns" / "welcome.yaml"


@pytest.fixture
def arq_settings(send_settings: Settings) -> Settings:
    return with_redis(send_settings)


async def status_counts(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(select(Delivery.status, func.count()).group_by(Delivery.status))
        return {str(status): int(count) for status, count in rows}


async def test_an_arq_worker_sends_a_run_once_and_a_relaunch_sends_nothing_new(
    arq_settings: Settings, redis: ArqRedis, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer
) -> None:
    emails = await add_profiles(sessions, 14, ("en", "fa", "th"))
    await launch_on_arq(arq_settings, redis, sessions, WELCOME)
    await work_until_idle(arq_settings)
    await launch_on_arq(arq_settings, redis, sessions, WELCOME)
    await work_until_idle(arq_settings)

    assert smtp.handler.per_recipient() == dict.fromkeys(emails, 1)
    assert await status_counts(sessions) == {"sent": 14}


def worker_process(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ECRM_CONFIG": "/nonexistent", "ECRM_DATABASE_URL": settings.database_url,
           "ECRM_REDIS_URL": settings.redis_url or "", "ECRM_SMTP__PORT": str(settings.smtp.port),
           "ECRM_SMTP__CONNECTIONS": "2", "ECRM_SEND__BATCH_SIZE": "25", "ECRM_SECRET_KEY": settings.secret_key,
           "ECRM_TEMPLATES_DIR": str(settings.templates_dir), "ECRM_PUBLIC_URL": settings.public_url,
           "ECRM_SEND__JOB_TIMEOUT": str(settings.send.job_timeout)}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "ecrm", "-v", "worker", "--dev"], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)


async def test_a_worker_stopped_mid_batch_leaves_the_rest_to_the_next_worker_and_nobody_gets_two(
    arq_settings: Settings, redis: ArqRedis, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer,
    tmp_path: Path
) -> None:
    emails = await add_profiles(sessions, 60, ("en", "fa", "th"))
    smtp.handler.delay = 0.03
    await launch_on_arq(arq_settings, redis, sessions, WELCOME)
    process = worker_process(arq_settings, tmp_path / "worker.log")
    try:
        await wait_for(lambda: len(smtp.handler.received) >= 10)
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 30)
    finally:
        process.kill()
    log = (tmp_path / "worker.log").read_text()
    assert "cancelled, will be run again" in log, log
    interrupted = await status_counts(sessions)
    assert interrupted.get("queued", 0) > 0 and interrupted.get("unknown", 0) == 0, interrupted
    async with sessions() as session:  # what was in flight was recorded: nothing is left in doubt
        assert await session.scalar(select(func.count()).where(SendBatch.inflight_first.is_not(None))) == 0
    assert interrupted["sent"] == len(smtp.handler.received)

    smtp.handler.delay = 0
    await work_until_idle(arq_settings)

    assert smtp.handler.per_recipient() == dict.fromkeys(emails, 1)
    assert await status_counts(sessions) == {"sent": 60}


async def test_a_worker_killed_outright_gives_up_only_its_chunks_in_flight_and_nobody_gets_two(
    arq_settings: Settings, redis: ArqRedis, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer,
    tmp_path: Path
) -> None:
    settings = arq_settings.model_copy(update={"send": arq_settings.send.model_copy(update={"job_timeout": 1})})
    emails = await add_profiles(sessions, 150, ("en", "fa", "th"))  # 6 batches of 25; a worker runs 4 at once
    smtp.handler.delay = 0.03
    await launch_on_arq(settings, redis, sessions, WELCOME)
    process = worker_process(settings, tmp_path / "worker.log")
    try:
        await wait_for(lambda: len(smtp.handler.received) >= 5)
        process.kill()  # SIGKILL: nothing is recorded for the chunks in flight
        await asyncio.to_thread(process.wait, 30)
    finally:
        process.kill()
    async with sessions() as session:
        marks = await session.execute(select(SendBatch.inflight_first, SendBatch.inflight_last)
                                      .where(SendBatch.inflight_first.is_not(None)))
        in_doubt = [(int(first or 0), int(last or 0)) for first, last in marks]
    assert 0 < len(in_doubt) <= WorkerSettings.max_jobs  # one chunk per job that was running

    smtp.handler.delay = 0
    # arq's marks of the killed worker's jobs in progress expire job_timeout + 10 s after they were
    # set, and no job runs again before then: they expire now instead of the test waiting 11 s
    in_progress = [key async for key in redis.scan_iter(match=in_progress_key_prefix + "*")]
    assert in_progress
    await redis.delete(*in_progress)
    await work_until_idle(settings)  # runs the killed jobs

    received = smtp.handler.per_recipient()
    assert set(received.values()) == {1}  # nobody got two
    async with sessions() as session:
        rows = (await session.execute(select(Delivery.id, Delivery.status, Delivery.error, Profile.email)
                                      .join(Profile, Profile.id == Delivery.profile_id))).all()
    doubtful = {email for id_, _, _, email in rows if any(first <= id_ <= last for first, last in in_doubt)}
    given_up = {email for _, status, error, email in rows if status == "unknown" and error == INTERRUPTED}
    sent = {email for _, status, _, email in rows if status == "sent"}
    assert given_up <= doubtful and sent == set(emails) - given_up  # nothing else failed, nothing queued
    assert set(emails) - doubtful <= set(received)  # everything outside the chunks in doubt went out once
    assert sent <= set(received)


async def test_resend_of_the_ones_in_doubt_goes_through_redis_to_the_workers(
    arq_settings: Settings, redis: ArqRedis, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer,
    tmp_path: Path
) -> None:
    emails = await add_profiles(sessions, 12, ("en", "fa", "th"))
    await launch_on_arq(arq_settings, redis, sessions, WELCOME)
    await work_until_idle(arq_settings)
    async with sessions.begin() as session:  # as a killed worker's take-over leaves them
        doubted = list(await session.scalars(select(Delivery.id).order_by(Delivery.id).limit(3)))
        await session.execute(update(Delivery).where(Delivery.id.in_(doubted))
                              .values(status="unknown", reason="interrupted", error=INTERRUPTED))
    env = {**os.environ, "ECRM_CONFIG": "/nonexistent", "ECRM_DATABASE_URL": arq_settings.database_url,
           "ECRM_REDIS_URL": arq_settings.redis_url or "", "ECRM_SECRET_KEY": arq_settings.secret_key,
           "ECRM_TEMPLATES_DIR": str(arq_settings.templates_dir), "ECRM_PUBLIC_URL": arq_settings.public_url}
    resend = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "ecrm", "campaign", "resend", "welcome", "--run", "now", "--unknown",
                         "--dev"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert resend.returncode == 0, resend.stdout + resend.stderr
    assert "warning: 3 deliveries in doubt are sent again" in resend.stderr
    assert "queued on" in resend.stdout
    await work_until_idle(arq_settings)

    received = smtp.handler.per_recipient()
    async with sessions() as session:
        twice = set(await session.scalars(select(Profile.email).join(Delivery, Delivery.profile_id == Profile.id)
                                          .where(Delivery.id.in_(doubted))))
    assert received == {email: 2 if email in twice else 1 for email in emails}
    assert await status_counts(sessions) == {"sent": 12}
