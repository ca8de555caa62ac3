"""The template catalog: a sandboxed Jinja2 environment over `templates/`, per-locale lookup,
and compiled templates cached per (template, locale) so a campaign compiles each once.

A template is a folder: `templates/welcome/` with `subject.txt`, `body.html` and `body.txt`.
A locale variant is a sibling folder named `welcome.<locale>`: `welcome.fa_IR` falls back to
`welcome.fa`, then to `welcome`. Undefined variables raise, so a missing field is an error at
validate time, never a blank in a customer's inbox.

The fast render path (this module, `parts`, `flatten`, `filters`) relies on these Jinja2 and
MarkupSafe internals: private names, and public ones in ways their docs do not promise.

- MarkupSafe: `markupsafe._speedups._escape_inner` (new in 3.0), the C escaper `escape` wraps
  in Markup; and `escape` being the function compiled templates import from `jinja2.runtime`.
- `Template.from_code(environment, code, globals, uptodate)`, and `root_render_func.__globals__`
  being the compiled module's namespace, in which the code generator calls `escape` only around
  an output expression and joins outputs with `concat` (or `Markup(concat(...))`): `EmailTemplate`.
- `SandboxedEnvironment.getattr` trying the attribute, then the item: `EmailSandbox`.
- Every attribute `jinja2.runtime.Context.__init__` sets (`parent`, `vars`, `environment`,
  `eval_ctx`, `exported_vars`, `name`, `globals_keys`, `blocks`), `Template.root_render_func`
  called with a context and joined with `jinja2.utils.concat`, `Template.blocks`,
  `EvalContext(environment, name)`, `Environment.handle_exception` and the
  `__jinja_exception__` marker in rewritten traceback frames: `parts`.
- The `jinja2.nodes` tree (`Extends`, `Block.required`, `Output`, `TemplateData`, `If.elif_`,
  `Name.ctx`, `Const`...), `Environment.parse`, `Environment.compile(node, name, filename)`,
  `Environment.make_globals`, `NodeTransformer`, and the compiler folding constant outputs,
  escaped, into template data: `flatten`.
- `Context.resolve_or_missing` and `jinja2.utils.missing`: `filters`.

pyproject.toml bounds Jinja2 (<3.2) and MarkupSafe (<3.1) for them. Before raising either
bound, tests/render/test_fast_path_matches_jinja.py must pass with the new version: it renders
every shipped template through the composer and through plain Jinja2 and wants the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import CodeType
from typing import Any

from babel import Locale, UnknownLocaleError
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, TemplateNotFound, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import escape
from pydantic import BaseModel, ConfigDict, ValidationError

from ecrm.errors import SpecError, TemplateError
from ecrm.render.filters import FILTERS
from ecrm.render.flatten import flatten
from ecrm.render.parts import Part, fixed_eval_context, render_part
from ecrm.yamlfile import load_yaml, validation_problems

__all__ = ["CompiledEmail", "CompiledSms", "EmailSandbox", "EmailTemplate", "Part", "TemplateCatalog", "render_part"]

EMAIL_PARTS = ("subject.txt", "body.html", "body.txt")
SMS_PART = "sms.txt"
PUSH_PART = "push.json"  # read by ecrm.render.push_template
TEMPLATE_FILE = "template.yaml"  # what a template folder says about itself


class TemplateFile(BaseModel):
    """A template folder's `template.yaml`."""

    model_config = ConfigDict(extra="forbid")

    transactional: bool = False



@dataclass(frozen=True)
class CompiledEmail:
    """The three compiled parts of one email template in one locale. `fast_html` renders the
    same as `html` given `locale_values` (the locale's `lang` and `dir`), with its layout inlined
    and those values folded in when `flatten` could (else it is `html` itself). The `*_part`s
    are what a composer renders: `fast_html` reports errors as `html`."""

    name: str
    folder: str
    lang: str
    direction: str
    subject: Template
    html: Template
    text: Template
    fast_html: Template
    subject_part: Part
    html_part: Part
    text_part: Part

    @property
    def locale_values(self) -> dict[str, str]:
        return {"lang": self.lang, "dir": self.direction}


@dataclass(frozen=True)
class CompiledSms:
    """The `sms.txt` of one template in one locale, from the same folder an email would use."""

    name: str
    folder: str
    text_part: Part


@cache
def text_direction(locale: str) -> str:
    try:
        order = Locale.parse(locale.replace("-", "_")).character_order
    except (UnknownLocaleError, ValueError):
        return "ltr"
    return "rtl" if order == "right-to-left" else "ltr"


def locale_chain(locale: str) -> list[str]:
    """`fa_IR` -> [`fa_IR`, `fa`]; the bare template name is the last fallback."""
    locale = locale.replace("-", "_")
    lang = locale.split("_", 1)[0]
    return [locale, lang] if lang != locale else [locale]


_DICT_ATTRIBUTES = frozenset(dir(dict))


class EmailSandbox(SandboxedEnvironment):
    """Jinja's sandbox, with a shortcut for what templates mostly do: `profile.first_name`.

    The sandbox first tries `getattr(profile, "first_name")` and, on a plain dict, only finds
    the key after an AttributeError is raised and caught (about half the cost of the lookup).
    A plain dict has no attribute outside `dir(dict)`, so for any other name the key is the
    answer the sandbox would give (items are never checked against the sandbox's rules)."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _escape_str_slowly(value: str) -> str:
    return str(escape(value))


try:  # MarkupSafe >= 3.0: its C escaper, without the Markup wrapper that `escape` adds
    from markupsafe._speedups import _escape_inner as _escape_str
except ImportError:  # pragma: no cover - a MarkupSafe built without its C extension
    _escape_str = _escape_str_slowly


def _escape_output(value: Any) -> str:
    """What `{{ x }}` in an autoescaped template emits: `escape(x)` as a plain str, not Markup.
    Markup's constructor is written in Python and costs more than the escaping itself."""
    return _escape_str(value) if type(value) is str else str(escape(value))


class EmailTemplate(Template):
    """A Jinja template whose output escaping skips the Markup wrapper (half the cost of an
    HTML render). Compiled code calls the `escape` of its own module only to emit an
    expression's value, and every emitted value is joined into a plain str (`concat`, or
    `Markup(concat(...))` for captured blocks), so a str escaped alike renders the same bytes."""

    @classmethod
    def from_code(
        cls, environment: Environment, code: CodeType, globals: MutableMapping[str, Any],
        uptodate: Callable[[], bool] | None = None,
    ) -> Template:
        template = super().from_code(environment, code, globals, uptodate)
        namespace = template.root_render_func.__globals__
        if namespace.get("escape") is escape:
            namespace["escape"] = _escape_output
        return template


class TemplateCatalog:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = EmailSandbox(
            loader=FileSystemLoader(str(root)),
            undefined=StrictUndefined,
            autoescape=lambda name: bool(name and name.endswith(".html")),
            keep_trailing_newline=True,
            auto_reload=False,
        )
        self.env.filters.update(FILTERS)
        self.env.template_class = EmailTemplate
        self._globals = dict(self.env.globals)
        self._compiled: dict[tuple[str, str], CompiledEmail] = {}
        self._transactional: dict[str, bool] = {}
        self._sms: dict[tuple[str, str], CompiledSms] = {}

    def context(self, values: dict[str, Any]) -> dict[str, Any]:
        """A render context: the environment's globals (range, namespace...) plus `values`."""
        context = self._globals.copy()
        context.update(values)
        return context

    def exists(self, name: str) -> bool:
        return (self.root / name).is_dir()

    def folder_for(self, name: str, locale: str) -> str:
        """The folder that serves `name` in `locale` (the most specific that exists)."""
        for candidate in locale_chain(locale):
            if (self.root / f"{name}.{candidate}").is_dir():
                return f"{name}.{candidate}"
        if not self.exists(name):
            raise TemplateError(name, f"no template folder '{name}' in {self.root}")
        return name

    def is_transactional(self, name: str) -> bool:
        """Whether the template's `template.yaml` says `transactional: true`: its messages are
        owed to the customer (a receipt, a password reset) and go without marketing consent.
        Read once per catalog, as the templates are compiled once."""
        found = self._transactional.get(name)
        if found is None:
            found = self._transactional[name] = self._template_file(name).transactional
        return found

    def _template_file(self, name: str) -> TemplateFile:
        path = self.root / name / TEMPLATE_FILE
        if not path.is_file():
            return TemplateFile()
        doc = load_yaml(path)
        try:
            return TemplateFile.model_validate(doc.data or {})
        except ValidationError as exc:
            raise SpecError(validation_problems(doc, exc)) from None

    def variants(self, name: str) -> dict[str, str]:
        """Locale -> folder for every locale variant on disk, '' for the default folder."""
        found = {"": name} if self.exists(name) else {}
        for path in sorted(self.root.glob(f"{name}.*")):
            if path.is_dir():
                found[path.name[len(name) + 1 :]] = path.name
        return found

    def warm(self, default_locale: str = "en") -> list[TemplateError]:
        """Compile every email and SMS template in each locale it has a folder for, and the bare folder in
        `default_locale`, loading the locales' data too: a worker does this once at start-up
        instead of inside its first send jobs (about 60 ms per locale, most of it Babel's data).
        Broken templates are returned, not raised: a campaign using one is refused at launch."""
        errors = []
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir() or folder.name.startswith(("_", ".")) or "." in folder.name:
                continue
            for locale in self.variants(folder.name):
                for compile_part in self._kinds(folder):
                    try:
                        compile_part(folder.name, locale or default_locale)
                    except TemplateError as error:
                        errors.append(error)
        return errors

    def _kinds(self, folder: Path) -> list[Callable[[str, str], object]]:
        """What a template folder holds: an email (any of its parts, or no other channel's part:
        then it is a broken email), an SMS text, or both. A push part is checked when used."""
        kinds: list[Callable[[str, str], object]] = []
        others = [part for part in (SMS_PART, PUSH_PART) if (folder / part).is_file()]
        if not others or any((folder / part).is_file() for part in EMAIL_PARTS):
            kinds.append(self.email)
        if (folder / SMS_PART).is_file():
            kinds.append(self.sms)
        return kinds

    def email(self, name: str, locale: str) -> CompiledEmail:
        key = (name, locale)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile_email(name, locale)
        return compiled

    def sms(self, name: str, locale: str) -> CompiledSms:
        """The SMS text of `name` in `locale`: `sms.txt` in the folder `folder_for` picks."""
        key = (name, locale)
        compiled = self._sms.get(key)
        if compiled is None:
            folder = self.folder_for(name, locale)
            compiled = self._sms[key] = CompiledSms(name, folder, self._part(self._load(f"{folder}/{SMS_PART}")))
        return compiled

    def _compile_email(self, name: str, locale: str) -> CompiledEmail:
        folder = self.folder_for(name, locale)
        subject, html, text = (self._load(f"{folder}/{part}") for part in EMAIL_PARTS)
        lang, direction = locale.replace("_", "-"), text_direction(locale)
        values = {"lang": lang, "dir": direction}
        fast_html = flatten(self.env, f"{folder}/body.html", values)
        html_part = Part(fast_html, html, fixed_eval_ctx=True) if fast_html else self._part(html)
        return CompiledEmail(name, folder, lang, direction, subject, html, text, fast_html or html,
                             self._part(subject), html_part, self._part(text))

    def _part(self, template: Template) -> Part:
        return Part(template, fixed_eval_ctx=fixed_eval_context(self.env, template.name or ""))

    def _load(self, path: str) -> Template:
        try:
            return self.env.get_template(path)
        except TemplateNotFound as exc:
            raise TemplateError(path, "file is missing") from exc
        except TemplateSyntaxError as exc:
            raise TemplateError(path, exc.message or "syntax error", exc.lineno) from exc
