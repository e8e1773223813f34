"""Bad entries are excluded with a counted reason; unusable references are clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Composition, Species

from hullhunter.hull import HullSet


@pytest.fixture
def li_o(make_entry) -> HullSet:
    return HullSet(
        [make_entry("Li", -1.9, "Li"), make_entry("O", -4.9, "O"), make_entry("Li2O", -4.8, "Li2O")]
    )


def test_add_counts_each_reason(li_o: HullSet, make_entry) -> None:
    touched = li_o.add(
        [
            make_entry("LiO2", float("nan"), "nan"),
            make_entry("LiO2", -30.0, "absurd-low"),  # far more than 5 eV/atom below the elements
            make_entry("Li2S", -3.0, "no-sulfur-ref"),
            make_entry("Li2O", -4.7, "Li2O"),  # id already in the set
            make_entry("LiO2", -4.4, "ok"),
            make_entry("LiO2", -4.3, "ok"),  # id repeated within the batch
        ]
    )
    assert touched == {"Li-O"}
    assert dict(li_o.skipped) == {
        "nan_energy": 1,
        "formation_energy_out_of_range": 1,
        "element_not_in_reference": 1,
        "duplicate_entry_id": 2,
    }
    assert "ok" in li_o and "absurd-low" not in li_o and len(li_o) == 4
    (metrics,) = li_o.round_metrics()
    assert metrics["evaluated"] == 6 and metrics["accepted"] == 1
    assert metrics["skipped"]["duplicate_entry_id"] == 2


def test_reference_entries_are_filtered_too(make_entry) -> None:
    hull_set = HullSet(
        [
            make_entry("Li", -1.9, "Li"),
            make_entry("O", -4.9, "O"),
            make_entry("Li2O", float("nan"), "nan"),
            make_entry("Li2O", 4.0, "absurd-high"),
        ]
    )
    assert dict(hull_set.skipped) == {"nan_energy": 1, "formation_energy_out_of_range": 1}
    assert len(hull_set) == 2


def test_missing_elemental_reference_names_the_element(make_entry) -> None:
    with pytest.raises(ValueError, match="missing elemental reference for Fe, O"):
        HullSet([make_entry("Li", -1.9, "Li"), make_entry("Fe2O3", -7.0, "Fe2O3")])


def test_entries_need_unique_ids(make_entry) -> None:
    with pytest.raises(ValueError, match="duplicate entry_id"):
        HullSet([make_entry("Li", -1.9, "Li"), make_entry("Li", -1.8, "Li")])
    unnamed = make_entry("Li", -1.9, "x")
    unnamed.entry_id = None
    with pytest.raises(ValueError, match="has no entry_id"):
        HullSet([unnamed])


def test_queries_outside_the_reference_are_nan(li_o: HullSet) -> None:
    values = li_o.decomposition_energy(["Li2O", "Li2S", "LiO"], [-5.0, -3.0, float("nan")])
    assert values[0] == pytest.approx(-0.2)
    assert np.isnan(values[1]) and np.isnan(values[2])
    with pytest.raises(ValueError, match="2 compositions but 1 energies"):
        li_o.decomposition_energy(["Li2O", "LiO"], [-5.0])
    with pytest.raises(ValueError, match="against='previous'"):
        li_o.decomposition_energy(["Li2O"], [-5.0], against="previous")
    with pytest.raises(ValueError, match="missing elemental reference for S"):
        li_o.hull("Li-S")


def test_compositions_with_oxidation_states_and_bad_amounts(li_o: HullSet) -> None:
    decorated = Composition({Species("Li", 1): 1, Species("O", -2): 1, Species("O", -1): 1})
    plain = li_o.decomposition_energy(["LiO2"], [-4.5])
    assert li_o.decomposition_energy([decorated], [-4.5]) == pytest.approx(plain, abs=1e-12)
    negative = Composition({"Li": -1, "O": 2}, allow_negative=True)
    with pytest.raises(ValueError, match="negative amount"):
        li_o.decomposition_energy([negative], [-4.0])
