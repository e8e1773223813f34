"""Prototype decoration: AFLOW prototypes (or any seeds) with new elements, same stoichiometry.

Each prototype's distinct elements are replaced by every injective assignment of elements
from ``allowed_elements``; the cell is scaled so its volume changes by the ratio of the summed
cubed atomic radii (new over old), a first guess the relaxation refines.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from pydantic import Field
from pymatgen.core import Composition, Element, Lattice

from hullhunter.generators.candidate import Candidate
from hullhunter.generators.common import (
    Accept,
    GenerationStats,
    counted,
    structure_from_elements,
    usable_parents,
    validate_elements,
)
from hullhunter.generators.compositions import is_relaxed_charge_balanced
from hullhunter.generators.registry import GenerationContext, GeneratorSettings, register_generator


def aflow_prototypes() -> list[Any]:
    """The AFLOW prototype library shipped in the seed file (288 structures)."""
    from hullhunter.generators.seeds import load_seeds

    return [seed for seed in load_seeds() if seed.id.startswith("aflow:")]


def atomic_radius(symbol: str) -> float | None:
    """pymatgen's empirical atomic radius (calculated one as fallback), in Å."""
    element = Element(symbol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pymatgen warns for missing data
        radius = element.atomic_radius or element.atomic_radius_calculated
    return float(radius) if radius else None


def decorate_prototypes(
    prototypes: Iterable[Any] | None,
    allowed_elements: Iterable[str],
    known_formulas: Iterable[str] = (),
    charge_balance: bool = True,
    max_interpolated: int = 2,
    scale_volume: bool = True,
    limit: int | None = None,
    stats: GenerationStats | None = None,
    accept: Accept | None = None,
) -> Iterator[Candidate]:
    """Every prototype decorated with each injective assignment of allowed elements.

    ``prototypes`` are Seeds, Structures or (id, Structure) pairs; None means the AFLOW library.
    ``charge_balance`` keeps compositions that pass the relaxed oxidation-state rule.
    """
    allowed = sorted(validate_elements(allowed_elements) or ())
    if not allowed:
        raise ValueError("decorate_prototypes needs allowed_elements, e.g. ['Li', 'Mn', 'O']")
    stats = stats if stats is not None else GenerationStats()
    decorations = _decorations(
        prototypes if prototypes is not None else aflow_prototypes(),
        allowed,
        set(known_formulas),
        charge_balance,
        max_interpolated,
        scale_volume,
        stats,
    )
    yield from counted(decorations, accept, limit, stats)


def _decorations(
    prototypes: Iterable[Any],
    allowed: list[str],
    known: set[str],
    charge_balance: bool,
    max_interpolated: int,
    scale_volume: bool,
    stats: GenerationStats,
) -> Iterator[Candidate]:
    """Every admissible decoration of every prototype, in prototype order."""
    radii = {el: atomic_radius(el) for el in allowed}
    usable = [el for el in allowed if radii[el]]
    for prototype_id, structure in usable_parents(prototypes, stats):
        site_elements = [site.specie.symbol for site in structure]
        originals = sorted(set(site_elements))
        old_radii = {el: atomic_radius(el) for el in originals}
        if scale_volume and not all(old_radii.values()):
            stats.skipped["no_atomic_radius"] += 1
            continue
        counts = {el: site_elements.count(el) for el in originals}
        for assignment in itertools.permutations(usable, len(originals)):
            mapping = dict(zip(originals, assignment, strict=True))
            if all(old == new for old, new in mapping.items()):
                continue
            composition = Composition({mapping[el]: n for el, n in counts.items()})
            if composition.reduced_formula in known:
                continue
            if charge_balance and not is_relaxed_charge_balanced(composition, max_interpolated):
                continue
            ratio = 1.0
            if scale_volume:
                new_volume = sum(n * radii[mapping[el]] ** 3 for el, n in counts.items())
                old_volume = sum(n * old_radii[el] ** 3 for el, n in counts.items())
                ratio = new_volume / old_volume
            lattice = Lattice(structure.lattice.matrix * np.cbrt(ratio))
            yield Candidate(
                structure_from_elements(
                    lattice, [mapping[el] for el in site_elements], structure.frac_coords
                ),
                "prototype",
                prototype_id,
                {"assignment": mapping, "volume_scale": ratio},
            )


class PrototypeSettings(GeneratorSettings):
    """Campaign section ``generators.prototypes``: parents used as prototypes, decorated."""

    limit: int = Field(
        100, ge=0, description="most new candidates inside the space from this generator per round"
    )

    def generate(self, context: GenerationContext) -> Iterator[Candidate]:
        for parents in self.parent_groups(context):
            yield from decorate_prototypes(
                parents,
                allowed_elements=context.allowed_elements,
                known_formulas=context.known_formulas,
                accept=context.accept,
            )


register_generator("prototypes", PrototypeSettings)
