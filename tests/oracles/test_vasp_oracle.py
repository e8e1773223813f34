"""The VASP path end to end: atomate2 writes inputs, custodian runs the emulator as vasp_std,
handlers fix injected faults, emmet parses, MP2020 corrections are applied."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from custodian.vasp.handlers import FrozenJobErrorHandler
from pymatgen.core import Lattice, Structure
from pymatgen.entries.compatibility import MaterialsProject2020Compatibility
from pymatgen.io.vasp import Incar, Kpoints, Poscar, Vasprun

from hullhunter.settings import get_settings
from hullhunter.workflows.oracles import VaspNotFoundError, VaspOracle, get_oracle
from hullhunter.workflows.oracles.vasp import HANDLERS, parse_slurm_time, slurm_remaining_seconds

FROZEN_TIMEOUT_S = 8  # longer than the emulator's start-up, so only a real freeze trips it


def manganese_oxide() -> Structure:
    """Rock-salt MnO, compressed: a GGA+U oxide, so MP2020 applies U and anion corrections."""
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.3), ["Mn", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
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
    assert [len(Vasprun(run / "vasprun.xml.gz").ionic_steps) for run in stopped_runs] == [4, 4]
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
    with pytest.raises(ValueError, match="unknown custodian handler 'Foo'"):
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
