"""AIRSS-style random structure search with pyxtal (gnome-method.md 1.2: 100 per composition).

Each structure draws a number of formula units and a space group compatible with the
composition, then pyxtal places atoms on random Wyckoff positions at a volume ``volume_factor``
times its radii estimate, with pyxtal's default minimum distances. Every draw comes from one
seeded generator, so a (composition, seed) pair always gives the same structures. GNoME's
soft-sphere pre-relaxation is left to the oracle.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cache

import numpy as np
from pymatgen.core import Composition
from pyxtal import pyxtal
from pyxtal.symmetry import Group

from hullhunter.generators.candidate import Candidate
from hullhunter.generators.common import GenerationStats, validate_elements


@cache
def _group(number: int) -> Group:
    return Group(number)


def compatible_choices(
    counts: Sequence[int], max_atoms: int, space_groups: Sequence[int]
) -> list[tuple[int, int]]:
    """(space group, formula units) pairs whose Wyckoff positions can hold the composition."""
    choices = []
    per_unit = sum(counts)
    for units in range(1, max_atoms // per_unit + 1):
        for number in space_groups:
            if _group(number).check_compatible([c * units for c in counts])[0]:
                choices.append((number, units))
    return choices


def random_structures(
    composition: Composition | str,
    n: int = 100,
    seed: int = 0,
    max_atoms: int = 24,
    volume_factor: float = 1.0,
    space_groups: Sequence[int] | None = None,
    max_attempts: int = 10,
    stats: GenerationStats | None = None,
) -> Iterator[Candidate]:
    """Yield up to ``n`` random symmetric structures of ``composition`` (reproducible by seed)."""
    composition = Composition(composition)
    validate_elements([el.symbol for el in composition.elements])
    reduced, _ = composition.get_reduced_composition_and_factor()
    symbols = [el.symbol for el in reduced.elements]
    counts = [int(reduced[el]) for el in symbols]
    stats = stats if stats is not None else GenerationStats()
    groups = list(space_groups) if space_groups is not None else list(range(2, 231))
    choices = compatible_choices(counts, max_atoms, groups)
    if not choices:
        raise ValueError(
            f"{reduced.reduced_formula} fits no given space group within {max_atoms} atoms: "
            "raise max_atoms or allow more space groups"
        )
    rng = np.random.default_rng(seed)
    stats.parents += 1
    for index in range(n):
        for _ in range(max_attempts):
            number, units = choices[rng.integers(len(choices))]
            draw_seed = int(rng.integers(2**31))
            crystal = pyxtal()
            try:
                crystal.from_random(
                    3,
                    number,
                    symbols,
                    [c * units for c in counts],
                    factor=volume_factor,
                    random_state=draw_seed,
                )
            except Exception as error:  # pyxtal raises many types when a placement fails
                stats.skipped[f"pyxtal_{type(error).__name__}"] += 1
                continue
            if not crystal.valid:
                stats.skipped["pyxtal_invalid"] += 1
                continue
            stats.yielded += 1
            yield Candidate(
                crystal.to_pymatgen(),
                "random",
                reduced.reduced_formula,
                {
                    "space_group": number,
                    "formula_units": units,
                    "volume_factor": volume_factor,
                    "seed": seed,
                    "index": index,
                    "draw_seed": draw_seed,
                },
            )
            break
        else:
            stats.skipped["no_structure_after_max_attempts"] += 1
