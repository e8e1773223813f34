"""HullSet agrees with pymatgen's PhaseDiagram to 1e-6 eV/atom on real and synthetic sets."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

from hullhunter.hull import HullSet

TOL = 1e-6
# pymatgen sorts elements by electronegativity and warns for the noble gases in MP's set.
pytestmark = pytest.mark.filterwarnings("ignore:No Pauling electronegativity")


def pymatgen_entry_values(entries: list) -> tuple[dict[str, float], set[str]]:
    """pymatgen's phase-separation energies and stable ids, one PhaseDiagram per system."""
    diagrams: dict[frozenset, PhaseDiagram] = {}
    values, stable = {}, set()
    for e in entries:
        system = frozenset(e.composition.elements)
        if system not in diagrams:
            members = [x for x in entries if set(x.composition.elements) <= system]
            diagrams[system] = PhaseDiagram(members)
        diagram = diagrams[system]
        values[e.entry_id] = diagram.get_decomp_and_phase_separation_energy(e)[1]
        if e in diagram.stable_entries:
            stable.add(e.entry_id)
    return values, stable


def assert_matches_pymatgen(entries: list) -> HullSet:
    hull_set = HullSet(entries)
    expected, expected_stable = pymatgen_entry_values(entries)
    ours = hull_set.entry_decomposition_energies()
    assert ours.keys() == expected.keys()
    diffs = {k: abs(ours[k] - expected[k]) for k in expected}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] < TOL, (worst, ours[worst], expected[worst])
    assert {e.entry_id for e in hull_set.stable_entries} == expected_stable
    return hull_set


def test_mp_entries_reproduce_pymatgen(mp_entries: list, make_entry) -> None:
    """The bundled MP entries plus metastable polymorphs and off-hull compounds."""
    rng = np.random.default_rng(0)
    compounds = [e for e in mp_entries if len(e.composition) > 1]
    extra = []
    for i, e in enumerate(rng.choice(compounds, 60, replace=False)):
        shift = rng.uniform(-0.05, 0.1)  # some polymorphs below the MP ground state
        extra.append(make_entry(e.composition, e.energy_per_atom + shift, f"poly-{i}"))
    for i, (a, b) in enumerate(zip(compounds[:80:2], compounds[1:80:2], strict=True)):
        comp = a.composition.fractional_composition + b.composition.fractional_composition
        energy = (a.energy_per_atom + b.energy_per_atom) / 2 + rng.uniform(-0.1, 0.1)
        extra.append(make_entry(comp, energy, f"mix-{i}"))
    hull_set = assert_matches_pymatgen(mp_entries + extra)
    values = hull_set.entry_decomposition_energies()
    # MP's entries are all stable in MP: most stay on this smaller hull, with E_d <= 0.
    on_hull = [e for e in mp_entries if values[e.entry_id] <= 0]
    assert len(on_hull) > 0.8 * len(mp_entries)


def test_mp_candidates_match_pymatgen_hull_energy(mp_entries: list) -> None:
    """Candidates (not in the set) in real ternary systems, against get_e_above_hull."""
    rng = np.random.default_rng(1)
    hull_set = HullSet(mp_entries)
    ternaries = sorted(
        {e.composition.chemical_system for e in mp_entries if len(e.composition) == 3}
    )
    comps, energies, expected = [], [], []
    for system in ternaries[:40]:
        elements = system.split("-")
        members = [e for e in mp_entries if {el.symbol for el in e.composition} <= set(elements)]
        diagram = PhaseDiagram(members)
        for _ in range(5):
            comp = Composition(dict(zip(elements, rng.integers(1, 6, 3).tolist(), strict=True)))
            energy = diagram.get_hull_energy_per_atom(comp) + rng.uniform(-0.2, 0.2)
            candidate = PDEntry(comp, energy * comp.num_atoms)
            comps.append(comp)
            energies.append(energy)
            expected.append(diagram.get_e_above_hull(candidate, allow_negative=True))
    ours = hull_set.decomposition_energy(comps, energies)
    np.testing.assert_allclose(ours, expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("n_elements", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_sets_match_pymatgen(make_entries, n_elements: int, seed: int) -> None:
    entries = make_entries(n_elements, 12 + 25 * n_elements, seed)
    hull_set = assert_matches_pymatgen(entries)
    rng = np.random.default_rng(seed + 100)
    diagram = PhaseDiagram(entries)
    elements = [el.symbol for el in diagram.elements]
    comps = []
    for _ in range(50):  # queries in the full system and in every subsystem
        amounts = rng.integers(0, 4, n_elements) * (rng.random(n_elements) < 0.8)
        if amounts.sum() == 0:
            amounts[0] = 1
        comps.append(Composition(dict(zip(elements, amounts.tolist(), strict=True))))
    energies = rng.uniform(-6, -1, len(comps))
    expected = [
        e - diagram.get_hull_energy_per_atom(c) for c, e in zip(comps, energies, strict=True)
    ]
    np.testing.assert_allclose(hull_set.decomposition_energy(comps, energies), expected, atol=TOL)


def formation_entry(
    make_entry, refs: dict[str, float], formula: str, formation: float, entry_id: str
):
    """An entry ``formation`` eV/atom from the elemental references ``refs``."""
    frac = Composition(formula).fractional_composition
    energy = sum(frac[el] * e for el, e in refs.items()) + formation
    return make_entry(formula, energy, entry_id)


def test_collinear_points_on_a_tie_line(make_entry) -> None:
    """A binary where intermediate compounds sit exactly on tie lines between others."""
    refs = {"Li": -2.0, "O": -5.0}
    specs = [
        ("Li", 0.0, "Li"),
        ("O", 0.0, "O"),
        ("Li2O", -2.0, "Li2O-a"),
        ("Li2O", -2.0, "Li2O-b"),  # exact duplicate of a stable entry
        ("LiO", -2.2, "LiO"),
        ("Li5O3", -2.05, "Li5O3"),  # on the Li2O-LiO tie line
        ("Li4O", -1.2, "Li4O"),  # on the Li-Li2O tie line
        ("LiO3", -0.3, "LiO3"),  # above the hull
    ]
    entries = [formation_entry(make_entry, refs, *spec) for spec in specs]
    hull_set = assert_matches_pymatgen(entries)
    values = hull_set.entry_decomposition_energies()
    assert abs(values["Li4O"]) < 1e-9
    assert abs(values["Li5O3"]) < 1e-9
    assert values["Li2O-a"] == pytest.approx(values["Li2O-b"], abs=1e-12)
    assert values["Li2O-a"] < -0.1


def test_coplanar_points_in_a_ternary(make_entry) -> None:
    """Ternary points exactly on the plane of a hull facet, and a duplicate composition."""
    refs = {"Li": -2.0, "Fe": -8.0, "O": -5.0}
    specs = [
        ("Li", 0.0, "Li"),
        ("Fe", 0.0, "Fe"),
        ("O", 0.0, "O"),
        ("LiFeO2", -1.0, "LiFeO2"),
        ("Li2O", -1.0, "Li2O"),
        ("FeO", -1.0, "FeO"),
        ("Li2FeO3", -1.0, "Li2FeO3"),  # a fourth vertex in the E_form = -1 plane
        ("Li3Fe2O4", -1.0, "Li3Fe2O4"),  # inside the Li2O-FeO-LiFeO2 facet
        ("Li3FeO3", -1.0, "Li3FeO3"),  # on the Li2O-LiFeO2 edge
        ("LiFeO2", -0.9, "LiFeO2-poly"),
        ("Li2FeO2", -0.5, "Li2FeO2"),
    ]
    hull_set = assert_matches_pymatgen([formation_entry(make_entry, refs, *s) for s in specs])
    values = hull_set.entry_decomposition_energies()
    assert abs(values["Li3Fe2O4"]) < 1e-9
    assert abs(values["Li3FeO3"]) < 1e-9
    assert values["LiFeO2-poly"] > values["LiFeO2"]


def test_unary_system_polymorphs(make_entry) -> None:
    entries = [
        make_entry("Si", -5.4, "Si-a"),
        make_entry("Si", -5.3, "Si-b"),
        make_entry("Si", -5.4, "Si-c"),
    ]
    hull_set = assert_matches_pymatgen(entries)
    values = hull_set.entry_decomposition_energies()
    assert values["Si-b"] == pytest.approx(0.1, abs=1e-12)
    assert hull_set.decomposition_energy(["Si"], [-5.5]) == pytest.approx([-0.1], abs=1e-12)


def test_e_above_hull_and_formation_energy_match_pymatgen(mp_entries: list, make_entry) -> None:
    """MP's definition: every polymorph against the hull that keeps its composition's ground
    state, so an off-hull polymorph of a stable compound is above the hull (>= 0), where the
    signed decomposition energy can be negative."""
    rng = np.random.default_rng(1)
    compounds = [e for e in mp_entries if len(e.composition) > 1]
    polymorphs = [
        make_entry(e.composition, e.energy_per_atom + rng.uniform(0.001, 0.05), f"poly-{i}")
        for i, e in enumerate(rng.choice(compounds, 40, replace=False))
    ]
    entries = mp_entries + polymorphs
    records = {r.entry_id: r for r in HullSet(entries).records()}
    diagrams: dict[frozenset, PhaseDiagram] = {}
    for e in entries:
        system = frozenset(e.composition.elements)
        if system not in diagrams:
            diagrams[system] = PhaseDiagram(
                [x for x in entries if set(x.composition.elements) <= system]
            )
        record = records[e.entry_id]
        assert record.e_above_hull >= 0
        assert record.e_above_hull == pytest.approx(diagrams[system].get_e_above_hull(e), abs=TOL)
        assert record.formation_energy_per_atom == pytest.approx(
            diagrams[system].get_form_energy_per_atom(e), abs=TOL
        )
    # the case analysts trip over: off the hull, yet a negative decomposition energy
    tricky = [r for r in records.values() if not r.on_hull and r.decomposition_energy < 0]
    assert tricky and all(r.e_above_hull > 0 for r in tricky)
