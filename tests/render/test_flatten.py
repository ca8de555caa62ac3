"""A layout inlined at compile time renders byte for byte what Jinja's inheritance renders, and
errors still name the marketer's own file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ecrm.errors import TemplateError
from ecrm.render.environment import TemplateCatalog, render_part
from ecrm.render.flatten import flatten

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = """<html dir="{{ dir }}"><title>{% block title %}Shop{% endblock %}</title>
{% if dir == "rtl" %}<div>{% block rtl %}right{% endblock %}</div>{% else %}{% block ltr %}left{% endblock %}{% endif %}
{% block content %}{% endblock %}
</html>
"""


def context(**values: Any) -> dict[str, Any]:
    base = {"profile": {"first_name": "<Sara & Co>"}, "traits": {"points": 1234}, "locale": "en", "lang": "en",
            "dir": "ltr", "unsubscribe_url": "https://crm.example/u/T?a=1&b=2"}
    return base | values


def catalog_with(tmp_path: Path, body: str, layout: str = LAYOUT) -> TemplateCatalog:
    (tmp_path / "_layouts").mkdir()
    (tmp_path / "_layouts" / "email.html").write_text(layout)
    folder = tmp_path / "promo"
    folder.mkdir()
    (folder / "subject.txt").write_text("Hi")
    (folder / "body.txt").write_text("Hi")
    (folder / "body.html").write_text(body)
    return TemplateCatalog(tmp_path)


@pytest.mark.parametrize("locale", ["en", "fa", "th", "fa_IR"])
@pytest.mark.parametrize("first_name", ["Sara", None, "<b>Tom & Jerry</b>", "سارا"])
def test_the_real_templates_render_the_same_flattened(locale: str, first_name: str | None) -> None:
    compiled = TemplateCatalog(ROOT / "templates").email("welcome", locale)
    assert compiled.fast_html is not compiled.html, "the shipped templates are simple enough to flatten"
    ctx = context(profile={"first_name": first_name}, locale=locale, dir=compiled.direction, lang=compiled.lang)
    assert render_part(compiled.fast_html, ctx) == render_part(compiled.html, ctx)


@pytest.mark.parametrize("locale", ["en", "fa"])
def test_blocks_inside_an_if_and_defaults_are_inlined(tmp_path: Path, locale: str) -> None:
    body = '{% extends "_layouts/email.html" %}\n{% block rtl %}R {{ profile.first_name }}{% endblock %}\n' \
           "{% block content %}<p>{{ traits.points | number }}</p>{% endblock %}\n"
    compiled = catalog_with(tmp_path, body).email("promo", locale)
    assert compiled.fast_html is not compiled.html
    ctx = context(**compiled.locale_values)
    assert render_part(compiled.fast_html, ctx) == render_part(compiled.html, ctx)


def test_the_locales_lang_and_dir_are_folded_into_the_text(tmp_path: Path) -> None:
    compiled = catalog_with(tmp_path, '{% extends "_layouts/email.html" %}').email("promo", "fa")
    assert compiled.locale_values == {"lang": "fa", "dir": "rtl"}
    folded = render_part(compiled.fast_html, context(dir="ltr"))  # what a composer never passes
    assert folded.startswith('<html dir="rtl">') and "<div>right</div>" in folded


def test_an_error_in_an_expression_of_folded_values_is_reported_as_without_inlining(tmp_path: Path) -> None:
    layout = "<html>\n{{ dir.nope }}\n{% block content %}{% endblock %}</html>"
    compiled = catalog_with(tmp_path, '{% extends "_layouts/email.html" %}', layout).email("promo", "fa")
    assert compiled.fast_html is not compiled.html
    ctx = context(**compiled.locale_values)
    with pytest.raises(TemplateError, match="nope") as flat:
        render_part(compiled.fast_html, ctx, compiled.html)
    with pytest.raises(TemplateError) as as_written:
        render_part(compiled.html, ctx)
    assert str(flat.value) == str(as_written.value) and flat.value.line == 2


@pytest.mark.parametrize(("body", "layout"), [
    ('{% extends "_layouts/email.html" %}{% block title %}{{ super() }}!{% endblock %}', LAYOUT),
    ('{% extends "_layouts/email.html" %}{% block title %}{% set x = 1 %}{{ x }}{% endblock %}', LAYOUT),
    ('{% extends "_layouts/email.html" %}{% block title %}{% block inner %}{% endblock %}{% endblock %}', LAYOUT),
    ('{% extends "_layouts/email.html" %}{% block title %}{{ self.content() }}{% endblock %}', LAYOUT),
    ('{% extends "_layouts/email.html" %}{% block title required %}{% endblock %}', LAYOUT),
    ('{% extends "_layouts/email.html" %}Hello{% block title %}T{% endblock %}', LAYOUT),
    ('<p>{% extends "_layouts/email.html" %}', LAYOUT),
    ('{% extends layout_name %}', LAYOUT),
    ("<p>no layout</p>", LAYOUT),
    ('{% extends "_layouts/email.html" %}', "{% for x in [1, 2] %}{% block title %}{% endblock %}{% endfor %}"),
    ('{% extends "_layouts/email.html" %}', '{% set title = "T" %}{% block title %}{{ title }}{% endblock %}'),
    ('{% extends "_layouts/email.html" %}', '{% extends "_layouts/base.html" %}'),
    ('{% extends "_layouts/missing.html" %}', LAYOUT),
])
def test_what_inlining_could_change_is_left_to_jinja(tmp_path: Path, body: str, layout: str) -> None:
    catalog = catalog_with(tmp_path, body, layout)
    assert flatten(catalog.env, "promo/body.html") is None


def test_a_text_layout_is_not_inlined_into_an_html_body(tmp_path: Path) -> None:
    catalog = catalog_with(tmp_path, '{% extends "_layouts/plain.txt" %}{% block content %}{% endblock %}')
    (tmp_path / "_layouts" / "plain.txt").write_text("{% block content %}{% endblock %}")
    assert flatten(catalog.env, "promo/body.html") is None


def test_an_error_names_the_childs_file_and_line(tmp_path: Path) -> None:
    body = '{% extends "_layouts/email.html" %}\n{% block content %}\n<p>\n{{ profile.nickname }}</p>\n{% endblock %}\n'
    compiled = catalog_with(tmp_path, body).email("promo", "en")
    assert compiled.fast_html is not compiled.html
    with pytest.raises(TemplateError, match="nickname") as caught:
        render_part(compiled.fast_html, context(), compiled.html)
    assert (caught.value.template, caught.value.line) == ("promo/body.html", 4)


def test_an_error_in_the_layout_is_reported_as_without_inlining(tmp_path: Path) -> None:
    layout = "<html>\n{{ brand.name }}\n{% block content %}{% endblock %}</html>"
    compiled = catalog_with(tmp_path, '{% extends "_layouts/email.html" %}', layout).email("promo", "en")
    assert compiled.fast_html is not compiled.html
    with pytest.raises(TemplateError, match="brand") as flat:
        render_part(compiled.fast_html, context(), compiled.html)
    with pytest.raises(TemplateError) as as_written:
        render_part(compiled.html, context())
    assert str(flat.value) == str(as_written.value) and flat.value.line == 2


def test_the_inlined_template_is_still_sandboxed(tmp_path: Path) -> None:
    body = '{% extends "_layouts/email.html" %}{% block content %}{{ "".__class__.__mro__[1].__subclasses__() }}' \
           "{% endblock %}"
    compiled = catalog_with(tmp_path, body).email("promo", "en")
    assert compiled.fast_html is not compiled.html
    with pytest.raises(TemplateError, match=r"SecurityError|unsafe"):
        render_part(compiled.fast_html, context(), compiled.html)
