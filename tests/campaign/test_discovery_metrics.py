"""Discovery figures on the real MongoDB: hit rates per selection kind, the screen's quality
over every labelled candidate, novelty classes against the known world, and the report."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure

from hullhunter.campaign_config import parse_config
from hullhunter.documents import Calculation, Campaign, Candidate, Material, chemsys_of
from hullhunter.generators import load_seeds
from hullhunter.workflows.report import write_report
from hullhunter.workflows.round import hull

ELEMENT_ENERGY = {"Mn": -9.0, "O": -4.9}  # eV/atom, the references' energies


def grid_structure(formula: str) -> Structure:
    """Any structure of ``formula``: atoms on a grid in a cube of ~12 A^3 per atom."""
    species = [str(el) for el, n in Composition(formula).items() for _ in range(int(n))]
    side = int(np.ceil(len(species) ** (1 / 3)))
    points = list(itertools.product(range(side), repeat=3))[: len(species)]
    lattice = Lattice.cubic((12.0 * len(species)) ** (1 / 3))
    return Structure(lattice, species, np.array(points) / side)


def energy_per_atom(structure: Structure, formation: float) -> float:
    """Total energy per atom of a Mn-O structure with the given formation energy."""
    composition = structure.composition.fractional_composition
    return sum(composition[el] * e for el, e in ELEMENT_ENERGY.items()) + formation


def add_result(name: str, cid: str, round_number: int, structure: Structure, formation: float):
    """A completed oracle calculation of ``structure``."""
    Calculation(
        candidate_id=cid,
        campaign=name,
        round=round_number,
        oracle="chgnet",
        state="completed",
        formula=structure.composition.reduced_formula,
        chemsys=chemsys_of(structure.composition),
        energy_per_atom=energy_per_atom(structure, formation),
        structure=structure.as_dict(),
    ).save()


def add_candidate(
    name: str,
    cid: str,
    round_number: int,
    structure: Structure,
    formation: float,
    kind: str,
    predicted: float,
):
    """The relaxed candidate behind a result: why it was picked and what the screen said."""
    Candidate(
        candidate_id=cid,
        campaign=name,
        round=round_number,
        structure=structure.as_dict(),
        formula=structure.composition.reduced_formula,
        chemsys="Mn-O",
        generator="substitution",
        predicted_energy_per_atom=energy_per_atom(structure, formation) + 0.01,
        predicted_decomposition_energy=predicted,
        status="relaxed",
        selected_as=kind,
    ).save()


@pytest.mark.slow
def test_round_metrics_keep_selection_kinds_apart_and_class_novelty(database, tmp_path):
    name = "figures"
    config = parse_config({"name": name, "chemical_space": {"systems": ["Mn-O"]}})
    Campaign(name=name, config=config.model_dump(mode="json")).save()
    # round 0: the reference hull Mn - MnO - O
    for cid, formula, formation in (("mn", "Mn", 0.0), ("o", "O2", 0.0), ("mno", "MnO", -0.375)):
        add_result(name, cid, 0, grid_structure(formula), formation)
    hull.update_hull(name, 0)

    # round 1: formation energies on -2x(1-x) (x: O fraction) are all below the reference
    # hull and all vertices of the new one; MnO3 lies far above it
    known_mno2 = next(s for s in load_seeds(elements=["Mn", "O"]) if s.formula == "MnO2")
    relaxed_mno2 = known_mno2.structure.copy()
    relaxed_mno2.scale_lattice(1.03 * relaxed_mno2.volume)  # the oracle moved it a little
    picks = [
        # id, structure, formation, kind, predicted decomposition energy
        ("mn7o9", grid_structure("Mn7O9"), -2 * 9 / 16 * 7 / 16, "screened", -0.10),
        ("mn2o3", grid_structure("Mn2O3"), -2 * 0.6 * 0.4, "screened", -0.05),
        ("mno2", relaxed_mno2, -2 * 2 / 3 * 1 / 3, "exploration", 0.30),
        ("mno3", grid_structure("MnO3"), 0.5, "exploration", 0.20),
    ]
    for cid, structure, formation, kind, predicted in picks:
        add_result(name, cid, 1, structure, formation)
        add_candidate(name, cid, 1, structure, formation, kind, predicted)
    _, metrics = hull.update_hull(name, 1)

    # 3 of 4 are hits, but the screen's picks and the random baseline differ
    assert metrics["hits"] == 3 and metrics["hit_rate"] == 0.75
    assert metrics["selection"]["screened"] == {"accepted": 2, "hits": 2, "hit_rate": 1.0}
    assert metrics["selection"]["exploration"] == {"accepted": 2, "hits": 1, "hit_rate": 0.5}
    assert metrics["selection"]["compositional"]["accepted"] == 0
    assert metrics["screened_hit_rate"] == 1.0 and metrics["exploration_hit_rate"] == 0.5
    assert metrics["enrichment"] == 2.0
    # the screen's call graded on every labelled candidate: the exploration hit it called
    # unstable (MnO2, predicted +300 meV) is a miss that the screened picks alone would hide
    screening = metrics["screening"]
    assert (screening["tp"], screening["fp"], screening["fn"], screening["tn"]) == (2, 0, 1, 1)
    assert screening["recall"] == pytest.approx(2 / 3) and screening["precision"] == 1.0
    assert screening["daf"] == pytest.approx(1.0 / 0.75)

    materials = {m.material_id: m for m in Material.objects(campaign=name)}
    assert materials["mn7o9"].novelty == "novel"  # composition known nowhere
    assert materials["mn7o9"].known_in == []
    # known to MP only by composition: never novel, and no structure to call it rediscovered
    assert materials["mn2o3"].novelty == "new_polymorph"
    assert any(source.startswith("mp ") for source in materials["mn2o3"].known_in)
    assert materials["mno2"].novelty == "rediscovered"  # a shipped crystal, relaxed
    assert materials["mno2"].novelty_match == known_mno2.id
    assert "mno3" not in materials
    assert all(materials[cid].novelty is None for cid in ("mn", "o", "mno"))  # seeds
    assert metrics["novelty"] == {"novel": 1, "new_polymorph": 1, "rediscovered": 1}
    novel = Material.objects(campaign=name, novelty="novel", on_hull=True)
    assert [m.formula for m in novel] == ["Mn7O9"]

    # round 2: the screen's pick and the exploration pick both miss; all rounds together the
    # screened picks hit 2 of 3 and exploration 1 of 3
    for cid, formula, formation, kind, predicted in (
        ("mn3o5", "Mn3O5", 0.2, "screened", -0.02),
        ("mno4", "MnO4", 0.3, "exploration", 0.40),
    ):
        structure = grid_structure(formula)
        add_result(name, cid, 2, structure, formation)
        add_candidate(name, cid, 2, structure, formation, kind, predicted)
    _, metrics = hull.update_hull(name, 2)
    assert [metrics["selection"][kind]["hits"] for kind in ("screened", "exploration")] == [0, 0]
    assert metrics["enrichment"] is None  # exploration found nothing: no ratio
    assert metrics["cumulative_selection"]["screened"] == {
        "accepted": 3, "hits": 2, "hit_rate": pytest.approx(2 / 3)
    }  # fmt: skip
    assert metrics["cumulative_selection"]["exploration"]["hit_rate"] == pytest.approx(1 / 3)
    assert metrics["cumulative_enrichment"] == pytest.approx(2.0)
    everything = metrics["cumulative_screening"]
    assert (everything["tp"], everything["fp"], everything["fn"], everything["tn"]) == (2, 1, 1, 2)
    assert metrics["novelty"] == {"novel": 0, "new_polymorph": 0, "rediscovered": 0}

    summary = write_report(name, tmp_path / "report").read_text()
    assert "All rounds so far: screened hits 2/3 (67%), exploration hits 1/3 (33%)" in summary
    row = next(line for line in summary.splitlines() if line.startswith("| 1 |"))  # round 1
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[6:10] == ["2/2 (100%)", "1/2 (50%)", "–", "2.0×"]
    assert cells[11:14] == ["100%", "67%", "1 / 1 / 1"]
    for figure in ("selection_hit_rate.png", "model_error.png", "novelty.png"):
        assert (tmp_path / "report" / figure).stat().st_size > 1000
