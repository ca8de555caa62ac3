"""A send attempt's journal: which messages of the chunk in flight were written to the provider,
and what the provider answered, kept in a memory-mapped file that outlives the process.

The database marks a whole chunk in flight before it is sent (`deliveries.claims`). Without
more, a sender killed outright (SIGKILL, the OOM killer) would leave that whole chunk, up to 200
messages, in doubt. A store into a shared file mapping costs no system call, and the kernel keeps
the mapping's pages when the process dies, so the sender notes each message as it goes:
`writing` just before its content goes to the provider, then its answer. The next sender of the
batch on this host settles the chunk message by message (`abandoned`):

- answered and accepted -> `sent`, with the provider's message id;
- answered with an error -> queued again (it was not delivered);
- written and not answered -> `unknown` (in doubt): only these may have reached the recipient;
- never written (still being composed, or waiting for a connection) -> still queued.

A journal is read only once its process is gone (its pid has exited, or belongs to a process
started later), so a live sender is never raced. Not covered: power loss (nothing is synced to
disk) and a sender on another host, whose chunk is left wholly in doubt as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import re
import struct
import tempfile
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ecrm.channels.base import Outcome, SendResult
from ecrm.deliveries.claims import INTERRUPTED
from ecrm.deliveries.states import DeliveryStatus, Reason
from ecrm.deliveries.store import Change
from ecrm.errors import UncertainSendError

CAPACITY = 256  # messages of one chunk (deliveries.send.CLAIM_CHUNK is 200)
MESSAGE_ID = 126  # bytes of a provider message id kept; a longer one is recorded without it
_HEAD = struct.Struct("<8sIQI16s")  # magic, pid, process start, messages in the chunk, provider
_MAGIC = b"ecrmjnl1"
_IDS = 64
_STATES = _IDS + 8 * CAPACITY
_MESSAGE_IDS = _STATES + CAPACITY
_SIZE = _MESSAGE_IDS + (MESSAGE_ID + 2) * CAPACITY
_NAME = re.compile(r"(\d+)-(\d+)-(\d+)\.journal")

WRITING, SENT, REFUSED, UNCERTAIN = 1, 2, 3, 4
REQUEUED = "answered with an error by a sender that then died; queued again"


def journal_dir(database_url: str) -> Path:
    """Where this database's journals live on this host."""
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "ecrm-journals" / digest


def process_start(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (Linux), or None if no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(stat.rsplit(b")", 1)[1].split()[19])


class Journal:
    """The journal of one attempt at one batch; `close` removes it (the chunk is recorded)."""

    def __init__(self, directory: Path, send_id: int, batch: int, attempt: int, provider: str) -> None:
        _own_directory(directory)
        self.path = directory / f"{send_id}-{batch}-{attempt}.journal"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, _SIZE)
            self._map = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)
        pid = os.getpid()
        self._head = (_MAGIC, pid, process_start(pid) or 0, provider.encode()[:16])
        self._write_head(0)
        self._ids = memoryview(self._map)[_IDS:_STATES].cast("Q")

    def _write_head(self, count: int) -> None:
        magic, pid, started, provider = self._head
        _HEAD.pack_into(self._map, 0, magic, pid, started, count, provider)

    def begin(self, delivery_ids: Sequence[int]) -> None:
        """A new chunk: nothing of it written yet. Called before any of it is handed over."""
        count = len(delivery_ids)
        if count > CAPACITY:  # a message outside the journal would be taken for never written
            raise ValueError(f"a journal holds chunks of up to {CAPACITY} messages, not {count}")
        self._write_head(0)
        self._ids[:count] = array("Q", delivery_ids)
        self._map[_STATES:_STATES + count] = bytes(count)
        self._write_head(count)

    def writing(self, index: int) -> None:
        if index < CAPACITY:
            self._map[_STATES + index] = WRITING

    def done(self, index: int, outcome: Outcome) -> None:
        if index >= CAPACITY:
            return
        if isinstance(outcome, SendResult):
            message_id = (outcome.provider_message_id or "").encode()
            if len(message_id) <= MESSAGE_ID:
                at = _MESSAGE_IDS + index * (MESSAGE_ID + 2)
                self._map[at:at + 2 + len(message_id)] = len(message_id).to_bytes(2, "little") + message_id
            self._map[_STATES + index] = SENT
        else:
            self._map[_STATES + index] = UNCERTAIN if isinstance(outcome, UncertainSendError) else REFUSED

    def close(self) -> None:
        self._ids.release()
        self._map.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _own_directory(directory: Path) -> None:
    """Make `directory` (0700), or raise PermissionError if another user owns it or its parent:
    a journal someone else could write would tell the next sender what to resend."""
    for folder in (directory.parent, directory):
        folder.mkdir(mode=0o700, exist_ok=True)
        if folder.stat().st_uid != os.getuid():
            raise PermissionError(f"{folder} belongs to another user; no send journal is kept there")


@dataclass(frozen=True)
class Abandoned:
    """A dead sender's journal: its attempt, and what its chunk in flight comes to."""

    path: Path
    attempt: int
    changes: list[Change]


def abandoned(directory: Path, send_id: int, batch: int) -> list[Abandoned]:
    """The journals of this batch left by processes that are gone (blocking: run in a thread)."""
    found: list[Abandoned] = []
    if not directory.is_dir() or directory.stat().st_uid != os.getuid():
        return found
    for path in sorted(directory.glob(f"{send_id}-{batch}-*.journal")):
        match = _NAME.fullmatch(path.name)
        if match is None:
            continue
        changes = _read_if_dead(path)
        if changes is not None:
            found.append(Abandoned(path, int(match.group(3)), changes))
    return found


def _read_if_dead(path: Path) -> list[Change] | None:
    data = path.read_bytes()
    if len(data) != _SIZE:
        return []  # cut short before it was ever used: nothing was handed over with it
    magic, pid, started, count, provider = _HEAD.unpack_from(data)
    if magic != _MAGIC or count > CAPACITY:
        return []
    if started and process_start(pid) == started:
        return None  # still running
    ids = memoryview(data)[_IDS:_STATES].cast("Q")
    return [change for index in range(count)
            if (change := _change(data, index, ids[index], provider.rstrip(b"\0").decode())) is not None]


def _change(data: bytes, index: int, delivery_id: int, provider: str) -> Change | None:
    state = data[_STATES + index]
    if state == SENT:
        at = _MESSAGE_IDS + index * (MESSAGE_ID + 2)
        length = int.from_bytes(data[at:at + 2], "little")
        message_id = data[at + 2:at + 2 + length].decode(errors="replace") or None
        return Change(delivery_id, DeliveryStatus.SENT, None, provider, message_id)
    if state == REFUSED:
        return Change(delivery_id, DeliveryStatus.QUEUED, error=REQUEUED)
    if state == UNCERTAIN:
        return Change(delivery_id, DeliveryStatus.UNKNOWN, Reason.ADAPTER_ERROR,
                      error="the adapter failed unexpectedly, then the sender died")
    if state == WRITING:
        return Change(delivery_id, DeliveryStatus.UNKNOWN, Reason.INTERRUPTED, error=INTERRUPTED)
    return None
