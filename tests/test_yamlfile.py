"""The YAML loader refuses what only a hostile or broken file needs: aliases, deep nesting,
a huge file, bytes that are not UTF-8; each as one located problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecrm.errors import SpecError
from ecrm.yamlfile import MAX_BYTES, MAX_DEPTH, load_yaml

# Nine levels of nine aliases: 9**9 (387 million) strings once expanded, from 342 bytes.
BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi", strict=True))


def refusal(path: Path) -> str:
    with pytest.raises(SpecError) as caught:
        load_yaml(path)
    assert len(caught.value.problems) == 1
    return str(caught.value.problems[0])


def test_aliases_are_refused_before_anything_is_expanded(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS) < 400
    assert refusal(path) == f"{path}:2: YAML aliases (*a) are not supported; write the value out where it is used"


def test_an_anchor_without_an_alias_is_harmless(tmp_path: Path) -> None:
    path = tmp_path / "anchor.yaml"
    path.write_text("name: &n promo\nrules:\n  - field: locale\n")
    doc = load_yaml(path)
    assert doc.data == {"name": "promo", "rules": [{"field": "locale"}]}
    assert doc.line_of(("rules", 0, "field")) == 3


@pytest.mark.parametrize("text", [
    "a: " + "[" * 10_000 + "]" * 10_000 + "\n",
    "a:\n" + "".join(" " * i + "- \n" for i in range(1, 200)),
])
def test_deep_nesting_is_refused_with_its_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    problem = refusal(path)
    assert problem.startswith(f"{path}:") and problem.endswith(f": nested more than {MAX_DEPTH} levels deep")


def test_nesting_up_to_the_limit_loads(tmp_path: Path) -> None:
    path = tmp_path / "nested.yaml"
    path.write_text("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n")
    assert load_yaml(path).data is not None


def test_a_file_over_the_size_cap_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * (MAX_BYTES // 10 + 1))
    assert refusal(path) == f"{path}: the file is larger than 1024 KiB; a campaign or settings file is a few KiB"


def test_bytes_that_are_not_utf8_are_refused_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: promo\nsubject: caf\u00e9\n".encode("latin-1"))
    assert refusal(path) == f"{path}:2: the file is not UTF-8 text (save it as UTF-8)"
