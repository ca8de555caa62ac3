"""Every named segment in `segments_dir` (each `*.yaml` file), for entry and exit tracking.

Files are read again only when one of them changes (size or modification time), so a job run per
incoming event does not parse YAML each time. A file that does not load is logged, with its
problems, and left out: one broken file must not stop the others being tracked.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ecrm.errors import SpecError
from ecrm.segments.library import NamedSegment, find_segment
from ecrm.settings import MoneySettings

logger = logging.getLogger(__name__)
Stamp = tuple[tuple[str, int, int], ...]  # each file's name, size, mtime_ns


class SegmentCatalog:
    def __init__(self, directory: Path, money: MoneySettings | None = None) -> None:
        self.directory, self.money = directory, money
        self._stamp: Stamp | None = None
        self._found: list[NamedSegment] = []

    async def segments(self) -> list[NamedSegment]:
        """The loadable segments, by name (file I/O off the event loop). Without the directory
        there is nothing to read: no thread (the API asks per batch of touched profiles)."""
        if not self.directory.is_dir():
            return []
        return await asyncio.to_thread(self.load)

    def load(self) -> list[NamedSegment]:
        """Every file is read again when any changed: a segment holds the segments it names."""
        paths = sorted(self.directory.glob("*.yaml")) if self.directory.is_dir() else []
        stamp = _stamp(paths)
        if stamp != self._stamp:
            self._found = [segment for path in paths if (segment := self._load_one(path)) is not None]
            self._stamp = stamp
        return self._found

    def _load_one(self, path: Path) -> NamedSegment | None:
        try:
            return find_segment(path.stem, self.directory, self.money)
        except SpecError as exc:
            logger.error("segment %s is not tracked (entered/exited events) until it is fixed: %s", path, exc)
            return None


def _stamp(paths: list[Path]) -> Stamp:
    stamp = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            continue
        stamp.append((path.name, info.st_size, info.st_mtime_ns))
    return tuple(stamp)


_CATALOGS: dict[Path, SegmentCatalog] = {}  # by resolved directory
_AS_GIVEN: dict[Path, SegmentCatalog] = {}  # by directory as callers name it, made absolute


def catalog_for(directory: Path, money: MoneySettings | None = None) -> SegmentCatalog:
    """The process's catalog of `directory`, so every job shares its cache. The API asks once
    per batch of touched profiles: a path seen before is not resolved again (a syscall per
    component, in the event loop)."""
    given = directory if directory.is_absolute() else directory.absolute()  # relative: one getcwd
    catalog = _AS_GIVEN.get(given)
    if catalog is None:
        key = directory.resolve()
        if key not in _CATALOGS:
            _CATALOGS[key] = SegmentCatalog(directory, money)
        catalog = _AS_GIVEN[given] = _CATALOGS[key]
    return catalog
