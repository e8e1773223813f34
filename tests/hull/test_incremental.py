"""Incremental updates give the same hull as a rebuild; round records follow GNoME's split."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Composition

from hullhunter.hull import HullSet


def split_rounds(entries: list, n_reference: int, n_rounds: int) -> tuple[list, list[list]]:
    """Reference = the elements plus the first compounds; the rest in ``n_rounds`` rounds."""
    elements = [e for e in entries if e.composition.is_element]
    compounds = [e for e in entries if not e.composition.is_element]
    reference = elements + compounds[:n_reference]
    return reference, [list(r) for r in np.array_split(compounds[n_reference:], n_rounds)]


@pytest.mark.parametrize("n_elements", [3, 4])
def test_incremental_equals_rebuild(make_entries, n_elements: int) -> None:
    entries = make_entries(n_elements, 160, seed=n_elements)
    reference, rounds = split_rounds(entries, 40, 3)
    incremental = HullSet(reference)
    rng = np.random.default_rng(0)
    queries = [
        Composition(dict(zip(["Li", "Fe", "O", "P"][:n_elements], a.tolist(), strict=True)))
        for a in rng.integers(1, 5, (30, n_elements))
    ]
    query_e = rng.uniform(-6, -2, len(queries))
    incremental.decomposition_energy(queries, query_e)  # fill the hull cache first
    incremental.entry_decomposition_energies()
    for batch in rounds:
        incremental.add(batch)
    rebuilt = HullSet(reference + [e for batch in rounds for e in batch])

    ours, expected = (
        incremental.entry_decomposition_energies(),
        rebuilt.entry_decomposition_energies(),
    )
    assert ours.keys() == expected.keys()
    np.testing.assert_allclose([ours[k] for k in expected], list(expected.values()), atol=1e-12)
    assert {e.entry_id for e in incremental.stable_entries} == {
        e.entry_id for e in rebuilt.stable_entries
    }
    np.testing.assert_allclose(
        incremental.decomposition_energy(queries, query_e),
        rebuilt.decomposition_energy(queries, query_e),
        atol=1e-12,
    )


def test_records_score_against_reference_and_hull_before_the_round(make_entries) -> None:
    entries = make_entries(3, 120, seed=7)
    reference, (round1, round2a, round2b) = split_rounds(entries, 30, 3)
    hull_set = HullSet(reference)
    hull_set.add(round1)  # round 1
    hull_set.add(round2a, round=2)
    hull_set.add(round2b, round=2)  # same round: scored against the hull before round 2

    before_round2 = HullSet(reference + round1)
    reference_only = HullSet(reference)
    round2 = round2a + round2b
    comps = [e.composition for e in round2]
    energies = [e.energy_per_atom for e in round2]
    expected_previous = before_round2.decomposition_energy(comps, energies)
    expected_reference = reference_only.decomposition_energy(comps, energies)

    records = {r.entry_id: r for r in hull_set.records()}
    np.testing.assert_allclose(
        [records[e.entry_id].e_vs_previous for e in round2], expected_previous, atol=1e-12
    )
    np.testing.assert_allclose(
        [records[e.entry_id].e_vs_reference for e in round2], expected_reference, atol=1e-12
    )
    assert {records[e.entry_id].round for e in round2} == {2}
    assert all(records[e.entry_id].round is None for e in reference)
    on_hull = {e.entry_id for e in hull_set.stable_entries}
    assert {k for k, r in records.items() if r.on_hull} == on_hull
    binary = hull_set.records(chemsys="Fe-Li")
    assert {r.entry_id for r in binary} == {
        k for k, r in records.items() if set(r.chemsys.split("-")) <= {"Fe", "Li"}
    }
    assert {r.chemsys for r in binary} == {"Fe", "Li", "Fe-Li"}
    # Some entries were stable against the reference but were later pushed off the hull.
    assert any(r.stable_vs_reference and not r.on_hull for r in records.values())
    for r in records.values():
        if r.round is not None:
            assert r.hit == (r.e_vs_previous <= 1e-8)
            assert r.stable_vs_reference == (r.e_vs_reference <= 1e-8)


def test_add_returns_systems_whose_hull_changed(make_entry) -> None:
    hull_set = HullSet(
        [
            make_entry("Li", -2.0, "Li"),
            make_entry("O", -5.0, "O"),
            make_entry("Fe", -8.0, "Fe"),
            make_entry("Li2O", -4.5, "Li2O"),
            make_entry("LiFeO2", -6.5, "LiFeO2"),
            make_entry("Fe2O3", -7.0, "Fe2O3"),
        ]
    )
    touched = hull_set.add([make_entry("LiO2", -4.2, "LiO2-new")])
    assert touched == {"Li-O", "Fe-Li-O"}
    before = hull_set.entry_decomposition_energies()["LiFeO2"]
    assert hull_set.add([make_entry("Fe3O4", -7.5, "Fe3O4-new")]) == {"Fe-O", "Fe-Li-O"}
    # A deep new Fe-O phase raises the bar for the Li-Fe-O phase in the superset system.
    assert hull_set.entry_decomposition_energies()["LiFeO2"] > before


def test_rounds_must_not_go_back(make_entry) -> None:
    hull_set = HullSet([make_entry("Li", -2.0, "Li"), make_entry("O", -5.0, "O")])
    hull_set.add([make_entry("Li2O", -4.5, "a")], round=3)
    with pytest.raises(ValueError, match="round 2 comes before the open round 3"):
        hull_set.add([make_entry("Li2O", -4.4, "b")], round=2)


def test_batches_of_one_round_do_not_compete(make_entry) -> None:
    reference = [make_entry("Li", -2.0, "Li"), make_entry("O", -5.0, "O")]
    hull_set = HullSet(reference)
    hull_set.add([make_entry("LiO2", -5.0, "deep")], round=1)
    hull_set.add([make_entry("LiO2", -4.8, "same-round")], round=1)
    hull_set.add([make_entry("LiO2", -4.8, "next-round")], round=2)
    records = {r.entry_id: r for r in hull_set.records()}
    # Against Li + O only, LiO2 at -4.8 is 0.8 eV/atom below the tie line (-4.0);
    # against the hull with "deep" in it, it is 0.2 eV/atom above.
    assert records["same-round"].e_vs_previous == pytest.approx(-0.8)
    assert records["same-round"].hit
    assert records["next-round"].e_vs_previous == pytest.approx(0.2)
    assert not records["next-round"].hit
    assert records["next-round"].stable_vs_reference
    assert [m["hits"] for m in hull_set.round_metrics()] == [2, 0]


def test_new_elemental_ground_state_updates_every_system_with_it(make_entries, make_entry) -> None:
    entries = make_entries(3, 60, seed=11)
    hull_set = HullSet(entries)
    hull_set.entry_decomposition_energies()
    lower_li = make_entry("Li", hull_set.elemental_references["Li"].energy_per_atom - 0.3, "Li-new")
    touched = hull_set.add([lower_li])
    assert touched == {s for s in hull_set.chemical_systems if "Li" in s.split("-")}
    rebuilt = HullSet([*entries, lower_li])
    ours, expected = hull_set.entry_decomposition_energies(), rebuilt.entry_decomposition_energies()
    np.testing.assert_allclose([ours[k] for k in expected], list(expected.values()), atol=1e-12)
    assert hull_set.elemental_references["Li"].entry_id == "Li-new"
