"""The ingest benchmark's quick mode, briefly: it starts `ecrm serve --workers 2` on a bench
database of its own, every request it sends is answered 2xx and stored, and the import loads
every row. (Speed is a benchmark figure, not a test.)"""

from __future__ import annotations

import uuid

from bench.ingest import ImportResult, LoadResult, main_async, parse


async def test_the_quick_mode_runs_events_profiles_and_the_import_without_errors() -> None:
    args = parse(["--quick", "--database", f"ecrm_bench_test_{uuid.uuid4().hex[:8]}",
                  "--only", "events", "profiles", "batch", "import"])
    args.seconds, args.rows = 0.5, 300
    [results] = await main_async(args)
    for scenario in ("events", "profiles"):
        load = results[scenario]
        assert isinstance(load, LoadResult)
        assert load.requests > 0 and load.errors == 0, load.samples
        assert load.cpu_seconds > 0
        assert load.check is not None and load.check.ok, load.check
    imported = results["import"]
    assert isinstance(imported, ImportResult)
    assert (imported.returncode, imported.stored) == (0, 300)

