"""Ionic substitution with data-mined probabilities (Hautier et al. 2011, modified as in GNoME).

pymatgen's ``SubstitutionProbability`` holds the λ table. GNoME changed the model to favour
discovery (gnome-method.md 1.1): (a) only species that change contribute to the probability,
(b) λ' = max(λ, 0) and unseen pairs get 0 instead of -5, (c) threshold 1e-3, (d) products whose
composition is already known are dropped. ``variant="gnome"`` is that model, ``"hautier"``
pymatgen's original (every species, unchanged ones included, contributes a factor).

pymatgen's ``SubstitutionPredictor.list_prediction`` cannot express (a) and recurses over
Python objects for every branch; the branch-and-bound here runs on a precomputed matrix of
conditional probabilities, sorted per species so each branch stops at the first miss.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from functools import cache
from importlib import resources
from typing import Any, Literal

import numpy as np
from pydantic import Field
from pymatgen.core import Species

from hullhunter.generators.candidate import Candidate
from hullhunter.generators.common import (
    Accept,
    GenerationStats,
    SiteTemplates,
    counted,
    guess_oxidation_states,
    reduced_formula,
    usable_parents,
    validate_elements,
)
from hullhunter.generators.registry import GenerationContext, GeneratorSettings, register_generator

Variant = Literal["gnome", "hautier"]


class SubstitutionModel:
    """Conditional substitution probabilities p(new | old) over the λ table's species."""

    def __init__(self, variant: Variant = "gnome", threshold: float = 1e-3) -> None:
        if variant not in ("gnome", "hautier"):
            raise ValueError(f"unknown substitution model {variant!r}: use 'gnome' or 'hautier'")
        self.variant = variant
        self.threshold = threshold
        rows = json.loads(
            (
                resources.files("pymatgen.core.structure_prediction") / "data" / "lambda.json"
            ).read_text()
        )
        rows = [row for row in rows if "D1+" not in row]
        if variant == "gnome":
            rows = [[a, b, max(float(lam), 0.0)] for a, b, lam in rows]
        alpha = 0.0 if variant == "gnome" else -5.0
        self.species: list[Species] = sorted(
            {Species.from_str(name) for row in rows for name in row[:2]}, key=str
        )
        self.index = {sp: i for i, sp in enumerate(self.species)}
        lam = np.full((len(self.species), len(self.species)), alpha)
        for a, b, value in rows:
            i, j = self.index[Species.from_str(a)], self.index[Species.from_str(b)]
            lam[i, j] = lam[j, i] = float(value)
        # pymatgen's SubstitutionProbability formulas, vectorised (its per-pair calls take
        # seconds): p_x(s) = sum_t exp(lambda(s, t)); cond[new, old] = exp(lambda) / p_x(old).
        weights = np.exp(lam)
        self.cond = weights / weights.sum(axis=0)[None, :]
        self.symbols = [sp.symbol for sp in self.species]
        self.oxidation = [float(sp.oxi_state) for sp in self.species]
        self._choice_cache: dict[tuple[int, frozenset[str] | None], list[tuple[float, int]]] = {}
        self._enter_cache: dict[tuple[str, frozenset[str]], bool] = {}

    def can_enter(self, elements: Iterable[str], allowed: frozenset[str]) -> bool:
        """Whether every element is allowed or has a species that turns into an allowed one
        with probability >= threshold: a cheap test that skips parents which cannot yield a
        product inside ``allowed`` before their oxidation states are guessed (the slow part)."""
        elements = list(elements)
        return len(elements) <= len(allowed) and all(
            self._enters(element, allowed) for element in elements
        )

    def _enters(self, element: str, allowed: frozenset[str]) -> bool:
        key = (element, allowed)
        if key not in self._enter_cache:
            olds = [i for i, symbol in enumerate(self.symbols) if symbol == element]
            news = [i for i, symbol in enumerate(self.symbols) if symbol in allowed]
            self._enter_cache[key] = element in allowed or bool(
                olds and news and (self.cond[np.ix_(news, olds)] >= self.threshold).any()
            )
        return self._enter_cache[key]

    def knows(self, species: Species) -> bool:
        """True when the species is in the λ table."""
        return species in self.index

    def replacements(
        self,
        species: list[Species],
        allowed_elements: frozenset[str] | None = None,
        max_changed: int | None = None,
    ) -> list[tuple[dict[Species, Species], float]]:
        """All maps old -> new species with probability >= threshold (at least one changes).

        ``allowed_elements`` restricts the elements of the new species; ``max_changed`` the number
        of species that change. Sorted by probability, highest first.
        """
        olds = [self.index[sp] for sp in species]
        return [
            ({self.species[o]: self.species[n] for o, n in zip(olds, news, strict=True)}, prob)
            for news, prob in self.replacement_indices(tuple(olds), allowed_elements, max_changed)
        ]

    def replacement_indices(
        self,
        olds: tuple[int, ...],
        allowed_elements: frozenset[str] | None = None,
        max_changed: int | None = None,
    ) -> list[tuple[tuple[int, ...], float]]:
        """:meth:`replacements` on species indices (pymatgen Species hash slowly: the hot path)."""
        choices = [self._choices(old, allowed_elements) for old in olds]
        best = [options[0][0] if options else 0.0 for options in choices]
        # suffix[i] = best achievable product over positions i.. (the branch-and-bound bound).
        suffix = [1.0] * (len(olds) + 1)
        for i in range(len(olds) - 1, -1, -1):
            suffix[i] = suffix[i + 1] * best[i]
        results: list[tuple[tuple[int, ...], float]] = []

        def recurse(i: int, prob: float, chosen: tuple[int, ...], changed: int) -> None:
            if i == len(olds):
                if changed:
                    results.append((chosen, prob))
                return
            for option_prob, new in choices[i]:
                if prob * option_prob * suffix[i + 1] < self.threshold:
                    break
                is_change = new != olds[i]
                if is_change and max_changed is not None and changed >= max_changed:
                    continue
                recurse(i + 1, prob * option_prob, (*chosen, new), changed + is_change)

        recurse(0, 1.0, (), 0)
        results.sort(key=lambda pair: -pair[1])
        return results

    def _choices(self, old: int, allowed: frozenset[str] | None) -> list[tuple[float, int]]:
        """(p(new | old), new) for every admissible new species index, most probable first."""
        key = (old, allowed)
        if key not in self._choice_cache:
            column = self.cond[:, old].tolist()
            options = []
            for new, symbol in enumerate(self.symbols):
                if new == old:
                    # GNoME (a): an unchanged species contributes a factor of 1.
                    options.append((1.0 if self.variant == "gnome" else column[new], new))
                elif allowed is None or symbol in allowed:
                    options.append((column[new], new))
            options.sort(key=lambda pair: -pair[0])
            self._choice_cache[key] = options
        return self._choice_cache[key]


@cache
def get_model(variant: Variant = "gnome", threshold: float = 1e-3) -> SubstitutionModel:
    """A shared model instance per (variant, threshold); building one takes about a second."""
    return SubstitutionModel(variant, threshold)


def parent_species(
    structure_formula: str, model: SubstitutionModel
) -> tuple[list[Species] | None, str]:
    """The parent's species with guessed oxidation states, or (None, reason) when unusable."""
    oxidation = guess_oxidation_states(structure_formula)
    if oxidation is not None and len(oxidation) == 1:
        return None, "elemental_parent"
    if oxidation is None:
        return None, "no_oxidation_states"
    species = []
    for element, state in oxidation.items():
        if abs(state - round(state)) > 1e-6:
            return None, "mixed_valence_not_in_model"
        sp = Species(element, round(state))
        if not model.knows(sp):
            return None, "species_not_in_model"
        species.append(sp)
    return species, ""


def substitute(
    parents: Iterable[Any],
    known_formulas: Iterable[str] = (),
    allowed_elements: Iterable[str] | None = None,
    model: Variant | SubstitutionModel = "gnome",
    threshold: float = 1e-3,
    charge_balance: bool = True,
    max_changed: int | None = None,
    limit: int | None = None,
    stats: GenerationStats | None = None,
    accept: Accept | None = None,
    ranked: bool = False,
) -> Iterator[Candidate]:
    """Full ionic substitutions of parents: every site of a species takes the new species.

    Parents are Seeds, Structures or (id, Structure) pairs. Products whose reduced formula is in
    ``known_formulas`` (or is the parent's) are dropped; ``charge_balance`` keeps only products
    whose new oxidation states sum to zero, as pymatgen's Substitutor does. With
    ``allowed_elements`` every product lies inside them. Products come parent by parent, or,
    with ``ranked``, most probable first over all parents (as pymatgen's Substitutor sorts).
    """
    stats = stats if stats is not None else GenerationStats()
    model = model if isinstance(model, SubstitutionModel) else get_model(model, threshold)
    plans = _plans(
        parents,
        set(known_formulas),
        validate_elements(allowed_elements),
        model,
        charge_balance,
        max_changed,
        stats,
    )
    if ranked:
        plans = iter(sorted(plans, key=lambda plan: -plan[0]))
    built = (
        Candidate(
            templates.build([element_map[el] for el in site_elements]),
            "substitution",
            parent_id,
            {"substitution": changes, "probability": probability, "model": model.variant},
        )
        for probability, parent_id, templates, site_elements, element_map, changes in plans
    )
    yield from counted(built, accept, limit, stats)


Plan = tuple[float, str, SiteTemplates, list[str], dict[str, str], dict[str, str]]
"""A substitution not yet built: probability, parent id, the parent's site templates and
elements, the element map and the species changes (old -> new, as strings)."""


def _plans(
    parents: Iterable[Any],
    known: set[str],
    allowed: frozenset[str] | None,
    model: SubstitutionModel,
    charge_balance: bool,
    max_changed: int | None,
    stats: GenerationStats,
) -> Iterator[Plan]:
    """Every admissible substitution of every parent, in parent order, without building it."""
    for parent_id, structure in usable_parents(parents, stats):
        composition = structure.composition.element_composition
        if allowed is not None and not model.can_enter((el.symbol for el in composition), allowed):
            stats.skipped["cannot_enter_allowed_elements"] += 1
            continue
        species, reason = parent_species(composition.reduced_formula, model)
        if species is None:
            stats.skipped[reason] += 1
            continue
        site_elements = [site.specie.symbol for site in structure]
        templates = SiteTemplates(structure)
        olds = tuple(model.index[sp] for sp in species)
        amounts = [composition[sp.symbol] for sp in species]
        for news, probability in model.replacement_indices(olds, allowed, max_changed):
            new_symbols = [model.symbols[n] for n in news]
            if len(set(new_symbols)) < len(new_symbols):
                continue  # two species merged into one element: not a substitution of this parent
            if allowed is not None and not allowed.issuperset(new_symbols):
                continue  # an unchanged species outside the allowed elements
            charge = sum(
                model.oxidation[n] * amount for n, amount in zip(news, amounts, strict=True)
            )
            if charge_balance and abs(charge) > 1e-6:
                continue
            formula = reduced_formula(tuple(sorted(zip(new_symbols, amounts, strict=True))))
            if formula in known:
                continue
            changes = {
                str(model.species[o]): str(model.species[n])
                for o, n in zip(olds, news, strict=True)
                if o != n
            }
            element_map = {sp.symbol: new for sp, new in zip(species, new_symbols, strict=True)}
            yield probability, parent_id, templates, site_elements, element_map, changes


class SubstitutionSettings(GeneratorSettings):
    """Campaign section ``generators.substitution``: full ionic substitutions of the parents."""

    threshold: float = Field(1e-3, gt=0, lt=1)
    model: Variant = "gnome"

    def generate(self, context: GenerationContext) -> Iterator[Candidate]:
        for parents in self.parent_groups(context):
            yield from substitute(
                parents,
                known_formulas=context.known_formulas,
                allowed_elements=context.allowed_elements,
                threshold=self.threshold,
                model=self.model,
                accept=context.accept,
                ranked=True,
            )


register_generator("substitution", SubstitutionSettings)
