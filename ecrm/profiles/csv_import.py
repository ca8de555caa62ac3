"""Stage 1: import profiles from a CSV file, in batches, reporting every bad row.

The header names the columns. `external_id`, `email`, `phone`, `first_name`, `last_name`,
`locale` and `time_zone` fill the profile; `consent_email` (likewise `consent_sms`,
`consent_push`) takes yes/no, true/false, 1/0 or granted/withdrawn, in any case; every other
column becomes a trait, kept as the text in the cell (a CSV cannot tell the zip code "01234"
from a number, so we don't guess). An empty cell changes nothing.

A row naming an external_id that an earlier imported row of the same file named is rejected,
pointing at that row: the first row wins, and nothing is silently merged or overwritten (two
rows for one customer is a mistake in the export more often than an intended update).

Reading and validating run in a worker thread, a batch at a time, so a large file never holds
the event loop; each batch is written once, stamped with the clock's time when it is written
(on SQLite each batch is committed; on PostgreSQL the whole import is one transaction, so one
that fails stores nothing). Rows are validated as `ecrm.profiles.csv_rows` says. Every problem
goes to the errors file, when one is given, as the import goes.
"""

from __future__ import annotations

import asyncio
import csv
import gc
import itertools
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.clock import Clock
from ecrm.db import refresh_statistics
from ecrm.errors import SpecError, SpecProblem
from ecrm.profiles.copy_import import StagedImport, StagingRows, staging_rows
from ecrm.profiles.csv_rows import CsvRows
from ecrm.profiles.ingest import (
    ProfileIn,
    UpsertCounts,
    input_errors,
    text_traits_within,
    traits_size,
    upsert_profile_batch,
)
from ecrm.profiles.rejections import Rejection, RejectionFile

CONSENT_HELP = "expected yes, no, true, false, 1, 0, granted or withdrawn"
BATCH = {"sqlite": 1000, "postgresql": 10_000}  # rows per write (per COPY on PostgreSQL) unless told


@dataclass(frozen=True)
class ImportReport:
    """`skipped` rows were rejected, with `problems` problems in all (a row can have several);
    `shown` holds the first of them, every one is in the errors file when one was given."""

    imported: int
    created: int
    skipped: int
    problems: int = 0
    shown: list[Rejection] = field(default_factory=list)
    rows: int = 0

    @property
    def errors(self) -> list[str]:
        return [str(rejection) for rejection in self.shown]


_Outcome = tuple[int, ProfileIn] | list[Rejection] | None  # a record: a profile from its line, problems, blank


@dataclass
class _Chunk:
    """What one read from the file produced: valid rows, and the problems of the bad ones."""

    rows_read: int = 0
    profiles: list[ProfileIn] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)  # each profile's line in the file
    errors: list[Rejection] = field(default_factory=list)
    skipped: int = 0
    last: bool = False


@dataclass
class _Checked:
    """One read's records validated one by one, before repeated external ids are refused."""

    chunk: _Chunk  # with the lines that are not UTF-8 counted
    outcomes: list[Rejection | _Outcome]
    failure: Rejection | None  # the CSV error that ended the file, if one did

    def valid(self) -> list[tuple[int, ProfileIn]]:
        return [outcome for outcome in self.outcomes if isinstance(outcome, tuple)]

    def named(self) -> set[str]:
        """The external ids the valid rows name."""
        return {outcome[1].external_id for outcome in self.outcomes if isinstance(outcome, tuple)}


async def import_csv(sessions: async_sessionmaker[AsyncSession], path: Path, clock: Clock,
                     progress: Callable[[int], None] | None = None, batch_size: int | None = None,
                     errors_file: Path | None = None, show: int = 50,
                     max_traits_bytes: int | None = None) -> ImportReport:
    """Import `path`; `progress` is called after each batch with the number of rows read so far
    (as `count_rows` counts them). Every problem is written to `errors_file` when given; the
    report keeps the first `show`. A row that would grow a profile's traits past
    `max_traits_bytes` is rejected and the profile left as it was.

    A file that cannot be read at all, or has no `external_id` column, raises SpecError, as
    does an errors file that cannot be written.
    """
    reader = await asyncio.to_thread(_CsvProfiles, path)
    try:
        rejected = await asyncio.to_thread(RejectionFile, errors_file, path) if errors_file else None
        try:
            totals = _Totals(show, rejected)
            with _fewer_collections() as collections, _prompt_switches():
                report = await _import(sessions, reader, clock, totals, progress, batch_size, max_traits_bytes,
                                       collections)
        finally:
            if rejected is not None:
                await asyncio.to_thread(rejected.close)
    finally:
        await asyncio.to_thread(reader.close)
    await refresh_statistics(sessions, "profiles", "consents")
    return report


COLLECT_EVERY = 100_000  # rows read between two garbage collections while an import runs


@dataclass
class _Collections:
    """Full garbage collections while the automatic ones are off, one every `every` rows."""

    every: int = COLLECT_EVERY
    last: int = 0

    def after(self, rows: int) -> None:
        """`rows` have been read so far."""
        if rows - self.last >= self.every:
            self.last = rows
            gc.collect()


@contextmanager
def _fewer_collections() -> Iterator[_Collections]:
    """Turn the automatic garbage collection off, and collect every COLLECT_EVERY rows instead.
    The batches in flight are tens of thousands of live dicts, and each automatic collection of
    an older generation walked them again: with a young generation of 50,000 objects, collections
    still took a quarter of the reader's CPU at 10,000 rows a batch. An import makes few reference
    cycles; the periodic collection bounds what they hold, in flat memory."""
    enabled, frozen = gc.isenabled(), gc.get_freeze_count()
    if not frozen:  # (a process that froze its objects itself keeps them frozen)
        gc.freeze()  # what the process holds before the import: not garbage, not walked again
    gc.disable()
    try:
        yield _Collections()
    finally:
        if enabled:
            gc.enable()
        if not frozen:
            gc.unfreeze()


SWITCH_INTERVAL = 0.0005  # seconds: how long the reading thread may keep the GIL from the loop


@contextmanager
def _prompt_switches() -> Iterator[None]:
    """Let the event loop take the GIL from the reading thread sooner. When an answer from the
    database arrives, the loop waits for the GIL, by default up to 5 ms while the reading thread
    validates rows, and the database waits with it, for each of a batch's statements."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


async def _import(sessions: async_sessionmaker[AsyncSession], reader: _CsvProfiles, clock: Clock,
                  totals: _Totals, progress: Callable[[int], None] | None, batch_size: int | None,
                  max_traits_bytes: int | None, collections: _Collections) -> ImportReport:
    async with sessions() as probe:
        dialect = probe.get_bind().dialect.name
    batch_size = batch_size or BATCH.get(dialect, 1000)
    if dialect == "postgresql":
        return await _import_staged(sessions, reader, clock, totals, progress, batch_size, max_traits_bytes,
                                    collections)
    while True:
        chunk = await asyncio.to_thread(reader.read, batch_size)
        counts = UpsertCounts(created=0, updated=0)
        if chunk.profiles:
            async with sessions.begin() as session:
                counts = await upsert_profile_batch(session, chunk.profiles, clock.now(), max_traits_bytes)
            reader.reject_oversized(chunk, counts.oversized, max_traits_bytes)
        await totals.add(chunk, counts)
        _report_progress(progress, chunk, totals)
        collections.after(totals.rows)
        if chunk.last:
            return totals.report()


async def _import_staged(sessions: async_sessionmaker[AsyncSession], reader: _CsvProfiles, clock: Clock,
                         totals: _Totals, progress: Callable[[int], None] | None, batch_size: int,
                         max_traits_bytes: int | None, collections: _Collections) -> ImportReport:
    """PostgreSQL: COPY each batch into staging tables and merge it (ecrm.profiles.copy_import),
    all in one transaction. Reading the next batch and building its staging rows (in a thread)
    overlap the merge of this one."""
    def read() -> tuple[_Checked, StagingRows]:
        checked = reader.check(batch_size)
        valid = checked.valid()
        return checked, staging_rows([profile for _, profile in valid], {p.external_id: line for line, p in valid})

    async with sessions.begin() as session:
        staged = StagedImport(session)
        await staged.open()
        checked, rows = await asyncio.to_thread(read)
        while True:
            following = None if checked.chunk.last else asyncio.create_task(asyncio.to_thread(read))
            try:
                chunk = await _settle(staged, reader, checked, max_traits_bytes)
                if len(chunk.profiles) < len(rows.profiles):  # some refused: the rows built for them dropped
                    rows = staging_rows(chunk.profiles, chunk.lines)
                await _merge(staged, reader, chunk, rows, clock, totals, progress, max_traits_bytes)
                collections.after(totals.rows)
            except BaseException:
                if following is not None:  # let the reading thread finish before the file closes
                    await asyncio.gather(following, return_exceptions=True)
                raise
            if following is None:
                break
            checked, rows = await following
    return totals.report()


async def _settle(staged: StagedImport, reader: _CsvProfiles, checked: _Checked,
                  max_traits_bytes: int | None) -> _Chunk:
    """A checked read as a chunk, refusing the rows that repeat an external id staged before
    (asked once the batch before is merged) or whose traits alone pass the cap."""
    named = checked.named()
    chunk = reader.settle(checked, await staged.lines_of(list(named)) if named else {}, named)
    if max_traits_bytes is not None:
        reader.reject_oversized(chunk, _over_cap_alone(chunk.profiles, max_traits_bytes), max_traits_bytes)
    return chunk


async def _merge(staged: StagedImport, reader: _CsvProfiles, chunk: _Chunk, rows: StagingRows, clock: Clock,
                 totals: _Totals, progress: Callable[[int], None] | None, max_traits_bytes: int | None) -> None:
    created = 0
    if chunk.profiles:
        merged = await staged.merge(rows, clock.now(), max_traits_bytes)
        reader.reject_oversized(chunk, list(merged.oversized), max_traits_bytes)
        created = merged.created
    await totals.add(chunk, UpsertCounts(created=created, updated=0))
    _report_progress(progress, chunk, totals)


def _over_cap_alone(profiles: list[ProfileIn], limit: int) -> list[str]:
    # A CSV's traits are text: most are measured by a bound, without encoding them.
    return [p.external_id for p in profiles
            if p.traits and not text_traits_within(p.traits, limit) and traits_size(p.traits) > limit]


def _report_progress(progress: Callable[[int], None] | None, chunk: _Chunk, totals: _Totals) -> None:
    if progress is not None and chunk.rows_read:
        progress(totals.rows)


@dataclass
class _Totals:
    show: int
    rejected: RejectionFile | None
    rows: int = 0
    imported: int = 0
    created: int = 0
    skipped: int = 0
    problems: int = 0
    shown: list[Rejection] = field(default_factory=list)

    async def add(self, chunk: _Chunk, counts: UpsertCounts) -> None:
        self.rows += chunk.rows_read
        self.imported += len(chunk.profiles)
        self.created += counts.created
        self.skipped += chunk.skipped
        self.problems += len(chunk.errors)
        self.shown += chunk.errors[: max(0, self.show - len(self.shown))]
        if self.rejected is not None and chunk.errors:
            await asyncio.to_thread(self.rejected.write, chunk.errors)

    def report(self) -> ImportReport:
        return ImportReport(self.imported, self.created, self.skipped, self.problems, self.shown, self.rows)


def count_rows(path: Path) -> int | None:
    """How many rows an import of `path` will read (the progress bar's total), counted as the
    import counts them: a record whose cells span lines is one row, a blank row is none, a line
    that is not UTF-8 is one. None when the file cannot be read. Blocks: run it in a thread."""
    try:
        with path.open("rb") as file:
            not_utf8 = 0

            def lines() -> Iterator[str]:
                nonlocal not_utf8
                for raw in file:
                    try:
                        yield _decoded(raw)
                    except UnicodeDecodeError:
                        not_utf8 += 1
            reader = csv.reader(lines())
            rows = 0
            try:
                next(reader, None)
                rows = sum(1 for cells in reader if "".join(cells).strip())
            except csv.Error:
                pass
            return rows + not_utf8
    except OSError:
        return None


def _decoded(raw: bytes) -> str:
    """A line as the utf-8-sig codec decodes it (a leading byte order mark dropped), without
    its Python-level decode function (~1 us a line)."""
    text = raw.decode()
    return text[1:] if text.startswith("\ufeff") else text


class _CsvProfiles:
    """A CSV file read and validated a chunk at a time; every method blocks (run it in a thread).

    The file is decoded line by line, so a line that is not UTF-8 is reported and skipped
    on its own instead of ending the import.
    """

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        try:
            self._file: BinaryIO = path.open("rb")
        except OSError as exc:
            raise self._fatal(None, f"cannot read the file: {exc.strerror}") from exc
        self._line = 0
        self._record_start: int | None = None  # the first line of the record being read
        self._chunk = _Chunk()
        self._reader = csv.reader(self._lines())
        self._done = False
        self._first_line: dict[str, int] = {}  # external id -> the line of its first row
        self._refused: dict[str, int] = {}  # rows left out for their size, by external id
        self._events: list[tuple[int, list[str]] | Rejection] = []  # a read's records and bad lines, in order
        try:
            self.columns = self._header()
        except BaseException:
            self._file.close()
            raise
        self._rows = CsvRows(self.columns, f"csv:{path.name}"[:200])

    def close(self) -> None:
        self._file.close()

    def _fatal(self, line: int | None, message: str) -> SpecError:
        return SpecError([SpecProblem(self.name, line, "", message)])

    def _lines(self) -> Iterator[str]:
        for raw in self._file:
            self._line += 1
            try:
                text = _decoded(raw)
            except UnicodeDecodeError:
                if self._line == 1:
                    raise
                self._chunk.rows_read += 1
                self._chunk.skipped += 1
                self._events.append(Rejection(self.name, self._line, "", "the line is not UTF-8 text (save as UTF-8)"))
                continue
            if self._record_start is None:
                self._record_start = self._line
            yield text

    def _header(self) -> list[str]:
        try:
            header = next(self._reader, None)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise self._fatal(1, f"cannot read the header: {exc}") from exc
        self._record_start = None
        columns = [name.strip() for name in header or []]
        if "external_id" not in (name.lower() for name in columns):
            raise self._fatal(1, "the header has no external_id column")
        duplicates = sorted({name for name in columns if columns.count(name) > 1})
        if duplicates:
            raise self._fatal(1, f"the header repeats {', '.join(duplicates)}")
        return columns

    def read(self, limit: int) -> _Chunk:
        """The next `limit` records (blank ones included) checked and settled, remembering every
        external id read (`check`, then `settle` without earlier lines)."""
        return self.settle(self.check(limit))

    def check(self, limit: int) -> _Checked:
        """The next `limit` records (blank ones included), each validated on its own; `last`
        once the file is exhausted. Whether a row repeats an earlier one is `settle`'s part."""
        chunk = self._chunk = _Chunk()
        self._events, records, failure = [], 0, None
        try:
            for cells in itertools.islice(self._reader, limit) if not self._done else ():
                records += 1
                start, self._record_start = self._record_start or self._line, None
                self._events.append((start, cells))
        except csv.Error as exc:
            self._done = True
            failure = Rejection(self.name, self._line, "", f"{exc}; the rest of the file was not read")
        outcomes = [event if isinstance(event, Rejection) else self._checked(*event) for event in self._events]
        self._events = []
        chunk.last = self._done = self._done or records < limit
        return _Checked(chunk, outcomes, failure)

    def settle(self, checked: _Checked, earlier: dict[str, int] | None = None, named: set[str] | None = None
               ) -> _Chunk:
        """A checked read as a chunk, a row naming an external id an earlier row named refused.

        Without `earlier`, every external id read is remembered. With it (the lines of the
        staged rows naming the external ids of this read, `_Checked.named`), only this read's
        and the rows refused for their size are: a file of any size is read in flat memory.
        `named` is `checked.named()`, when the caller has it."""
        if earlier is not None:
            named = checked.named() if named is None else named
            self._first_line = {**earlier, **self._refused,
                                **{ext: line for ext, line in self._first_line.items() if ext in named}}
        for outcome in checked.outcomes:
            self._add(checked.chunk, outcome)
        if checked.failure is not None:
            checked.chunk.errors.append(checked.failure)
        return checked.chunk

    def _checked(self, line: int, cells: list[str]) -> _Outcome:
        """A record as a profile from its line, or its problems; None for a blank one."""
        if not "".join(cells).strip():  # every cell blank
            return None
        if len(cells) > len(self.columns):
            return [Rejection(self.name, line, "", f"the row has {len(cells)} cells but the header only "
                              f"{len(self.columns)}", self._rows.external_id(cells))]
        try:
            return line, self._rows.profile(cells)
        except ValidationError as exc:
            external_id = self._rows.external_id(cells)
            return [Rejection(self.name, line, column, message, external_id) for column, message in _located(exc)]

    def _add(self, chunk: _Chunk, outcome: Rejection | _Outcome) -> None:
        if isinstance(outcome, Rejection):  # a line that is not UTF-8: counted as it was read
            chunk.errors.append(outcome)
            return
        if outcome is None:
            return
        chunk.rows_read += 1
        errors = outcome if isinstance(outcome, list) else self._first_row(chunk, *outcome)
        if errors:
            chunk.skipped += 1
            chunk.errors += errors

    def _first_row(self, chunk: _Chunk, line: int, profile: ProfileIn) -> list[Rejection]:
        first = self._first_line.setdefault(profile.external_id, line)
        if first != line:
            return [Rejection(self.name, line, "external_id", f"{profile.external_id!r} is already on line {first}; "
                              "only the first row is imported (merge the rows, or import this one on its own)",
                              profile.external_id)]
        chunk.profiles.append(profile)
        chunk.lines[profile.external_id] = line
        return []

    def reject_oversized(self, chunk: _Chunk, external_ids: Sequence[str], limit: int | None) -> None:
        """The rows the upsert left out because their traits would pass the cap, as rejections."""
        for ext in external_ids:
            self._refused[ext] = chunk.lines[ext]
            chunk.errors.append(Rejection(self.name, chunk.lines[ext], "", f"the profile's traits would take more "
                                          f"than {limit} bytes (api.max_traits_bytes); it was left as it was", ext))
        chunk.skipped += len(external_ids)
        if external_ids:
            left_out = set(external_ids)
            chunk.profiles = [p for p in chunk.profiles if p.external_id not in left_out]


def _located(exc: ValidationError) -> list[tuple[str, str]]:
    """Each error as (CSV column, message), the message quoting the bad cell."""
    out = []
    for err in input_errors(exc):
        parts = err.field.split(".")
        if parts[0] == "consent" and len(parts) > 1:
            out.append((f"consent_{parts[1]}", f"{CONSENT_HELP} (got {err.value!r})"))
        elif isinstance(err.value, str):
            out.append((err.field or "row", f"{err.message} (got {err.value!r})"))
        else:
            out.append((err.field or "row", err.message))
    return out
