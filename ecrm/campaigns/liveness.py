"""Is anyone still sending this run? An in-process launch (no Redis) is its run's only sender:
if that process dies, nothing else sends the rest. While it sends, it writes who it is
(`host:pid`) and a heartbeat on the run; `ecrm campaign status` reads them back and reports a
run whose launcher is gone as stopped, with how to resume it, instead of "running".

A launcher is gone when its pid no longer exists on this host, or when its heartbeat is older
than `STALE` (another host, or a process hung). Runs sent by arq workers have no launcher: arq
retries a dead worker's jobs itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.campaigns.models import CampaignRun
from ecrm.clock import Clock
from ecrm.types import RunStatus

logger = logging.getLogger(__name__)

BEAT_EVERY = 5.0  # seconds between two heartbeats
STALE = timedelta(seconds=30)  # a launcher silent for longer is taken for gone


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


async def _beat(sessions: async_sessionmaker[AsyncSession], run_id: int, launcher: str, now: datetime) -> None:
    async with sessions.begin() as session:
        await session.execute(update(CampaignRun).where(CampaignRun.id == run_id)
                              .values(launcher=launcher, heartbeat_at=now))


@contextlib.asynccontextmanager
async def heartbeat(sessions: async_sessionmaker[AsyncSession], run_id: int, clock: Clock,
                    every: float = BEAT_EVERY) -> AsyncIterator[None]:
    """Mark this process as the run's launcher, and keep its heartbeat fresh while the block runs.
    The interval is real time (liveness is about this process, whatever the clock says); the
    time written is the clock's."""
    launcher = this_process()
    await _beat(sessions, run_id, launcher, clock.now())

    async def beat_forever() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await _beat(sessions, run_id, launcher, clock.now())
            except Exception:  # a missed beat is not worth stopping the send for
                logger.warning("run %d: heartbeat not written", run_id, exc_info=True)

    task = asyncio.create_task(beat_forever())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def why_stopped(run: CampaignRun, now: datetime, host: str | None = None) -> str | None:
    """Why a run marked running is not being sent any more, or None if it may still be."""
    if run.status != RunStatus.RUNNING or not run.launcher:
        return None
    where, _, pid_text = run.launcher.rpartition(":")
    if where == (host or socket.gethostname()) and pid_text.isdigit() and not pid_alive(int(pid_text)):
        return f"the process that was sending it (pid {pid_text}) has exited"
    if run.heartbeat_at is None or now - run.heartbeat_at > STALE:
        seen = f"{run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC" if run.heartbeat_at else "never"
        return f"the process that was sending it ({run.launcher}) was last heard from {seen}"
    return None
