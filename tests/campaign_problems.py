"""The problems a campaign file is refused with, as tests compare them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecrm.campaigns.load import load_campaign
from ecrm.errors import CampaignSpecError
from ecrm.settings import Settings


def campaign_problems(path: Path, settings: Settings) -> list[str]:
    """What `load_campaign` refuses `path` with, a string per problem (the test fails if it loads)."""
    with pytest.raises(CampaignSpecError) as refused:
        load_campaign(path, settings)
    return [str(problem) for problem in refused.value.problems]
