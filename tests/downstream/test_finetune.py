from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from ase.calculators.emt import EMT
from pymatgen.core import Lattice, Structure

from hullhunter.documents import ModelVersion
from hullhunter.frames import Frame, frames_from_bytes, frames_to_bytes
from hullhunter.models import composition_hash_split
from hullhunter.workflows.finetune import (
    chgnet_calculator,
    compare_models,
    evaluate,
    finetune_chgnet,
    format_comparison,
    gnome_sample,
    pretrained_chgnet,
    record_relaxations,
    split_trajectories,
)
from hullhunter.workflows.learned_potential import (
    campaign_trajectories,
    finetune_campaign,
    load_potential,
)
from hullhunter.workflows.oracles import OracleResult
from hullhunter.workflows.report import _learned_potential as report_section
from hullhunter.workflows.round.relax import save_calculation

FCC = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]


def _alloy(first: str, second: str, n_first: int, seed: int) -> Structure:
    """A rattled 4-atom fcc cell of an EMT-described alloy."""
    structure = Structure(Lattice.cubic(3.75), [first] * n_first + [second] * (4 - n_first), FCC)
    structure.perturb(0.2, min_distance=0.1, seed=seed)
    return structure


@pytest.fixture(scope="module")
def emt_trajectories() -> list[list[Frame]]:
    """Relaxation frames labelled by ASE's EMT, a real (effective-medium) potential.

    EMT stands in for an oracle other than CHGNet: fine-tuning must move CHGNet towards the
    oracle's labels, which CHGNet's own labels could not test (their error is zero).
    """
    systems = [("Cu", "Au", 3), ("Cu", "Au", 2), ("Cu", "Ni", 3), ("Ni", "Cu", 2), ("Cu", "Pd", 3)]
    structures = [_alloy(a, b, n, seed) for seed, (a, b, n) in enumerate(systems)]
    return record_relaxations(structures, calculator=EMT(), fmax=0.05, max_steps=10)


def test_recorder_keeps_every_step_with_oracle_labels(emt_trajectories):
    first = emt_trajectories[0]
    assert len(first) >= 5
    assert [f.step for f in first] == list(range(len(first)))
    atoms = first[0].structure.to_ase_atoms()
    atoms.calc = EMT()
    assert first[0].energy_per_atom == pytest.approx(atoms.get_potential_energy() / 4)
    np.testing.assert_allclose(first[0].forces, atoms.get_forces(), atol=1e-8)
    assert np.abs(first[0].forces).max() > np.abs(first[-1].forces).max()


@pytest.mark.slow
def test_chgnet_recorder_labels_agree_with_chgnet():
    structure = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.61), ["Li", "O"], [[0.25, 0.25, 0.25], [0, 0, 0]]
    )
    structure.perturb(0.1, seed=1)
    (trajectory,) = record_relaxations([structure], ids=["Li2O"], max_steps=3)
    assert trajectory[0].trajectory_id == "Li2O"
    errors = evaluate(pretrained_chgnet(), trajectory)
    assert errors["force_mae_ev_per_a"] < 1e-4
    assert errors["stress_mae_gpa"] < 1e-3
    assert errors["energy_mae_ev_per_atom"] < 1e-5


def test_frames_round_trip_through_bytes(emt_trajectories):
    frames = [f for t in emt_trajectories[:2] for f in t]
    back = frames_from_bytes(frames_to_bytes(frames))
    assert len(back) == len(frames)
    for original, copy in zip(frames, back, strict=True):
        assert copy.structure == original.structure
        assert copy.energy_per_atom == original.energy_per_atom
        np.testing.assert_array_equal(copy.forces, original.forces)
        np.testing.assert_array_equal(copy.stress, original.stress)
        assert (copy.trajectory_id, copy.step) == (original.trajectory_id, original.step)


def test_split_follows_composition_hash(emt_trajectories):
    train, heldout = split_trajectories(emt_trajectories)
    expected = composition_hash_split([t[0].formula for t in emt_trajectories])
    assert len(train) == int(expected.sum()) and len(heldout) == int((~expected).sum())
    assert {t[0].formula for t in train}.isdisjoint({t[0].formula for t in heldout})


def test_gnome_sample_mixes_first_steps_and_all_steps(emt_trajectories):
    sample = gnome_sample(emt_trajectories, 40, first_step_fraction=0.5, seed=3)
    assert len(sample) == 40
    assert sum(f.step == 0 for f in sample[:20]) == 20
    assert any(f.step > 0 for f in sample[20:])
    with pytest.raises(ValueError, match="first_step_fraction"):
        gnome_sample(emt_trajectories, 4, first_step_fraction=1.5)
    with pytest.raises(ValueError, match="no frames"):
        gnome_sample([], 4)


@pytest.mark.slow
def test_finetuning_lowers_heldout_errors(emt_trajectories, tmp_path):
    torch.set_num_threads(1)
    train, heldout = split_trajectories(emt_trajectories)
    assert train and heldout
    heldout_frames = [f for t in heldout for f in t]
    result = finetune_chgnet(
        gnome_sample(train, 24),
        epochs=3,
        batch_size=8,
        learning_rate=3e-3,
        save_path=tmp_path / "chgnet.pt",
    )
    comparison = compare_models(heldout_frames, result.model)
    assert (
        comparison["finetuned"]["force_mae_ev_per_a"]
        < comparison["pretrained"]["force_mae_ev_per_a"]
    )
    assert (
        comparison["finetuned"]["energy_mae_ev_per_atom"]
        < comparison["pretrained"]["energy_mae_ev_per_atom"]
    )
    losses = result.history["f"]["train"]
    assert losses[-1] < losses[0]
    reloaded = chgnet_calculator(tmp_path / "chgnet.pt").model
    assert evaluate(reloaded, heldout_frames[:2]) == evaluate(result.model, heldout_frames[:2])


def _as_result(trajectory: list[Frame]) -> OracleResult:
    last = trajectory[-1]
    return OracleResult(
        candidate_id=last.trajectory_id,
        formula=last.formula,
        energy_per_atom=last.energy_per_atom,
        energy=last.energy_per_atom * len(last.structure),
        structure=last.structure,
        converged=True,
        n_steps=len(trajectory) - 1,
        wall_time_s=0.0,
        oracle="emt",
        oracle_version="ase",
        frames=trajectory,
    )


def test_trajectories_whose_last_frame_is_not_their_result_are_skipped_and_counted(
    database, emt_trajectories
):
    good, bad = emt_trajectories[:2]
    save_calculation("mixed", 1, _as_result(good))
    wrong = _as_result(bad)
    # as VASP 5.x step energies were before their repair: the frames are off, the result is not
    wrong.frames = [replace(f, energy_per_atom=f.energy_per_atom + 3.4) for f in bad]
    save_calculation("mixed", 1, wrong)

    kept, skipped = campaign_trajectories("mixed")
    assert [t[0].trajectory_id for t in kept] == [good[0].trajectory_id]
    assert skipped == {bad[0].trajectory_id: len(bad)}
    with pytest.raises(ValueError, match=r"no stored relaxation trajectories.*\(0 skipped\)"):
        finetune_campaign("other")


@pytest.mark.slow
def test_campaign_finetunes_on_its_stored_trajectories(database, emt_trajectories):
    torch.set_num_threads(1)
    for trajectory in emt_trajectories:
        save_calculation("alloys", 1, _as_result(trajectory))
    stored, skipped = campaign_trajectories("alloys")
    assert skipped == {}
    assert sorted(t[0].trajectory_id for t in stored) == sorted(
        t[0].trajectory_id for t in emt_trajectories
    )
    report = finetune_campaign("alloys", n_frames=24, epochs=3, learning_rate=3e-3)
    assert report["version"] == 1
    errors = report["comparison"]
    assert errors["finetuned"]["force_mae_ev_per_a"] < errors["pretrained"]["force_mae_ev_per_a"]
    saved = ModelVersion.objects.get(campaign="alloys", kind="potential")
    assert saved.metrics["comparison"] == errors
    section = "\n".join(report_section("alloys"))
    assert "## Learned potential (version 1)" in section
    assert format_comparison(errors) in section
    _, heldout = split_trajectories(stored)
    heldout_frames = [f for t in heldout for f in t]
    reloaded = evaluate(load_potential("alloys"), heldout_frames)
    assert reloaded["force_mae_ev_per_a"] == pytest.approx(
        errors["finetuned"]["force_mae_ev_per_a"], rel=1e-5
    )
    with pytest.raises(LookupError, match="hullhunter campaign finetune other"):
        load_potential("other")
    with pytest.raises(ValueError, match="no stored relaxation trajectories"):
        finetune_campaign("other")
