"""Event, metric and segment rules that are wrong are refused before any query runs, naming
file, line and key: by `ecrm campaign validate` and `ecrm segment validate`; named segments
resolve (nested), and a cycle or an unknown name is refused."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from ecrm.campaigns.load import load_campaign
from ecrm.cli import main
from ecrm.errors import SegmentSpecError
from ecrm.segments.library import find_segment
from ecrm.segments.rules import Audience
from ecrm.settings import MoneySettings, Settings, load_settings
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
        - {rule}
"""


@pytest.fixture
def config(tmp_path: Path) -> Settings:
    (tmp_path / "segments").mkdir()
    return load_settings(Path("/nonexistent"), environ={}, templates_dir=ROOT / "templates",
                         segments_dir=tmp_path / "segments")


def problems(tmp_path: Path, config: Settings, rule: str) -> list[str]:
    path = tmp_path / "promo.yaml"
    path.write_text(CAMPAIGN.format(rule=rule))
    return [p.removeprefix(str(tmp_path) + "/") for p in campaign_problems(path, config)]


def segment(config: Settings, name: str, body: str) -> Path:
    path = config.segments_dir / f"{name}.yaml"
    path.write_text(f"name: {name}\n{body}")
    return path


WHERE = "audience.all[1].any[0]"


@pytest.mark.parametrize(("rule", "expected"), [
    ("{metric: lifetime_value, op: gt, value: 5}", f"promo.yaml:8 {WHERE}.metric: Input should be 'orders_count'"),
    ("{metric: orders_count, op: contains, value: 5}", f"promo.yaml:8 {WHERE}.op: metric 'orders_count' takes"),
    ("{metric: orders_count, op: gt, value: many}", f"promo.yaml:8 {WHERE}.value: metric 'orders_count' is "
                                                     "compared with a number"),
    ("{metric: rfm, currency: EUR, op: eq, value: '6-5-5'}", f"promo.yaml:8 {WHERE}.value: rfm is compared with"),
    ("{metric: recency, op: eq, value: 0}", f"promo.yaml:8 {WHERE}.value: metric 'recency' is a quintile"),
    ("{metric: total_spent, currency: XYZ, op: gt, value: 5}", f"promo.yaml:8 {WHERE}.currency: 'XYZ' is not"),
    ("{metric: total_spent, op: gt, value: 5}", f"promo.yaml:8 {WHERE}.metric: metric 'total_spent' needs a "
                                                "currency"),
    ("{metric: orders_count, currency: EUR, op: gt, value: 1}", f"promo.yaml:8 {WHERE}: currency goes with"),
    ("{event: cart_updated, within: 2 hours}", f"promo.yaml:8 {WHERE}.within: '2 hours' is not a duration"),
    ("{event: Cart Updated}", f"promo.yaml:8 {WHERE}.event: 'Cart Updated' does not have the expected form"),
    ("{event: cart_updated, window: this_decade}", f"promo.yaml:8 {WHERE}.window: Input should be 'today'"),
    ("{event: cart_updated, within: 2h, window: today}", f"promo.yaml:8 {WHERE}: give one of within, between"),
    ("{event: cart_updated, count: {atleast: 2}}", f"promo.yaml:8 {WHERE}.count.atleast: unknown field"),
    ("{event: cart_updated, count: {gte: -1}}", f"promo.yaml:8 {WHERE}.count.gte: Input should be greater"),
    ("{event: cart_updated, then_not: order_placed}", f"promo.yaml:8 {WHERE}: a sequence is"),
    ("{event: cart_updated, between: [2026-02-01, 2026-01-01]}", f"promo.yaml:8 {WHERE}.between: between needs "
                                                                 "the start first"),
    ("{event: cart_updated, between: ['0001-01-01T00:00:00+14:00', 2026-02-01T00:00:00Z]}",
     f"promo.yaml:8 {WHERE}.between: '0001-01-01T00:00:00+14:00' is outside the years 1 to 9999"),
    ("{event: cart_updated, between: [2026-01-01T00:00:00, 2026-02-01T00:00:00]}",
     f"promo.yaml:8 {WHERE}.between: the time needs a zone"),
    ("{event: e, where: [{field: properties.total, op: gt, value: [1, 2]}]}",
     f"promo.yaml:8 {WHERE}.where[0].value: op 'gt' compares with one value"),
    ("{event: e, where: [{field: properties.total, op: gt, value: {a: 1}}]}",
     f"promo.yaml:8 {WHERE}.where[0].value: op 'gt' compares with one value"),
    ("{event: e, where: [{field: properties.at, op: eq, value: 2026-01-01T10:00:00Z}]}",
     f"promo.yaml:8 {WHERE}.where[0].value: an event property is compared with a date"),
    ("{event: e, where: [{field: traits.x, op: exists}]}",
     f"promo.yaml:8 {WHERE}.where[0].field: 'traits.x' does not have the expected form"),
    ("{field: properties.total, op: gt, value: 1}", f"promo.yaml:8 {WHERE}.field: 'properties.total' does not have"),
    ("{event: e, op: gt, value: 1}", f"promo.yaml:8 {WHERE}: op, value does not go with event"),
    ("{reachable: fax}", f"promo.yaml:8 {WHERE}.reachable: Input should be 'email', 'sms' or 'push'"),
    ("{segment: nowhere}", f"promo.yaml:8 {WHERE}.segment: no segment 'nowhere'"),
    ("{segment: Bad Name}", f"promo.yaml:8 {WHERE}.segment: 'Bad Name' does not have the expected form"),
    ("{segment: vip, definition: {reachable: sms}}", f"promo.yaml:8 {WHERE}.definition: definition is filled in"),
    ("{metric: total_spent, op: gt, value: 1, rates: {EUR: 1}}", f"promo.yaml:8 {WHERE}.rates: rates is filled in"),
    ("{metric: rfm, currency: EUR, op: eq, value: 5-5-5, ranked: true}",
     f"promo.yaml:8 {WHERE}.ranked: ranked is filled in"),
])
def test_a_wrong_rule_is_named_with_file_line_and_key(tmp_path: Path, config: Settings, rule: str,
                                                      expected: str) -> None:
    segment(config, "vip", "all: []\n")
    found = problems(tmp_path, config, rule)
    assert any(p.startswith(expected) for p in found), found


def test_named_segments_nest_and_fill_the_campaigns_audience(tmp_path: Path, config: Settings) -> None:
    segment(config, "buyers", "all:\n  - {metric: orders_count, op: gte, value: 1}\n")
    segment(config, "vip", "all:\n  - {segment: buyers}\n  - {metric: total_spent, op: gt, value: 1000}\n")
    money = config.model_copy(update={"money": MoneySettings(base_currency="EUR", rates={"USD": "0.92"})})
    path = tmp_path / "promo.yaml"
    path.write_text(CAMPAIGN.format(rule="{segment: vip}"))
    spec = load_campaign(path, money)
    vip = spec.audience.root().all_[1].any_[0].definition  # type: ignore[index]
    assert vip is not None and vip.all_ is not None
    assert vip.all_[0].definition is not None and vip.all_[0].definition.all_[0].metric == "orders_count"  # type: ignore[index]
    assert vip.all_[1].rates == {"USD": Decimal("0.92"), "EUR": Decimal(1)}
    # a run stores its spec as JSON and resumes from it: the rules it was sent with, rates included
    stored = Audience.model_validate(spec.audience.model_dump(mode="json"))
    assert stored == spec.audience


def test_a_cycle_is_refused_where_it_closes(config: Settings) -> None:
    segment(config, "a", "any:\n  - {reachable: sms}\n  - {segment: b}\n")
    segment(config, "b", "all:\n  - {segment: a}\n")
    with pytest.raises(SegmentSpecError) as caught:
        find_segment("a", config.segments_dir)
    found = [str(p).removeprefix(str(config.segments_dir) + "/") for p in caught.value.problems]
    assert found == ["a.yaml:4 any[1].segment: segment 'b' has problems (listed below)",
                     "b.yaml:3 all[0].segment: segment 'a' refers back to itself: a -> b -> a"]
    segment(config, "self", "all:\n  - {segment: self}\n")
    with pytest.raises(SegmentSpecError, match="segment 'self' refers back to itself: self -> self"):
        find_segment("self", config.segments_dir)


def test_segment_validate_reports_each_file(tmp_path: Path, config: Settings, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    segment(config, "good", "all:\n  - {event: cart_updated, then_not: order_placed, within: 2h}\n")
    bad = segment(config, "bad", "all:\n  - {metric: days_since_last_order, op: gt, value: 99999999}\n")
    settings_file = tmp_path / "ecrm.yaml"
    settings_file.write_text(f"segments_dir: {config.segments_dir}\n")
    assert main(["--config", str(settings_file), "segment", "validate", "good", str(bad)]) == 1
    out, err = capsys.readouterr()
    assert "segment 'good' is valid" in out
    assert f"{bad}:3 all[0].value: metric 'days_since_last_order' counts days" in err
    assert main(["--config", str(settings_file), "segment", "validate", "missing"]) == 1
    assert "cannot read the file" in capsys.readouterr().err


def test_a_long_chain_of_segments_is_refused_not_recursed_forever(config: Settings) -> None:
    for n in range(60):
        segment(config, f"s{n}", f"all:\n  - {{segment: s{n + 1}}}\n")
    segment(config, "s60", "all: []\n")
    with pytest.raises(SegmentSpecError, match="segments refer to segments more than 32 deep"):
        find_segment("s0", config.segments_dir)
