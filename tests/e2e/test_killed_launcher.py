"""`ecrm campaign launch` in-process (the demo's path, no Redis), started in the background as a
shell script would, stopped by a plain `kill` (SIGTERM) or killed outright (SIGKILL) mid-send,
then followed by `status`, `resume` and `resend --unknown` as an operator would, each a real
process against a real SMTP server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.deliveries.journal import journal_dir
from ecrm.deliveries.models import Delivery, SendBatch
from ecrm.profiles.models import Profile
from ecrm.settings import Settings
from tests.conftest import ROOT
from tests.factories import add_profiles
from tests.smtp import SmtpServer
from tests.waiting import wait_for

WELCOME = ROOT / "campaigns" / "welcome.yaml"
PROFILES = 600
BATCH = 100
RUNNING_AT_ONCE = 2  # the in-process queue's concurrency
CONNECTIONS = 2  # SMTP connections of the launcher


def dev(args: tuple[str, ...]) -> list[str]:
    """The test key and public URL are not production's: commands that send take `--dev`."""
    return ["--dev"] if args[1] in {"launch", "resume", "resend"} else []


def _background() -> None:
    """As a shell script's `ecrm campaign launch ... &` leaves it: SIGINT ignored (SIGTERM must
    still stop it gracefully)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def ecrm(settings: Settings, *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ECRM_CONFIG": "/nonexistent", "ECRM_DATABASE_URL": settings.database_url,
           "ECRM_REDIS_URL": "", "ECRM_SMTP__PORT": str(settings.smtp.port), "ECRM_SMTP__CONNECTIONS": str(CONNECTIONS),
           "ECRM_SEND__BATCH_SIZE": str(BATCH), "ECRM_SECRET_KEY": settings.secret_key,
           "ECRM_TEMPLATES_DIR": str(settings.templates_dir), "ECRM_PUBLIC_URL": settings.public_url}
    command = [sys.executable, "-m", "ecrm", *args, *dev(args)]
    if log is None:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=_background)


async def finish(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    output, _ = await asyncio.to_thread(process.communicate, timeout=60)
    return process.returncode, (output or b"").decode()


async def launch_and_stop(settings: Settings, smtp: SmtpServer, sig: signal.Signals, log: Path) -> int:
    """Launch run `k1`, let some messages out, send `sig`; return the exit code."""
    smtp.handler.delay = 0.01
    process = ecrm(settings, "campaign", "launch", str(WELCOME), "--run", "k1", log=log)
    try:
        await wait_for(lambda: len(smtp.handler.received) >= 150)
        process.send_signal(sig)
        await asyncio.to_thread(process.wait, 30)
    finally:
        process.kill()
    smtp.handler.delay = 0
    return process.returncode


async def statuses(sessions: async_sessionmaker[AsyncSession]) -> dict[str, set[str]]:
    async with sessions() as session:
        rows = await session.execute(select(Delivery.status, Profile.email)
                                     .join(Profile, Profile.id == Delivery.profile_id))
        by_status: dict[str, set[str]] = {}
        for status, email in rows:
            by_status.setdefault(str(status), set()).add(str(email))
    return by_status


async def in_flight_marks(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).where(SendBatch.inflight_first.is_not(None))) or 0)


async def test_sigterm_stops_like_ctrl_c_nothing_lost_and_resume_sends_the_rest_once(
    send_settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer, tmp_path: Path
) -> None:
    emails = await add_profiles(sessions, PROFILES, ("en", "fa", "th"))
    code = await launch_and_stop(send_settings, smtp, signal.SIGTERM, tmp_path / "launch.log")

    assert code == 130, (tmp_path / "launch.log").read_text()
    assert "interrupted" in (tmp_path / "launch.log").read_text()
    stopped = await statuses(sessions)
    assert set(stopped) <= {"sent", "queued"}, stopped  # nothing failed, nothing in doubt
    assert stopped.get("sent") == set(smtp.handler.per_recipient()) and stopped["queued"], (
        {k: len(v) for k, v in stopped.items()}, len(smtp.handler.received), (tmp_path / "launch.log").read_text())
    assert await in_flight_marks(sessions) == 0
    assert not list(journal_dir(send_settings.database_url).glob("*.journal"))  # closed on the way out

    code, output = await finish(ecrm(send_settings, "campaign", "status", "welcome", "--run", "k1"))
    assert code == 0 and "stopped" in output and "has exited" in output, output
    assert "ecrm campaign resume welcome --run k1" in output, output

    code, output = await finish(ecrm(send_settings, "campaign", "resume", "welcome", "--run", "k1"))
    assert code == 0, output
    assert smtp.handler.per_recipient() == dict.fromkeys(emails, 1)
    assert await statuses(sessions) == {"sent": set(emails)}


async def test_sigkill_leaves_only_the_unanswered_messages_in_doubt_and_resend_is_an_explicit_choice(
    send_settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp: SmtpServer, tmp_path: Path
) -> None:
    emails = await add_profiles(sessions, PROFILES, ("en", "fa", "th"))
    code = await launch_and_stop(send_settings, smtp, signal.SIGKILL, tmp_path / "launch.log")
    assert code == -signal.SIGKILL
    killed = await statuses(sessions)
    assert set(killed) <= {"sent", "queued"} and await in_flight_marks(sessions) <= RUNNING_AT_ONCE

    marks = await in_flight_marks(sessions)
    code, output = await finish(ecrm(send_settings, "campaign", "status", "welcome", "--run", "k1"))
    assert code == 0 and "stopped: the process that was sending it" in output, output
    assert ("were in a chunk being sent when it stopped" in output) == (marks > 0), output

    code, output = await finish(ecrm(send_settings, "campaign", "resume", "welcome", "--run", "k1"))
    assert code == 0, output
    resumed = await statuses(sessions)
    in_doubt = resumed.get("unknown", set())
    # settled from the dead launcher's journal: only what was written to a connection and not
    # yet answered is in doubt, one message per connection at most, not the chunks in flight
    assert len(in_doubt) <= CONNECTIONS and set(resumed) <= {"sent", "unknown"}
    received = smtp.handler.per_recipient()
    assert set(received.values()) == {1}  # nobody got two
    assert set(emails) - in_doubt <= set(received)  # everything not in doubt went out
    if in_doubt:
        assert "--unknown" in output and "in doubt" in output, output

    code, output = await finish(ecrm(send_settings, "campaign", "resend", "welcome", "--run", "k1", "--unknown"))
    assert code == 0, output
    assert f"warning: {len(in_doubt)} deliveries in doubt are sent again" in output, output
    received = smtp.handler.per_recipient()
    assert set(received) == set(emails)
    assert {email for email, copies in received.items() if copies > 1} <= in_doubt  # only the ones in doubt
    assert await statuses(sessions) == {"sent": set(emails)}
