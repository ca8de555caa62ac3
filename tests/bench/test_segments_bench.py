"""bench.segments at a tiny size on SQLite: it loads, measures every segment it can read,
says which ones it cannot yet, times entry/exit, and skips the load the second time."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.segment_data import Dataset, event_rows, profile_rows
from bench.segments import ORDER, main


def test_the_same_seed_gives_the_same_rows() -> None:
    data = Dataset(50, 500, 50)
    assert list(profile_rows(data, 1, 51)) == list(profile_rows(data, 1, 51))
    events = list(event_rows(data, 0, 500))
    assert {row[1] for row in events} == {"viewed", "cart_updated", "opened", "clicked", "order_placed"}
    assert all(1 <= int(str(row[0])) <= 50 for row in events)


def test_a_small_sqlite_run_prints_figures_and_skips_the_load_next_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--db", "sqlite", "--profiles", "400", "--sqlite-profiles", "400", "--repeat", "1",
            "--sqlite-file", str(tmp_path / "bench.db")]
    main(args)
    out = capsys.readouterr().out
    assert "loaded 400 profiles, 4,000 events, 400 orders" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert "members  count" in lines["attribute"]
    for name in ORDER:  # each measured, or said not to be readable yet, and why
        assert "members  count" in lines[name] or "not supported yet: " in lines[name]
    assert "entry/exit for one event" in out
    main(args)
    assert "loading skipped" in capsys.readouterr().out
