"""Composition enumeration (relaxed balance), prototype decoration and random structure search."""

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure

from hullhunter.generators import (
    Deduplicator,
    GenerationStats,
    decorate_prototypes,
    enumerate_compositions,
    is_relaxed_charge_balanced,
    random_structures,
)


@pytest.mark.parametrize(
    ("formula", "relaxed", "strict"),
    [
        ("Li15Si4", True, False),  # Si at -3.75, between -4 and -3
        ("NaCl", True, True),
        ("Li2O", True, True),
        ("Fe3O4", True, False),  # Fe at 8/3, between 2 and 3
        ("LiO2", False, False),  # O at -1/2 lies outside O's states
        ("ClNa3", True, False),  # Na interpolated towards its metallic 0
        ("OF2", False, False),  # O would need +2, which is not among its states
    ],
)
def test_relaxed_oxidation_rule(formula, relaxed, strict):
    assert is_relaxed_charge_balanced(formula) is relaxed
    assert is_relaxed_charge_balanced(formula, max_interpolated=0) is strict


def test_enumerate_compositions_bounds_and_filters():
    stats = GenerationStats()
    comps = list(
        enumerate_compositions(
            ["Li", "Si", "O"], max_atoms=19, known_formulas={"Li2O"}, stats=stats
        )
    )
    formulas = {c.reduced_formula for c in comps}
    assert "Li15Si4" in formulas and "Li4SiO4" in formulas
    assert "Li2O" not in formulas and stats.skipped["known"] == 1
    assert all(2 <= len(c) <= 3 and c.num_atoms <= 19 for c in comps)
    assert all(is_relaxed_charge_balanced(c) for c in comps)
    assert stats.skipped["not_charge_balanced"] > 0
    assert len(formulas) == len(comps)  # reduced formulas only, no multiples
    strict = set(
        map(
            str,
            enumerate_compositions(
                ["Li", "Si", "O"], max_atoms=19, max_interpolated=0, known_formulas={"Li2O"}
            ),
        )
    )
    assert strict < set(map(str, comps))
    with pytest.raises(ValueError, match="Zz"):
        list(enumerate_compositions(["Li", "Zz"]))


def test_decorate_prototypes_stoichiometry_and_volume():
    rocksalt = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    stats = GenerationStats()
    out = list(
        decorate_prototypes(
            [("rs", rocksalt)], ["Li", "K", "F", "Cl"], known_formulas={"KCl"}, stats=stats
        )
    )
    formulas = {c.formula for c in out}
    assert {"LiF", "KF", "LiCl"} <= formulas
    assert "KCl" not in formulas and "NaCl" not in formulas
    lif = next(
        c for c in out if c.formula == "LiF" and c.params["assignment"] == {"Cl": "F", "Na": "Li"}
    )
    assert lif.structure.volume < rocksalt.volume  # Li and F are smaller than Na and Cl
    assert lif.params["volume_scale"] == pytest.approx(lif.structure.volume / rocksalt.volume)
    assert all(len(c.structure) == len(rocksalt) and c.parent_id == "rs" for c in out)
    # swapped assignments give the same structure: the deduplicator merges them
    unique = list(Deduplicator().unique(out))
    assert len(unique) < len(out)
    assert stats.parents == 1 and stats.yielded == len(out)


def test_decorate_aflow_library_by_default():
    out = list(decorate_prototypes(None, ["Li", "O"], limit=20))
    assert len(out) == 20
    assert all(c.parent_id.startswith("aflow:") for c in out)
    assert all(set(c.chemsys.split("-")) <= {"Li", "O"} for c in out)


def test_random_structures_are_reproducible_and_sensible():
    first = list(random_structures("Li15Si4", n=3, seed=7, max_atoms=38))
    again = list(random_structures(Composition("Li30Si8"), n=3, seed=7, max_atoms=38))
    other = list(random_structures("Li15Si4", n=3, seed=8, max_atoms=38))
    assert len(first) == 3
    assert [c.structure for c in first] == [c.structure for c in again]
    assert [c.structure for c in first] != [c.structure for c in other]
    for c in first:
        assert c.formula == "Li15Si4" and c.generator == "random"
        assert len(c.structure) == 19 * c.params["formula_units"]
        assert c.structure.get_space_group_info(symprec=0.01)[1] == c.params["space_group"]
        distances = c.structure.distance_matrix[~np.eye(len(c.structure), dtype=bool)]
        assert distances.min() > 1.0


def test_random_structures_bad_input():
    with pytest.raises(ValueError, match="max_atoms"):
        list(random_structures("Li15Si4", n=1, max_atoms=10))
    with pytest.raises(ValueError):
        list(random_structures("LiXx", n=1))


def _closest_pair_ratio(structure, factor):
    """Smallest distance / (factor x summed covalent radii) over all pairs (periodic)."""
    from ase.data import covalent_radii

    radii = factor * covalent_radii[np.array(structure.atomic_numbers)]
    distances = structure.distance_matrix + np.eye(len(structure)) * 1e9
    return (distances / (radii[:, None] + radii[None, :])).min()


def test_soft_sphere_relax_pushes_overlapping_atoms_apart():
    from hullhunter.generators.random_search import soft_sphere_relax

    crowded = Structure(
        Lattice.cubic(4.0),
        ["Si", "Si", "O", "O"],
        [[0, 0, 0], [0.08, 0, 0], [0.5] * 3, [0.5, 0.55, 0.5]],
    )
    assert _closest_pair_ratio(crowded, 0.8) < 0.3
    relaxed = soft_sphere_relax(crowded, factor=0.8)
    assert _closest_pair_ratio(relaxed, 0.8) > 0.98
    assert relaxed.lattice == crowded.lattice and relaxed.composition == crowded.composition
    assert _closest_pair_ratio(crowded, 0.8) < 0.3  # input untouched
    spread = Structure(Lattice.cubic(6.0), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3])
    assert np.allclose(soft_sphere_relax(spread).frac_coords, spread.frac_coords)


def test_random_structures_pre_relaxed():
    from pymatgen.io.ase import AseAtomsAdaptor

    from hullhunter.generators.random_search import SoftSphere

    def overlap_energy(structure):
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.calc = SoftSphere(0.8)
        return atoms.get_potential_energy()

    kwargs = {"n": 4, "seed": 1, "volume_factor": 0.7}
    raw = list(random_structures("Li2O", **kwargs))
    relaxed = list(random_structures("Li2O", pre_relax=True, **kwargs))
    assert [c.params["draw_seed"] for c in raw] == [c.params["draw_seed"] for c in relaxed]
    energies = [
        (overlap_energy(a.structure), overlap_energy(b.structure))
        for a, b in zip(raw, relaxed, strict=True)
    ]
    assert any(before > 1e-3 for before, _ in energies)  # the dense draws do overlap
    for (before, after), a, b in zip(energies, raw, relaxed, strict=True):
        assert b.params["pre_relaxed"] is True and a.params["pre_relaxed"] is False
        assert after <= before + 1e-9
        assert _closest_pair_ratio(b.structure, 0.8) >= _closest_pair_ratio(a.structure, 0.8) - 1e-6
