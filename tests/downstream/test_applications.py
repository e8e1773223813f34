from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources

import pytest
import torch
from pymatgen.core import Composition, Lattice, Structure

from hullhunter.documents import Material, ScreenResult, structure_dict
from hullhunter.workflows.applications import (
    family_view,
    layered,
    li_ion_conductor_candidates,
    run_screen,
)
from hullhunter.workflows.conductors import closed_shell_states
from hullhunter.workflows.md import MDSettings


def test_layered_flags_van_der_waals_layers_not_3d_frameworks(mos2, cdi2, nacl, srtio3):
    records = layered([mos2, cdi2, nacl, srtio3], ids=["MoS2", "CdI2", "NaCl", "SrTiO3"])
    verdicts = {r.material_id: (r.passed, r.details["dimensionality"]) for r in records}
    assert verdicts == {
        "MoS2": (True, 2),
        "CdI2": (True, 2),
        "NaCl": (False, 3),
        "SrTiO3": (False, 3),
    }
    assert "3-D" in records[2].reasons[0]


def test_conductor_screen_ranks_survivors_and_says_why_others_fail(li2o, licoo2, nacl, li3n):
    records = li_ion_conductor_candidates(
        [li2o, licoo2, nacl, li3n, li2o],
        ids=["Li2O", "LiCoO2", "NaCl", "Li3N", "Li2O-unstable"],
        decomposition_energies=[0.0, 0.0, 0.0, 0.0, 0.05],
    )
    by_id = {r.material_id: r for r in records}
    assert [(r.material_id, r.details["rank"]) for r in records if r.passed] == [
        ("Li3N", 1),
        ("Li2O", 2),
    ]
    assert by_id["Li3N"].details["barrier_ev"] < by_id["Li2O"].details["barrier_ev"] < 1.0
    assert by_id["Li3N"].reasons[1] == "stage 1: Li fraction 0.750; closed-shell ionic (Li+1, N-3)"
    assert by_id["Li3N"].reasons[2].startswith("stage 2: BVSE percolation barrier")
    assert any("open-shell or redox-active: Co+3" in r for r in by_id["LiCoO2"].reasons)
    assert any("contains no Li" in reason for reason in by_id["NaCl"].reasons)
    assert any("unstable" in reason for reason in by_id["Li2O-unstable"].reasons)
    assert "barrier_ev" not in by_id["Li2O-unstable"].details


def test_disordered_and_unparameterised_inputs_get_reasons_while_the_batch_completes(li2o):
    """pymatgen's own Li10GeP2S12 has partial occupancies; BVSE has no Li-P3- parameters."""
    lgps_file = resources.files("pymatgen.util") / "structures" / "Li10GeP2S12.json"
    lgps = Structure.from_dict(json.loads(lgps_file.read_text()))
    li3p = Structure.from_spacegroup(
        "P6_3/mmc",
        Lattice.hexagonal(4.27, 7.59),
        ["P", "Li", "Li"],
        [[1 / 3, 2 / 3, 0.25], [0, 0, 0.25], [1 / 3, 2 / 3, 0.583]],
    )
    records = li_ion_conductor_candidates(
        [lgps, li3p, li2o], ids=["LGPS", "Li3P", "Li2O"], require_stable=False
    )
    by_id = {r.material_id: r for r in records}
    assert [r.material_id for r in records if r.passed] == ["Li2O"]
    assert by_id["LGPS"].reasons == [
        "stage 1: unscreenable: disordered (partial occupancies); order it first, e.g. with "
        "pymatgen's OrderDisorderedStructureTransformation"
    ]
    assert by_id["Li3P"].reasons[-1].startswith("stage 2: unscreenable: bvlain has no BVSE")


def test_md_stage_runs_only_for_the_top_of_the_ranking(li2o, li3n):
    """A deliberately too-short run: stage 3's verdict and reason land on the top record."""
    torch.set_num_threads(1)
    settings = MDSettings(
        duration_ps=0.02, equilibration_ps=0.0, sample_every=5, min_cell_width=3.0
    )
    records = li_ion_conductor_candidates(
        [li2o, li3n], ids=["Li2O", "Li3N"], require_stable=False, md_top=1, md_settings=settings
    )
    top, second = records
    assert (top.material_id, second.material_id) == ("Li3N", "Li2O")
    assert top.details["md"]["status"] == "failed"
    assert top.reasons[-1].startswith("stage 3: MD at 1000 K (custom profile): failed: too short")
    assert "md" not in second.details


def test_conductor_screen_without_stability_fails_unless_waived(li2o):
    assert not li_ion_conductor_candidates([li2o])[0].passed
    assert "stability unknown" in li_ion_conductor_candidates([li2o])[0].reasons[0]
    assert li_ion_conductor_candidates([li2o], require_stable=False)[0].passed


def test_chemistry_stage_admits_closed_shell_salts_and_fast_conductor_families():
    assert closed_shell_states(Composition("LiAl")) == (
        "wide-gap proxy fails: not charge-balanced in common oxidation states"
    )
    assert closed_shell_states(Composition("LiF")) == {"Li": 1.0, "F": -1.0}
    for formula in ("Li3N", "LiTi2P3O12", "Li7La3Zr2O12", "Li6PS5Cl", "Li3ErCl6", "Li10GeP2S12"):
        assert isinstance(closed_shell_states(Composition(formula)), dict), formula
    assert "Co+3" in closed_shell_states(Composition("LiCoO2"))


def test_bad_input_has_clear_errors(li2o):
    with pytest.raises(ValueError, match="1 materials but 2 ids"):
        layered([li2o], ids=["a", "b"])
    with pytest.raises(TypeError, match="pass pymatgen Structures"):
        layered(["Li2O"])
    with pytest.raises(ValueError, match="min_ion_fraction"):
        li_ion_conductor_candidates([li2o], min_ion_fraction=0.5, max_ion_fraction=0.2)


def test_family_view_orders_members_by_stability(li2o, licoo2, nacl):
    records = family_view(
        [li2o, licoo2, nacl], chemsys="Li-Co-O", decomposition_energies=[0.1, 0.0, None]
    )
    assert [(r.formula, r.passed) for r in records] == [
        ("LiCoO2", True),
        ("Li2O", True),
        ("NaCl", False),
    ]
    ternaries = family_view([li2o, licoo2], chemsys="Li-Co-O", only_full_system=True)
    assert [r.formula for r in ternaries if r.passed] == ["LiCoO2"]


def _material(campaign, material_id, structure, e_decomp):
    composition = structure.composition
    elements = sorted(el.symbol for el in composition.elements)
    return Material(
        material_id=material_id,
        campaign=campaign,
        formula=composition.reduced_formula,
        chemsys="-".join(elements),
        elements=elements,
        nelements=len(elements),
        structure=structure_dict(structure),
        energy_per_atom=-5.0,
        decomposition_energy=e_decomp,
        on_hull=e_decomp <= 0,
    )


def test_screens_run_on_campaign_documents(database, li2o, licoo2, nacl, mos2):
    for material_id, structure, e_decomp in [
        ("m1", li2o, 0.0),
        ("m2", licoo2, 0.0),
        ("m3", nacl, 0.0),
        ("m4", mos2, 0.02),
    ]:
        _material("demo", material_id, structure, e_decomp).save()
    _material("other", "m1", li2o, 0.0).save()

    conductors = run_screen("li_ion_conductor_candidates", "demo")
    assert [(r.material_id, r.passed) for r in conductors] == [
        ("m1", True),
        ("m2", False),
        ("m3", False),
        ("m4", False),
    ]
    family = run_screen("family_view", "demo", chemsys="Li-Co-O")
    assert sorted(r.formula for r in family) == ["Li2O", "LiCoO2"]
    assert [r.material_id for r in run_screen("layered", "demo") if r.passed] == ["m4"]
    assert ScreenResult.objects.count() == 0  # saved only when asked
    run_screen("li_ion_conductor_candidates", "demo", save=True, max_ion_fraction=0.9)
    saved = ScreenResult.objects.get(campaign="demo")
    assert (saved.screen, saved.n_screened, saved.n_passed) == ("li_ion_conductor_candidates", 4, 1)
    assert saved.params == {"max_ion_fraction": 0.9}
    assert [record["material_id"] for record in saved.passed] == ["m1"]
    with pytest.raises(ValueError, match="unknown screen"):
        run_screen("magnets", "demo")


def test_screen_and_finetune_commands(database, li2o, mos2):
    _material("cli", "m1", li2o, 0.0).save()
    _material("cli", "m2", mos2, 0.0).save()
    env = {**os.environ, "HULLHUNTER_TORCH_THREADS": "1"}  # db settings come from hh_settings

    def hullhunter(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "hullhunter", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env)

    screened = hullhunter("campaign", "screen", "cli", "layered")
    assert screened.returncode == 0, screened.stderr
    assert "layered: 1 of 2 materials passed (saved)" in screened.stdout
    assert ScreenResult.objects.get(campaign="cli", screen="layered").passed[0]["formula"] == "MoS2"
    unknown = hullhunter("campaign", "screen", "cli", "magnets")
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: unknown screen")
    empty = hullhunter("campaign", "finetune", "cli")
    assert empty.returncode == 1
    assert "has no stored relaxation trajectories" in empty.stderr
    assert "Traceback" not in empty.stderr
