"""The starter files that ship inside the package: the demo's campaign, its templates in
English, Persian and Thai, and the commented settings file.

In a checkout, `config`, `campaigns` and `templates` here are links to the top-level folders of
the same names, so there is one copy; a built wheel holds them as real files. `ecrm demo` runs
from these, and `ecrm init DIR` copies them into a new project.
"""

from __future__ import annotations

from pathlib import Path

STARTER = Path(__file__).resolve().parent
CONFIG = STARTER / "config" / "ecrm.yaml"
CAMPAIGNS = STARTER / "campaigns"
TEMPLATES = STARTER / "templates"
WELCOME = CAMPAIGNS / "welcome.yaml"


def files(folder: Path) -> list[Path]:
    """Every file under `folder`, relative to it, in a stable order (no caches or hidden files)."""
    return sorted(p.relative_to(folder) for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith((".", "__")) for part in p.relative_to(folder).parts))
