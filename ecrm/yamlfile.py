"""Read a YAML file into plain Python data while remembering the line of every field.

Marketers' files (campaigns, config) are reported by file, line and field, so the loader
keeps a map from each field path, e.g. ``("audience", "rules", 0, "field")``, to its line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ecrm.errors import SpecError, SpecProblem

FieldPath = tuple[str | int, ...]


@dataclass
class YamlDocument:
    path: str
    data: Any
    lines: dict[FieldPath, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of the field, or of its nearest parent that has one."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)

    def problem(self, path: Sequence[str | int], message: str) -> SpecProblem:
        return SpecProblem(self.path, self.line_of(path), dotted(path), message)


def dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_yaml(path: Path) -> YamlDocument:
    """Parse ``path``; a syntax error becomes a SpecError naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([SpecProblem(str(path), None, "", f"cannot read the file: {exc.strerror}")]) from exc
    return parse_yaml(text, str(path))


def parse_yaml(text: str, name: str) -> YamlDocument:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise SpecError([SpecProblem(name, line, "", f"not valid YAML: {reason}")]) from exc
    doc = YamlDocument(name, None)
    if node is not None:
        loader = yaml.SafeLoader("")
        try:
            doc.data = _convert(loader, node, (), doc.lines)
        finally:
            loader.dispose()
    return doc


def _convert(loader: yaml.SafeLoader, node: yaml.Node, path: FieldPath, lines: dict[FieldPath, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = str(loader.construct_object(key_node, deep=True))
            out[key] = _convert(loader, value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, (*path, i), lines) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def validation_problems(doc: YamlDocument, exc: ValidationError, prefix: FieldPath = ()) -> list[SpecProblem]:
    """Turn pydantic's errors into located problems, one per error."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = (*prefix, *(part for part in err["loc"] if not _is_union_tag(part)))
        problems.append(doc.problem(loc, _message(err)))
    return problems


def _is_union_tag(part: str | int) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


_FIXED = {"extra_forbidden": "unknown field (check its spelling)", "missing": "required field is missing"}


def _message(err: ErrorDetails) -> str:
    kind, message, given = err["type"], err["msg"], err["input"]
    if kind in _FIXED:
        return _FIXED[kind]
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        pattern = (err.get("ctx") or {}).get("pattern", "")
        return f"{given!r} does not have the expected form (pattern {pattern})"
    return message if isinstance(given, dict | list) else f"{message} (got {given!r})"
