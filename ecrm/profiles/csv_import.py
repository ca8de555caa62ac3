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

On PostgreSQL, a file of READING_PROCESS_BYTES or more is read in a process of its own
(`ecrm.streamed`), which sends each batch as COPY text (`staged_batches`): reading and
validating take ~17 us of CPU a row, and in the importing process they took turns on one core
with the event loop writing the batches, so neither the database nor the second core was kept
busy. The reading process settles what it can alone (a row repeating one of its batch, traits
over the cap by themselves); this process asks the staging tables whether a row repeats one of a
batch before, and writes.
"""

from __future__ import annotations

import asyncio
import csv
import gc
import itertools
import os
import sys
from array import array
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.clock import Clock
from ecrm.db import refresh_statistics
from ecrm.errors import SpecError, SpecProblem
from ecrm.profiles.copy_import import Merged, StagedImport, staging_text
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
from ecrm.streamed import Stream, in_child_process, in_thread

CONSENT_HELP = "expected yes, no, true, false, 1, 0, granted or withdrawn"
BATCH = {"sqlite": 1000, "postgresql": 10_000}  # rows per write (per COPY on PostgreSQL) unless told
READING_PROCESS_BYTES = 4 * 2**20  # a file this large is read in a process of its own (PostgreSQL): ~50,000 rows


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


@dataclass
class StagedBatch:
    """One read of the file as the reading process sends it (`staged_batches`): its rows to
    stage as COPY text, and what it refused, each problem by its place among the read's records
    (the order of the report)."""

    rows_read: int = 0
    skipped: int = 0  # rows refused for their problems or as repeats within the read, lines not UTF-8
    profiles: bytes = b""  # the rows to stage, as `staging_text` has them
    consents: bytes = b""
    lines: array[int] = field(default_factory=lambda: array("I"))  # each staged row's line
    places: array[int] = field(default_factory=lambda: array("I"))  # and its place among the read's records
    problems: list[tuple[int, Rejection]] = field(default_factory=list)  # (place, problem)
    repeats: list[tuple[int, int, str, int]] = field(default_factory=list)  # (place, line, external id, first line)
    oversized: dict[str, tuple[int, int]] = field(default_factory=dict)  # traits over the cap: id -> (place, line)
    failure: Rejection | None = None
    last: bool = False


async def import_csv(sessions: async_sessionmaker[AsyncSession], path: Path, clock: Clock,
                     progress: Callable[[int], None] | None = None, batch_size: int | None = None,
                     errors_file: Path | None = None, show: int = 50,
                     max_traits_bytes: int | None = None, reading_process: bool | None = None) -> ImportReport:
    """Import `path`; `progress` is called after each batch with the number of rows read so far
    (as `count_rows` counts them). Every problem is written to `errors_file` when given; the
    report keeps the first `show`. A row that would grow a profile's traits past
    `max_traits_bytes` is rejected and the profile left as it was. On PostgreSQL the file is read
    in a process of its own when `reading_process` says so (by default, when it is large).

    A file that cannot be read at all, or has no `external_id` column, raises SpecError, as
    does an errors file that cannot be written; WorkerProcessError says the reading process
    failed or died.
    """
    reader = await asyncio.to_thread(_CsvProfiles, path)
    try:
        rejected = await asyncio.to_thread(RejectionFile, errors_file, path) if errors_file else None
        try:
            totals = _Totals(show, rejected)
            with _fewer_collections() as collections, _prompt_switches():
                report = await _import(sessions, reader, clock, totals, progress, batch_size, max_traits_bytes,
                                       collections, reading_process)
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
                  max_traits_bytes: int | None, collections: _Collections, reading_process: bool | None
                  ) -> ImportReport:
    async with sessions() as probe:
        dialect = probe.get_bind().dialect.name
    batch_size = batch_size or BATCH.get(dialect, 1000)
    if dialect == "postgresql":
        if reading_process is None:
            reading_process = reader.size >= READING_PROCESS_BYTES
        produce = (in_child_process(staged_batches, reader.path, batch_size, max_traits_bytes, name="CSV reading")
                   if reading_process else in_thread(staged_batches, reader.path, batch_size, max_traits_bytes))
        return await _import_staged(sessions, produce, reader.name, clock, totals, progress, max_traits_bytes,
                                    collections)
    while True:
        chunk = await asyncio.to_thread(reader.read, batch_size)
        counts = UpsertCounts(created=0, updated=0)
        if chunk.profiles:
            async with sessions.begin() as session:
                counts = await upsert_profile_batch(session, chunk.profiles, clock.now(), max_traits_bytes)
            reader.reject_oversized(chunk, counts.oversized, max_traits_bytes)
        await totals.add(chunk.rows_read, len(chunk.profiles), counts.created, chunk.skipped, chunk.errors)
        _report_progress(progress, chunk.rows_read, totals)
        collections.after(totals.rows)
        if chunk.last:
            return totals.report()


async def _import_staged(sessions: async_sessionmaker[AsyncSession],
                         produce: AbstractAsyncContextManager[Stream[StagedBatch]], name: str, clock: Clock,
                         totals: _Totals, progress: Callable[[int], None] | None, max_traits_bytes: int | None,
                         collections: _Collections) -> ImportReport:
    """PostgreSQL: COPY each batch `produce` makes into staging tables and merge it
    (ecrm.profiles.copy_import), all in one transaction. The next batch is made, and received,
    while this one is merged."""
    async with produce as batches, sessions.begin() as session:
        staged = StagedImport(session)
        await staged.open()
        refused: dict[str, int] = {}  # the first rows refused for their size, no profile of this import
        async for batch in batches:
            await _write_batch(staged, batch, name, clock, totals, max_traits_bytes, refused)
            _report_progress(progress, batch.rows_read, totals)
            collections.after(totals.rows)
    return totals.report()


async def _write_batch(staged: StagedImport, batch: StagedBatch, name: str, clock: Clock, totals: _Totals,
                       max_traits_bytes: int | None, refused: dict[str, int]) -> None:
    """Stage and merge a batch, refusing the rows that repeat an external id a batch before
    named: one this import wrote a profile for (the merge finds those), or one of `refused`,
    which it adds to. Problems are reported by their places among the batch's records."""
    if batch.profiles:
        await staged.stage(batch.profiles, batch.consents)
    early = await staged.naming(list(refused)) if refused and batch.profiles else {}
    if early:
        await staged.drop(list(early))
    written = await staged.written(list(batch.oversized)) if batch.oversized else set()
    staged_rows = len(batch.lines) - len(early)
    merged = Merged(0, {}, {})
    if staged_rows:
        merged = await staged.merge(staged_rows, clock.now(), max_traits_bytes)
    later = [*merged.repeated, *written]
    earlier = {**(await staged.lines_of(later) if later else {}),
               **{ext: refused[ext] for ext in [*early, *batch.oversized] if ext in refused}}
    places = dict(zip(batch.lines, batch.places, strict=True)) if early or merged.repeated else {}
    problems = batch.problems + [(place, _repeated(name, line, ext, earlier.get(ext, first)))
                                 for place, line, ext, first in batch.repeats]
    problems += [(places[line], _repeated(name, line, ext, earlier[ext]))
                 for ext, line in [*early.items(), *merged.repeated.items()]]
    problems += [(place, _repeated(name, line, ext, earlier[ext]))
                 for ext, (place, line) in batch.oversized.items() if ext in earlier]
    too_big = {ext: line for ext, (_, line) in batch.oversized.items() if ext not in earlier}
    if too_big:
        await staged.keep_lines(too_big)
    refused |= too_big | merged.oversized
    problems.sort(key=itemgetter(0))  # stable: a row's problems keep their order
    errors = [problem for _, problem in problems] + ([batch.failure] if batch.failure else [])
    errors += [_too_big(name, line, ext, max_traits_bytes) for ext, line in [*too_big.items(),
                                                                            *merged.oversized.items()]]
    left_out = len(merged.oversized) + len(merged.repeated)
    await totals.add(batch.rows_read, staged_rows - left_out, merged.created,
                     batch.skipped + len(batch.oversized) + len(early) + left_out, errors)


def _over_cap(profile: ProfileIn, limit: int) -> bool:
    # A CSV's traits are text: most are measured by a bound, without encoding them.
    traits = profile.traits
    return bool(traits) and not text_traits_within(traits, limit) and traits_size(traits) > limit


def _repeated(name: str, line: int, external_id: str, first: int) -> Rejection:
    return Rejection(name, line, "external_id", f"{external_id!r} is already on line {first}; only the first row "
                     "is imported (merge the rows, or import this one on its own)", external_id)


def _too_big(name: str, line: int, external_id: str, limit: int | None) -> Rejection:
    return Rejection(name, line, "", f"the profile's traits would take more than {limit} bytes "
                     "(api.max_traits_bytes); it was left as it was", external_id)


def _report_progress(progress: Callable[[int], None] | None, rows_read: int, totals: _Totals) -> None:
    if progress is not None and rows_read:
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

    async def add(self, rows_read: int, imported: int, created: int, skipped: int, errors: list[Rejection]) -> None:
        """A batch's counts, and its problems in the order they are reported."""
        self.rows += rows_read
        self.imported += imported
        self.created += created
        self.skipped += skipped
        self.problems += len(errors)
        self.shown += errors[: max(0, self.show - len(self.shown))]
        if self.rejected is not None and errors:
            await asyncio.to_thread(self.rejected.write, errors)

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
        self.path, self.name = path, str(path)
        try:
            self._file: BinaryIO = path.open("rb")
            self.size = os.fstat(self._file.fileno()).st_size
        except OSError as exc:
            raise self._fatal(None, f"cannot read the file: {exc.strerror}") from exc
        self._line = 0
        self._record_start: int | None = None  # the first line of the record being read
        self._chunk = _Chunk()
        self._reader = csv.reader(self._lines())
        self._done = False
        self._first_line: dict[str, int] = {}  # external id -> the line of its first row
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
        external id read (`check`, then `settle`)."""
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

    def settle(self, checked: _Checked) -> _Chunk:
        """A checked read as a chunk, a row naming an external id an earlier row named refused."""
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
            return [_repeated(self.name, line, profile.external_id, first)]
        chunk.profiles.append(profile)
        chunk.lines[profile.external_id] = line
        return []

    def reject_oversized(self, chunk: _Chunk, external_ids: Sequence[str], limit: int | None) -> None:
        """The rows the upsert left out because their traits would pass the cap, as rejections."""
        chunk.errors += [_too_big(self.name, chunk.lines[ext], ext, limit) for ext in external_ids]
        chunk.skipped += len(external_ids)
        if external_ids:
            left_out = set(external_ids)
            chunk.profiles = [p for p in chunk.profiles if p.external_id not in left_out]


def staged_batches(path: Path, batch_size: int, max_traits_bytes: int | None) -> Generator[StagedBatch, None, None]:
    """The reads of `path`, `batch_size` records each, as batches to stage (PostgreSQL), made in
    flat memory; in the process that reads the file (`ecrm.streamed`)."""
    reader = _CsvProfiles(path)
    try:
        with _fewer_collections() as collections:
            rows, last = 0, False
            while not last:
                batch = _staged(reader.check(batch_size), max_traits_bytes)
                yield batch
                rows, last = rows + batch.rows_read, batch.last
                collections.after(rows)
    finally:
        reader.close()


def _staged(checked: _Checked, max_traits_bytes: int | None) -> StagedBatch:
    """A checked read as a batch to stage: its valid rows as COPY text but for those repeating an
    external id a row before them in the read named, or whose traits alone pass the cap."""
    chunk = checked.chunk
    batch = StagedBatch(chunk.rows_read, chunk.skipped, failure=checked.failure, last=chunk.last)
    first: dict[str, int] = {}  # external id -> the line of its first row in the read
    rows: list[tuple[int, ProfileIn]] = []
    for place, outcome in enumerate(checked.outcomes):
        if outcome is None:
            continue
        if isinstance(outcome, Rejection):  # a line that is not UTF-8: counted as it was read
            batch.problems.append((place, outcome))
            continue
        batch.rows_read += 1
        if isinstance(outcome, list):
            batch.skipped += 1
            batch.problems += [(place, problem) for problem in outcome]
            continue
        line, profile = outcome
        if (earlier := first.setdefault(profile.external_id, line)) != line:
            batch.skipped += 1
            batch.repeats.append((place, line, profile.external_id, earlier))
        elif max_traits_bytes is not None and _over_cap(profile, max_traits_bytes):
            batch.oversized[profile.external_id] = (place, line)
        else:
            rows.append(outcome)
            batch.lines.append(line)
            batch.places.append(place)
    batch.profiles, batch.consents = staging_text(rows)
    return batch


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
