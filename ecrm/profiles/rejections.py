"""What a CSV import refused, row by row: each problem as a `Rejection`, the whole list as a
CSV file (`--errors FILE`: line, external_id, field, reason) a marketer can sort, fix and
re-import from, and the summary that says how many were printed and where the rest are."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ecrm.errors import SpecError, SpecProblem

ERROR_COLUMNS = ("line", "external_id", "field", "reason")


@dataclass(frozen=True, slots=True)
class Rejection:
    """One problem with one line of the file; `field` is the CSV column ('' for the whole row)."""

    file: str
    line: int
    field: str
    reason: str
    external_id: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line} {self.field}: {self.reason}" if self.field \
            else f"{self.file}:{self.line}: {self.reason}"


class RejectionFile:
    """The `--errors` CSV, written as the import goes; every method blocks (run it in a thread)."""

    def __init__(self, path: Path, imported: Path) -> None:
        self.path = path
        if _same_file(path, imported):
            raise SpecError([SpecProblem(str(path), None, "", "the errors file would overwrite the file being "
                                         "imported; name another file")])
        try:
            self._file: TextIO = path.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            raise SpecError([SpecProblem(str(path), None, "", f"cannot write the errors file: {exc.strerror}")]) \
                from exc
        self._writer = csv.writer(self._file)
        self._writer.writerow(ERROR_COLUMNS)

    def write(self, rejections: Iterable[Rejection]) -> None:
        self._writer.writerows((r.line, r.external_id, r.field, r.reason) for r in rejections)

    def close(self) -> None:
        self._file.close()


def _same_file(path: Path, other: Path) -> bool:
    try:
        return path.exists() and path.samefile(other)
    except OSError:
        return False


def summary(problems: int, shown: int, errors_file: Path | None) -> str | None:
    """The line after the printed problems: how many were not printed, and where they all are."""
    if not problems:
        return None
    where = f"all {problems} are in {errors_file} (columns: {', '.join(ERROR_COLUMNS)})" if errors_file \
        else "add --errors FILE to write every one to a CSV file"
    if shown < problems:
        return f"{shown} of {problems} problems printed, {problems - shown} not printed; {where}"
    return f"{problems} problem(s) printed; {where}" if errors_file else None
