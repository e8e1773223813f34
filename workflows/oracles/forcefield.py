"""Force-field oracle: a pretrained universal potential relaxes structures through ASE.

CHGNet (weights inside the chgnet wheel, loaded offline) is the embedded default. SevenNet is
an optional cross-check: it is GPL-3.0, so it is imported only when asked for by name.
Both are trained on MPtrj, whose energies are MP2020-corrected: they are never corrected again.

CHGNet relaxations run in lockstep batches: each structure keeps its own ASE optimiser, and
every optimiser step evaluates CHGNet once for all structures still relaxing, so the per-call
overhead is paid once per step for the whole batch. Converged structures leave the batch and
waiting ones take their place. Measured on a 2-core CPU (per structure and evaluation, alone
vs in a batch of 32): with one torch thread batching gains nothing (4-8 atoms 16.1 vs 15.4 ms,
17-40 atoms 57 vs 62 ms); with two threads it pays for small cells (4-8 atoms 15.0 vs 9.9 ms,
17-40 atoms 49 vs 44 ms). Most of the gain over a job per structure is the start-up saved.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, cached_property, partial
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes, compare_atoms
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS, FIRE
from ase.optimize.optimize import Optimizer
from ase.stress import full_3x3_to_voigt_6_stress
from pydantic import Field
from pymatgen.core import Element, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from rich.progress import Progress
from threadpoolctl import threadpool_limits

from hullhunter.workflows.oracles.base import Oracle, ResultCallback, installed_version
from hullhunter.workflows.oracles.registry import (
    OracleContext,
    OraclePlugin,
    OracleSettings,
    register_oracle,
)
from hullhunter.workflows.oracles.result import OracleResult, check_ids, structure_problem
from hullhunter.workflows.oracles.trajectory import Frame, atoms_to_structure, frame_from_atoms

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

Labels = dict[str, Any]
"""ASE results of one structure: energy, free_energy (eV), forces (eV/Å), stress (eV/Å³)."""
Evaluate = Callable[[Sequence[Atoms]], list[Labels | Exception]]


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


class CHGNetEvaluator:
    """CHGNet energy, forces and stress of many structures from one forward and backward pass.

    Written here because ``CHGNet.predict_graph`` runs two backward passes that build a
    double-backward graph (``create_graph=True``, which training on forces needs and a
    relaxation does not): one plain backward pass over positions and strains gives the same
    labels at about half the cost on this CPU (0.96 s vs 2.4 s for 32 structures of 4-40 atoms).
    A structure that cannot be evaluated gets its exception in place of labels; the rest of
    the batch is unaffected.
    """

    def __init__(self, model: CHGNet) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.forward_passes = 0

    def __call__(self, structures: Sequence[Atoms]) -> list[Labels | Exception]:
        """Labels (ASE names and units) or the exception, per structure, in order."""
        outcomes: list[Any] = [None] * len(structures)
        graphs, slots = [], []
        for slot, atoms in enumerate(structures):
            try:
                graph = self.model.graph_converter(atoms_to_structure(atoms))
            except Exception as exc:  # e.g. an isolated atom: this structure fails alone
                outcomes[slot] = exc
                continue
            graphs.append(graph.to(self.device))
            slots.append(slot)
        for slot, labels in zip(slots, self._evaluate_graphs(graphs), strict=True):
            outcomes[slot] = labels
        return outcomes

    def _evaluate_graphs(self, graphs: list[Any]) -> list[Labels | Exception]:
        if not graphs:
            return []
        try:
            return self._labels(graphs)
        except Exception as exc:  # find the structure that breaks the batch, spare the others
            if len(graphs) == 1:
                return [exc]
            return [outcome for graph in graphs for outcome in self._evaluate_graphs([graph])]

    def _labels(self, graphs: list[Any]) -> list[Labels | Exception]:
        from chgnet.model.model import BatchedGraph

        model = self.model
        batch = BatchedGraph.from_graphs(
            graphs,
            bond_basis_expansion=model.bond_basis_expansion,
            angle_basis_expansion=model.angle_basis_expansion,
            compute_stress=True,
        )
        prediction = model._compute(batch)  # energies; forces and stress from one pass below
        self.forward_passes += 1
        n_atoms = prediction["atoms_per_graph"]
        energy = prediction["e"] * n_atoms if model.is_intensive else prediction["e"]
        gradients = torch.autograd.grad(energy.sum(), [*batch.atom_positions, *batch.strains])
        with torch.no_grad():
            if model.composition_model is not None:  # position-independent reference energies
                offset = model.composition_model(graphs)
                energy = energy + (offset * n_atoms if model.is_intensive else offset)
        energies = energy.detach().cpu().numpy().astype(float)
        volumes = batch.volumes.abs().detach().cpu().numpy().astype(float)
        k = len(graphs)
        outcomes: list[Labels | Exception] = []
        for i in range(k):
            forces = -gradients[i].detach().cpu().numpy().astype(float)
            stress = gradients[k + i].detach().cpu().numpy().astype(float) / volumes[i]
            if not (
                np.isfinite(energies[i]) and np.isfinite(forces).all() and np.isfinite(stress).all()
            ):
                outcomes.append(
                    FloatingPointError(
                        f"the potential returned non-finite labels (energy {energies[i]})"
                    )
                )
                continue
            outcomes.append(
                {
                    "energy": energies[i],
                    "free_energy": energies[i],
                    "forces": forces,
                    "stress": full_3x3_to_voigt_6_stress(stress),
                }
            )
        return outcomes


class ServedCalculator(Calculator):
    """ASE calculator that hands out labels evaluated in a batch, or evaluates alone.

    The lockstep driver evaluates every running structure at once and :meth:`serve`s each
    its labels; the optimiser then reads them as from any calculator. Any state that was not
    served is evaluated on its own, so results never depend on what else was in the batch.
    """

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(self, evaluate: Evaluate) -> None:
        super().__init__()
        self.evaluate = evaluate
        self.served: tuple[Atoms, Labels] | None = None

    def serve(self, atoms: Atoms, labels: Labels) -> None:
        """Labels for exactly this state of the atoms (positions, cell, species)."""
        self.served = (atoms.copy(), labels)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        if self.served is not None and not compare_atoms(self.served[0], self.atoms):
            labels: Labels | Exception = self.served[1]
        else:
            (labels,) = self.evaluate([self.atoms])
        if isinstance(labels, Exception):
            raise labels
        self.results = dict(labels)


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
            return self._relax_in_lockstep(structures, ids, on_result)

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
        relaxation = self._start(structure, candidate_id)
        converged = bool(relaxation.optimizer.run(fmax=self.fmax, steps=self.max_steps))
        return self._finish(relaxation, converged)

    def _start(self, structure: Structure, candidate_id: str) -> Relaxation:
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

    def _advance(self, relaxation: Relaxation) -> OracleResult | None:
        """One iteration of ASE's ``Dynamics.irun`` once the current state is evaluated:
        record, check convergence, and either finish or take the next step."""
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

    def _failed(
        self, structure: Structure, candidate_id: str, reason: str, started: float
    ) -> OracleResult:
        return OracleResult.failed(
            candidate_id,
            structure,
            reason,
            oracle=self.name,
            oracle_version=self.version,
            wall_time_s=time.perf_counter() - started,
        )

    def _relax_in_lockstep(
        self,
        structures: Sequence[Structure],
        ids: Sequence[str],
        on_result: ResultCallback | None,
    ) -> list[OracleResult]:
        """Up to ``batch_size`` relaxations at once, one CHGNet call per step for all.

        A structure's ``wall_time_s`` is the time it spent in the batch, shared with the
        structures beside it.
        """
        structures, ids = list(structures), [str(i) for i in ids]
        check_ids(structures, ids)
        results: list[OracleResult | None] = [None] * len(structures)
        waiting: deque[int] = deque()
        running: dict[int, Relaxation] = {}
        with Progress(disable=not self.progress, transient=True) as progress:
            task = progress.add_task(f"{self.name} relaxations", total=len(structures))

            def finish(index: int, result: OracleResult) -> None:
                results[index] = result
                running.pop(index, None)
                if on_result is not None:
                    on_result(result)
                progress.advance(task)

            for index, structure in enumerate(structures):
                problem = structure_problem(structure, self.known_elements)
                if problem is None:
                    waiting.append(index)
                else:
                    finish(index, self._failed(structure, ids[index], problem, time.perf_counter()))
            while waiting or running:
                while waiting and len(running) < self.batch_size:
                    index = waiting.popleft()
                    started = time.perf_counter()
                    try:
                        running[index] = self._start(structures[index], ids[index])
                    except Exception as exc:  # one failed candidate must not fail the batch
                        finish(
                            index,
                            self._failed(
                                structures[index],
                                ids[index],
                                f"{type(exc).__name__}: {exc}",
                                started,
                            ),
                        )
                batch = list(running.items())
                all_labels = self.evaluator([relaxation.atoms for _, relaxation in batch])
                for (index, relaxation), labels in zip(batch, all_labels, strict=True):
                    try:
                        if isinstance(labels, Exception):
                            raise labels
                        relaxation.atoms.calc.serve(relaxation.atoms, labels)
                        result = self._advance(relaxation)
                    except Exception as exc:  # one failed candidate must not fail the batch
                        result = self._failed(
                            relaxation.structure,
                            relaxation.candidate_id,
                            f"{type(exc).__name__}: {exc}",
                            relaxation.started,
                        )
                    if result is not None:
                        finish(index, result)
        return [result for result in results if result is not None]


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
