"""The send journal: what a sender killed outright had written and had answered, read back by
the next sender only once that process is gone."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ecrm.deliveries.claims import INTERRUPTED
from ecrm.deliveries.journal import CAPACITY, REQUEUED, Journal, abandoned, journal_dir, process_start
from ecrm.deliveries.states import DeliveryStatus, Reason
from ecrm.deliveries.store import Change
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(process_start(os.getpid()) is None, reason="needs /proc")

DEAD_SENDER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from ecrm.channels.base import SendResult
    from ecrm.deliveries.journal import Journal
    from ecrm.errors import PermanentSendError, TransientSendError, UncertainSendError
    journal = Journal(Path(sys.argv[1]), 7, 3, 2, "smtp")
    journal.begin([100, 101])  # an earlier chunk, recorded, then the one in flight:
    journal.begin([201, 202, 203, 204, 205, 206, 207])
    journal.writing(0); journal.done(0, SendResult("smtp", "<a@shop.example>"))
    journal.writing(1); journal.done(1, TransientSendError("421 try again"))
    journal.writing(2); journal.done(2, PermanentSendError("550 no such user"))
    journal.writing(3); journal.done(3, UncertainSendError("adapter bug"))
    journal.writing(4)  # written, never answered
    journal.done(5, TransientSendError("connection lost before its content"))  # never written
    os._exit(0)  # as if killed: the journal is neither closed nor removed
""")


def test_a_dead_senders_journal_settles_its_chunk_message_by_message(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-c", DEAD_SENDER, str(tmp_path)], cwd=ROOT, check=True)
    (found,) = abandoned(tmp_path, 7, 3)
    assert found.attempt == 2 and found.path == tmp_path / "7-3-2.journal"
    assert found.changes == [
        Change(201, DeliveryStatus.SENT, None, "smtp", "<a@shop.example>"),
        Change(202, DeliveryStatus.QUEUED, error=REQUEUED),
        Change(203, DeliveryStatus.QUEUED, error=REQUEUED),
        Change(204, DeliveryStatus.UNKNOWN, Reason.ADAPTER_ERROR,
               error="the adapter failed unexpectedly, then the sender died"),
        Change(205, DeliveryStatus.UNKNOWN, Reason.INTERRUPTED, error=INTERRUPTED),
        Change(206, DeliveryStatus.QUEUED, error=REQUEUED),
    ]  # 207 was never written: no change, it stays queued
    assert abandoned(tmp_path, 7, 4) == [] and abandoned(tmp_path / "none", 7, 3) == []


def test_a_live_senders_journal_is_left_alone_and_closing_removes_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path, 1, 0, 1, "smtp")
    journal.begin([5])
    journal.writing(0)
    assert abandoned(tmp_path, 1, 0) == []  # this process is alive
    journal.close()
    assert not (tmp_path / "1-0-1.journal").exists()


def test_a_pid_reused_by_a_later_process_counts_as_dead(tmp_path: Path) -> None:
    journal = Journal(tmp_path, 1, 0, 1, "smtp")
    journal.begin([5])
    journal.writing(0)
    path = journal.path
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, 12, (process_start(os.getpid()) or 0) - 1)  # "started" one tick earlier
    journal.close()
    path.write_bytes(bytes(data))
    (found,) = abandoned(tmp_path, 1, 0)
    assert found.changes == [Change(5, DeliveryStatus.UNKNOWN, Reason.INTERRUPTED, error=INTERRUPTED)]


def test_a_journal_cut_short_before_use_settles_nothing(tmp_path: Path) -> None:
    (tmp_path / "1-0-1.journal").write_bytes(b"")
    assert [found.changes for found in abandoned(tmp_path, 1, 0)] == [[]]


def test_a_chunk_larger_than_the_journal_is_refused(tmp_path: Path) -> None:
    journal = Journal(tmp_path, 1, 0, 1, "smtp")
    with pytest.raises(ValueError, match=f"up to {CAPACITY}"):
        journal.begin(list(range(CAPACITY + 1)))
    journal.close()


def test_each_database_has_its_own_journals() -> None:
    assert journal_dir("sqlite+aiosqlite:///a.db") != journal_dir("sqlite+aiosqlite:///b.db")
    assert journal_dir("sqlite+aiosqlite:///a.db") == journal_dir("sqlite+aiosqlite:///a.db")
