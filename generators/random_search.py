"""AIRSS-style random structure search with pyxtal (gnome-method.md 1.2: 100 per composition).

Each structure draws a number of formula units and a space group compatible with the
composition, then pyxtal places atoms on random Wyckoff positions at a volume ``volume_factor``
times its radii estimate, with pyxtal's default minimum distances. Every draw comes from one
seeded generator, so a (composition, seed) pair always gives the same structures.
``pre_relax=True`` adds AIRSS's soft-sphere pre-relaxation (:func:`soft_sphere_relax`): atoms
closer than a fraction of their summed covalent radii are pushed apart before the oracle.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cache

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.data import covalent_radii
from ase.optimize import FIRE
from pymatgen.core import Composition, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pyxtal import pyxtal
from pyxtal.symmetry import Group
from vesin import NeighborList

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
    pre_relax: bool = False,
    stats: GenerationStats | None = None,
) -> Iterator[Candidate]:
    """Yield up to ``n`` random symmetric structures of ``composition`` (reproducible by seed).

    ``pre_relax`` pushes atoms apart with :func:`soft_sphere_relax` (fixed cell).
    """
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
            structure = crystal.to_pymatgen()
            if pre_relax:
                structure = soft_sphere_relax(structure)
            stats.yielded += 1
            yield Candidate(
                structure,
                "random",
                reduced.reduced_formula,
                {
                    "space_group": number,
                    "formula_units": units,
                    "volume_factor": volume_factor,
                    "seed": seed,
                    "index": index,
                    "draw_seed": draw_seed,
                    "pre_relaxed": pre_relax,
                },
            )
            break
        else:
            stats.skipped["no_structure_after_max_attempts"] += 1


class SoftSphere(Calculator):
    """Repulsive pair potential: E = sum over pairs closer than r0 of ``strength`` (1 - d/r0)^2,
    r0 = ``factor`` x (sum of covalent radii). Zero once every pair is at least r0 apart.

    ASE ships no such potential (its LJ/Morse attract as well), so it is written here; pairs
    come from vesin.
    """

    implemented_properties = ("energy", "forces")

    def __init__(self, factor: float = 0.8, strength: float = 1.0) -> None:
        super().__init__()
        self.factor = factor
        self.strength = strength

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        radii = self.factor * covalent_radii[self.atoms.numbers]
        i, j, d, vectors = NeighborList(cutoff=2 * radii.max(), full_list=False).compute(
            points=self.atoms.positions,
            box=self.atoms.cell.array,
            periodic=True,
            quantities="ijdD",
        )
        r0 = radii[i] + radii[j]
        close = (d < r0) & (d > 1e-12)
        i, j, d, vectors, r0 = i[close], j[close], d[close], vectors[close], r0[close]
        overlap = 1 - d / r0
        # dE/dd = -2 strength overlap / r0; the force on i points away from j.
        pull = (2 * self.strength * overlap / r0 / d)[:, None] * vectors
        forces = np.zeros((len(self.atoms), 3))
        np.add.at(forces, i, -pull)
        np.add.at(forces, j, pull)
        self.results = {"energy": float(self.strength * (overlap**2).sum()), "forces": forces}


def soft_sphere_relax(
    structure: Structure, factor: float = 0.8, fmax: float = 1e-3, steps: int = 500
) -> Structure:
    """The structure with atoms pushed apart until no pair is closer than ``factor`` times
    its summed covalent radii (FIRE on :class:`SoftSphere`, cell fixed), as AIRSS does before
    the expensive relaxation. Returns a new Structure; the input is unchanged."""
    if factor <= 0:
        raise ValueError(f"factor must be positive, got {factor}")
    atoms: Atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = SoftSphere(factor)
    FIRE(atoms, logfile=None).run(fmax=fmax, steps=steps)
    relaxed = AseAtomsAdaptor.get_structure(atoms)
    return Structure(relaxed.lattice, relaxed.species, relaxed.frac_coords % 1.0)
