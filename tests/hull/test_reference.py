"""Reference data: pymatgen's bundled MP entries and elemental references."""

from __future__ import annotations

import pytest

from hullhunter.hull import (
    HullSet,
    elemental_energies,
    elemental_references,
    load_mp_reference_entries,
    mp_hull_of,
)


def test_mp_entries_get_mp2020_corrections(mp_entries: list) -> None:
    raw = {e.entry_id: e for e in load_mp_reference_entries(apply_mp2020=False)}
    assert len(mp_entries) == len(raw) == 423
    oxides = [e for e in mp_entries if e.composition.reduced_formula == "Fe2O3"]
    assert oxides, "Fe2O3 is among the MP2020 fitting compounds"
    for corrected in oxides:
        # Oxide anion correction and Fe U correction both lower the energy.
        assert corrected.correction < -0.5
        assert corrected.energy == pytest.approx(
            raw[corrected.entry_id].energy + corrected.correction
        )


def test_elemental_references_take_the_lowest_polymorph(make_entry) -> None:
    entries = [
        make_entry("C", -9.1, "graphite"),
        make_entry("C", -9.2, "diamond-ish"),
        make_entry("CO2", -8.0, "CO2"),
        make_entry("O", float("nan"), "bad-O"),
        make_entry("O", -4.9, "O2"),
    ]
    refs = elemental_references(entries)
    assert {el: e.entry_id for el, e in refs.items()} == {"C": "diamond-ish", "O": "O2"}
    assert elemental_energies(entries) == {"C": -9.2, "O": -4.9}
    assert {el: e.entry_id for el, e in HullSet(entries).elemental_references.items()} == {
        "C": "diamond-ish",
        "O": "O2",
    }
    with pytest.raises(ValueError, match="missing elemental reference for N"):
        elemental_references(entries, elements=["C", "N", "O"])


def test_mp_elemental_references_cover_every_element(mp_entries: list) -> None:
    elements = {el.symbol for e in mp_entries for el in e.composition}
    assert set(elemental_references(mp_entries, elements)) == elements


def test_mp_hull_of_a_system_on_either_scale() -> None:
    """Mg2Si lies on MP's Mg-Si hull with a negative formation energy on both scales; a
    system MP lacks an element reference for gives nothing."""
    raw = mp_hull_of(["Mg", "Si"], corrected=False)
    corrected = mp_hull_of(["Mg", "Si"], corrected=True)
    for hull in (raw, corrected):
        formation, above = hull["Mg2Si"]
        assert formation < -0.1 and above == pytest.approx(0, abs=1e-9)
        assert hull["Si"] == pytest.approx((0.0, 0.0), abs=1e-9)
    oxide_raw, oxide_corrected = (mp_hull_of(["Li", "O"], c)["Li2O"][0] for c in (False, True))
    assert oxide_corrected < oxide_raw  # MP2020's oxide correction deepens it
    assert mp_hull_of(["Si", "Og"]) == {}
