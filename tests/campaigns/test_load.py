"""A wrong campaign file is refused with file, line and field, before anything is sent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ecrm.campaigns.load import load_campaign
from ecrm.settings import Settings, load_settings
from tests.campaign_problems import campaign_problems
from tests.conftest import ROOT

GOOD = """\
name: promo
channel: email
template: {template}
audience:
  rules:
    - field: locale
      op: in
      value: [en, fa]
schedule: now
"""


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", root)
    broken = root / "broken"
    broken.mkdir()
    (broken / "subject.txt").write_text("Hello {{ profile.first_name }}\n")
    (broken / "body.txt").write_text("Hi\nYou have {{ traits.coupon_code }} to use\n")
    (broken / "body.html").write_text("<p>Hi</p>\n")
    return root


@pytest.fixture
def config(templates: Path) -> Settings:
    return load_settings(Path("/nonexistent"), environ={}, templates_dir=templates)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "campaign.yaml"
    path.write_text(text)
    return path


def test_a_valid_file_loads(tmp_path: Path, config: Settings) -> None:
    spec = load_campaign(write(tmp_path, GOOD.format(template="welcome")), config)
    assert spec.name == "promo" and spec.audience.rules is not None and spec.audience.rules[0].value == ["en", "fa"]


@pytest.mark.parametrize(("change", "expected"), [
    (("schedule: now", "schedule: now\nsend_twice: true"), ":10 send_twice: unknown field"),
    (("    - field: locale", "    - fild: locale"), ":6 audience.rules[0].fild: unknown field"),
    (("value: [en, fa]", "value: en"), ":8 audience.rules[0].value: op 'in' needs a list of values"),
    (("channel: email", "channel: 42"), ":2 channel: Input should be 'email'"),
    (("schedule: now", "schedule: 2026-12-01T09:00:00"), ":9 schedule: the time needs a zone"),
    (("schedule: now", "schedule: tomorrow"), ":9 schedule:"),
    (("name: promo", "name: Big Promo!"), ":1 name: 'Big Promo!' does not have the expected form"),
])
def test_a_wrong_field_is_named_with_its_line(tmp_path: Path, config: Settings, change: tuple[str, str],
                                              expected: str) -> None:
    path = write(tmp_path, GOOD.format(template="welcome").replace(*change))
    problems = campaign_problems(path, config)
    assert any(p.startswith(str(path)) and expected in p for p in problems), problems


def test_every_problem_is_reported_not_only_the_first(tmp_path: Path, config: Settings) -> None:
    text = GOOD.format(template="nowhere").replace("channel: email", "channel: fax").replace("op: in", "op: among")
    problems = campaign_problems(write(tmp_path, text), config)
    assert [p.split(" ", 1)[0].rsplit(":", 1)[1] for p in problems] == ["2", "7", "3"], problems
    assert "no template 'nowhere'" in problems[2]


def test_a_missing_template_is_refused(tmp_path: Path, config: Settings) -> None:
    problems = campaign_problems(write(tmp_path, GOOD.format(template="nosuch")), config)
    assert problems == [f"{tmp_path / 'campaign.yaml'}:3 template: no template 'nosuch' in {config.templates_dir} "
                        f"(expected a folder {config.templates_dir / 'nosuch'})"]


def test_a_template_with_an_undefined_variable_is_refused_naming_the_template_line(
    tmp_path: Path, config: Settings
) -> None:
    problems = campaign_problems(write(tmp_path, GOOD.format(template="broken")), config)
    assert len(problems) == 1
    assert ":3 template: template broken/body.txt:2:" in problems[0]
    assert "coupon_code" in problems[0]


def test_the_sample_profile_can_supply_the_variable(tmp_path: Path, config: Settings) -> None:
    text = GOOD.format(template="broken") + "sample:\n  traits:\n    coupon_code: XMAS\n"
    assert load_campaign(write(tmp_path, text), config).sample.traits == {"coupon_code": "XMAS"}


def test_broken_yaml_is_refused_with_its_line(tmp_path: Path, config: Settings) -> None:
    problems = campaign_problems(write(tmp_path, "name: promo\naudience: [unclosed\nchannel: email\n"), config)
    assert len(problems) == 1 and "not valid YAML" in problems[0] and problems[0].startswith(f"{tmp_path}/")


def test_a_template_syntax_error_is_refused(tmp_path: Path, config: Settings, templates: Path) -> None:
    (templates / "broken" / "body.html").write_text("<p>\n{% if %}\n")
    problems = campaign_problems(write(tmp_path, GOOD.format(template="broken")), config)
    assert "broken/body.html:2" in problems[0]


def test_a_billion_laughs_campaign_is_refused_at_its_first_alias(tmp_path: Path, config: Settings) -> None:
    from tests.test_yamlfile import BILLION_LAUGHS

    path = write(tmp_path, BILLION_LAUGHS)
    assert campaign_problems(path, config) == [f"{path}:2: YAML aliases (*a) are not supported; "
                                         "write the value out where it is used"]
