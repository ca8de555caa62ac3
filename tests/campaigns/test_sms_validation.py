"""An SMS campaign is refused at validation when a locale's template has no `sms.txt`, or when the
text rendered for the sample takes more parts than `sms.max_parts`; file, line and key named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ecrm.campaigns.load import load_campaign
from ecrm.cli import main
from ecrm.settings import Settings, load_settings
from tests.campaign_problems import campaign_problems
from tests.conftest import ROOT

SMS = """\
name: promo_sms
channel: sms
template: {template}
audience:
  rules:
    - field: locale
      op: in
      value: [en, fa, th]
sms:
  max_parts: {max_parts}
sample:
  first_name: Sara
  traits:
    points: 120
"""


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", root)
    (root / "email_only").mkdir()
    for part in ("subject.txt", "body.txt", "body.html"):
        shutil.copy(root / "welcome" / part, root / "email_only" / part)
    (root / "text_only").mkdir()
    (root / "text_only" / "sms.txt").write_text("Hi {{ profile.first_name }}, {{ traits.points }} points\n")
    return root


@pytest.fixture
def config(templates: Path) -> Settings:
    return load_settings(Path("/nonexistent"), environ={}, templates_dir=templates)


def write(tmp_path: Path, template: str, max_parts: int = 3) -> Path:
    path = tmp_path / "campaign.yaml"
    path.write_text(SMS.format(template=template, max_parts=max_parts))
    return path


def test_the_shipped_sms_campaign_and_an_sms_only_template_are_valid(tmp_path: Path, config: Settings) -> None:
    assert load_campaign(ROOT / "campaigns" / "welcome_sms.yaml", config).sms is not None
    assert load_campaign(write(tmp_path, "text_only", 1), config).name == "promo_sms"


def test_a_template_without_sms_txt_is_refused_for_an_sms_campaign(tmp_path: Path, config: Settings,
                                                                   templates: Path) -> None:
    path = write(tmp_path, "email_only")
    assert campaign_problems(path, config) == [
        f"{path}:3 template: {templates}/email_only/sms.txt is missing: a template folder needs sms.txt for this "
        "channel"]


def test_a_locale_folder_without_sms_txt_is_named(tmp_path: Path, config: Settings, templates: Path) -> None:
    (templates / "welcome.th" / "sms.txt").unlink()
    problems = campaign_problems(write(tmp_path, "welcome"), config)
    assert len(problems) == 1 and f"{templates}/welcome.th/sms.txt is missing: the folder for locale th" in problems[0]


def test_a_text_longer_than_max_parts_is_refused_naming_the_file_and_the_key(tmp_path: Path, config: Settings) -> None:
    path = write(tmp_path, "welcome", max_parts=1)
    assert campaign_problems(path, config) == [  # Thai forces UCS-2: 74 units is two parts; en and fa fit in one
        f"{path}:10 sms.max_parts: welcome.th/sms.txt renders to UCS-2, 74 units, 2 parts for the sample profile, "
        "more than max_parts 1 (each part is billed): shorten the text, or raise max_parts"]


def test_sms_options_on_an_email_campaign_are_refused(tmp_path: Path, config: Settings) -> None:
    path = tmp_path / "campaign.yaml"
    path.write_text(SMS.format(template="welcome", max_parts=3).replace("channel: sms", "channel: email"))
    problems = campaign_problems(path, config)
    assert len(problems) == 1 and "`sms:` options apply to a campaign sending SMS" in problems[0]


@pytest.mark.parametrize("value", ["0", "11", "many"])
def test_max_parts_takes_one_to_ten(tmp_path: Path, config: Settings, value: str) -> None:
    path = tmp_path / "campaign.yaml"
    path.write_text(SMS.format(template="welcome", max_parts=value))
    problems = campaign_problems(path, config)
    assert len(problems) == 1 and problems[0].startswith(f"{path}:10 sms.max_parts:")


def test_campaign_validate_refuses_it_on_the_command_line(tmp_path: Path, templates: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECRM_TEMPLATES_DIR", str(templates))
    monkeypatch.setenv("ECRM_CONFIG", "/nonexistent")
    assert main(["campaign", "validate", str(write(tmp_path, "email_only"))]) == 1
    assert "email_only/sms.txt is missing" in capsys.readouterr().err
