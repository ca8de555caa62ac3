"""Read a YAML file into plain Python data while remembering the line of every field.

Marketers' files (campaigns, config) are reported by file, line and field, so the loader
keeps a map from each field path, e.g. ``("audience", "rules", 0, "field")``, to its line.

The files are small and written by hand, so the loader refuses what only a hostile or broken
file needs: more than ``MAX_BYTES``, nesting deeper than ``MAX_DEPTH``, and aliases (``*name``),
whose expansion is what lets a 400-byte "billion laughs" file grow into gigabytes.
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

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 50


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
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise _refused(str(path), None, f"cannot read the file: {exc.strerror}") from exc
    if len(raw) > MAX_BYTES:
        raise _refused(str(path), None, f"the file is larger than {MAX_BYTES // 1024} KiB; "
                       "a campaign or settings file is a few KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise _refused(str(path), line, "the file is not UTF-8 text (save it as UTF-8)") from exc
    return parse_yaml(text, str(path))


def parse_yaml(text: str, name: str) -> YamlDocument:
    try:
        node = yaml.compose(text, Loader=_BoundedLoader)
    except _Refusal as exc:
        raise _refused(name, exc.line, exc.reason) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise _refused(name, line, f"not valid YAML: {reason}") from exc
    doc = YamlDocument(name, None)
    if node is not None:
        loader = yaml.SafeLoader("")
        try:
            doc.data = _convert(loader, node, (), doc.lines)
        except _Refusal as exc:
            raise _refused(name, exc.line, exc.reason) from None
        finally:
            loader.dispose()
    return doc


def _refused(name: str, line: int | None, message: str) -> SpecError:
    return SpecError([SpecProblem(name, line, "", message)])


class _Refusal(Exception):
    def __init__(self, mark: Any, reason: str) -> None:
        self.line, self.reason = (mark.line + 1 if mark is not None else None), reason
        super().__init__(reason)


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe composer, refusing aliases and nesting deeper than MAX_DEPTH as it meets
    them, before anything is expanded (it composes nested nodes by recursion)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            raise _Refusal(event.start_mark, f"YAML aliases (*{event.anchor}) are not supported; "
                           "write the value out where it is used")
        if self._depth >= MAX_DEPTH:
            raise _Refusal(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


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
    try:
        return loader.construct_object(node, deep=True)
    except ValueError as exc:  # a scalar YAML reads as a date that is not one: 2026-02-30
        raise _Refusal(node.start_mark, f"{node.value!r} is not a valid value: {exc}") from None


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
