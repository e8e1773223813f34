"""Relaxation frames as the database keeps them: every oracle step, one blob per calculation.

Each step of a relaxation (structure, energy, forces, stress) is training data for a
potential learned from the campaign (GNoME's second half). Oracles attach frames to their
results; the campaign stores them in GridFS as one compressed ``.npz`` per calculation
(:func:`frames_to_bytes`), and ``Calculation.get_frames()`` and fine-tuning read them back
(:func:`frames_from_bytes`).
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Lattice, Structure


@dataclass
class Frame:
    """One labelled step of a relaxation.

    ``forces`` in eV/Å (n_atoms x 3); ``stress`` in GPa (3 x 3) with ASE's sign convention,
    which is CHGNet's (positive = tensile), so frames feed chgnet's trainer directly.
    """

    structure: Structure
    energy_per_atom: float
    forces: np.ndarray
    stress: np.ndarray
    trajectory_id: str
    step: int

    @property
    def formula(self) -> str:
        return self.structure.composition.reduced_formula


def frames_to_bytes(frames: Sequence[Frame]) -> bytes:
    """All frames as one compressed ``.npz`` blob (ragged atoms concatenated), for GridFS."""
    sizes = np.array([len(f.structure) for f in frames], dtype=np.int64)
    arrays = {
        "n_atoms": sizes,
        "lattices": np.array([f.structure.lattice.matrix for f in frames]).reshape(-1, 3, 3),
        "numbers": np.concatenate([[s.specie.Z for s in f.structure] for f in frames] or [[]]),
        "positions": np.concatenate(
            [f.structure.cart_coords for f in frames] or [np.zeros((0, 3))]
        ),
        "energies_per_atom": np.array([f.energy_per_atom for f in frames], dtype=float),
        "forces": np.concatenate([f.forces for f in frames] or [np.zeros((0, 3))]),
        "stresses": np.array([f.stress for f in frames]).reshape(-1, 3, 3),
        "steps": np.array([f.step for f in frames], dtype=np.int64),
        "trajectory_ids": np.array(json.dumps([f.trajectory_id for f in frames])),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def frames_from_bytes(blob: bytes) -> list[Frame]:
    """Frames back from :func:`frames_to_bytes`."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    ids = json.loads(str(arrays["trajectory_ids"]))
    offsets = np.concatenate([[0], np.cumsum(arrays["n_atoms"])])
    frames = []
    for i, (start, end) in enumerate(itertools.pairwise(offsets)):
        structure = Structure(
            Lattice(arrays["lattices"][i]),
            arrays["numbers"][start:end].astype(int).tolist(),
            arrays["positions"][start:end],
            coords_are_cartesian=True,
        )
        frames.append(
            Frame(
                structure=structure,
                energy_per_atom=float(arrays["energies_per_atom"][i]),
                forces=arrays["forces"][start:end],
                stress=arrays["stresses"][i],
                trajectory_id=ids[i],
                step=int(arrays["steps"][i]),
            )
        )
    return frames
