"""Named segments: `segments/NAME.yaml` files, each an audience-style body with a name.

    name: vip                      # must match the file's name
    description: Spent over 1,000 EUR
    all:                           # one of rules, all, any or not, as in a campaign's audience
      - {metric: total_spent, currency: EUR, op: gt, value: 1000}

`find_segment(ref, directory, money)` takes what a command line or a rule gives: a path to a
YAML file, or a name looked up in `directory` (settings' `segments_dir`), and gives its audience
resolved (`ecrm.segments.resolve`: the segments it names put in, money metrics given the
settings' rates), ready to compile. Every problem is a `SegmentSpecError` naming the file, line
and key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ConfigDict, Field, ValidationError

from ecrm.errors import SegmentSpecError, SpecError
from ecrm.segments.resolve import resolve_audience
from ecrm.segments.rules import Audience
from ecrm.yamlfile import load_yaml, validation_problems

if TYPE_CHECKING:
    from ecrm.settings import MoneySettings

NAME = r"^[a-z0-9][a-z0-9_\-]{0,99}$"


class SegmentFile(Audience):
    """A segment file: its name and description beside an audience's keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    name: str = Field(pattern=NAME)
    description: str = ""



@dataclass(frozen=True)
class NamedSegment:
    name: str
    description: str
    audience: Audience
    path: Path


def segment_path(ref: str, directory: Path) -> Path:
    """A YAML path as given, or `directory/NAME.yaml` for a bare name."""
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        return Path(ref)
    return directory / f"{ref}.yaml"


def find_segment(ref: str, directory: Path, money: MoneySettings | None = None,
                 stack: tuple[str, ...] = ()) -> NamedSegment:
    """`stack`: the segments whose rules refer to this one, to refuse a cycle."""
    path = segment_path(ref, directory)
    try:
        doc = load_yaml(path)
    except SpecError as exc:
        raise SegmentSpecError(exc.problems) from exc
    if not isinstance(doc.data, dict):
        raise SegmentSpecError([doc.problem((), "expected a mapping with name and one of rules, all, any, not")])
    try:
        parsed = SegmentFile.model_validate(doc.data)
    except ValidationError as exc:
        raise SegmentSpecError(validation_problems(doc, exc)) from exc
    if parsed.name != path.stem:
        raise SegmentSpecError([doc.problem(("name",), f"the name '{parsed.name}' differs from the file's "
                                            f"name '{path.stem}'; rename one so they match")])
    audience = Audience.model_validate(parsed.model_dump(by_alias=True, exclude={"name", "description"},
                                                         exclude_none=True))
    audience, problems = resolve_audience(audience, doc, (), directory, money, (*stack, parsed.name))
    if problems:
        raise SegmentSpecError(problems)
    return NamedSegment(parsed.name, parsed.description, audience, path)
