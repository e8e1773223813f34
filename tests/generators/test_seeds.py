"""Seeds: the shipped file's content and provenance, user files, element filters."""

import gzip
import json

import pytest
from pymatgen.core import Lattice, Structure

from hullhunter.generators import Candidate, Seed, load_seeds
from hullhunter.generators.sanity import seed_problem
from hullhunter.generators.seeds import SHIPPED_SEEDS


@pytest.mark.parametrize(
    ("elements", "expected_compounds"),
    [
        (["Li", "O"], {"Li2O", "Li2O2"}),
        (["Na", "Cl"], {"NaCl"}),
        (["Li", "Mn", "O"], {"LiMnO2", "Mn3O4", "MnO"}),
        (["Li", "P", "S"], {"Li2S", "Li3P"}),
        (["Mg", "O"], {"MgO"}),
        (["Ca", "Ti", "O"], {"CaTiO3", "TiO2"}),
        (["Sr", "Ti", "O"], {"SrTiO3"}),
    ],
)
def test_shipped_seeds_cover_common_systems_with_elemental_references(elements, expected_compounds):
    seeds = load_seeds(elements=elements)
    formulas = {seed.formula for seed in seeds}
    assert expected_compounds <= formulas
    for element in elements:
        assert any(seed.elements == {element} for seed in seeds), (
            f"no elemental polymorph of {element}"
        )
    assert all(seed.elements <= set(elements) for seed in seeds)


def test_shipped_seeds_have_provenance_and_unique_ids():
    seeds = load_seeds(elements=["Li", "Na", "K", "O", "Cl", "Mn", "Fe"])
    assert len({seed.id for seed in seeds}) == len(seeds)
    assert all(seed.source and seed.license for seed in seeds)
    assert all(seed.structure.is_ordered for seed in seeds)
    with gzip.open(SHIPPED_SEEDS, "rt", encoding="utf-8") as handle:
        sources = json.load(handle)["sources"]
    assert set(sources) == {
        "pymatgen_structures",
        "aflow_prototypes",
        "mp_elemental_polymorphs",
        "matbench_dielectric",
    }
    lithium = [s for s in seeds if s.id.startswith("mp-elemental:Li-")]
    energies = [s.metadata["mp_pbe_energy_per_atom"] for s in lithium]
    assert energies == sorted(energies) and len(lithium) > 1


def test_unknown_element_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Xx"):
        load_seeds(elements=["Li", "Xx"])


def test_user_cif_folder_and_pymatgen_json(tmp_path):
    rocksalt = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    rocksalt.to(filename=str(tmp_path / "NaCl.cif"))
    (tmp_path / "more.json").write_text(
        json.dumps([rocksalt.as_dict(), {"id": "x1", "structure": rocksalt.as_dict()}])
    )
    seeds = load_seeds(tmp_path)
    assert [s.id for s in seeds] == ["NaCl", "more#0", "x1"]
    assert all(s.formula == "NaCl" and s.source.startswith("user:") for s in seeds)
    assert load_seeds(tmp_path, elements=["Na"]) == []
    assert len(load_seeds(tmp_path / "NaCl.cif")) == 1


def test_seed_and_candidate_round_trip_through_json():
    seed = load_seeds(elements=["Na", "Cl"])[0]
    again = Seed.from_dict(json.loads(json.dumps(seed.as_dict())))
    assert again.id == seed.id and again.structure == seed.structure
    candidate = Candidate(seed.structure, "substitution", seed.id, {"substitution": {"Na+": "K+"}})
    data = json.loads(json.dumps(candidate.as_dict()))
    back = Candidate.from_dict(data)
    assert back.structure == seed.structure and back.params == candidate.params
    assert (
        back.parent_id == seed.id and data["chemsys"] == seed.structure.composition.chemical_system
    )


def test_malformed_user_seeds_are_dropped_with_their_reason(tmp_path):
    good = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    crushed = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    unbalanced = Structure(
        Lattice.cubic(4.0), ["Na", "F", "F"], [[0, 0, 0], [0.5] * 3, [0, 0.5, 0.5]]
    )
    # AFLOW's anatase prototype as pymatgen ships it: Ti 4-fold at 2.05 Å, not anatase.
    fake_anatase = Structure(
        Lattice.from_parameters(3.785, 3.785, 5.45822, 110.287118, 110.287118, 90),
        ["O", "O", "O", "O", "Ti", "Ti"],
        [
            [0.20806, 0.45806, 0.41612],
            [0.79194, 0.54194, 0.58388],
            [0.54194, 0.79194, 0.08388],
            [0.45806, 0.20806, 0.91612],
            [0.125, 0.875, 0.25],
            [0.875, 0.125, 0.75],
        ],
    )
    records = [
        {"id": name, "structure": structure.as_dict()}
        for name, structure in [
            ("NaCl", good),
            ("crushed", crushed),
            ("NaF2", unbalanced),
            ("fake-anatase", fake_anatase),
        ]
    ]
    (tmp_path / "mixed.json").write_text(json.dumps(records))
    dropped: list[tuple[str, str]] = []
    with pytest.warns(UserWarning, match="seed crushed dropped: atoms too close"):
        seeds = load_seeds(tmp_path / "mixed.json", dropped=dropped)
    assert [seed.id for seed in seeds] == ["NaCl"]
    reasons = dict(dropped)
    assert reasons["crushed"].startswith("atoms too close: Na-Cl 0.25 Å")
    assert reasons["NaF2"] == "not charge-balanced: no known oxidation states of NaF2 sum to zero"
    assert reasons["fake-anatase"].startswith("implausible coordination: Ti+4 has 4 neighbours")


def test_shipped_seeds_passed_the_sanity_check_and_list_what_was_dropped():
    with gzip.open(SHIPPED_SEEDS, "rt", encoding="utf-8") as handle:
        dropped = {record["id"]: record["reason"] for record in json.load(handle)["dropped"]}
    assert "implausible coordination: Ti+4" in dropped["aflow:A2B_tI12_141_e_a"]
    assert len(dropped) < 0.01 * len(load_seeds())
    ti_o = load_seeds(elements=["Ti", "O"])
    assert not {seed.id for seed in ti_o} & set(dropped)
    assert all(seed_problem(seed.structure) is None for seed in ti_o)
