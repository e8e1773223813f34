"""The VASP emulator on its own: outputs agree across files, NSW/STOPCAR/faults behave."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from custodian.vasp.handlers import PositiveEnergyErrorHandler, VaspErrorHandler
from pymatgen.core import Lattice, Structure
from pymatgen.io.vasp import Oszicar, Outcar, Vasprun
from pymatgen.io.vasp.sets import MPRelaxSet


def write_inputs(folder: Path, **incar: object) -> Structure:
    structure = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    MPRelaxSet(structure, user_incar_settings=incar).write_input(folder, potcar_spec=True)
    return structure


def run_emulator(command: str, folder: Path, faults: str = "") -> int:
    env = {**os.environ, "HULLHUNTER_VASP_EMULATOR_FAULTS": faults}
    env.pop("HULLHUNTER_VASP_EMULATOR_STATE", None)
    with open(folder / "vasp.out", "w") as out:
        return subprocess.run(
            shlex.split(command), cwd=folder, stdout=out, env=env, check=False
        ).returncode


def test_step_limit_and_files_agree(emulator_cmd: str, tmp_path: Path) -> None:
    write_inputs(tmp_path, NSW=3, EDIFFG=-0.0001)
    assert run_emulator(emulator_cmd, tmp_path) == 0
    run = Vasprun(tmp_path / "vasprun.xml")
    assert len(run.ionic_steps) == 3
    assert run.converged_electronic and not run.converged_ionic
    assert run.final_energy == pytest.approx(Oszicar(tmp_path / "OSZICAR").final_energy)
    assert run.final_energy == pytest.approx(Outcar(tmp_path / "OUTCAR").final_energy)
    assert run.potcar_symbols == ["PAW_PBE Na_pv 06Sep2000", "PAW_PBE Cl 06Sep2000"]


def test_faults_speak_custodians_language(emulator_cmd: str, tmp_path: Path) -> None:
    write_inputs(tmp_path)
    assert run_emulator(emulator_cmd, tmp_path, "zbrent") == 1
    assert VaspErrorHandler().check(str(tmp_path))
    assert (tmp_path / "CONTCAR").exists()  # ZBRENT's fix copies CONTCAR to POSCAR
    assert run_emulator(emulator_cmd, tmp_path, "none,positive_energy") == 0
    assert PositiveEnergyErrorHandler().check(str(tmp_path))


def test_logged_wall_time_is_the_runs_own(
    emulator_cmd: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Benchmarks subtract this time from the VASP path's: it must not exceed the real one."""
    write_inputs(tmp_path, NSW=2)
    timing = tmp_path / "seconds.txt"
    monkeypatch.setenv("HULLHUNTER_VASP_EMULATOR_TIMING", str(timing))
    start = time.perf_counter()
    assert run_emulator(emulator_cmd, tmp_path) == 0
    wall = time.perf_counter() - start
    (logged,) = (float(x) for x in timing.read_text().split())
    assert 0.5 * wall < logged <= wall + 0.02  # 0.02: the kernel's 10 ms start-time ticks
