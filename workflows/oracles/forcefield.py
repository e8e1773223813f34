"""Force-field oracle: a pretrained universal potential relaxes structures through ASE.

CHGNet (weights inside the chgnet wheel, loaded offline) is the embedded default. SevenNet is
an optional cross-check: it is GPL-3.0, so it is imported only when asked for by name.
Both are trained on MPtrj, whose energies are MP2020-corrected: they are never corrected again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from functools import cache
from importlib.util import find_spec
from typing import Any, Literal

import torch
from ase.calculators.calculator import Calculator
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS, FIRE
from pymatgen.core import Element, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from hullhunter.workflows.oracles.base import Oracle, ResultCallback, installed_version
from hullhunter.workflows.oracles.result import OracleResult
from hullhunter.workflows.oracles.trajectory import Frame, frame_from_atoms

OPTIMIZERS = {"FIRE": FIRE, "BFGS": BFGS}
POTENTIALS = ("chgnet", "sevennet")
CHGNET_MAX_Z = 94  # CHGNet's atom embedding covers H..Pu
SEVENNET_INSTALL_HINT = (
    "SevenNet is not installed; it is an optional extra (GPL-3.0): "
    "pip install 'hullhunter[sevennet]' (or pip install sevenn)"
)


@cache
def load_calculator(potential: str, model: str | None, device: str) -> Calculator:
    """The ASE calculator for a potential, built once per process and then reused."""
    if potential == "chgnet":
        from chgnet.model import CHGNet, CHGNetCalculator

        chgnet = CHGNet.load(model_name=model or "0.3.0", use_device=device, verbose=False)
        return CHGNetCalculator(chgnet, use_device=device, on_isolated_atoms="error")
    if potential == "sevennet":
        try:
            from sevenn.calculator import SevenNetCalculator
        except ImportError as exc:
            raise ImportError(SEVENNET_INSTALL_HINT) from exc
        return SevenNetCalculator(model or "7net-0", device=device)
    raise ValueError(f"unknown potential {potential!r}; choose one of {', '.join(POTENTIALS)}")


class ForceFieldOracle(Oracle):
    """Relaxes with a universal potential; the model is loaded once per process.

    ``fmax`` (eV/Å) and ``max_steps`` bound the optimiser; ``relax_cell`` relaxes the cell
    too, through ASE's FrechetCellFilter. A run that hits ``max_steps`` is reported with
    ``converged=False`` and its last energy. ``threads`` sets torch's CPU threads during
    :meth:`relax` (None leaves torch's default). ``record_frames`` keeps every optimiser
    step (structure, energy, forces, stress) in the result's ``frames``: the training data
    for a potential learned from the campaign.
    """

    def __init__(
        self,
        potential: Literal["chgnet", "sevennet"] = "chgnet",
        *,
        model: str | None = None,
        fmax: float = 0.05,
        max_steps: int = 500,
        relax_cell: bool = True,
        optimizer: Literal["FIRE", "BFGS"] = "FIRE",
        device: str = "cpu",
        threads: int | None = None,
        record_frames: bool = True,
        progress: bool = False,
    ) -> None:
        if potential not in POTENTIALS:
            raise ValueError(
                f"unknown potential {potential!r}; choose one of {', '.join(POTENTIALS)}"
            )
        if optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
            )
        if potential == "sevennet" and find_spec("sevenn") is None:
            raise ImportError(SEVENNET_INSTALL_HINT)
        if fmax <= 0 or max_steps < 1:
            raise ValueError(f"need fmax > 0 and max_steps >= 1, got {fmax=} {max_steps=}")
        self.name = potential
        self.model = model
        self.fmax = fmax
        self.max_steps = max_steps
        self.relax_cell = relax_cell
        self.optimizer = optimizer
        self.device = device
        self.threads = threads
        self.record_frames = record_frames
        self.progress = progress

    @property
    def settings(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this oracle with :func:`get_oracle`."""
        return {
            "model": self.model,
            "fmax": self.fmax,
            "max_steps": self.max_steps,
            "relax_cell": self.relax_cell,
            "optimizer": self.optimizer,
            "device": self.device,
            "threads": self.threads,
            "record_frames": self.record_frames,
        }

    @property
    def version(self) -> str:
        package = "chgnet" if self.name == "chgnet" else "sevenn"
        default_model = "0.3.0" if self.name == "chgnet" else "7net-0"
        return f"{package} {installed_version(package)} model {self.model or default_model}"

    @property
    def known_elements(self) -> set[str] | None:
        if self.name == "chgnet":
            return {Element.from_Z(z).symbol for z in range(1, CHGNET_MAX_Z + 1)}
        return None

    def relax(
        self,
        structures: Sequence[Structure],
        ids: Sequence[str],
        on_result: ResultCallback | None = None,
    ) -> list[OracleResult]:
        """Relax in turn with the shared model; ``threads`` caps torch's CPU threads meanwhile.

        On a shared or oversubscribed CPU one thread is often much faster than several.
        """
        previous = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            return super().relax(structures, ids, on_result)
        finally:
            torch.set_num_threads(previous)

    @property
    def calculator(self) -> Calculator:
        """The shared calculator (loaded on first use)."""
        return load_calculator(self.name, self.model, self.device)

    def relax_one(self, structure: Structure, candidate_id: str) -> OracleResult:
        start = time.perf_counter()
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.calc = self.calculator
        target = FrechetCellFilter(atoms) if self.relax_cell else atoms
        optimizer = OPTIMIZERS[self.optimizer](target, logfile=None)
        frames: list[Frame] = []
        if self.record_frames:
            optimizer.attach(
                lambda: frames.append(frame_from_atoms(atoms, candidate_id, len(frames)))
            )
        converged = bool(optimizer.run(fmax=self.fmax, steps=self.max_steps))
        energy = float(atoms.get_potential_energy())
        if not math.isfinite(energy):
            raise FloatingPointError(f"the potential returned a non-finite energy ({energy})")
        cell = AseAtomsAdaptor.get_structure(atoms)
        relaxed = Structure(cell.lattice, cell.species, cell.frac_coords)
        return OracleResult(
            candidate_id=candidate_id,
            formula=relaxed.composition.reduced_formula,
            energy_per_atom=energy / len(relaxed),
            energy=energy,
            structure=relaxed,
            converged=converged,
            n_steps=int(optimizer.nsteps),
            wall_time_s=time.perf_counter() - start,
            oracle=self.name,
            oracle_version=self.version,
            frames=frames,
        )
