"""The advice that fits a template that failed while validating a campaign.

Validation renders every locale variant for the campaign's sample profile, and a failure can
mean four different things to the marketer: a value the sample lacks (add it to `sample:`), an
expression the sandbox refuses, a file that is not there, or a syntax error. Each gets its own
sentence, naming the file (and line) to fix.
"""

from __future__ import annotations

from jinja2.exceptions import SecurityError, TemplateNotFound, TemplateSyntaxError, UndefinedError

from ecrm.errors import TemplateError
from ecrm.render.environment import EMAIL_PARTS, TemplateCatalog


def advice(error: TemplateError, catalog: TemplateCatalog, template: str, locale: str,
           parts: tuple[str, ...] = EMAIL_PARTS) -> str:
    """One line for `error`, raised rendering `template` for the sample profile in `locale`
    ('' for the template's default folder); `parts` are the files the campaign's channel needs."""
    cause, where = error.__cause__, f"in locale {locale or 'default'}"
    if isinstance(cause, TemplateSyntaxError):
        return _syntax(cause, error, catalog, template)
    if isinstance(cause, TemplateNotFound):
        if cause.name == error.template:
            return missing_part(error.template, catalog, template, locale, parts)
        where_used = f"{error.template}:{error.line}" if error.line else error.template
        return (f"template {where_used} includes or extends '{cause.name}', which is not in {catalog.root} "
                "(such names are relative to templates_dir, e.g. _layouts/email.html)")
    if isinstance(cause, SecurityError):
        return (f"{error}; the template sandbox refused this expression {where}: a template may read the "
                "profile's values and use filters, not reach Python internals or methods such as __class__; "
                "remove or rewrite it")
    if isinstance(cause, UndefinedError):
        return (f"{error}; rendering for the sample profile {where} (add the value to `sample:` or use "
                "`| default(...)` in the template)")
    return f"{error}; rendering for the sample profile {where} failed (fix the expression on that line)"


def _syntax(cause: TemplateSyntaxError, error: TemplateError, catalog: TemplateCatalog, template: str) -> str:
    name = cause.name or error.template
    used_by = f" (used by template {template})" if name != error.template else ""
    return (f"syntax error in {catalog.root / name}:{cause.lineno}{used_by}: {cause.message}; "
            "fix the template, nothing is sent until it compiles")


def missing_part(path: str, catalog: TemplateCatalog, template: str, locale: str, parts: tuple[str, ...]) -> str:
    """`path` (folder/part) is missing from the folder of `locale` ('' the default), which needs `parts`."""
    folder, part = path.rsplit("/", 1)
    needs = f"needs all of {', '.join(parts)}" if len(parts) > 1 else f"needs {parts[0]} for this channel"
    if not locale:
        return f"{catalog.root / folder}/{part} is missing: a template folder {needs}"
    return (f"{catalog.root / folder}/{part} is missing: the folder for locale {locale} {needs}; it does not "
            f"borrow them from {template}/ (copy {part} there, or remove {folder}/ to send {template}/ to {locale})")
