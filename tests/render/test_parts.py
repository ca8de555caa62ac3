"""A Part renders what Jinja's own `Template.render` renders, however often it is reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecrm.errors import TemplateError
from ecrm.render.environment import TemplateCatalog
from ecrm.render.parts import Part, fixed_eval_context

LAYOUT = "<title>{% block title %}Shop{% endblock %}</title>{% autoescape false %}{{ raw }}{% endautoescape %}"
TEMPLATES = {
    "plain.html": "<p>{{ name }}</p>{% set x = name ~ '!' %}{{ x }}",
    "modifier.html": "{% autoescape false %}{{ name }}{% endautoescape %}|{{ name }}",
    "child.html": '{% extends "layout.html" %}{% block title %}{{ super() }} - {{ name }}{% endblock %}',
    "macro.txt": "{% macro m(v) %}[{{ v }}]{% endmacro %}{{ m(name) }}{% for c in 'ab' %}{{ loop.index }}{% endfor %}",
}


@pytest.fixture
def catalog(tmp_path: Path) -> TemplateCatalog:
    (tmp_path / "layout.html").write_text(LAYOUT)
    for name, source in TEMPLATES.items():
        (tmp_path / name).write_text(source)
    return TemplateCatalog(tmp_path)


def test_only_templates_without_autoescape_blocks_or_layouts_share_an_eval_context(catalog: TemplateCatalog) -> None:
    fixed = {name: fixed_eval_context(catalog.env, name) for name in TEMPLATES}
    assert fixed == {"plain.html": True, "modifier.html": False, "child.html": False, "macro.txt": True}


@pytest.mark.parametrize("name", TEMPLATES)
def test_a_reused_part_renders_like_jinja_every_time(catalog: TemplateCatalog, name: str) -> None:
    template = catalog.env.get_template(name)
    part = Part(template, fixed_eval_ctx=fixed_eval_context(catalog.env, name))
    for person in ["<Tom & Jerry>", "سارا", "<b>"]:
        values = {**catalog.env.globals, "name": person, "raw": "<i>"}
        assert part.render(values) == template.render(values)


def test_an_error_names_the_template_and_line(catalog: TemplateCatalog) -> None:
    part = Part(catalog.env.get_template("plain.html"), fixed_eval_ctx=True)
    with pytest.raises(TemplateError, match="name") as caught:
        part.render(dict(catalog.env.globals))
    assert (caught.value.template, caught.value.line) == ("plain.html", 1)
