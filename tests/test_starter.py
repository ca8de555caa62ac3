"""The starter files ship inside the package: one copy in a checkout, real files in the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from ecrm import starter
from tests.conftest import ROOT

FOLDERS = ("config", "campaigns", "templates")


def test_the_checkouts_top_level_folders_are_the_packaged_starter_files() -> None:
    for folder in FOLDERS:
        top, packaged = ROOT / folder, starter.STARTER / folder
        assert starter.files(top) == starter.files(packaged) != []
        for path in starter.files(top):
            assert (top / path).read_bytes() == (packaged / path).read_bytes(), path
    assert {"welcome/body.html", "welcome.fa/body.html", "welcome.th/body.html", "_layouts/email.html"} <= {
        p.as_posix() for p in starter.files(starter.TEMPLATES)}


def test_the_wheel_holds_every_starter_file_as_a_real_file(tmp_path: Path) -> None:
    source = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    for name in tracked:
        if (ROOT / name).is_file() or (ROOT / name).is_symlink():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name, follow_symlinks=False)
    assert (source / "ecrm/starter/templates").is_symlink()  # as in the checkout
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True)

    [wheel] = (tmp_path / "dist").glob("ecrm-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packed = {info.filename: info for info in archive.infolist()}
        for folder in FOLDERS:
            for path in starter.files(starter.STARTER / folder):
                info = packed[f"ecrm/starter/{folder}/{path.as_posix()}"]
                is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
                assert not is_link
                assert archive.read(info) == (starter.STARTER / folder / path).read_bytes()
