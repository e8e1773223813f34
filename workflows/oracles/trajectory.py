"""ASE steps as frames: what the oracles record at each step of a relaxation.

The frame itself and its stored form are in :mod:`hullhunter.frames`.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units
from pymatgen.core import Lattice, Structure

from hullhunter.frames import Frame


def atoms_to_structure(atoms: Atoms) -> Structure:
    """A plain pymatgen structure of the atoms (no site properties)."""
    return Structure(
        Lattice(atoms.cell.array), atoms.numbers, atoms.positions, coords_are_cartesian=True
    )


def frame_from_atoms(atoms: Atoms, trajectory_id: str, step: int) -> Frame:
    """The frame of an ASE ``Atoms`` whose calculator has just evaluated it.

    Raises ``FloatingPointError`` on non-finite labels, which must never become training data.
    """
    structure = atoms_to_structure(atoms)
    energy = float(atoms.get_potential_energy())
    forces = np.array(atoms.get_forces(), dtype=float)
    stress = np.array(atoms.get_stress(voigt=False), dtype=float) / units.GPa
    if not (np.isfinite(energy) and np.isfinite(forces).all() and np.isfinite(stress).all()):
        raise FloatingPointError(f"{trajectory_id} step {step}: non-finite labels")
    return Frame(structure, energy / len(atoms), forces, stress, trajectory_id, step)
