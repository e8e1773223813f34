"""The CP2K oracle against the real CP2K binary: relaxations, custodian fixes, walltime resume.

Every test that runs CP2K uses a 2-atom silicon cell at cheap settings (150 Ry, about 50
k-points per reciprocal atom): each CP2K run takes 10-60 s on one core. CP2K is installed with
apt-get by the ``cp2k`` fixture when it is missing (root only); without it these tests skip
with the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cp2k.outputs import Cp2kOutput

from hullhunter.workflows.oracles import get_oracle
from hullhunter.workflows.oracles.cp2k import (
    Cp2kSetupError,
    basis_and_potential,
    kpoint_mesh,
    spin_polarised,
)
from hullhunter.workflows.oracles.cp2k_output import read_trajectory
from hullhunter.workflows.oracles.registry import oracle_section

CHEAP = {"cutoff": 150, "rel_cutoff": 20, "kpoint_density": 50}


def silicon(a: float = 5.47, shift: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Structure:
    """Diamond silicon's 2-atom primitive cell, lattice ``a`` (Å), first atom moved by ``shift``."""
    cell = Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    structure = Structure(cell, ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    structure.translate_sites([0], shift, frac_coords=False)
    return structure


def test_basis_and_potential_pair_valences(cp2k_data: Path) -> None:
    """Each element gets a MOLOPT basis and a GTH-PBE potential with the same valence."""
    setting = basis_and_potential(["Na", "Cl", "Fe", "Si"], cp2k_data)
    for element in ("Na", "Cl", "Fe", "Si"):
        basis, potential = setting[element]["basis"], setting[element]["potential"]
        assert basis.startswith("DZVP-MOLOPT") and potential.startswith("GTH-PBE-q")
        assert basis.rsplit("-", 1)[1] == potential.rsplit("-", 1)[1]
    assert setting["Si"]["potential"] == "GTH-PBE-q4"
    assert Path(setting["potential_filename"]).is_absolute()


def test_missing_data_and_binary_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(Cp2kSetupError, match="set cp2k_data_dir") as missing_data:
        basis_and_potential(["Si"], tmp_path)
    assert "\n" not in str(missing_data.value)
    oracle = get_oracle("cp2k", cp2k_cmd="no-such-cp2k.psmp", root_dir=tmp_path)
    with pytest.raises(Cp2kSetupError, match="set cp2k_cmd") as missing_binary:
        oracle.relax([silicon()], ["si"])
    assert "\n" not in str(missing_binary.value)


def test_kpoint_mesh_is_odd_and_spin_follows_mp() -> None:
    mesh = kpoint_mesh(silicon(), 1000)
    divisions = mesh.kpts[0]
    assert all(n % 2 == 1 for n in divisions) and len(set(divisions)) == 1
    assert not spin_polarised(silicon())
    iron = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert spin_polarised(iron)


def test_campaign_section_refuses_unknown_handlers() -> None:
    section = oracle_section({"name": "cp2k", "cp2k_cutoff": 300})
    assert section.cp2k_cutoff == 300
    unknown = r"unknown custodian handler\(s\) VaspErrorHandler; choose from StdErrHandler"
    with pytest.raises(ValueError, match=unknown):
        oracle_section({"name": "cp2k", "cp2k_handlers": ["VaspErrorHandler"]})
    with pytest.raises(ValueError, match="only apply to the cp2k oracle"):
        oracle_section({"name": "chgnet", "cp2k_cutoff": 300})


def test_relaxation_fixed_by_a_custodian_handler_converges(cp2k: str, tmp_path: Path) -> None:
    """Too few optimisation steps (an injected fault): custodian's UnconvergedRelaxation
    handler switches the optimiser and raises the limit; the relaxation then converges."""
    oracle = get_oracle(
        "cp2k",
        root_dir=tmp_path,
        maker="relax",
        user_input_settings={"override_default_params": {"MOTION": {"GEO_OPT": {"MAX_ITER": 2}}}},
        **CHEAP,
    )
    (result,) = oracle.relax([silicon(shift=(0.03, 0.02, -0.02))], ["si-displaced"])
    assert result.ok and result.converged, result.error
    fixes = [c for c in result.corrections if c["handler"] == "UnconvergedRelaxationErrorHandler"]
    assert fixes and fixes[0]["errors"] == ["Unsuccessful relaxation"]
    assert np.isfinite(result.energy_per_atom)
    frames = result.frames
    assert len(frames) >= 2
    assert all(np.isfinite(f.forces).all() and f.forces.shape == (2, 3) for f in frames)
    assert frames[-1].energy_per_atom == pytest.approx(result.energy_per_atom)
    assert frames[-1].energy_per_atom < frames[0].energy_per_atom
    # the displaced atom was pushed back: forces fall from the first step to the last
    assert np.abs(frames[-1].forces).max() < 0.1 < np.abs(frames[0].forces).max()


def test_unconvergeable_candidate_is_a_failed_result_with_its_history(
    cp2k: str, tmp_path: Path
) -> None:
    oracle = get_oracle(
        "cp2k",
        root_dir=tmp_path,
        maker="relax",
        max_errors=1,
        user_input_settings={"override_default_params": {"MOTION": {"GEO_OPT": {"MAX_ITER": 1}}}},
        **CHEAP,
    )
    unknown = Structure(Lattice.cubic(3.0), ["Og"], [[0, 0, 0]])
    failed, uncovered = oracle.relax([silicon(shift=(0.05, 0.0, 0.0)), unknown], ["si-stuck", "og"])
    assert not failed.ok and failed.energy is None
    assert "\n" not in failed.error
    assert [c["handler"] for c in failed.corrections] == ["UnconvergedRelaxationErrorHandler"]
    assert not uncovered.ok and "Og" in uncovered.error


def test_walltime_stop_resumes_from_the_last_structure(cp2k: str, tmp_path: Path) -> None:
    """A cell optimisation stopped by CP2K's walltime continues, in a second batch, from the
    last step it reached; the cubic cell stays cubic (full k-point mesh) and relaxes.

    CP2K's speed here is unknown (a loaded machine is several times slower), so the first
    batch gets 15 s of CP2K walltime, then 30, 60, 120 s until it stops after at least one
    optimisation step."""
    strained = silicon(a=5.2)
    buffer_s = 10  # a candidate starts only with twice this left
    for cp2k_seconds in (15, 30, 60, 120):
        name = f"si-strained-{cp2k_seconds}"
        stopped = get_oracle(
            "cp2k",
            root_dir=tmp_path,
            wall_time_s=cp2k_seconds + buffer_s,
            walltime_buffer_s=buffer_s,
            **CHEAP,
        )
        (first,) = stopped.relax([strained], [name])
        assert not first.ok, "the optimisation finished inside the walltime: make it longer"
        assert "walltime" in first.error
        (job,) = Path(tmp_path, name).glob("job_*")
        reached = read_trajectory(job, name)
        if reached:
            break
    assert reached, "CP2K never reached its first optimisation step in 120 s"

    (second,) = get_oracle("cp2k", root_dir=tmp_path, **CHEAP).relax([strained], [name])
    assert second.ok and second.converged, second.error
    (resumed,) = set(Path(tmp_path, name).glob("job_*")) - {job}
    output = Cp2kOutput(resumed / "cp2k.out", auto_load=False)
    output.parse_initial_structure()
    start = output.initial_structure
    assert start.lattice.abc == pytest.approx(reached[-1].structure.lattice.abc, abs=1e-4)
    relaxed = second.structure.lattice
    assert relaxed.volume > strained.volume * 1.05
    assert max(relaxed.abc) - min(relaxed.abc) < 0.01 * relaxed.a
    assert relaxed.angles == pytest.approx((60, 60, 60), abs=0.5)
    stress = second.frames[-1].stress
    assert np.abs(stress).max() < 1.0  # GPa: relaxed


def test_cp2k_started_through_mpi_gives_the_serial_energy(
    cp2k: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cp2k_cmd`` may start CP2K through MPI, as a cluster does (``srun cp2k.psmp``): two
    mpirun ranks relax the cell to the serial run's energy."""
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT", "1")  # OpenMPI refuses root without both
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    structure = silicon(shift=(0.03, 0.0, 0.0))
    results = {}
    for name, command in (("serial", cp2k), ("mpi", f"mpirun --oversubscribe -np 2 {cp2k}")):
        oracle = get_oracle(
            "cp2k", root_dir=tmp_path / name, maker="relax", cp2k_cmd=command, **CHEAP
        )
        (results[name],) = oracle.relax([structure], ["si"])
        assert results[name].ok and results[name].converged, results[name].error
    (output,) = (tmp_path / "mpi").glob("si/job_*/cp2k.out")
    ranks = [
        line for line in output.read_text().splitlines() if "message passing processes" in line
    ]
    assert ranks and ranks[0].split()[-1] == "2"
    assert results["mpi"].energy_per_atom == pytest.approx(
        results["serial"].energy_per_atom, abs=1e-4
    )


def test_cell_optimisation_out_of_steps_is_unconverged_with_its_energy(
    cp2k: str, tmp_path: Path
) -> None:
    """A cell optimisation that stops at MAX_ITER keeps its steps: an unconverged result with
    an energy and frames (custodian's Cp2kOutputValidator failed it, throwing them away)."""
    oracle = get_oracle(
        "cp2k",
        root_dir=tmp_path,
        user_input_settings={"override_default_params": {"MOTION": {"CELL_OPT": {"MAX_ITER": 1}}}},
        **CHEAP,
    )
    (result,) = oracle.relax([silicon(a=5.2)], ["si-strained"])
    assert result.ok and not result.converged, result.error
    assert np.isfinite(result.energy_per_atom) and len(result.frames) == 1
    assert result.frames[-1].energy_per_atom == pytest.approx(result.energy_per_atom)
