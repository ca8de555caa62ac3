"""Load and validate a campaign file; every problem is reported with file, line and field.

Validation goes beyond the schema: the named segments of the audience must exist (and refer
to no cycle), and the template must exist, compile, and render in every locale variant for the
sample profile (undefined variables are errors), so a broken campaign is refused before
anything is sent.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from ecrm.campaigns.spec import CampaignSpec
from ecrm.campaigns.template_hints import advice
from ecrm.channels.registry import PAIRINGS
from ecrm.clock import SYSTEM_CLOCK
from ecrm.errors import CampaignSpecError, SpecError, SpecProblem, TemplateError
from ecrm.render.composer import VALIDATION_STREAM
from ecrm.render.environment import TemplateCatalog
from ecrm.render.recipient import sample_recipient
from ecrm.segments.resolve import resolve_audience
from ecrm.settings import Settings
from ecrm.yamlfile import YamlDocument, load_yaml, validation_problems


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
    """Render every locale variant of the template for the sample profile."""
    variants = catalog.variants(spec.template)
    if "" not in variants:
        return _missing_template(doc, catalog, spec.template)
    composer = PAIRINGS[spec.kind].composer(settings, catalog, spec.template, spec.name, SYSTEM_CLOCK,
                                             VALIDATION_STREAM)
    problems = []
    for locale in variants:
        recipient = sample_recipient(locale or "en", **spec.sample.model_dump())
        try:
            composer.compose(recipient)
        except TemplateError as exc:
            problem = doc.problem(("template",), advice(exc, catalog, spec.template, locale))
            if problem not in problems:  # a broken layout breaks every locale the same way
                problems.append(problem)
    return problems
