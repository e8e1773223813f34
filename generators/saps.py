"""SAPS: symmetry-aware partial substitutions (GNoME, gnome-method.md 1.1).

For a replacement A -> B, replace k = 1 .. n_A of the parent's A atoms and keep one
representative per class of k-subsets that the parent's space-group operations map onto each
other (the subset with the smallest bitmask in its orbit). k = n_A is the full substitution.
``mode="orbits"`` is the cheaper variant: unions of whole Wyckoff orbits of A.

The space-group operations come from spglib (via pymatgen's SpacegroupAnalyzer) and are turned
into permutations of the sites once per parent; the canonical test runs vectorised in numpy
over all k-subsets and operations at once.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from math import comb
from typing import Any, Literal

import numpy as np
from pydantic import Field
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from hullhunter.generators.candidate import Candidate
from hullhunter.generators.common import (
    Accept,
    GenerationStats,
    SiteTemplates,
    accepted,
    is_charge_balanceable,
    reduced_formula,
    usable_parents,
    validate_elements,
)
from hullhunter.generators.registry import GenerationContext, GeneratorSettings, register_generator
from hullhunter.generators.substitution import SubstitutionModel, Variant, get_model, parent_species

MAX_BITMASK_SITES = 62


def site_permutations(structure: Structure, symprec: float = 0.01) -> np.ndarray:
    """The parent's space-group operations as site permutations, shape (n_ops, n_sites).

    Operations that do not map every site onto a site of the same species within ``symprec``
    are dropped, so the result is always a group of valid permutations (at least the identity).
    """
    dataset = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetry_dataset()
    frac = structure.frac_coords
    numbers = np.array([site.specie.Z for site in structure])
    matrix = structure.lattice.matrix
    permutations = []
    for rotation, translation in zip(dataset.rotations, dataset.translations, strict=True):
        image = frac @ rotation.T + translation
        delta = image[:, None, :] - frac[None, :, :]
        delta -= np.round(delta)
        distance = np.linalg.norm(delta @ matrix, axis=-1)
        target = distance.argmin(axis=1)
        ok = (
            distance[np.arange(len(frac)), target].max() < max(symprec, 1e-3) * 2
            and len(set(target.tolist())) == len(frac)
            and np.array_equal(numbers[target], numbers)
        )
        if ok:
            permutations.append(target)
    identity = np.arange(len(frac))
    if not any(np.array_equal(p, identity) for p in permutations):
        permutations.append(identity)
    return np.unique(np.array(permutations), axis=0)


def distinct_subsets(permutations: np.ndarray, k: int) -> np.ndarray:
    """One k-subset (sorted site positions) per orbit under the permutation group, shape (m, k).

    The representative is the subset whose bitmask is the smallest of its orbit.
    """
    n = permutations.shape[1]
    if n > MAX_BITMASK_SITES:
        raise ValueError(f"{n} sites is more than the {MAX_BITMASK_SITES} a bitmask holds")
    subsets = np.array(list(itertools.combinations(range(n), k)), dtype=np.int64)
    bits = np.left_shift(np.int64(1), np.arange(n, dtype=np.int64))
    own = bits[subsets].sum(axis=1)
    images = bits[permutations[:, subsets]].sum(axis=2)
    return subsets[own == images.min(axis=0)]


def _orbit_unions(orbit_labels: np.ndarray) -> Iterator[np.ndarray]:
    """Every non-empty union of whole orbits, as sorted site positions."""
    labels = np.unique(orbit_labels)
    for r in range(1, len(labels) + 1):
        for chosen in itertools.combinations(labels, r):
            yield np.flatnonzero(np.isin(orbit_labels, chosen))


def saps(
    parents: Iterable[Any],
    known_formulas: Iterable[str] = (),
    allowed_elements: Iterable[str] | None = None,
    mode: Literal["symmetry", "orbits"] = "symmetry",
    model: Variant | SubstitutionModel = "gnome",
    threshold: float = 1e-3,
    replacements: dict[str, Iterable[str]] | None = None,
    max_per_parent: int | None = 1000,
    max_subsets: int = 200_000,
    charge_balance: bool = False,
    symprec: float = 0.01,
    limit: int | None = None,
    stats: GenerationStats | None = None,
    accept: Accept | None = None,
) -> Iterator[Candidate]:
    """Partial substitutions A -> B of k = 1..n_A sites, one per symmetry class at each k.

    Replacements come from the substitution model's single-species swaps (probability >=
    ``threshold``), or from ``replacements`` ({"A": ["B", ...]}, element symbols) when given.
    ``allowed_elements`` restricts B; ``known_formulas`` drops known products; levels k with
    more than ``max_subsets`` subsets are skipped (counted in ``stats.skipped``).
    """
    if mode not in ("symmetry", "orbits"):
        raise ValueError(f"unknown SAPS mode {mode!r}: use 'symmetry' or 'orbits'")
    stats = stats if stats is not None else GenerationStats()
    allowed = validate_elements(allowed_elements)
    if replacements is not None:
        validate_elements(list(replacements) + [b for bs in replacements.values() for b in bs])
    known = set(known_formulas)
    model = model if isinstance(model, SubstitutionModel) else get_model(model, threshold)
    for parent_id, structure in usable_parents(parents, stats):
        swaps = _swaps(structure, model, allowed, replacements, stats)
        if not swaps:
            continue
        permutations = site_permutations(structure, symprec)
        elements = np.array([site.specie.symbol for site in structure], dtype=object)
        parent_counts = Counter(elements.tolist())
        templates = SiteTemplates(structure)
        produced = 0
        for old, new, probability in swaps:
            a_sites = np.flatnonzero(elements == old)
            formulas: dict[int, str] = {}
            for k, chosen in _subsets(permutations, a_sites, mode, max_subsets, stats):
                if k not in formulas:
                    amounts = parent_counts.copy()
                    amounts[old] -= k
                    amounts[new] += k
                    formulas[k] = reduced_formula(tuple(sorted((+amounts).items())))
                formula = formulas[k]
                if formula in known or (charge_balance and not is_charge_balanceable(formula)):
                    continue
                product_elements = elements.copy()
                product_elements[a_sites[chosen]] = new
                candidate = Candidate(
                    templates.build(product_elements.tolist()),
                    "saps",
                    parent_id,
                    {
                        "replace": old,
                        "with": new,
                        "k": int(k),
                        "n_sites": len(a_sites),
                        "sites": a_sites[chosen].tolist(),
                        "mode": mode,
                        "probability": probability,
                    },
                )
                if not accepted(candidate, accept, stats):
                    continue
                stats.yielded += 1
                produced += 1
                yield candidate
                if limit is not None and stats.yielded >= limit:
                    return
                if max_per_parent is not None and produced >= max_per_parent:
                    break
            if max_per_parent is not None and produced >= max_per_parent:
                stats.skipped["per_parent_cap_reached"] += 1
                break


def _swaps(
    structure: Structure,
    model: SubstitutionModel,
    allowed: frozenset[str] | None,
    replacements: dict[str, Iterable[str]] | None,
    stats: GenerationStats,
) -> list[tuple[str, str, float | None]]:
    """Element-level swaps (A, B, probability) for a parent, best first."""
    present = {el.symbol for el in structure.composition.elements}
    if replacements is not None:
        return [
            (old, new, None)
            for old, news in replacements.items()
            if old in present
            for new in news
            if new != old and (allowed is None or new in allowed)
        ]
    species, reason = parent_species(structure.composition.reduced_formula, model)
    if species is None:
        stats.skipped[reason] += 1
        return []
    best: dict[tuple[str, str], float] = {}
    olds = tuple(model.index[sp] for sp in species)
    for news, probability in model.replacement_indices(olds, allowed, max_changed=1):
        ((old, new),) = [
            (model.symbols[o], model.symbols[n]) for o, n in zip(olds, news, strict=True) if o != n
        ]
        if new != old and new not in present:
            best[(old, new)] = max(best.get((old, new), 0.0), probability)
    return sorted(((o, n, p) for (o, n), p in best.items()), key=lambda t: -t[2])


def _subsets(
    permutations: np.ndarray,
    a_sites: np.ndarray,
    mode: str,
    max_subsets: int,
    stats: GenerationStats,
) -> Iterator[tuple[int, np.ndarray]]:
    """(k, positions within a_sites) for every symmetry-distinct subset, k ascending."""
    # Operations map A sites onto A sites; relabel them 0..n_A-1.
    position = np.full(permutations.shape[1], -1)
    position[a_sites] = np.arange(len(a_sites))
    restricted = position[permutations[:, a_sites]]
    if mode == "orbits":
        orbit_labels = restricted.min(axis=0)
        for chosen in sorted(_orbit_unions(orbit_labels), key=len):
            yield len(chosen), chosen
        return
    n = len(a_sites)
    for k in range(1, n + 1):
        if k == n:
            yield n, np.arange(n)
            continue
        if n > MAX_BITMASK_SITES or comb(n, k) > max_subsets:
            stats.skipped["saps_level_too_large"] += 1
            continue
        for chosen in distinct_subsets(restricted, k):
            yield k, chosen


class SapsSettings(GeneratorSettings):
    """Campaign section ``generators.saps``: symmetry-aware partial substitutions."""

    mode: Literal["symmetry", "orbits"] = "symmetry"
    max_per_parent: int = Field(20, ge=1)
    charge_balance: bool = False
    max_parent_sites: int = Field(
        32, ge=1, description="larger parents are skipped: their distinct site subsets take GBs"
    )  # the base's limit, lower for SAPS

    def generate(self, context: GenerationContext) -> Iterator[Candidate]:
        # A partial substitution keeps the parent's other elements, so only parents inside
        # the allowed elements can give products inside them.
        allowed = set(context.allowed_elements)
        for parents in self.parent_groups(context):
            yield from saps(
                [parent for parent in parents if not allowed or parent.elements <= allowed],
                known_formulas=context.known_formulas,
                allowed_elements=context.allowed_elements,
                mode=self.mode,
                max_per_parent=self.max_per_parent,
                charge_balance=self.charge_balance,
                accept=context.accept,
            )


register_generator("saps", SapsSettings)
