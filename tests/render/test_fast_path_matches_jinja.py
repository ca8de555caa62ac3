"""Every shipped template renders the same through the composer's fast path (flattened layouts,
reused contexts, escaping without Markup) as through plain Jinja2 in the same sandbox.

The fast path leans on Jinja2 and MarkupSafe internals (listed in `ecrm.render.environment`),
which is why pyproject.toml bounds both: this test must pass before either bound is raised."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jinja2 import FileSystemLoader, Template
from jinja2.sandbox import SandboxedEnvironment

from ecrm.render.email import EmailComposer, RenderedEmail
from ecrm.render.environment import EMAIL_PARTS, TemplateCatalog
from ecrm.render.filters import FILTERS
from ecrm.render.recipient import Recipient, sample_recipient
from ecrm.settings import load_settings

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
# An ampersand and angle brackets in the unsubscribe URL reach the HTML part escaped.
PUBLIC_URL = "https://crm.example/shop?a=1&b=<2>"
HOSTILE = "<script>alert(\"x\")</script>&'"


def folders() -> list[tuple[str, str, str]]:
    """(folder, template, locale) for every template folder on disk: a variant in its own locale,
    the default folder in English and in a right-to-left locale that has no folder of its own."""
    found = []
    for path in sorted(TEMPLATES.iterdir()):
        if not path.is_dir() or path.name.startswith(("_", ".")):
            continue
        template, _, locale = path.name.partition(".")
        tags = [locale] if locale else [tag for tag in ("en", "ar") if not (TEMPLATES / f"{template}.{tag}").is_dir()]
        found += [(path.name, template, tag) for tag in tags]
    return found


def recipients(locale: str) -> dict[str, Recipient]:
    return {
        "sample": sample_recipient(locale),
        "welcome.yaml-sample": sample_recipient(locale, first_name="Sara", traits={"points": 120}),
        "persian": sample_recipient(locale, first_name="سارا", last_name="محمدی",
                                    traits={"points": 1250, "city": "تهران"}),
        "thai": sample_recipient(locale, first_name="สมชาย", last_name="ใจดี", traits={"points": 98765}),
        "html-special": sample_recipient(locale, first_name=HOSTILE, last_name='"&<>\'',
                                         external_id="a&b<c>", traits={"points": 7, "note": HOSTILE}),
        "empty": sample_recipient(locale, first_name="", last_name="", traits={"points": 0}),
        "missing": sample_recipient(locale, first_name=None, last_name=None, traits={}),
        "big-int": sample_recipient(locale, traits={"points": 1234567890123}),
        "negative": sample_recipient(locale, traits={"points": -42}),
        "float": sample_recipient(locale, traits={"points": 1234.5}),
    }


CASES = [
    pytest.param(folder, template, locale, who, part, id=f"{folder}-{locale}-{who}-{part}")
    for folder, template, locale in folders() for who in recipients(locale) for part in EMAIL_PARTS
]


@pytest.fixture(scope="module")
def catalog() -> TemplateCatalog:
    return TemplateCatalog(TEMPLATES)


@pytest.fixture(scope="module")
def plain(catalog: TemplateCatalog) -> SandboxedEnvironment:
    """Jinja's own sandbox with ecrm's settings, filters and globals, and none of its fast path."""
    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(TEMPLATES)),
        undefined=catalog.env.undefined,
        autoescape=catalog.env.autoescape,
        keep_trailing_newline=catalog.env.keep_trailing_newline,
        auto_reload=False,
    )
    env.filters.update(FILTERS)
    assert env.template_class is Template and env.globals.keys() == catalog.env.globals.keys()
    return env


@pytest.fixture(scope="module")
def composers(catalog: TemplateCatalog) -> dict[str, EmailComposer]:
    settings = load_settings(Path("/nonexistent"), environ={}, templates_dir=TEMPLATES,
                             secret_key="test-secret-key-0123456789", public_url=PUBLIC_URL)
    names = {template for _, template, _ in folders()}
    return {name: EmailComposer(settings, catalog, name, "welcome & <more>") for name in names}


def plain_render(env: SandboxedEnvironment, path: str, composer: EmailComposer, recipient: Recipient,
                 url: str) -> str:
    compiled = composer.variant(recipient.locale).compiled
    values: dict[str, Any] = {
        "campaign": composer.campaign, "lang": compiled.lang, "dir": compiled.direction,
        "profile": recipient.profile_fields(), "traits": recipient.traits, "locale": recipient.locale,
        "unsubscribe_url": url,
    }
    return env.get_template(path).render(values)


@pytest.mark.parametrize(("folder", "template", "locale", "who", "part"), CASES)
def test_every_part_renders_as_plain_jinja(catalog: TemplateCatalog, plain: SandboxedEnvironment,
                                           composers: dict[str, EmailComposer], folder: str, template: str,
                                           locale: str, who: str, part: str) -> None:
    assert catalog.folder_for(template, locale) == folder
    composer, recipient = composers[template], recipients(locale)[who]
    rendered = composer.render(recipient)
    expected = plain_render(plain, f"{folder}/{part}", composer, recipient, rendered.unsubscribe_url)
    if part == "subject.txt":
        expected = expected.strip()  # as the composer does: a subject is one line
    assert fast(rendered, part) == expected


def fast(rendered: RenderedEmail, part: str) -> str:
    return {"subject.txt": rendered.subject, "body.html": rendered.html, "body.txt": rendered.text}[part]
