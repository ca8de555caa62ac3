"""Load and validate a campaign file; every problem is reported with file, line and field.

Validation goes beyond the schema: the named segments of the audience must exist (and refer
to no cycle), and the template must exist, compile, and render in every locale variant for the
sample profile (undefined variables are errors), so a broken campaign is refused before
anything is sent.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from ecrm.campaigns.spec import CampaignSpec, SmsOptions
from ecrm.campaigns.template_hints import advice, missing_part
from ecrm.channels.registry import PAIRINGS
from ecrm.channels.sms.parts import count
from ecrm.clock import SYSTEM_CLOCK
from ecrm.errors import CampaignSpecError, SpecError, SpecProblem, TemplateError
from ecrm.messages import OutgoingSms
from ecrm.render.composer import VALIDATION_STREAM
from ecrm.render.environment import SMS_PART, TemplateCatalog
from ecrm.render.recipient import sample_recipient
from ecrm.segments.resolve import resolve_audience
from ecrm.settings import Settings
from ecrm.types import ChannelKind
from ecrm.yamlfile import YamlDocument, load_yaml, validation_problems

# The template files each channel needs (a campaign naming a template without them is refused).


def load_campaign(path: Path, settings: Settings, catalog: TemplateCatalog | None = None) -> CampaignSpec:
    """The validated spec, or CampaignSpecError listing every problem found."""
    try:
        doc = load_yaml(path)
    except SpecError as exc:
        raise CampaignSpecError(exc.problems) from exc
    catalog = catalog or TemplateCatalog(settings.templates_dir)
    spec = _parse(doc, catalog)
    audience, problems = resolve_audience(spec.audience, doc, ("audience",), settings.segments_dir, settings.money)
    spec = spec.model_copy(update={"audience": audience})
    problems += check_templates(spec, doc, settings, catalog)
    if problems:
        raise CampaignSpecError(problems)
    return spec


def _parse(doc: YamlDocument, catalog: TemplateCatalog) -> CampaignSpec:
    if not isinstance(doc.data, dict):
        raise CampaignSpecError([doc.problem((), "expected a mapping with name, channel, template, audience")])
    try:
        return CampaignSpec.model_validate(doc.data)
    except ValidationError as exc:
        problems = validation_problems(doc, exc)
        template = doc.data.get("template")
        if isinstance(template, str) and not any(p.field == "template" for p in problems):
            problems.extend(_missing_template(doc, catalog, template))
        raise CampaignSpecError(problems) from exc


def _missing_template(doc: YamlDocument, catalog: TemplateCatalog, name: str) -> list[SpecProblem]:
    if catalog.exists(name):
        return []
    return [doc.problem(("template",), f"no template '{name}' in {catalog.root} "
                        f"(expected a folder {catalog.root / name})")]


def check_templates(spec: CampaignSpec, doc: YamlDocument, settings: Settings,
                    catalog: TemplateCatalog) -> list[SpecProblem]:
    """Check that every locale folder of the template has the parts each of the campaign's channels
    needs, then render every locale variant for the sample profile on each channel."""
    variants = catalog.variants(spec.template)
    if "" not in variants:
        return _missing_template(doc, catalog, spec.template)
    problems = []
    for index, kind in enumerate(spec.kinds):
        missing = _missing_parts(spec, doc, catalog, variants, kind, index)
        problems += missing or _render_checks(spec, doc, settings, catalog, variants, kind)
        unready = PAIRINGS[kind].unready
        problem = unready(settings) if unready is not None else None
        if problem is not None:
            problems.append(doc.problem(("channels", index) if spec.channels is not None else ("channel",), problem))
    return problems


def _missing_parts(spec: CampaignSpec, doc: YamlDocument, catalog: TemplateCatalog, variants: dict[str, str],
                   kind: ChannelKind, index: int) -> list[SpecProblem]:
    """A problem per part a locale folder lacks for `kind`: at `template` for a one-channel
    campaign, at the channel's entry in `channels:` (naming it) for a fallback one."""
    parts, fallback = PAIRINGS[kind].parts, spec.channels is not None
    key: tuple[str | int, ...] = ("channels", index) if fallback else ("template",)
    lead = f"channel {kind} needs its part: " if fallback else ""
    return [doc.problem(key, lead + missing_part(f"{folder}/{part}", catalog, spec.template, locale, parts))
            for locale, folder in variants.items() for part in parts if not (catalog.root / folder / part).is_file()]


def _render_checks(spec: CampaignSpec, doc: YamlDocument, settings: Settings, catalog: TemplateCatalog,
                   variants: dict[str, str], kind: ChannelKind) -> list[SpecProblem]:
    composer = PAIRINGS[kind].composer(settings, catalog, spec.template, spec.name, SYSTEM_CLOCK, VALIDATION_STREAM)
    problems: list[SpecProblem] = []
    needs = PAIRINGS[kind].parts
    for locale in variants:
        recipient = sample_recipient(locale or "en", **spec.sample.model_dump())
        try:
            message = composer.compose(recipient)
        except TemplateError as exc:
            problem = doc.problem(("template",), advice(exc, catalog, spec.template, locale, needs))
            if problem not in problems:  # a broken layout breaks every locale the same way
                problems.append(problem)
            continue
        if isinstance(message, OutgoingSms) and spec.sms is not None:
            problems.extend(_too_long(spec.sms, doc, catalog.sms(spec.template, locale or "en").folder, message))
    return problems


def _too_long(options: SmsOptions, doc: YamlDocument, folder: str, message: OutgoingSms) -> list[SpecProblem]:
    if options.max_parts is None or message.parts <= options.max_parts:
        return []
    counted = count(message.body)
    return [doc.problem(("sms", "max_parts"), f"{folder}/{SMS_PART} renders to {counted.describe()} for the sample "
                        f"profile, more than max_parts {options.max_parts} (each part is billed): shorten the text, "
                        "or raise max_parts")]
