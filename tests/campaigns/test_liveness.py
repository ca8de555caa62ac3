"""A run's launcher: its heartbeat, when it counts as gone, and a resume refused while it sends."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.campaigns.launch import create_run
from ecrm.campaigns.liveness import STALE, heartbeat, this_process, why_stopped
from ecrm.campaigns.load import load_campaign
from ecrm.campaigns.models import CampaignRun
from ecrm.campaigns.report import run_report
from ecrm.campaigns.resume import StillSendingError, prepare_resume
from ecrm.clock import FrozenClock
from ecrm.settings import Settings
from ecrm.types import RunStatus
from tests.conftest import ROOT


def a_run(launcher: str | None, clock: FrozenClock, status: str = RunStatus.RUNNING) -> CampaignRun:
    return CampaignRun(run_key="k", spec={}, status=status, scheduled_at=clock.now(), launcher=launcher,
                       heartbeat_at=clock.now())


def a_dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_is_stopped_when_its_launcher_pid_is_gone_from_this_host(clock: FrozenClock) -> None:
    here = socket.gethostname()
    assert why_stopped(a_run(this_process(), clock), clock.now()) is None
    dead = a_dead_pid()
    assert why_stopped(a_run(f"{here}:{dead}", clock), clock.now()) == (
        f"the process that was sending it (pid {dead}) has exited")


def test_a_launcher_on_another_host_counts_as_gone_only_once_its_heartbeat_is_stale(clock: FrozenClock) -> None:
    run = a_run("elsewhere:1", clock)
    clock.advance(STALE)
    assert why_stopped(run, clock.now()) is None
    clock.advance(1)
    assert why_stopped(run, clock.now()) == (
        "the process that was sending it (elsewhere:1) was last heard from 2026-01-01 09:00:00 UTC")


def test_runs_that_are_done_or_sent_by_arq_workers_are_never_reported_stopped(clock: FrozenClock) -> None:
    done, on_arq = a_run("elsewhere:1", clock, RunStatus.DONE), a_run(None, clock)
    clock.advance(3600)
    assert why_stopped(done, clock.now()) is None
    assert why_stopped(on_arq, clock.now()) is None


async def test_the_heartbeat_names_this_process_and_keeps_beating(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    ref = await create_run(sessions, load_campaign(ROOT / "campaigns" / "welcome.yaml", settings), "x", clock=clock)
    async with heartbeat(sessions, ref.run_id, clock, every=0.001):
        async with sessions() as session:
            run = await session.get_one(CampaignRun, ref.run_id)
            assert (run.launcher, run.heartbeat_at) == (this_process(), clock.now())
        clock.advance(10)
        async with asyncio.timeout(10):
            while True:  # the next beat writes the clock's new time
                async with sessions() as session:
                    if (await session.get_one(CampaignRun, ref.run_id)).heartbeat_at == clock.now():
                        break
                await asyncio.sleep(0.001)
    assert str(os.getpid()) in this_process()


async def test_a_running_run_is_not_resumed_alongside_its_sender_but_a_stopped_one_is(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> None:
    ref = await create_run(sessions, load_campaign(ROOT / "campaigns" / "welcome.yaml", settings), "x", clock=clock)
    async with sessions.begin() as session:
        await session.execute(update(CampaignRun).values(status=RunStatus.RUNNING, launcher=this_process(),
                                                         heartbeat_at=clock.now()))
    with pytest.raises(StillSendingError, match=f"being sent right now \\(by {this_process()}\\)"):
        await prepare_resume(sessions, "welcome", ref.run_key, clock, in_doubt=True)
    assert (await run_report(sessions, "welcome", clock=clock)).status == "running"

    clock.advance(STALE * 2)
    report = await run_report(sessions, "welcome", clock=clock)
    assert report.status == "stopped" and report.stopped and "last heard from" in report.stopped
    again = await prepare_resume(sessions, "welcome", ref.run_key, clock, in_doubt=True)
    assert (again.run.run_id, again.requeued, again.spec.name) == (ref.run_id, 0, "welcome")
