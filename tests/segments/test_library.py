"""Named segment files: found by name or path, validated with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecrm.errors import SegmentSpecError
from ecrm.segments.library import find_segment
from ecrm.segments.rules import Op


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_segment_is_found_by_name_in_the_folder_or_by_path(tmp_path: Path) -> None:
    path = _write(tmp_path, "vip.yaml", "name: vip\ndescription: Big spenders\nall:\n"
                  "  - {field: traits.points, op: gt, value: 100}\n")

    by_name = find_segment("vip", tmp_path)
    by_path = find_segment(str(path), Path("elsewhere"))

    assert by_name == by_path
    assert (by_name.name, by_name.description, by_name.path) == ("vip", "Big spenders", path)
    rule = by_name.audience.root().children()[0]
    assert (rule.field, rule.op, rule.value) == ("traits.points", Op.GT, 100)


def test_a_bad_rule_is_refused_with_its_file_line_and_key(tmp_path: Path) -> None:
    _write(tmp_path, "lapsed.yaml", "name: lapsed\nall:\n  - {field: traits.x, op: eq, value: 1}\n"
           "  - {field: colour, op: eq, value: red}\n")

    with pytest.raises(SegmentSpecError) as caught:
        find_segment("lapsed", tmp_path)

    problem = caught.value.problems[0]
    assert (problem.file, problem.line, problem.field) == (str(tmp_path / "lapsed.yaml"), 4, "all[1].field")
    assert "'colour' is not a profile field" in problem.message


def test_a_name_that_differs_from_the_file_or_a_missing_file_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "vip.yaml", "name: gold\nrules: []\n")

    with pytest.raises(SegmentSpecError, match="differs from the file's name 'vip'"):
        find_segment("vip", tmp_path)
    with pytest.raises(SegmentSpecError, match="nowhere"):
        find_segment("nowhere", tmp_path)
