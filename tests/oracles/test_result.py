"""OracleResult round trips and the input checks every oracle applies."""

from __future__ import annotations

import json

import pytest
from pymatgen.core import Lattice, Structure

from hullhunter.workflows.oracles import OracleResult, get_oracle, structure_problem
from hullhunter.workflows.oracles.result import check_ids


def rock_salt() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def finished(structure: Structure) -> OracleResult:
    return OracleResult(
        candidate_id="cand-1",
        formula="NaCl",
        energy_per_atom=-3.5,
        energy=-3.5 * len(structure),
        structure=structure,
        converged=True,
        n_steps=12,
        wall_time_s=1.5,
        oracle="chgnet",
        oracle_version="chgnet 0.4.2 model 0.3.0",
        corrections=[{"handler": "VaspErrorHandler", "errors": ["zbrent"]}],
        directory="/tmp/x",
    )


def test_round_trip_through_json_keeps_every_field() -> None:
    result = finished(rock_salt())
    restored = OracleResult.from_dict(json.loads(json.dumps(result.as_dict())))
    assert restored.structure == result.structure
    assert restored.as_dict() == result.as_dict()
    assert restored.corrections == result.corrections


def test_entry_carries_candidate_id_and_energy_unchanged() -> None:
    structure = rock_salt()
    entry = finished(structure).to_entry()
    assert entry.entry_id == "cand-1"
    assert entry.energy == pytest.approx(-3.5 * len(structure))
    assert entry.correction == 0.0
    assert entry.structure == structure


def test_failed_result_has_no_entry() -> None:
    failed = OracleResult.failed(
        "bad", rock_salt(), "boom", oracle="vasp", oracle_version="x", directory="/tmp/bad"
    )
    assert not failed.ok
    assert failed.formula == "NaCl"
    assert OracleResult.from_dict(failed.as_dict()).error == "boom"
    with pytest.raises(ValueError, match="no energy"):
        failed.to_entry()


def test_close_atoms_across_the_periodic_boundary_are_caught() -> None:
    structure = Structure(Lattice.cubic(10.0), ["Na", "Cl"], [[0.0, 0, 0], [0.99, 0, 0]])
    problem = structure_problem(structure)
    assert problem is not None
    assert "closer than 0.5" in problem
    assert "0.100" in problem
    assert structure_problem(rock_salt()) is None


def test_uncovered_elements_are_named() -> None:
    problem = structure_problem(rock_salt(), known_elements={"Na"})
    assert problem == "element(s) Cl not covered by this oracle"


def test_ids_must_pair_with_structures() -> None:
    with pytest.raises(ValueError, match="2 structures but 1 ids"):
        check_ids([rock_salt(), rock_salt()], ["a"])
    with pytest.raises(ValueError, match="repeat"):
        check_ids([rock_salt(), rock_salt()], ["a", "a"])


def test_get_oracle_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown oracle 'mace'"):
        get_oracle("mace")
