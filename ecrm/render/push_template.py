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
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateSyntaxError

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

    def render(self, context: dict[str, Any]) -> dict[str, str]:
        rendered = {}
        for key, part in self.fields.items():
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


def compile_push(catalog: TemplateCatalog, name: str, locale: str) -> CompiledPush:
    folder = catalog.folder_for(name, locale)
    path = f"{folder}/{PUSH_PART}"
    source = _source(catalog, path)
    data = _parse(path, source)
    lines = {key: _line_of(source, key) for key in data}
    fields = {key: _compile(catalog, path, value, lines[key]) for key, value in data.items() if key != "urgency"}
    return CompiledPush(path, locale.replace("_", "-"), fields, lines, data.get("urgency"))


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

