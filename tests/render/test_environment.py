"""Template lookup per locale, right-to-left direction, strict undefined, sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from ecrm.errors import TemplateError
from ecrm.render.environment import TemplateCatalog, locale_chain, render_part, text_direction


def make(root: Path, name: str, subject: str, html: str = "<p>{{ dir }}</p>", text: str = "t") -> None:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text(subject)
    (folder / "body.html").write_text(html)
    (folder / "body.txt").write_text(text)


def test_a_locale_falls_back_from_region_to_language_to_the_default(tmp_path: Path) -> None:
    make(tmp_path, "promo", "default")
    make(tmp_path, "promo.fa", "persian")
    catalog = TemplateCatalog(tmp_path)
    assert catalog.folder_for("promo", "fa_IR") == "promo.fa"
    assert catalog.folder_for("promo", "fa") == "promo.fa"
    assert catalog.folder_for("promo", "th") == "promo"
    assert catalog.variants("promo") == {"": "promo", "fa": "promo.fa"}
    assert locale_chain("pt-BR") == ["pt_BR", "pt"]


def test_persian_and_arabic_are_right_to_left_and_thai_is_not() -> None:
    assert [text_direction(x) for x in ("fa", "fa_IR", "ar", "he", "th", "en")] == \
        ["rtl", "rtl", "rtl", "rtl", "ltr", "ltr"]


def test_each_template_and_locale_is_compiled_once(tmp_path: Path) -> None:
    make(tmp_path, "promo", "Hi")
    catalog = TemplateCatalog(tmp_path)
    assert catalog.email("promo", "en") is catalog.email("promo", "en")


def test_warming_compiles_every_template_in_its_locales_and_reports_broken_ones(tmp_path: Path) -> None:
    make(tmp_path, "promo", "Hi")
    make(tmp_path, "promo.fa", "سلام")
    make(tmp_path, "broken", "{% if %}")
    (tmp_path / "_layouts").mkdir()
    catalog = TemplateCatalog(tmp_path)

    errors = catalog.warm()

    assert [e.template for e in errors] == ["broken/subject.txt"]
    assert sorted(catalog._compiled) == [("promo", "en"), ("promo", "fa")]
    assert catalog._compiled[("promo", "fa")].direction == "rtl"


def test_an_undefined_variable_is_an_error_not_a_blank(tmp_path: Path) -> None:
    make(tmp_path, "promo", "Hi {{ profile.nickname }}")
    compiled = TemplateCatalog(tmp_path).email("promo", "en")
    with pytest.raises(TemplateError, match="nickname"):
        render_part(compiled.subject, {"profile": {}})


def test_html_is_autoescaped_and_text_is_not(tmp_path: Path) -> None:
    make(tmp_path, "promo", "{{ name }}", html="<p>{{ name }}</p>", text="{{ name }}")
    compiled = TemplateCatalog(tmp_path).email("promo", "en")
    assert render_part(compiled.html, {"name": "<b>Tom & Jerry</b>"}) == "<p>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>"
    assert render_part(compiled.text, {"name": "Tom & Jerry"}) == "Tom & Jerry"


def test_the_sandbox_refuses_reaching_into_python_internals(tmp_path: Path) -> None:
    make(tmp_path, "promo", "{{ ''.__class__.__mro__[1].__subclasses__() }}")
    compiled = TemplateCatalog(tmp_path).email("promo", "en")
    with pytest.raises(TemplateError):
        render_part(compiled.subject, {})


def test_numbers_and_money_follow_the_recipients_locale(tmp_path: Path) -> None:
    make(tmp_path, "promo", "{{ 1234.5 | number }} / {{ 20 | money('EUR') }}")
    compiled = TemplateCatalog(tmp_path).email("promo", "en")
    assert render_part(compiled.subject, {"locale": "en"}) == "1,234.5 / €20.00"
    assert render_part(compiled.subject, {"locale": "fa"}).startswith("۱٬۲۳۴٫۵")


def test_attribute_lookup_on_dicts_prefers_dict_attributes_like_jinja(tmp_path: Path) -> None:
    make(tmp_path, "promo", "{{ p.name }}|{{ p.items is callable }}|{{ p.missing | default('-') }}|{{ p.__class__ }}")
    compiled = TemplateCatalog(tmp_path).email("promo", "en")
    with pytest.raises(TemplateError):  # the sandbox still refuses internals, key or not
        render_part(compiled.subject, {"p": {"name": "Sara", "items": 3, "__class__": "x"}})
    make(tmp_path, "plain", "{{ p.name }}|{{ p.items is callable }}|{{ p.missing | default('-') }}")
    compiled = TemplateCatalog(tmp_path).email("plain", "en")
    assert render_part(compiled.subject, {"p": {"name": "Sara", "items": 3}}) == "Sara|True|-"


class _Html:
    def __html__(self) -> str:
        return "<i>safe</i>"


def test_output_escaping_renders_what_jinjas_own_escape_renders(tmp_path: Path) -> None:
    html = ("{{ s }}|{{ s | safe }}|{{ n }}|{{ none }}|{{ obj }}|{{ s | upper }}|{{ s ~ n }}|"
            "{% set cap %}<b>{{ s }}</b>{% endset %}{{ cap }}|{% filter upper %}{{ s }}{% endfilter %}|"
            "{% macro m(x) %}<u>{{ x }}</u>{% endmacro %}{{ m(s) }}|{% autoescape false %}{{ s }}{% endautoescape %}")
    make(tmp_path, "promo", "{{ s }}", html=html)
    values = {"s": "<a href='x'>Tom & \"Jerry\"</a>", "n": 5, "none": None, "obj": _Html()}
    compiled = TemplateCatalog(tmp_path).email("promo", "en")
    plain = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined)
    rendered = render_part(compiled.html, values)
    assert rendered == plain.from_string(html).render(values)
    assert rendered.startswith("&lt;a href=&#39;x&#39;&gt;Tom &amp; &#34;Jerry&#34;&lt;/a&gt;|<a href='x'>")
