"""A template's `push.json`: the notification a service worker shows, per locale with the same
folder fallback as email (`welcome.fa_IR/`, then `welcome.fa/`, then `welcome/`).

The file is JSON whose string values are Jinja templates rendered as plain text:

    {"title": "Hi {{ profile.first_name }}", "body": "...", "icon": "https://...", "url": "https://...",
     "topic": "welcome", "urgency": "high"}

`title` and `body` are required; `icon`, `url`, `topic` (RFC 8030 replaces a pending message with
the same topic: at most 32 base64url characters once rendered) and `urgency` (very-low, low,
normal, high: the send's default otherwise) are optional. The file must parse as JSON before
anything is rendered, so a value never breaks the JSON it lands in (quotes in a name included);
errors name the file and line.

A value that is text and `{{ name }}` outputs only, each name one the send fixes per locale
(`campaign`, `lang`, `locale`), renders to the same string for every recipient: `prepare`
renders those once per send and locale (an icon, a campaign's URL, a topic), and each
recipient's render is left with the values that read the profile.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, TemplateSyntaxError, nodes

from ecrm.errors import TemplateError
from ecrm.render.environment import PUSH_PART, Part, TemplateCatalog

REQUIRED = ("title", "body")
OPTIONAL = ("icon", "url", "topic", "urgency")
URGENCIES = ("very-low", "low", "normal", "high")
TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


@dataclass(frozen=True)
class CompiledPush:
    path: str  # folder/push.json
    lang: str
    fields: dict[str, Part]  # each value's compiled template
    lines: dict[str, int]  # where each key is, for errors
    urgency: str | None
    reads: dict[str, frozenset[str] | None]  # the names a plain substitution reads; None for more

    def render(self, context: dict[str, Any], fields: Mapping[str, Part] | None = None) -> dict[str, str]:
        """Every value rendered as text, or only those of `fields` (a part of `self.fields`)."""
        rendered = {}
        for key, part in (self.fields if fields is None else fields).items():
            try:
                rendered[key] = part.render(context).strip()
            except TemplateError as exc:
                message = str(exc).split(": ", 1)[-1]
                raise TemplateError(self.path, f"{key}: {message}", self.lines[key]) from exc.__cause__
        topic = rendered.get("topic")
        if topic is not None and not TOPIC.match(topic):
            raise TemplateError(self.path, f"topic {topic!r} must be 1-32 letters, digits, '-' or '_'",
                                self.lines["topic"])
        return rendered

    def prepare(self, context: dict[str, Any], fixed: Collection[str]) -> PreparedPush:
        """This file for one send and locale: `context` gives every name in `fixed`, and the
        values that read no other name are rendered here, once."""
        constant = {key: part for key, part in self.fields.items()
                    if (names := self.reads[key]) is not None and names <= set(fixed)}
        rendered = self.render(context, constant)
        skeleton = {key: rendered.get(key, "") for key in self.fields}  # the file's order
        varying = {key: part for key, part in self.fields.items() if key not in constant}
        return PreparedPush(self, context, skeleton, varying)


@dataclass(frozen=True)
class PreparedPush:
    """A `CompiledPush` with one send's context for one locale and its constant values rendered."""

    compiled: CompiledPush
    context: dict[str, Any]  # the send's and the locale's names; a recipient's are added to it
    skeleton: dict[str, str]  # every key in the file's order, the constant ones rendered
    varying: dict[str, Part]  # the values rendered for each recipient

    def render(self, context: dict[str, Any]) -> dict[str, str]:
        """Every value, as `CompiledPush.render` gives them, for the recipient in `context`."""
        values = self.skeleton.copy()
        values.update(self.compiled.render(context, self.varying))
        return values


def compile_push(catalog: TemplateCatalog, name: str, locale: str) -> CompiledPush:
    folder = catalog.folder_for(name, locale)
    path = f"{folder}/{PUSH_PART}"
    source = _source(catalog, path)
    data = _parse(path, source)
    lines = {key: _line_of(source, key) for key in data}
    fields = {key: _compile(catalog, path, value, lines[key]) for key, value in data.items() if key != "urgency"}
    reads = {key: substitution_names(catalog.env, data[key]) for key in fields}
    return CompiledPush(path, locale.replace("_", "-"), fields, lines, data.get("urgency"), reads)


def substitution_names(env: Environment, value: str) -> frozenset[str] | None:
    """The names `value` reads when it is text and `{{ name }}` outputs only, so that its render
    depends on those names alone; None when it has anything more (a filter, an attribute, a
    call, a tag), which may depend on more, or differ between renders (`random`)."""
    names = set()
    for node in env.parse(value).find_all(nodes.Node):
        if isinstance(node, nodes.Name):
            names.add(node.name)
        elif not isinstance(node, nodes.Output | nodes.TemplateData | nodes.Const):
            return None
    return frozenset(names)


def _source(catalog: TemplateCatalog, path: str) -> str:
    if not (catalog.root / path).is_file():
        raise TemplateError(path, "file is missing")
    try:
        return (catalog.root / path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateError(path, f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _parse(path: str, source: str) -> dict[str, str]:
    try:
        data = json.loads(source)
    except json.JSONDecodeError as exc:
        raise TemplateError(path, f"not JSON: {exc.msg} (column {exc.colno})", exc.lineno) from exc
    if not isinstance(data, dict):
        raise TemplateError(path, "expected a JSON object with title and body", 1)
    for key in REQUIRED:
        if key not in data:
            raise TemplateError(path, f"{key} is missing (a notification needs {' and '.join(REQUIRED)})", 1)
    for key, value in data.items():
        if key not in REQUIRED + OPTIONAL:
            raise TemplateError(path, f"unknown key {key!r}; expected {', '.join(REQUIRED + OPTIONAL)}",
                                _line_of(source, key))
        if not isinstance(value, str):
            raise TemplateError(path, f"{key} must be a string", _line_of(source, key))
    if data.get("urgency", "normal") not in URGENCIES:
        raise TemplateError(path, f"urgency must be one of {', '.join(URGENCIES)}", _line_of(source, "urgency"))
    return data


def _compile(catalog: TemplateCatalog, path: str, value: str, line: int) -> Part:
    env = catalog.env
    try:
        code = env.compile(value, name=path, filename=str(catalog.root / path))
    except TemplateSyntaxError as exc:
        raise TemplateError(path, exc.message or "syntax error", line) from exc
    template = env.template_class.from_code(env, code, env.make_globals(None), None)
    template.name = path
    return Part(template, fixed_eval_ctx=fixed_eval_context_of(value))


def fixed_eval_context_of(value: str) -> bool:
    """A value compiled on its own extends nothing; only `{% autoescape %}` could change it."""
    return "autoescape" not in value


def _line_of(source: str, key: str) -> int:
    at = source.find(json.dumps(key) + ":")
    at = at if at >= 0 else source.find(json.dumps(key))
    return source.count("\n", 0, max(at, 0)) + 1

