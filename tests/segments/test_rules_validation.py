"""A wrong rule is refused when the campaign is validated, naming file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecrm.campaigns.load import load_campaign
from ecrm.errors import CampaignSpecError
from ecrm.segments.rules import MAX_DEPTH, Audience, Rule
from ecrm.segments.values import parse_duration
from ecrm.settings import Settings, load_settings
from tests.campaign_problems import campaign_problems
from tests.conftest import ROOT

CAMPAIGN = """\
name: promo
channel: email
template: welcome
audience:
  all:
    - {{field: language, op: in, value: [fa]}}
    - any:
        - not:
            {rule}
schedule: now
"""


@pytest.fixture
def config() -> Settings:
    return load_settings(Path("/nonexistent"), environ={}, templates_dir=ROOT / "templates")


def problems(tmp_path: Path, config: Settings, rule: str) -> list[str]:
    path = tmp_path / "promo.yaml"
    path.write_text(CAMPAIGN.format(rule=rule))
    return [p.removeprefix(str(path)) for p in campaign_problems(path, config)]


def test_a_nested_tree_loads(tmp_path: Path, config: Settings) -> None:
    path = tmp_path / "promo.yaml"
    path.write_text(CAMPAIGN.format(rule="{field: traits.city, op: starts_with, value: Teh}"))
    spec = load_campaign(path, config)
    inner = spec.audience.root().all_[1].any_[0].not_  # type: ignore[index]
    assert inner is not None and inner.value == "Teh"


@pytest.mark.parametrize(("rule", "expected"), [
    ("{field: traits.city, op: startswith, value: Teh}", ":9 audience.all[1].any[0].not.op: Input should be"),
    ("{field: city, value: Teh}", ":9 audience.all[1].any[0].not.field: 'city' is not a profile field"),
    ("{field: traits.points, op: between, value: [100]}",
     ":9 audience.all[1].any[0].not.value: op 'between' needs [low, high]"),
    ("{field: traits.points, op: between, value: [500, 100]}",
     ":9 audience.all[1].any[0].not.value: op 'between' needs the low end first"),
    ("{field: created_at, op: older_than, value: 30 days}",
     ":9 audience.all[1].any[0].not.value: '30 days' is not a duration"),
    ("{field: created_at, op: newer_than, value: 99999999d}",
     ":9 audience.all[1].any[0].not.value: '99999999d' is not a duration"),
    ("{field: email, op: gt, value: a}", ":9 audience.all[1].any[0].not.op: field 'email' holds text"),
    ("{field: traits.city, op: gt, value: Teh}", ":9 audience.all[1].any[0].not.value: op 'gt' compares numbers"),
    ("{field: traits.tags, op: in, value: [1, a]}", ":9 audience.all[1].any[0].not.value: the values of op 'in'"),
    ("{field: traits.x, op: exists, value: 1}", ":9 audience.all[1].any[0].not.value: op 'exists' takes no value"),
    ("{field: traits.day, op: eq, value: 2026-02-30}", ":9: '2026-02-30' is not a valid value"),
    ("{field: traits.day, op: eq, value: '2026-02-30'}", ":9 audience.all[1].any[0].not.value: '2026-02-30' is not"),
    ("{field: traits.x, all: []}", ":8 audience.all[1].any[0].not: a rule is either a comparison"),
    ("{alll: []}", ":9 audience.all[1].any[0].not.alll: unknown field"),
])
def test_a_wrong_rule_is_named_with_file_line_and_key(tmp_path: Path, config: Settings, rule: str,
                                                      expected: str) -> None:
    found = problems(tmp_path, config, rule)
    assert any(p.startswith(expected) for p in found), found


def test_rules_and_all_together_are_refused(tmp_path: Path, config: Settings) -> None:
    path = tmp_path / "promo.yaml"
    path.write_text(CAMPAIGN.format(rule="{field: traits.x, op: exists}").replace(
        "audience:\n", "audience:\n  rules: []\n"))
    with pytest.raises(CampaignSpecError, match=r":4 audience: give one of rules, all, any or not"):
        load_campaign(path, config)


def test_nesting_is_capped() -> None:
    tree: dict[str, object] = {"field": "traits.x", "op": "exists"}
    for _ in range(MAX_DEPTH - 1):
        tree = {"not": tree}
    Rule.model_validate(tree)
    with pytest.raises(ValueError, match=f"nested more than {MAX_DEPTH} levels"):
        Rule.model_validate({"not": tree})


def test_a_stored_spec_reads_back_the_same() -> None:
    audience = Audience.model_validate({"any": [
        {"field": "traits.born", "op": "between", "value": ["1990-01-01", "1999-12-31"]},
        {"not": {"field": "created_at", "op": "gte", "value": "2026-01-01T09:00:00+03:30"}},
    ]})
    assert Audience.model_validate(audience.model_dump(mode="json")) == audience


def test_durations() -> None:
    assert parse_duration("2h").total_seconds() == 7200
    assert parse_duration("1d").total_seconds() == 86400
    assert parse_duration("2w").days == 14
    for bad in ("", "d", "1.5d", "-1d", "1y", "1 d"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)
