"""Reading what CP2K left in a job folder: whether it finished, whether its optimisation
converged, and every optimisation step as a training frame.

atomate2 0.1.5 cannot parse CP2K 2023.1's output of a spin-restricted run (its task document
calls ``.upper()`` on the integer multiplicity), so the CP2K oracle reads CP2K's own
trajectory files (``*-pos-1.xyz``, ``*-frc-1.xyz``, ``*-1.cell``, ``*-1.stress``) here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from custodian.custodian import Validator
from pymatgen.core import Lattice, Structure
from pymatgen.core.units import Ha_to_eV, bohr_to_ang
from pymatgen.io.cp2k.outputs import Cp2kOutput

from hullhunter.frames import Frame

OPTIMISATION_DONE = "GEOMETRY OPTIMIZATION COMPLETED"  # CP2K's line for GEO_OPT and CELL_OPT


class Cp2kFinishedValidator(Validator):
    """CP2K ran to its end and its last SCF converged: custodian's Cp2kOutputValidator less
    its geometry test. That test failed a cell optimisation that stopped at MAX_ITER, so
    its steps were thrown away (two of four picks of examples/laptop-dft.yaml, 11 and 17
    minutes each). Now it is an unconverged result with its energy and frames, which the
    hull does not use."""

    def check(self, directory: str = "./") -> bool:
        try:
            output = Cp2kOutput(os.path.join(directory, "cp2k.out"))
            output.ran_successfully()
            output.convergence()
        except Exception:  # no output, or one pymatgen cannot read: a failed run
            return True
        scf_converged = output.data.get("scf_converged") or [True]
        return not (output.completed and scf_converged[-1])


def optimisation_converged(job_dir: Path) -> bool:
    """Whether CP2K's output in ``job_dir`` says the optimisation met its criteria."""
    output = job_dir / "cp2k.out"
    return output.is_file() and OPTIMISATION_DONE in output.read_text(errors="replace")


def latest_trajectory(directory: Path) -> list[Frame]:
    """The frames of the newest job folder in a candidate's folder that left any."""
    for job_dir in sorted(directory.glob("job_*"), reverse=True):
        frames = read_trajectory(job_dir, directory.name)
        if frames:
            return frames
    return []


def read_trajectory(job_dir: Path, candidate_id: str) -> list[Frame]:
    """Every optimisation step CP2K printed in ``job_dir``, as frames numbered from 0.

    CP2K prints a step after it moves the atoms, so the starting structure (the candidate,
    or where a stopped run left off) is not among them.

    CP2K's MOTION prints (atomate2 switches them on) give, per step, positions and energy
    (``*-pos-1.xyz``, Å and Ha), forces (``*-frc-1.xyz``, Ha/bohr), the cell (``*-1.cell``,
    Å) and the stress (``*-1.stress``, bar, positive = compressive). Steps are matched by
    their step number; a step missing any part is left out.
    """

    def one(pattern: str) -> Path | None:
        found = sorted(job_dir.glob(pattern))
        return found[0] if found else None

    paths = {
        "pos": one("*-pos-1.xyz"),
        "frc": one("*-frc-1.xyz"),
        "cell": one("*-1.cell"),
        "stress": one("*-1.stress"),
    }
    if any(path is None for path in paths.values()):
        return []

    def text(path: Path) -> str:
        return path.read_text(encoding="utf-8", errors="replace")

    positions = dict(_xyz_frames(text(paths["pos"])))
    forces = dict(_xyz_frames(text(paths["frc"])))
    cells = {int(row[0]): row[2:11].reshape(3, 3) for row in _table(text(paths["cell"]))}
    stresses = {int(row[0]): row[2:11].reshape(3, 3) for row in _table(text(paths["stress"]))}
    frames: list[Frame] = []
    for step in sorted(positions.keys() & forces.keys() & cells.keys() & stresses.keys()):
        species, coords, energy_ha = positions[step]
        structure = Structure(
            Lattice(cells[step]), species, coords, coords_are_cartesian=True, to_unit_cell=True
        )
        frames.append(
            Frame(
                structure=structure,
                energy_per_atom=energy_ha * Ha_to_eV / len(structure),
                forces=forces[step][1] * Ha_to_eV / bohr_to_ang,
                stress=-1e-4 * stresses[step],
                trajectory_id=candidate_id,
                step=len(frames),
            )
        )
    return frames


def _xyz_frames(text: str) -> Iterator[tuple[int, tuple[list[str], np.ndarray, float]]]:
    """(step, (species, xyz array, energy)) for each block of a CP2K trajectory file."""
    lines = text.splitlines()
    index = 0
    while index < len(lines) and lines[index].strip():
        count = int(lines[index])
        header = re.search(r"i\s*=\s*(\d+).*E\s*=\s*(-?[\d.Ee+-]+)", lines[index + 1])
        rows = [line.split() for line in lines[index + 2 : index + 2 + count]]
        index += 2 + count
        if header is None or len(rows) != count:
            continue
        species = [row[0] for row in rows]
        values = np.array([[float(v) for v in row[1:4]] for row in rows])
        yield int(header.group(1)), (species, values, float(header.group(2)))


def _table(text: str) -> list[np.ndarray]:
    """The numeric rows of a CP2K ``.cell`` or ``.stress`` file."""
    return [
        np.array([float(v) for v in line.split()])
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
