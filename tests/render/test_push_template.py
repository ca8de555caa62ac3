"""`push.json`: JSON validated before rendering, values rendered as text per locale with the
email templates' folder fallback, errors naming file and line, and the 4,096-byte limit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ecrm.errors import TemplateError
from ecrm.render.environment import TemplateCatalog
from ecrm.render.push import PushComposer
from ecrm.render.push_template import substitution_names
from ecrm.render.recipient import sample_recipient
from ecrm.settings import Settings, load_settings
from tests.conftest import ROOT

GOOD = '{\n  "title": "Hi {{ profile.first_name }}",\n  "body": "{{ traits.item }} is back",\n  "url": "https://s.example"\n}\n'


def write(root: Path, folder: str, text: str) -> None:
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / "push.json").write_text(text, encoding="utf-8")


def composer(root: Path, settings: Settings | None = None) -> PushComposer:
    settings = settings or load_settings(Path("/nonexistent"), environ={}, templates_dir=root)
    return PushComposer(settings, TemplateCatalog(root), "promo", "promo")


def payload(root: Path, locale: str = "en", **fields: object) -> dict[str, object]:
    message = composer(root).compose(sample_recipient(locale, **{"traits": {"item": "Kettle"}, **fields}))
    return dict(json.loads(message.payload))


def test_values_render_as_text_and_a_quote_in_a_name_keeps_the_json_whole(tmp_path: Path) -> None:
    write(tmp_path, "promo", GOOD)
    got = payload(tmp_path, first_name='Sa"ra <b>')
    assert got["title"] == 'Hi Sa"ra <b>' and got["body"] == "Kettle is back" and got["url"] == "https://s.example"


def test_each_locale_takes_its_own_folder_or_falls_back(tmp_path: Path) -> None:
    write(tmp_path, "promo", GOOD)
    write(tmp_path, "promo.fa", '{"title": "سلام {{ profile.first_name }}", "body": "موجود شد"}')
    assert payload(tmp_path, "fa_IR", first_name="سارا")["title"] == "سلام سارا"
    assert payload(tmp_path, "th", first_name="Som")["title"] == "Hi Som"


@pytest.mark.parametrize(("text", "message", "line"), [
    ('{\n  "title": "x",\n  "body": "y",\n}', "not JSON", 4),
    ('["title"]', "JSON object", 1),
    ('{"title": "x"}', "body is missing", 1),
    ('{"title": "x",\n "body": "y",\n "colour": "red"}', "unknown key 'colour'", 3),
    ('{"title": "x",\n "body": 3}', "body must be a string", 2),
    ('{"title": "x",\n "body": "y",\n "urgency": "now"}', "urgency must be one of", 3),
    ('{"title": "x",\n "body": "{% if %}"}', "Expected an expression", 2),
])
def test_a_broken_file_is_refused_naming_file_and_line(tmp_path: Path, text: str, message: str, line: int) -> None:
    write(tmp_path, "promo", text)
    with pytest.raises(TemplateError, match=message) as error:
        composer(tmp_path).variant("en")
    assert error.value.template == "promo/push.json" and error.value.line == line


def test_an_undefined_value_and_a_bad_topic_name_the_key_and_its_line(tmp_path: Path) -> None:
    write(tmp_path, "promo", '{"title": "x",\n "body": "{{ profile.nickname }}"}')
    with pytest.raises(TemplateError, match=r"body: .*nickname") as error:
        payload(tmp_path)
    assert error.value.line == 2
    write(tmp_path, "promo", '{"title": "x", "body": "y",\n "topic": "summer sale!"}')
    with pytest.raises(TemplateError, match="topic 'summer sale!'"):
        payload(tmp_path)
    write(tmp_path, "promo", '{"title": "x", "body": "y",\n "topic": "{{ traits.item }}"}')
    assert composer(tmp_path).compose(sample_recipient("en", traits={"item": "kettle-2"})).topic == "kettle-2"
    with pytest.raises(TemplateError, match="topic 'Blue kettle'"):
        payload(tmp_path, traits={"item": "Blue kettle"})


def test_a_notification_over_4096_bytes_once_encrypted_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "promo", '{"title": "x", "body": "{{ traits.item * 2000 }}"}')
    with pytest.raises(TemplateError, match=r"bytes of JSON; push services take 3993 at most"):
        payload(tmp_path)


def test_a_profile_without_a_subscription_cannot_get_a_notification(tmp_path: Path) -> None:
    write(tmp_path, "promo", GOOD)
    with pytest.raises(ValueError, match="no push subscription"):
        composer(tmp_path).compose(sample_recipient("en", push=[], traits={"item": "x"}))


@pytest.mark.parametrize(("value", "names"), [
    ("https://shop.example/icon.png", frozenset()),
    ("https://s.example/?utm_campaign={{ campaign }}&hl={{lang}}", frozenset({"campaign", "lang"})),
    ("{{ profile.first_name }}", None),
    ("{{ campaign | upper }}", None),
    ("{{ campaign ~ 'x' }}", None),
    ("{{ lipsum() }}", None),
    ("{% if campaign %}a{% endif %}", None),
])
def test_only_text_and_plain_names_count_as_a_substitution(value: str, names: frozenset[str] | None) -> None:
    assert substitution_names(TemplateCatalog(ROOT / "templates").env, value) == names


def test_values_rendered_once_per_locale_give_the_payload_rendered_whole(tmp_path: Path) -> None:
    """The shipped back_in_stock push.json: icon, url (the campaign's) and topic are rendered once
    per locale, title and body per recipient, and the payload is what rendering it all gives."""
    settings = load_settings(Path("/nonexistent"), environ={}, templates_dir=ROOT / "templates")
    push = PushComposer(settings, TemplateCatalog(ROOT / "templates"), "back_in_stock", "spring-sale")
    cases: list[tuple[str, dict[str, Any]]] = [
        ("en", {"first_name": "Emma"}), ("fa", {"first_name": "سارا"}), ("fa_IR", {"first_name": None}),
        ("en", {"traits": {"wished_item": 'Kettle "XL"'}})]
    for locale, fields in cases:
        recipient = sample_recipient(locale, **fields)
        prepared = push.variant(locale)
        assert set(prepared.varying) == {"title", "body"}
        whole = prepared.compiled.render({**prepared.context, "profile": recipient.profile_fields(),
                                          "traits": recipient.traits})
        message = push.compose(recipient)
        got = json.loads(message.payload)
        assert message.topic == whole.pop("topic") == "back-in-stock"
        assert list(got) == [*whole, "lang", "report"] and {k: got[k] for k in whole} == whole
        assert "utm_campaign=spring-sale" in got["url"] and got["lang"] == locale.replace("_", "-")
