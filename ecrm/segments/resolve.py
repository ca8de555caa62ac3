"""Make an audience self-contained before anything compiles it: each `{segment: NAME}` gets the
rules of `segments/NAME.yaml` (themselves resolved, so segments nest) as its `definition`, and
each money metric without a `currency` gets the settings' conversion `rates`.

Problems are collected, not raised one by one: an unknown segment, a cycle (`a -> b -> a`), a
money metric with no currency and no base currency configured, or `definition` / `rates` written
by hand, each named with file, line and key. A referenced segment file's own problems are
reported with its own file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from ecrm.errors import SegmentSpecError, SpecProblem
from ecrm.segments.rules import MAX_DEPTH, Audience, Rule
from ecrm.segments.vocabulary import MONEY_METRICS
from ecrm.yamlfile import FieldPath, YamlDocument

if TYPE_CHECKING:
    from ecrm.settings import MoneySettings

ROOT_KEYS = (("rules", "rules"), ("all_", "all"), ("any_", "any"), ("not_", "not"))


@dataclass
class Resolver:
    """Resolves the rules of one file (`doc`); `stack` holds the segments being resolved above it."""

    doc: YamlDocument
    directory: Path
    money: MoneySettings | None
    stack: tuple[str, ...] = ()
    problems: list[SpecProblem] = field(default_factory=list)

    def audience(self, audience: Audience, prefix: FieldPath) -> Audience:
        update: dict[str, object] = {}
        for name, key in ROOT_KEYS:
            value = getattr(audience, name)
            if isinstance(value, list):
                update[name] = [self.rule(child, (*prefix, key, i)) for i, child in enumerate(value)]
            elif value is not None:
                update[name] = self.rule(value, (*prefix, key))
        resolved = audience.model_copy(update=update)
        if not self.problems and resolved.root().depth() > MAX_DEPTH:
            self.problems.append(self.doc.problem(prefix, f"rules nested more than {MAX_DEPTH} levels deep "
                                                  "once the named segments are put in"))
        return resolved

    def rule(self, rule: Rule, path: FieldPath) -> Rule:
        if rule.all_ is not None:
            return rule.model_copy(update={"all_": [self.rule(c, (*path, "all", i)) for i, c in enumerate(rule.all_)]})
        if rule.any_ is not None:
            return rule.model_copy(update={"any_": [self.rule(c, (*path, "any", i)) for i, c in enumerate(rule.any_)]})
        if rule.not_ is not None:
            return rule.model_copy(update={"not_": self.rule(rule.not_, (*path, "not"))})
        for hidden in ("definition", "rates", "ranked"):
            if getattr(rule, hidden) is not None:
                self.problems.append(self.doc.problem((*path, hidden), f"{hidden} is filled in by ecrm; remove it"))
                return rule
        if rule.segment is not None:
            return self._segment(rule, rule.segment, (*path, "segment"))
        if rule.metric in MONEY_METRICS and rule.currency is None:
            return self._rates(rule, (*path, "metric"))
        return rule

    def _segment(self, rule: Rule, name: str, path: FieldPath) -> Rule:
        if name in self.stack:
            cycle = " -> ".join((*self.stack[self.stack.index(name):], name))
            self.problems.append(self.doc.problem(path, f"segment '{name}' refers back to itself: {cycle}"))
            return rule
        if len(self.stack) >= MAX_DEPTH:
            self.problems.append(self.doc.problem(path, f"segments refer to segments more than {MAX_DEPTH} deep"))
            return rule
        if not (self.directory / f"{name}.yaml").is_file():
            self.problems.append(self.doc.problem(path, f"no segment '{name}': expected the file "
                                                  f"{self.directory / f'{name}.yaml'}"))
            return rule
        from ecrm.segments.library import find_segment  # the library resolves with this module

        try:
            named = find_segment(name, self.directory, self.money, self.stack)
        except SegmentSpecError as exc:
            self.problems.append(self.doc.problem(path, f"segment '{name}' has problems (listed below)"))
            self.problems.extend(exc.problems)
            return rule
        return rule.model_copy(update={"definition": named.audience.root()})

    def _rates(self, rule: Rule, path: FieldPath) -> Rule:
        if self.money is None or self.money.base_currency is None:
            self.problems.append(self.doc.problem(path, f"metric '{rule.metric}' needs a currency: add "
                                                  "currency: EUR (say), or set money.base_currency (and rates) "
                                                  "in the settings"))
            return rule
        rates = {**self.money.rates, self.money.base_currency: Decimal(1)}
        return rule.model_copy(update={"rates": rates})


def resolve_audience(audience: Audience, doc: YamlDocument, prefix: FieldPath, directory: Path,
                     money: MoneySettings | None, stack: tuple[str, ...] = ()) -> tuple[Audience, list[SpecProblem]]:
    resolver = Resolver(doc, directory, money, stack)
    return resolver.audience(audience, prefix), resolver.problems
