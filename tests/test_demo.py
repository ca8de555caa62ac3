"""`ecrm demo` end to end: seeded profiles, local SMTP sink, mailbox read back as receipts."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from ecrm.cli import main
from tests.conftest import ROOT


def test_demo_sends_to_every_consenting_profile_and_reads_their_mailbox_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    out = tmp_path / "demo"
    assert main(["--config", "/nonexistent", "demo", "--profiles", "90", "--out", str(out)]) == 0

    files = sorted((out / "mail").glob("*.eml"))
    printed = capsys.readouterr().out
    assert f"{len(files)} messages captured" in printed
    assert 75 <= len(files) < 90  # about 92% agreed to email
    parser = BytesParser(policy=policy.default)
    languages = {str(parser.parsebytes(f.read_bytes())["Content-Language"]) for f in files}
    assert languages == {"en", "fa", "th"}
    for locale in ("en", "fa", "th"):
        row = next(line for line in printed.splitlines() if line.startswith(f"│ {locale} "))
        audience, sent, delivered, failed, _ = (int(c) for c in row.split("│")[2:7])
        assert audience == sent == delivered and failed == 0
