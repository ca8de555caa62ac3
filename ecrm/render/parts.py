"""Rendering one compiled email part for recipient after recipient.

`Template.render` builds a Jinja `Context` for every call, and `Context.__init__` calls the
environment's autoescape function again, builds an `EvalContext` and copies the template's
blocks. A `Part` does that work once: its contexts share one `EvalContext` when nothing in the
template can change it while rendering (`{% autoescape %}`, or a layout it `extends`).
"""

from __future__ import annotations

from typing import Any, NoReturn

from jinja2 import Environment, Template, nodes
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.utils import concat

from ecrm.errors import TemplateError


class Part:
    """`template`, ready to render many times. When it was derived from another template (a
    flattened layout), `as_written` is that one: on an error it is rendered again, so the error
    names the marketer's own file and line, not the derived template's."""

    __slots__ = ("_root", "as_written", "blocks", "environment", "eval_ctx", "name", "template")

    def __init__(self, template: Template, as_written: Template | None = None, *, fixed_eval_ctx: bool) -> None:
        self.template, self.as_written = template, as_written
        self.environment, self.name, self.blocks = template.environment, template.name, template.blocks
        self.eval_ctx = EvalContext(self.environment, self.name) if fixed_eval_ctx else None
        self._root = template.root_render_func

    def render(self, values: dict[str, Any]) -> str:
        """Render with `values` (the environment's globals included: `TemplateCatalog.context`).
        An undefined variable or a sandbox violation becomes a TemplateError naming the template
        and line."""
        try:
            return concat(self._root(_PartContext(self, values)))
        except Exception:  # Jinja raises many types: UndefinedError, SecurityError, TypeError...
            if self.as_written is not None and self.as_written is not self.template:
                render_part(self.as_written, values)  # raises the same error, located in the file as written
            _raise_template_error(self.template)


class _PartContext(Context):
    """The Context `template.new_context(values, shared=True)` makes, from what its Part keeps.

    Jinja also fills `globals_keys` with the names of the template's globals (a third of its
    cost); only `{% import %}` reads it, to hand an imported template globals it lacks, and every
    template here has the environment's globals, so the empty set of a context without globals
    is the same."""

    def __init__(self, part: Part, values: dict[str, Any]) -> None:  # no super(): it is what this replaces
        self.parent = values
        self.vars = {}
        self.environment = part.environment
        self.eval_ctx = part.eval_ctx or EvalContext(part.environment, part.name)
        self.exported_vars = set()
        self.name = part.name
        self.globals_keys = set()
        self.blocks = {name: [block] for name, block in part.blocks.items()} if part.blocks else {}


def render_part(template: Template, values: dict[str, Any], as_written: Template | None = None) -> str:
    """Render `template` once (see `Part.render`)."""
    return Part(template, as_written, fixed_eval_ctx=False).render(values)


def fixed_eval_context(env: Environment, name: str) -> bool:
    """True when rendering template `name` cannot change its EvalContext: it has no
    `{% autoescape %}` and extends no layout (which could have one)."""
    if env.loader is None:
        return False
    source, filename, _ = env.loader.get_source(env, name)
    tree = env.parse(source, name, filename)
    return next(tree.find_all((nodes.Extends, nodes.EvalContextModifier)), None) is None


def _raise_template_error(template: Template) -> NoReturn:
    """Re-raise the exception being handled as a TemplateError with the template's line."""
    try:
        template.environment.handle_exception()  # re-raises with template lines in the traceback
    except Exception as exc:
        raise TemplateError(template.name or "?", _describe(exc), _template_line(exc)) from exc


def _describe(exc: Exception) -> str:
    message = str(exc).replace("jinja2.exceptions.", "")
    return f"{type(exc).__name__}: {message}" if type(exc).__name__ != "UndefinedError" else message


def _template_line(exc: Exception) -> int | None:
    """Jinja rewrites tracebacks so a template's frame carries the template's own line."""
    tb, line = exc.__traceback__, None
    while tb is not None:
        if "__jinja_exception__" in tb.tb_frame.f_globals:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
