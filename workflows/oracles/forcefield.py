"""Force-field oracle: a pretrained universal potential relaxes structures through ASE.

CHGNet (weights inside the chgnet wheel, loaded offline) is the embedded default. SevenNet is
an optional cross-check: it is GPL-3.0, so it is imported only when asked for by name.
Both are trained on MPtrj, whose energies are MP2020-corrected: they are never corrected again.

This module owns the oracle and each relaxation's optimiser, frames and result. CHGNet
relaxations run in lockstep batches, one model call per step for all of them; that machinery
is in :mod:`.forcefield_batch`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, cached_property, partial
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any, Literal

import torch
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS, FIRE
from ase.optimize.optimize import Optimizer
from pydantic import Field
from pymatgen.core import Element, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from threadpoolctl import threadpool_limits

from hullhunter.frames import Frame
from hullhunter.workflows.oracles.base import Oracle, ResultCallback, installed_version
from hullhunter.workflows.oracles.forcefield_batch import (
    CHGNetEvaluator,
    ServedCalculator,
    relax_in_lockstep,
)
from hullhunter.workflows.oracles.registry import (
    OracleContext,
    OraclePlugin,
    OracleSettings,
    register_oracle,
)
from hullhunter.workflows.oracles.result import OracleResult
from hullhunter.workflows.oracles.trajectory import atoms_to_structure, frame_from_atoms

if TYPE_CHECKING:
    from chgnet.model import CHGNet

OPTIMIZERS = {"FIRE": FIRE, "BFGS": BFGS}
POTENTIALS = ("chgnet", "sevennet")
DEFAULT_MODELS = {"chgnet": "0.3.0", "sevennet": "7net-0"}
CHGNET_MAX_Z = 94  # CHGNet's atom embedding covers H..Pu
SEVENNET_INSTALL_HINT = (
    "SevenNet is not installed; it is an optional extra (GPL-3.0): "
    "pip install 'hullhunter[sevennet]' (or pip install sevenn)"
)


@cache
def load_chgnet(model: str | None, device: str) -> CHGNet:
    """The CHGNet model, loaded once per process; isolated atoms are an error, not a guess."""
    from chgnet.model import CHGNet

    chgnet = CHGNet.load(
        model_name=model or DEFAULT_MODELS["chgnet"], use_device=device, verbose=False
    )
    chgnet.graph_converter.set_isolated_atom_response("error")
    return chgnet.eval()


@cache
def load_sevennet(model: str | None, device: str) -> Calculator:
    """SevenNet's ASE calculator, built once per process."""
    try:
        from sevenn.calculator import SevenNetCalculator
    except ImportError as exc:
        raise ImportError(SEVENNET_INSTALL_HINT) from exc
    return SevenNetCalculator(model or DEFAULT_MODELS["sevennet"], device=device)


@dataclass
class Relaxation:
    """One structure under way: its atoms, optimiser and recorded frames."""

    candidate_id: str
    structure: Structure
    atoms: Atoms
    optimizer: Optimizer
    frames: list[Frame] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)


class ForceFieldOracle(Oracle):
    """Relaxes with a universal potential; the model is loaded once per process.

    ``fmax`` (eV/Å) and ``max_steps`` bound the optimiser; ``relax_cell`` relaxes the cell
    too, through ASE's FrechetCellFilter. A run that hits ``max_steps`` is reported with
    ``converged=False`` and its last energy. ``threads`` sets torch's CPU threads during
    :meth:`relax` (None leaves torch's default). ``record_frames`` keeps every optimiser
    step (structure, energy, forces, stress) in the result's ``frames``: the training data
    for a potential learned from the campaign. ``batch_size`` is how many CHGNet relaxations
    run in lockstep, one model call per step for all of them; 1 relaxes one after another.
    SevenNet always relaxes one after another.
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
        batch_size: int = 32,
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
        if batch_size < 1:
            raise ValueError(f"need batch_size >= 1 (1 relaxes one at a time), got {batch_size}")
        self.name = potential
        self.model = model
        self.fmax = fmax
        self.max_steps = max_steps
        self.relax_cell = relax_cell
        self.optimizer = optimizer
        self.device = device
        self.threads = threads
        self.record_frames = record_frames
        self.batch_size = batch_size
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
            "batch_size": self.batch_size,
        }

    @property
    def version(self) -> str:
        package = "chgnet" if self.name == "chgnet" else "sevenn"
        model = self.model or DEFAULT_MODELS[self.name]
        return f"{package} {installed_version(package)} model {model}"

    @property
    def known_elements(self) -> set[str] | None:
        if self.name == "chgnet":
            return {Element.from_Z(z).symbol for z in range(1, CHGNET_MAX_Z + 1)}
        return None

    @property
    def batched(self) -> bool:
        """Whether :meth:`relax` runs relaxations in lockstep batches."""
        return self.name == "chgnet" and self.batch_size > 1

    def relax(
        self,
        structures: Sequence[Structure],
        ids: Sequence[str],
        on_result: ResultCallback | None = None,
    ) -> list[OracleResult]:
        """Relax all structures, in lockstep batches or one after another (``batch_size``).

        Results come back in input order; ``on_result`` is called as each one finishes,
        which in a batch is not input order.
        """
        with self._thread_limits():
            if not self.batched:
                return super().relax(structures, ids, on_result)
            return relax_in_lockstep(self, structures, ids, on_result)

    @contextmanager
    def _thread_limits(self) -> Iterator[None]:
        """Torch threads as set; BLAS single-threaded, always.

        FrechetCellFilter calls scipy's expm_frechet and logm on 3x3 matrices several times
        per step; multi-threaded OpenBLAS makes each call ~100x slower (11 ms vs 0.13 ms
        measured here), more than the whole CHGNet evaluation.
        """
        previous = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with threadpool_limits(limits=1, user_api="blas"):
                yield
        finally:
            torch.set_num_threads(previous)

    def calculator(self) -> Calculator:
        """A calculator for one structure (CHGNet's evaluated alone unless served a batch)."""
        if self.name == "chgnet":
            return ServedCalculator(self.evaluator)
        return load_sevennet(self.model, self.device)

    @cached_property
    def evaluator(self) -> CHGNetEvaluator:
        """The batch evaluator around the shared CHGNet model (loaded on first use)."""
        return CHGNetEvaluator(load_chgnet(self.model, self.device))

    def relax_one(self, structure: Structure, candidate_id: str) -> OracleResult:
        relaxation = self.start_relaxation(structure, candidate_id)
        converged = bool(relaxation.optimizer.run(fmax=self.fmax, steps=self.max_steps))
        return self._finish(relaxation, converged)

    def start_relaxation(self, structure: Structure, candidate_id: str) -> Relaxation:
        """Atoms with this oracle's calculator and optimiser, recording frames when set."""
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.calc = self.calculator()
        target = FrechetCellFilter(atoms) if self.relax_cell else atoms
        optimizer = OPTIMIZERS[self.optimizer](target, logfile=None)
        optimizer.fmax = self.fmax
        relaxation = Relaxation(candidate_id, structure, atoms, optimizer)
        if self.record_frames:
            frames = relaxation.frames
            optimizer.attach(
                lambda: frames.append(frame_from_atoms(atoms, candidate_id, len(frames)))
            )
        return relaxation

    def advance_relaxation(self, relaxation: Relaxation) -> OracleResult | None:
        """One iteration of ASE's ``Dynamics.irun`` once the current state is evaluated.

        Records, checks convergence, and either finishes (the result) or takes the next
        step (None): what the lockstep driver does to each relaxation after a batch call.
        """
        optimizer = relaxation.optimizer
        optimizer.call_observers()
        converged = bool(optimizer.converged())
        if converged or optimizer.nsteps >= self.max_steps:
            return self._finish(relaxation, converged)
        optimizer.step()
        optimizer.nsteps += 1
        return None

    def _finish(self, relaxation: Relaxation, converged: bool) -> OracleResult:
        atoms = relaxation.atoms
        energy = float(atoms.get_potential_energy())
        if not math.isfinite(energy):
            raise FloatingPointError(f"the potential returned a non-finite energy ({energy})")
        relaxed = atoms_to_structure(atoms)
        return OracleResult(
            candidate_id=relaxation.candidate_id,
            formula=relaxed.composition.reduced_formula,
            energy_per_atom=energy / len(relaxed),
            energy=energy,
            structure=relaxed,
            converged=converged,
            n_steps=int(relaxation.optimizer.nsteps),
            wall_time_s=time.perf_counter() - relaxation.started,
            oracle=self.name,
            oracle_version=self.version,
            frames=relaxation.frames,
        )


class ForceFieldSettings(OracleSettings):
    """Campaign section of a force-field oracle: relaxation convergence and step limit."""

    fmax: float = Field(0.1, gt=0, description="eV/Å, force-field relaxations")
    max_steps: int = Field(300, ge=1)

    def oracle_kwargs(self, context: OracleContext) -> dict[str, Any]:
        return {
            "fmax": self.fmax,
            "max_steps": self.max_steps,
            "device": context.site.device,
            "threads": context.site.torch_threads,
        }


register_oracle(
    OraclePlugin(
        "chgnet", partial(ForceFieldOracle, "chgnet"), ForceFieldSettings, requires="chgnet"
    )
)
register_oracle(
    OraclePlugin(
        "sevennet",
        partial(ForceFieldOracle, "sevennet"),
        ForceFieldSettings,
        requires="sevenn",
        install_hint="pip install -e '.[sevennet]'",
    )
)
