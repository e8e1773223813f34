"""The VASP path end to end: atomate2 writes inputs, custodian runs the emulator as vasp_std,
handlers fix injected faults, emmet parses, MP2020 corrections are applied."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from ase.units import GPa
from atomate2.vasp.flows.mp import MPGGADoubleRelaxMaker
from atomate2.vasp.jobs.mp import MPGGARelaxMaker
from atomate2.vasp.powerups import update_user_incar_settings
from custodian.vasp.handlers import FrozenJobErrorHandler
from jobflow import run_locally
from pymatgen.core import Lattice, Structure
from pymatgen.entries.compatibility import MaterialsProject2020Compatibility
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.vasp import Incar, Kpoints, Poscar, Potcar, Vasprun

from hullhunter.settings import get_settings
from hullhunter.workflows.oracles import ForceFieldOracle, VaspNotFoundError, VaspOracle, get_oracle
from hullhunter.workflows.oracles.vasp_custodian import (
    HANDLERS,
    parse_slurm_time,
    slurm_remaining_seconds,
)

FROZEN_TIMEOUT_S = 8  # longer than the emulator's start-up, so only a real freeze trips it


def manganese_oxide() -> Structure:
    """Rock-salt MnO, compressed: a GGA+U oxide, so MP2020 applies U and anion corrections."""
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.3), ["Mn", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def rock_salt_nacl(a: float = 5.3) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def wurtzite_zno() -> Structure:
    return Structure.from_spacegroup(
        "P6_3mc",
        Lattice.hexagonal(3.25, 5.21),
        ["Zn", "O"],
        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]],
    )


@pytest.fixture
def emulated_vasp(
    potcars: Path, emulator_cmd: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict:
    """Oracle settings that run the emulator through custodian with quick polling."""
    monkeypatch.setenv("HULLHUNTER_VASP_EMULATOR_STATE", str(tmp_path / "emulator-runs"))
    monkeypatch.delenv("HULLHUNTER_VASP_EMULATOR_FAULTS", raising=False)
    handlers = [name for name in HANDLERS if name != "FrozenJobErrorHandler"]
    return {
        "vasp_cmd": emulator_cmd,
        "vasp_gamma_cmd": emulator_cmd,
        "root_dir": tmp_path / "runs",
        "handlers": [*handlers, FrozenJobErrorHandler(timeout=FROZEN_TIMEOUT_S)],
        "custodian_kwargs": {"polling_time_step": 0.2, "monitor_freq": 5},
    }


def job_folders(result_directory: str) -> list[Path]:
    """The candidate's atomate2 job folders in run order (names start with a timestamp)."""
    return sorted(p for p in Path(result_directory).iterdir() if p.name.startswith("job_"))


@pytest.mark.slow
def test_double_relaxation_survives_four_faults_and_is_mp2020_corrected(
    emulated_vasp: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HULLHUNTER_VASP_EMULATOR_FAULTS", "zbrent,brmix,frozen,unconverged")
    monkeypatch.setenv("HULLHUNTER_VASP_EMULATOR_VERSION", "5.4.4")  # step e_0_energy of 0.0
    crowded = Structure(Lattice.cubic(5.0), ["Mn", "O"], [[0, 0, 0], [0.05, 0, 0]])
    seen = []
    oracle = get_oracle("vasp", **emulated_vasp)
    results = oracle.relax([manganese_oxide(), crowded], ["mno", "crowded"], on_result=seen.append)

    assert [r.candidate_id for r in seen] == ["mno", "crowded"]
    mno, failed = results
    assert mno.ok, mno.error
    assert mno.converged
    fixed = {(c["handler"], err) for c in mno.corrections for err in c["errors"]}
    assert fixed == {
        ("VaspErrorHandler", "zbrent"),
        ("VaspErrorHandler", "brmix"),
        ("FrozenJobErrorHandler", "Frozen job"),
        ("UnconvergedErrorHandler", "Unconverged"),
    }
    first, second = job_folders(mno.directory)
    incar = Incar.from_file(first / "INCAR.orig.gz")  # as atomate2 wrote it, before fixes
    assert (incar["ENCUT"], incar["ISPIN"], incar["LDAU"]) == (520, 2, True)
    assert all(m > 0 for m in incar["MAGMOM"])  # ferromagnetic start
    assert dict(zip(["Mn", "O"], incar["LDAUU"], strict=True)) == {"Mn": 3.9, "O": 0}
    assert len(list(first.glob("error.*.tar.gz"))) == 4
    assert not list(second.glob("error.*"))

    final = Vasprun(second / "vasprun.xml.gz")
    raw = final.get_computed_entry(inc_structure=True)
    corrected = MaterialsProject2020Compatibility().process_entry(raw, inplace=False)
    assert raw.parameters["run_type"] == "GGA+U"
    assert mno.energy_per_atom == pytest.approx(corrected.energy_per_atom)
    assert mno.energy_per_atom < raw.uncorrected_energy_per_atom - 0.5  # U and oxide corrections
    assert mno.structure.lattice.abc == pytest.approx(final.final_structure.lattice.abc)
    assert mno.n_steps == len(Vasprun(first / "vasprun.xml.gz").ionic_steps) + len(
        final.ionic_steps
    )
    assert mno.to_entry().entry_id == "mno"
    assert mno.frames[-1].energy_per_atom == pytest.approx(mno.energy_per_atom, abs=1e-6)

    assert "closer than 0.5" in failed.error
    assert not (Path(emulated_vasp["root_dir"]) / "crowded").exists()


@pytest.mark.slow
def test_walltime_stop_is_recorded_and_the_rerun_continues_from_contcar(
    emulated_vasp: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    structure = wurtzite_zno()
    structure.scale_lattice(structure.volume * 1.15)
    # From its 4th ionic step OUTCAR says a step takes 250 s: with 700 s of allocation left,
    # custodian's WalltimeHandler must stop VASP (STOPCAR) rather than risk three more.
    monkeypatch.setenv("HULLHUNTER_VASP_EMULATOR_LOOP_SECONDS", "250")
    monkeypatch.setenv("HULLHUNTER_VASP_EMULATOR_SLOW_FROM_STEP", "4")
    monkeypatch.setenv("HULLHUNTER_VASP_EMULATOR_STEP_DELAY", "0.3")
    quick_monitors = {"polling_time_step": 0.2, "monitor_freq": 1}
    settings = {**emulated_vasp, "custodian_kwargs": quick_monitors}
    (stopped,) = VaspOracle(**settings, wall_time_s=700).relax([structure], ["zno"])

    assert stopped.error.startswith("stopped by the walltime")
    assert ("WalltimeHandler", "Walltime reached") in {
        (c["handler"], error) for c in stopped.corrections for error in c["errors"]
    }
    stopped_runs = job_folders(stopped.directory)
    # the second relaxation does not start once the first was stopped by the walltime
    assert [len(Vasprun(run / "vasprun.xml.gz").ionic_steps) for run in stopped_runs] == [4]
    last_contcar = Poscar.from_file(stopped_runs[-1] / "CONTCAR.gz").structure
    assert last_contcar.volume != pytest.approx(structure.volume, rel=1e-3)

    for variable in ("LOOP_SECONDS", "SLOW_FROM_STEP", "STEP_DELAY"):
        monkeypatch.delenv(f"HULLHUNTER_VASP_EMULATOR_{variable}")
    (finished,) = VaspOracle(**emulated_vasp).relax([structure], ["zno"])

    assert finished.ok and finished.converged, finished.error
    first_rerun = next(p for p in job_folders(finished.directory) if p not in stopped_runs)
    started_from = Poscar.from_file(first_rerun / "POSCAR.orig.gz").structure
    assert started_from.lattice.abc == pytest.approx(last_contcar.lattice.abc, rel=1e-5)
    assert Kpoints.from_file(first_rerun / "KPOINTS.gz").style == Kpoints.supported_modes.Gamma


@pytest.mark.parametrize("vasp_version", ["6.4.2", "5.4.4"])
def test_frames_are_every_ionic_step_labelled_as_the_emulator_computed_them(
    emulated_vasp: dict,
    emulator_module: ModuleType,
    vasp_version: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # VASP 5.x writes every ionic step's e_0_energy as 0.0: the frames must not care
    monkeypatch.setenv("HULLHUNTER_VASP_EMULATOR_VERSION", vasp_version)
    structure = rock_salt_nacl()
    structure.perturb(0.1, seed=3)
    (result,) = VaspOracle(**emulated_vasp).relax([structure], ["nacl"])
    assert result.ok and result.converged, result.error

    runs = [Vasprun(run / "vasprun.xml.gz") for run in job_folders(result.directory)]
    assert len(runs) == 2
    assert [frame.step for frame in result.frames] == list(range(result.n_steps))
    assert result.n_steps == sum(len(run.ionic_steps) for run in runs) > 2
    assert {frame.trajectory_id for frame in result.frames} == {"nacl"}
    first_leg = result.frames[: len(runs[0].ionic_steps)]
    assert first_leg[0].structure.lattice.abc == pytest.approx(structure.lattice.abc)
    assert result.frames[-1].structure.lattice.abc == pytest.approx(result.structure.lattice.abc)

    raw = runs[-1].get_computed_entry()
    correction = MaterialsProject2020Compatibility().process_entry(raw).correction_per_atom
    assert correction < -0.1  # chloride anion correction
    assert result.frames[-1].energy_per_atom == pytest.approx(result.energy_per_atom)
    morse = emulator_module.MorseCalculator()
    for frame in result.frames:
        atoms = AseAtomsAdaptor.get_atoms(frame.structure)
        atoms.calc = morse
        energy_per_atom = atoms.get_potential_energy() / len(atoms) + correction
        assert frame.energy_per_atom == pytest.approx(energy_per_atom, abs=1e-5)
        assert frame.forces == pytest.approx(atoms.get_forces(), abs=1e-4)
        # ASE's sign (positive = tensile) in GPa, as CHGNet's frames
        assert frame.stress == pytest.approx(atoms.get_stress(voigt=False) / GPa, abs=1e-3)


def test_candidates_with_the_same_error_each_get_the_first_correction(
    emulated_vasp: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # runs: a relax1 (BRMIX), its rerun, b relax2; b relax1 (BRMIX), its rerun, b relax2
    monkeypatch.setenv("HULLHUNTER_VASP_EMULATOR_FAULTS", "brmix,none,none,brmix,none,none")
    oracle = VaspOracle(**emulated_vasp)
    results = oracle.relax([rock_salt_nacl(5.5), rock_salt_nacl(5.7)], ["a", "b"])
    assert all(r.ok for r in results), [r.error for r in results]

    first_fixes = [
        [(c["handler"], c["errors"], c["actions"]) for c in r.corrections] for r in results
    ]
    assert len(first_fixes[0]) == 1 and first_fixes[0][0][1] == ["brmix"]
    assert first_fixes[1] == first_fixes[0]  # not the next tier of BRMIX fixes


def test_relaxation_cut_by_the_step_limit_is_unconverged_with_its_energy(
    emulated_vasp: dict,
) -> None:
    structure = rock_salt_nacl(5.9)
    strict = {"NSW": 3, "EDIFFG": -0.0001}
    # without UnconvergedErrorHandler, which would otherwise restart the runs until max_errors
    handlers = [h for h in emulated_vasp["handlers"] if h != "UnconvergedErrorHandler"]
    settings = {**emulated_vasp, "handlers": handlers, "user_incar_settings": strict}
    (result,) = VaspOracle(**settings).relax([structure], ["nacl"])
    assert result.error is None and result.ok
    assert not result.converged
    assert result.n_steps == 6  # both relaxations stopped at NSW
    assert result.energy_per_atom == pytest.approx(result.frames[-1].energy_per_atom)


@pytest.mark.slow
def test_inputs_and_energies_match_atomate2s_double_relax_flow_run_by_jobflow(
    emulated_vasp: dict, tmp_path: Path
) -> None:
    structure = wurtzite_zno()
    structure.scale_lattice(structure.volume * 1.05)
    settings = {**emulated_vasp, "user_incar_settings": {"NELM": 80}}
    oracle = VaspOracle(**settings)
    (result,) = oracle.relax([structure], ["zno"])
    assert result.ok, result.error

    run_vasp_kwargs = {
        "vasp_cmd": settings["vasp_cmd"],
        "vasp_gamma_cmd": settings["vasp_gamma_cmd"],
        "handlers": oracle.handlers,
        "custodian_kwargs": oracle.custodian_kwargs,
    }
    maker = MPGGADoubleRelaxMaker(
        relax_maker1=MPGGARelaxMaker(run_vasp_kwargs=run_vasp_kwargs),
        relax_maker2=MPGGARelaxMaker(
            copy_vasp_kwargs={"additional_vasp_files": ("WAVECAR", "CHGCAR")},
            run_vasp_kwargs=run_vasp_kwargs,
        ),
    )
    flow = update_user_incar_settings(maker.make(structure), {"NELM": 80})
    run_locally(flow, root_dir=tmp_path / "jobflow", create_folders=True, log=False)

    ours = job_folders(result.directory)
    theirs = sorted((tmp_path / "jobflow").iterdir(), key=lambda p: p.stat().st_mtime)
    assert len(ours) == len(theirs) == 2
    for mine, atomate2 in zip(ours, theirs, strict=True):
        assert Incar.from_file(mine / "INCAR.orig.gz") == Incar.from_file(
            atomate2 / "INCAR.orig.gz"
        )
        assert str(Kpoints.from_file(mine / "KPOINTS.orig.gz")) == str(
            Kpoints.from_file(atomate2 / "KPOINTS.orig.gz")
        )
        assert Potcar.from_file(mine / "POTCAR.orig.gz").symbols == ["Zn", "O"]
        assert (mine / "WAVECAR.gz").exists() == (atomate2 / "WAVECAR.gz").exists()
        run, reference = Vasprun(mine / "vasprun.xml.gz"), Vasprun(atomate2 / "vasprun.xml.gz")
        assert run.final_energy == pytest.approx(reference.final_energy, abs=1e-6)
    assert Incar.from_file(ours[0] / "INCAR.orig.gz")["NELM"] == 80
    assert Kpoints.from_file(ours[0] / "KPOINTS.orig.gz").style == Kpoints.supported_modes.Gamma


@pytest.mark.slow
def test_chgnet_prerelaxation_runs_first_and_vasp_starts_from_its_structure(
    emulated_vasp: dict,
) -> None:
    structure = rock_salt_nacl(5.9)
    prerelax_settings = {"fmax": 0.1, "max_steps": 60, "threads": 1}
    oracle = VaspOracle(**emulated_vasp, prerelax="chgnet", prerelax_settings=prerelax_settings)
    (result,) = oracle.relax([structure], ["nacl"])
    assert result.ok, result.error

    (chgnet,) = ForceFieldOracle("chgnet", **prerelax_settings).relax([structure], ["nacl"])
    first, second = job_folders(result.directory)
    vasp_start = Poscar.from_file(first / "POSCAR.orig.gz").structure
    assert vasp_start.volume == pytest.approx(chgnet.structure.volume, rel=1e-4)
    assert vasp_start.volume < 0.95 * structure.volume  # CHGNet shrank the stretched cell
    assert "chgnet" in result.oracle_version and "pre-relaxation" in result.oracle_version
    vasp_steps = [len(Vasprun(run / "vasprun.xml.gz").ionic_steps) for run in (first, second)]
    assert len(result.frames) == sum(vasp_steps)  # VASP's steps only, never CHGNet's
    assert result.frames[0].structure.volume == pytest.approx(vasp_start.volume, rel=1e-4)


def test_prerelax_must_be_chgnet_or_none() -> None:
    with pytest.raises(ValueError, match="unknown VASP prerelax 'm3gnet'"):
        VaspOracle(prerelax="m3gnet")


def test_every_campaign_setting_is_a_get_oracle_keyword(tmp_path: Path) -> None:
    oracle = get_oracle(
        "vasp",
        vasp_cmd="srun vasp_std",
        vasp_gamma_cmd="srun vasp_gam",
        max_errors=3,
        handlers=["VaspErrorHandler", "UnconvergedErrorHandler"],
        prerelax="chgnet",
        prerelax_settings={"fmax": 0.1},
        root_dir=tmp_path,
        maker="double_relax_static",
        user_incar_settings={"NCORE": 4},
        wall_time_s=3600,
    )
    assert (oracle.vasp_cmd, oracle.vasp_gamma_cmd, oracle.max_errors) == (
        "srun vasp_std",
        "srun vasp_gam",
        3,
    )
    assert [type(h).__name__ for h in oracle.handlers] == [
        "VaspErrorHandler",
        "UnconvergedErrorHandler",
    ]
    assert oracle.root_dir == tmp_path.resolve()
    assert [leg for leg, _ in oracle._legs()] == ["relax1", "relax2", "static"]
    assert all(
        maker.input_set_generator.user_incar_settings["NCORE"] == 4 for _, maker in oracle._legs()
    )
    assert oracle.wall_time_s == 3600
    with pytest.raises(TypeError, match="vasp_command"):
        get_oracle("vasp", vasp_command="vasp_std")


def test_missing_vasp_fails_at_once_naming_the_setting(tmp_path: Path) -> None:
    oracle = VaspOracle(vasp_cmd="srun -n 4 vasp_std_not_here", root_dir=tmp_path)
    with pytest.raises(VaspNotFoundError, match=r"'srun'.*set vasp_cmd|'vasp_std_not_here'"):
        oracle.relax([manganese_oxide()], ["mno"])
    assert list(tmp_path.iterdir()) == []


def test_elements_without_mp_potcar_fail_before_vasp_runs(emulated_vasp: dict) -> None:
    polonium = Structure(Lattice.cubic(3.35), ["Po"], [[0, 0, 0]])
    (result,) = VaspOracle(**emulated_vasp).relax([polonium], ["po"])
    assert result.error == "element(s) Po not covered by this oracle"
    assert not Path(emulated_vasp["root_dir"], "po").exists()


def test_no_candidate_starts_when_walltime_is_nearly_spent(
    emulated_vasp: dict, tmp_path: Path
) -> None:
    oracle = VaspOracle(**emulated_vasp, wall_time_s=120)
    (result,) = oracle.relax([manganese_oxide()], ["late"])
    assert result.error.startswith("not started: ")
    assert "rerun the batch" in result.error


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("fresh_settings")
def test_vasp_command_comes_from_settings_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HULLHUNTER_VASP_CMD", "mpirun -np 8 vasp_std")
    monkeypatch.setenv("HULLHUNTER_VASP_MAX_ERRORS", "9")
    assert VaspOracle().vasp_cmd == "mpirun -np 8 vasp_std"
    assert VaspOracle().max_errors == 9
    assert VaspOracle(vasp_cmd="srun vasp_std", max_errors=2).vasp_cmd == "srun vasp_std"
    with pytest.raises(ValueError, match=r"unknown custodian handler\(s\) Foo; choose from"):
        VaspOracle(handlers=["Foo"])


def test_slurm_walltime_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_slurm_time("1-02:03:04") == 93784
    assert parse_slurm_time("05:00") == 300
    assert parse_slurm_time("UNLIMITED") is None
    monkeypatch.setenv("SLURM_JOB_END_TIME", str(int(__import__("time").time()) + 3600))
    assert 3590 <= slurm_remaining_seconds() <= 3600
    monkeypatch.delenv("SLURM_JOB_END_TIME")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert slurm_remaining_seconds() is None
    assert os.environ.get("SLURM_JOB_END_TIME") is None
