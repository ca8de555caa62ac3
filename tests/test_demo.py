"""`ecrm demo` end to end: seeded profiles, local SMTP sink, mailbox read back as receipts."""

from __future__ import annotations

import os
import subprocess
import sys
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from ecrm.cli import main
from tests.conftest import ROOT


def test_demo_sends_to_every_consenting_profile_and_reads_their_mailbox_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # not the checkout: the campaign and templates ship in the package
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


def demo_process(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ECRM_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "ecrm", "demo", "--profiles", "30", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_demo_runs_from_an_empty_folder_and_writes_only_under_demo_out(tmp_path: Path) -> None:
    done = demo_process(tmp_path)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["demo-out"]
    assert {p.name for p in (tmp_path / "demo-out").iterdir()} <= {"ecrm.db", "ecrm.db-wal", "ecrm.db-shm", "mail"}
    assert "campaigns/welcome.yaml (shipped with ecrm) is valid" in done.stdout


def test_demo_again_into_a_folder_replaces_its_own_files_and_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for _ in range(2):
        done = demo_process(tmp_path, "--out", str(out))
        assert done.returncode == 0, done.stderr
    assert (out / "notes.txt").read_text() == "mine"
    assert len(list((out / "mail").glob("*.eml"))) == int(done.stdout.split(" messages captured")[0].split()[-1])
