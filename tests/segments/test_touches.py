"""Touches: the first profile goes on at once, the ones arriving meanwhile in one batch, and a
failed hand-over is logged without losing the batches after it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from ecrm.segments.catalog import catalog_for
from ecrm.segments.touches import Touches


async def test_touches_go_on_at_once_then_in_batches() -> None:
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def flush(ids: list[int]) -> None:
        batches.append(ids)
        if len(batches) == 1:
            await release.wait()

    touches = Touches(flush, delay=0.01)
    touches.touch(7)
    await asyncio.sleep(0.001)
    assert batches == [[7]]
    for pid in (3, 1, 3, 2):  # while the first hand-over is under way
        touches.touch(pid)
    release.set()
    await touches.settled()
    assert batches == [[7], [1, 2, 3]]


async def test_a_failed_hand_over_is_logged_and_the_next_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[list[int]] = []

    async def flush(ids: list[int]) -> None:
        seen.append(ids)
        if len(seen) == 1:
            raise ConnectionError("redis is down")

    touches = Touches(flush, delay=0)
    with caplog.at_level(logging.ERROR):
        touches.touch(1)
        await touches.settled()
        touches.touch(2)
        await touches.settled()
    assert seen == [[1], [2]]
    assert "segment refresh of 1 touched profiles not handed on" in caplog.text


async def test_workers_refresh_whole_segments_on_a_cron_every_configured_minutes() -> None:
    from arq.worker import Worker

    from ecrm.segments.schedule import refresh_cron
    from ecrm.settings import load_settings
    from ecrm.worker import WorkerSettings, make_worker

    assert refresh_cron(15).minute == {0, 15, 30, 45}
    assert [job.name for job in WorkerSettings.cron_jobs] == ["segments_refresh"]
    settings = load_settings(Path("/nonexistent"), environ={}, redis_url="redis://127.0.0.1:6379/15",
                             segment_refresh_minutes=20)
    worker: Worker = make_worker(settings, burst=True, handle_signals=False)
    assert [(job.name, job.minute) for job in worker.cron_jobs] == [("segments_refresh", {0, 20, 40})]
    assert "segments_touched" in worker.functions


def test_the_catalog_of_a_directory_is_one_however_it_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "segments").mkdir()
    monkeypatch.chdir(tmp_path)
    catalog = catalog_for(Path("segments"))
    assert catalog_for(tmp_path / "segments") is catalog
    assert catalog_for(Path("segments")) is catalog
    assert catalog_for(tmp_path / "other") is not catalog
    (tmp_path / "elsewhere" / "segments").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "elsewhere")  # the same relative name, another directory now
    assert catalog_for(Path("segments")) is catalog_for(tmp_path / "elsewhere" / "segments") is not catalog
