"""`ecrm campaign validate` gives each kind of template failure the advice that fits it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecrm.cli import main

CAMPAIGN = """\
name: promo
channel: email
template: promo
audience:
  rules:
    - {field: locale, op: eq, value: en}
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    templates = tmp_path / "templates"
    _folder(templates / "promo", body_txt="Hi {{ profile.first_name }}\n")
    (templates / "_layouts").mkdir()
    (tmp_path / "ecrm.yaml").write_text(f"templates_dir: {templates}\n")
    (tmp_path / "promo.yaml").write_text(CAMPAIGN)
    return tmp_path


def _folder(path: Path, subject: str = "Hello\n", body_txt: str = "Hi\n", body_html: str = "<p>Hi</p>\n") -> None:
    path.mkdir(parents=True)
    for name, text in (("subject.txt", subject), ("body.txt", body_txt), ("body.html", body_html)):
        (path / name).write_text(text)


def validate(root: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    code = main(["--config", str(root / "ecrm.yaml"), "campaign", "validate", str(root / "promo.yaml")])
    out, err = capsys.readouterr()
    if code == 0:
        assert "campaign 'promo' is valid" in out
        return []
    problems = err.splitlines()[1:]
    prefix = f"  {root / 'promo.yaml'}:3 template: "
    assert all(line.startswith(prefix) for line in problems), problems
    return [line.removeprefix(prefix) for line in problems]


def test_a_working_template_validates(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(root, capsys) == []


def test_an_undefined_value_suggests_the_sample(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "templates" / "promo" / "body.txt").write_text("Hi\nUse {{ traits.coupon }}\n")
    assert validate(root, capsys) == [
        "template promo/body.txt:2: 'dict object' has no attribute 'coupon'; rendering for the sample profile in "
        "locale default (add the value to `sample:` or use `| default(...)` in the template)"]


def test_a_sandbox_refusal_says_the_sandbox_refused_it_not_to_add_a_sample(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "templates" / "promo" / "body.html").write_text("<p>{{ profile.__class__ }}</p>\n")
    [problem] = validate(root, capsys)
    assert problem.startswith("template promo/body.html:1: SecurityError: access to attribute '__class__'")
    assert "the template sandbox refused this expression in locale default" in problem
    assert "sample:" not in problem


def test_a_missing_part_names_the_file_and_the_locale_folder(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    templates = root / "templates"
    _folder(templates / "promo.fa")
    (templates / "promo.fa" / "body.html").unlink()
    assert validate(root, capsys) == [
        f"{templates}/promo.fa/body.html is missing: the folder for locale fa needs all of subject.txt, body.html, "
        "body.txt; it does not borrow them from promo/ (copy body.html there, or remove promo.fa/ to send promo/ "
        "to fa)"]


def test_a_missing_layout_names_it_and_where_names_are_looked_up(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    templates = root / "templates"
    (templates / "promo" / "body.html").write_text(
        '{% extends "_layouts/gone.html" %}\n{% block content %}Hi{% endblock %}\n')
    [problem] = validate(root, capsys)
    assert problem.startswith("template promo/body.html:1 includes or extends '_layouts/gone.html', "
                              f"which is not in {templates} (such names are relative to templates_dir")
    assert "sample:" not in problem


def test_a_syntax_error_names_the_file_and_line_once_even_in_a_shared_layout(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    templates = root / "templates"
    (templates / "_layouts" / "mail.html").write_text("<html>\n{% block content %}{% endblock %}\n{% endfor %}\n")
    layout_user = '{% extends "_layouts/mail.html" %}{% block content %}Hi{% endblock %}\n'
    (templates / "promo" / "body.html").write_text(layout_user)
    _folder(templates / "promo.th", body_html=layout_user)
    assert validate(root, capsys) == [
        f"syntax error in {templates}/_layouts/mail.html:3 (used by template promo): Encountered unknown tag "
        "'endfor'.; fix the template, nothing is sent until it compiles"]

    (templates / "promo" / "subject.txt").write_text("Hello\n{% if %}\n")
    assert validate(root, capsys)[0] == (
        f"syntax error in {templates}/promo/subject.txt:2: Expected an expression, got 'end of statement block'; "
        "fix the template, nothing is sent until it compiles")
