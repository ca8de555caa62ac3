"""Every named segment in `segments_dir` (each `*.yaml` file), for entry and exit tracking.

Files are read again only when they change (size or modification time), so a job run per
incoming event does not parse YAML each time. A file that does not load is logged, with its
problems, and left out: one broken file must not stop the others being tracked.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ecrm.errors import SpecError
from ecrm.segments.library import NamedSegment, find_segment

logger = logging.getLogger(__name__)
Stamp = tuple[int, int]  # size, mtime_ns


class SegmentCatalog:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._loaded: dict[Path, tuple[Stamp, NamedSegment | None]] = {}

    async def segments(self) -> list[NamedSegment]:
        """The loadable segments, by name (file I/O off the event loop)."""
        return await asyncio.to_thread(self.load)

    def load(self) -> list[NamedSegment]:
        found: list[NamedSegment] = []
        paths = sorted(self.directory.glob("*.yaml")) if self.directory.is_dir() else []
        for path in paths:
            segment = self._load_one(path)
            if segment is not None:
                found.append(segment)
        self._loaded = {path: self._loaded[path] for path in paths if path in self._loaded}
        return found

    def _load_one(self, path: Path) -> NamedSegment | None:
        try:
            info = path.stat()
        except OSError:
            return None
        stamp = (info.st_size, info.st_mtime_ns)
        cached = self._loaded.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            segment: NamedSegment | None = find_segment(path.stem, self.directory)
        except SpecError as exc:
            logger.error("segment %s is not tracked (entered/exited events) until it is fixed: %s", path, exc)
            segment = None
        self._loaded[path] = (stamp, segment)
        return segment


_CATALOGS: dict[Path, SegmentCatalog] = {}


def catalog_for(directory: Path) -> SegmentCatalog:
    """The process's catalog of `directory`, so every job shares its cache."""
    key = directory.resolve()
    if key not in _CATALOGS:
        _CATALOGS[key] = SegmentCatalog(directory)
    return _CATALOGS[key]
