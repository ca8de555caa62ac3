"""Stage 1: import profiles from a CSV file, in batches, reporting every bad row.

The header names the columns. `external_id`, `email`, `phone`, `first_name`, `last_name`,
`locale` and `time_zone` fill the profile; `consent_email` (likewise `consent_sms`,
`consent_push`) takes yes/no/granted/withdrawn; every other column becomes a trait, kept as
the text in the cell (a CSV cannot tell the zip code "01234" from a number, so we don't guess).
An empty cell changes nothing. Reading and validating run in a worker thread, a batch at a
time, so a large file never holds the event loop; each batch is written and committed once,
stamped with the clock's time when it is written.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.clock import Clock
from ecrm.db import refresh_statistics
from ecrm.errors import SpecError, SpecProblem
from ecrm.profiles.ingest import PROFILE_COLUMNS, ProfileIn, UpsertCounts, input_errors, upsert_profile_batch
from ecrm.types import ChannelKind, ConsentState

PROFILE_FIELDS = frozenset(("external_id", *PROFILE_COLUMNS))
CONSENT_COLUMNS = {f"consent_{channel.value}": channel for channel in ChannelKind}
CONSENT_WORDS = {"yes": ConsentState.GRANTED, "granted": ConsentState.GRANTED,
                 "no": ConsentState.WITHDRAWN, "withdrawn": ConsentState.WITHDRAWN}


@dataclass(frozen=True)
class ImportReport:
    imported: int
    created: int
    skipped: int
    errors: list[str] = field(default_factory=list)


@dataclass
class _Chunk:
    """What one read from the file produced: valid rows, and an error line per bad row."""

    rows_read: int = 0
    profiles: list[ProfileIn] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: int = 0


async def import_csv(sessions: async_sessionmaker[AsyncSession], path: Path, clock: Clock,
                     progress: Callable[[int], None] | None = None, batch_size: int = 1000) -> ImportReport:
    """Import `path`; `progress` is called after each batch with the number of rows read so far.

    A file that cannot be read at all, or has no `external_id` column, raises SpecError.
    """
    reader = await asyncio.to_thread(_CsvProfiles, path)
    try:
        report = await _import(sessions, reader, clock, progress, batch_size)
    finally:
        await asyncio.to_thread(reader.close)
    await refresh_statistics(sessions, "profiles", "consents")
    return report


async def _import(sessions: async_sessionmaker[AsyncSession], reader: _CsvProfiles, clock: Clock,
                  progress: Callable[[int], None] | None, batch_size: int) -> ImportReport:
    totals = _Totals()
    while (chunk := await asyncio.to_thread(reader.read, batch_size)).rows_read:
        async with sessions.begin() as session:
            counts = await upsert_profile_batch(session, chunk.profiles, clock.now())
        totals.add(chunk, counts)
        if progress is not None:
            progress(totals.rows)
    return totals.report()


@dataclass
class _Totals:
    rows: int = 0
    imported: int = 0
    created: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, chunk: _Chunk, counts: UpsertCounts) -> None:
        self.rows += chunk.rows_read
        self.imported += len(chunk.profiles)
        self.created += counts.created
        self.skipped += chunk.skipped
        self.errors += chunk.errors

    def report(self) -> ImportReport:
        return ImportReport(self.imported, self.created, self.skipped, self.errors)


class _CsvProfiles:
    """A CSV file read and validated a chunk at a time; every method blocks (run it in a thread).

    The file is decoded line by line, so a line that is not UTF-8 is reported and skipped
    on its own instead of ending the import.
    """

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self.source = f"csv:{path.name}"[:200]
        try:
            self._file: BinaryIO = path.open("rb")
        except OSError as exc:
            raise self._fatal(None, f"cannot read the file: {exc.strerror}") from exc
        self._line = 0
        self._chunk = _Chunk()
        self._reader = csv.reader(self._lines())
        self._done = False
        try:
            self.columns = self._header()
        except BaseException:
            self._file.close()
            raise

    def close(self) -> None:
        self._file.close()

    def _fatal(self, line: int | None, message: str) -> SpecError:
        return SpecError([SpecProblem(self.name, line, "", message)])

    def _lines(self) -> Iterator[str]:
        for raw in self._file:
            self._line += 1
            try:
                yield raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                if self._line == 1:
                    raise
                self._chunk.rows_read += 1
                self._chunk.skipped += 1
                self._chunk.errors.append(f"{self.name}:{self._line}: the line is not UTF-8 text (save as UTF-8)")

    def _header(self) -> list[str]:
        try:
            header = next(self._reader, None)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise self._fatal(1, f"cannot read the header: {exc}") from exc
        columns = [name.strip() for name in header or []]
        if "external_id" not in (name.lower() for name in columns):
            raise self._fatal(1, "the header has no external_id column")
        duplicates = sorted({name for name in columns if columns.count(name) > 1})
        if duplicates:
            raise self._fatal(1, f"the header repeats {', '.join(duplicates)}")
        return columns

    def read(self, limit: int) -> _Chunk:
        chunk = self._chunk = _Chunk()
        if self._done:
            return chunk
        try:
            for cells in itertools.islice(self._reader, limit):
                self._add(chunk, self._line, cells)
        except csv.Error as exc:
            self._done = True
            chunk.errors.append(f"{self.name}:{self._line}: {exc}; the rest of the file was not read")
        return chunk

    def _add(self, chunk: _Chunk, line: int, cells: list[str]) -> None:
        if not any(cell.strip() for cell in cells):
            return
        chunk.rows_read += 1
        errors = self._validate(chunk, line, cells)
        if errors:
            chunk.skipped += 1
            chunk.errors += errors

    def _validate(self, chunk: _Chunk, line: int, cells: list[str]) -> list[str]:
        if len(cells) > len(self.columns):
            return [f"{self.name}:{line}: the row has {len(cells)} cells but the header only {len(self.columns)}"]
        try:
            chunk.profiles.append(ProfileIn.model_validate(self._input(cells)))
        except ValidationError as exc:
            return [f"{self.name}:{line} {column}: {message}" for column, message in _located(exc)]
        return []

    def _input(self, cells: list[str]) -> dict[str, Any]:
        data: dict[str, Any] = {"traits": {}, "consent": {}}
        for column, cell in zip(self.columns, cells, strict=False):
            value, key = cell.strip(), column.lower()
            if not value:
                continue
            if key in PROFILE_FIELDS:
                data[key] = value
            elif key in CONSENT_COLUMNS:
                data["consent"][key.removeprefix("consent_")] = {"state": _consent(value), "source": self.source}
            else:
                data["traits"][column] = value
        return data


def _consent(value: str) -> str:
    return CONSENT_WORDS.get(value.lower(), value)


def _located(exc: ValidationError) -> list[tuple[str, str]]:
    """Each error as (CSV column, message), the message quoting the bad cell."""
    out = []
    for err in input_errors(exc):
        parts = err.field.split(".")
        if parts[0] == "consent" and len(parts) > 1:
            out.append((f"consent_{parts[1]}", f"expected yes, no, granted or withdrawn (got {err.value!r})"))
        elif isinstance(err.value, str):
            out.append((err.field or "row", f"{err.message} (got {err.value!r})"))
        else:
            out.append((err.field or "row", err.message))
    return out
