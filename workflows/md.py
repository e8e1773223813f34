"""MD ionic conductivity at GNoME's protocol: NVT MD, diffusion analysis, Arrhenius fits.

GNoME's ML-MD (Merchant et al. 2023): Nosé-Hoover NVT at 1,000 K, 2 fs steps, 50 ps, the
first 10 ps discarded; diffusivity from pymatgen's ``DiffusionAnalyzer`` (smoothed="max");
superionic when sigma(1,000 K) > 10^1.18 mS/cm. MD runs through ASE directly rather than
atomate2's force-field MD maker, because each run must stop early with a recorded reason
(atoms too close, energy drift, non-finite energy) and hand unwrapped positions straight to
the analysis; every setting is configurable so tests can run tiny versions.
:func:`conductivity` runs one temperature; :func:`arrhenius` fits several of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from ase.calculators.calculator import Calculator
from ase.md.nose_hoover_chain import NoseHooverChainNVT
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.units import fs
from pymatgen.analysis.diffusion.analyzer import (
    DiffusionAnalyzer,
    fit_arrhenius,
    get_arrhenius_plot,
    get_extrapolated_conductivity,
)
from pymatgen.core import Element, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from rich.progress import Progress
from vesin import NeighborList

from hullhunter.workflows.finetune import chgnet_calculator

# GNoME: superionic when the 1,000 K conductivity exceeds 10^1.18 mS/cm (about 15 mS/cm).
SUPERIONIC_LOG10_MS_CM = 1.18
SUPERIONIC_TEMPERATURE_K = 1000.0


@dataclass
class MDSettings:
    """MD and analysis settings; defaults are GNoME's production protocol.

    ``thermostat_steps``: Nosé-Hoover damping time in MD steps (GNoME: 40).
    ``sample_every``: MD steps between stored frames (DiffusionAnalyzer's step_skip).
    ``min_cell_width``: every perpendicular cell width (Å) is at least this, else a supercell
    is built (CHGNet's graph cutoff is 6 Å; diffusion needs room beyond one image).
    ``min_distance``: any pair closer than this (Å) means the run blew up.
    ``max_drift_ev_per_atom``: largest allowed change of the thermostat's conserved energy.
    ``min_obs``: DiffusionAnalyzer's minimum number of observations per time window.
    """

    temperature_k: float = 1000.0
    timestep_fs: float = 2.0
    duration_ps: float = 50.0
    equilibration_ps: float = 10.0
    thermostat_steps: int = 40
    sample_every: int = 10
    min_cell_width: float = 10.0
    min_distance: float = 0.6
    max_drift_ev_per_atom: float = 0.1
    min_obs: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature_k <= 0 or self.timestep_fs <= 0:
            raise ValueError(
                f"need temperature_k > 0 and timestep_fs > 0, "
                f"got {self.temperature_k} and {self.timestep_fs}"
            )
        if not 0 <= self.equilibration_ps < self.duration_ps:
            raise ValueError(
                f"need 0 <= equilibration_ps < duration_ps, got {self.equilibration_ps} "
                f"and {self.duration_ps}"
            )
        if self.sample_every < 1 or self.thermostat_steps < 1:
            raise ValueError("sample_every and thermostat_steps must be at least 1")

    @property
    def n_steps(self) -> int:
        return round(self.duration_ps * 1000 / self.timestep_fs)

    @property
    def n_equilibration_steps(self) -> int:
        return round(self.equilibration_ps * 1000 / self.timestep_fs)


@dataclass
class MDResult:
    """One MD run and its diffusion analysis; conductivity only when ``status == "completed"``.

    ``status``: "completed", "skipped" (nothing to simulate, e.g. no mobile ion) or "failed"
    (stopped: atoms too close, energy drift, non-finite energy, or no measurable diffusion).
    Diffusivity in cm²/s, conductivity in mS/cm, as pymatgen reports them.
    """

    formula: str
    mobile_ion: str
    temperature_k: float
    status: Literal["completed", "skipped", "failed"]
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    n_atoms: int = 0
    supercell: list[int] = field(default_factory=lambda: [1, 1, 1])
    steps_run: int = 0
    n_frames: int = 0
    energy_drift_ev_per_atom: float | None = None
    diffusivity_cm2_s: float | None = None
    diffusivity_std_dev: float | None = None
    conductivity_ms_cm: float | None = None
    conductivity_std_dev: float | None = None
    superionic: bool | None = None
    wall_time_s: float = 0.0
    structure: dict | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def perpendicular_widths(structure: Structure) -> np.ndarray:
    """The three distances between opposite cell faces (Å): the image-to-image spacing."""
    matrix = structure.lattice.matrix
    areas = [np.linalg.norm(np.cross(matrix[(i + 1) % 3], matrix[(i + 2) % 3])) for i in range(3)]
    return structure.volume / np.array(areas)


def ensure_min_width(structure: Structure, min_width: float) -> tuple[Structure, list[int], str]:
    """A diagonal supercell whose perpendicular widths all reach ``min_width``, and a note."""
    widths = perpendicular_widths(structure)
    scaling = [max(1, math.ceil(min_width / width)) for width in widths]
    if scaling == [1, 1, 1]:
        return structure, scaling, ""
    n_atoms = len(structure) * math.prod(scaling)
    note = (
        f"cell widths {', '.join(f'{w:.2f}' for w in widths)} Å are below {min_width} Å: "
        f"ran a {'x'.join(map(str, scaling))} supercell ({n_atoms} atoms)"
    )
    return structure * scaling, scaling, note


def closest_pair_distance(positions: np.ndarray, cell: np.ndarray, cutoff: float) -> float:
    """The shortest periodic pair distance below ``cutoff`` (inf if none), via vesin."""
    (distances,) = NeighborList(cutoff=cutoff, full_list=False).compute(
        points=positions, box=cell, periodic=True, quantities="d"
    )
    return float(distances.min()) if len(distances) else math.inf


def _conserved_energy(dynamics: NoseHooverChainNVT) -> float:
    """Nosé-Hoover's conserved energy; ASE's own method asks for a free energy CHGNet lacks."""
    atoms = dynamics.atoms
    thermostat = dynamics._thermostat.get_thermostat_energy()  # no public accessor in ASE
    return float(atoms.get_potential_energy() + atoms.get_kinetic_energy() + thermostat)


def run_md(
    structure: Structure,
    calculator: Calculator,
    settings: MDSettings,
    *,
    progress: bool = False,
) -> tuple[np.ndarray, int, float, str]:
    """NVT MD; returns (production positions [frames, atoms, 3], steps run, drift, failure).

    Positions are ASE's unwrapped Cartesian coordinates sampled every ``sample_every`` steps
    after equilibration. The run stops at the first check that fails and says why in
    ``failure`` (empty when it completed).
    """
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = calculator
    rng = np.random.default_rng(settings.seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=settings.temperature_k, rng=rng)
    Stationary(atoms)
    dynamics = NoseHooverChainNVT(
        atoms,
        timestep=settings.timestep_fs * fs,
        temperature_K=settings.temperature_k,
        tdamp=settings.thermostat_steps * settings.timestep_fs * fs,
    )
    n_atoms = len(atoms)
    reference_energy = _conserved_energy(dynamics)
    frames, steps, drift = [], 0, 0.0
    with Progress(disable=not progress) as bar:
        task = bar.add_task(f"MD {settings.temperature_k:.0f} K", total=settings.n_steps)
        while steps < settings.n_steps:
            chunk = min(settings.sample_every, settings.n_steps - steps)
            dynamics.run(chunk)
            steps += chunk
            bar.update(task, advance=chunk)
            energy = atoms.get_potential_energy()
            if not math.isfinite(energy):
                return np.array(frames), steps, drift, f"non-finite energy at step {steps}"
            drift = abs(_conserved_energy(dynamics) - reference_energy) / n_atoms
            if drift > settings.max_drift_ev_per_atom:
                return (
                    np.array(frames),
                    steps,
                    drift,
                    f"energy drift {drift:.3g} eV/atom > {settings.max_drift_ev_per_atom} "
                    f"at step {steps}",
                )
            closest = closest_pair_distance(
                atoms.get_positions(), atoms.cell.array, settings.min_distance
            )
            if closest < settings.min_distance:
                return (
                    np.array(frames),
                    steps,
                    drift,
                    f"atoms too close ({closest:.2f} Å < {settings.min_distance} Å) "
                    f"at step {steps}",
                )
            if steps > settings.n_equilibration_steps and steps % settings.sample_every == 0:
                frames.append(atoms.get_positions().copy())
    return np.array(frames), steps, drift, ""


def conductivity(
    structure: Structure,
    calculator: Calculator | None = None,
    settings: MDSettings | None = None,
    *,
    mobile_ion: str = "Li",
    progress: bool = False,
) -> MDResult:
    """Diffusivity and conductivity of ``mobile_ion`` from one NVT run (GNoME's protocol).

    Skips a structure without the ion, builds a supercell when the cell is narrower than
    ``settings.min_cell_width`` (noted in the result), and fails, with the reason and no
    conductivity, on a blow-up or when no positive diffusivity can be measured.
    ``calculator`` defaults to pretrained CHGNet.
    """
    settings = settings or MDSettings()
    Element(mobile_ion)
    start = time.perf_counter()
    result = MDResult(
        formula=structure.composition.reduced_formula,
        mobile_ion=mobile_ion,
        temperature_k=settings.temperature_k,
        status="skipped",
        n_atoms=len(structure),
    )
    if structure.composition[mobile_ion] == 0:
        result.reason = f"no {mobile_ion} in {result.formula}: nothing to diffuse"
        return result
    cell = _simulation_cell(structure, settings, result)
    if cell is None:
        return result
    positions, steps, drift, failure = run_md(
        cell, calculator or chgnet_calculator(), settings, progress=progress
    )
    result.steps_run, result.n_frames = steps, len(positions)
    result.energy_drift_ev_per_atom = drift
    result.wall_time_s = time.perf_counter() - start
    if failure:
        result.status, result.reason = "failed", failure
        return result
    return _analyse_diffusion(cell, positions, settings, result)


def _simulation_cell(
    structure: Structure, settings: MDSettings, result: MDResult
) -> Structure | None:
    """The cell to simulate (a supercell if too narrow), recorded in ``result``.

    None, with ``result`` failed, when atoms of the input are already too close: MD from
    there would only blow up.
    """
    cell, scaling, note = ensure_min_width(structure, settings.min_cell_width)
    result.supercell, result.n_atoms = scaling, len(cell)
    result.structure = cell.as_dict()
    if note:
        result.notes.append(note)
    closest = closest_pair_distance(cell.cart_coords, cell.lattice.matrix, settings.min_distance)
    if closest < settings.min_distance:
        result.status = "failed"
        result.reason = (
            f"atoms too close in the input ({closest:.2f} Å < {settings.min_distance} Å)"
        )
        return None
    return cell


def _analyse_diffusion(
    cell: Structure, positions: np.ndarray, settings: MDSettings, result: MDResult
) -> MDResult:
    """Diffusivity and conductivity of ``result.mobile_ion`` from the production frames.

    Completes ``result``, or fails it with the reason when no positive diffusivity can be
    measured; the superionic flag is set only at GNoME's 1,000 K.
    """
    if len(positions) < 2:
        result.status = "failed"
        result.reason = "fewer than 2 production frames; lengthen duration_ps or sample more"
        return result
    displacements = np.transpose(positions - positions[0], (1, 0, 2))
    try:
        analyzer = DiffusionAnalyzer(
            cell,
            displacements,
            result.mobile_ion,
            settings.temperature_k,
            settings.timestep_fs,
            settings.sample_every,
            smoothed="max",
            min_obs=settings.min_obs,
        )
    except ValueError as error:
        # smoothed="max" fits windows from 1 ps up: shorter production runs cannot be fitted.
        result.status = "failed"
        result.reason = f"diffusion analysis failed ({error}); production must exceed 1 ps"
        return result
    diffusivity = float(analyzer.diffusivity)
    if not math.isfinite(diffusivity) or diffusivity <= 0:
        result.status = "failed"
        result.reason = f"no measurable diffusion (fitted diffusivity {diffusivity:.3g} cm²/s)"
        return result
    result.status = "completed"
    result.diffusivity_cm2_s = diffusivity
    result.diffusivity_std_dev = float(analyzer.diffusivity_std_dev)
    result.conductivity_ms_cm = float(analyzer.conductivity)
    result.conductivity_std_dev = float(analyzer.conductivity_std_dev)
    if math.isclose(settings.temperature_k, SUPERIONIC_TEMPERATURE_K):
        result.superionic = bool(result.conductivity_ms_cm > 10**SUPERIONIC_LOG10_MS_CM)
    return result


@dataclass
class ArrheniusResult:
    """Arrhenius fit D = D0 exp(-Ea / kT) over completed runs, with the plot's path."""

    formula: str
    temperatures_k: list[float]
    diffusivities_cm2_s: list[float]
    activation_energy_ev: float
    activation_energy_std_dev: float | None
    conductivity_300k_ms_cm: float
    superionic: bool | None
    plot_path: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def arrhenius(results: Sequence[MDResult], plot_path: str | Path | None = None) -> ArrheniusResult:
    """Fit the completed runs of one material; write the Arrhenius plot to ``plot_path``.

    Needs at least two completed temperatures; failed or skipped runs are left out. The
    superionic flag is GNoME's, taken from the 1,000 K run when there is one.
    """
    completed = sorted(
        (r for r in results if r.status == "completed"), key=lambda r: r.temperature_k
    )
    if len({r.temperature_k for r in completed}) < 2:
        raise ValueError(
            f"an Arrhenius fit needs completed runs at 2+ temperatures, got "
            f"{[r.temperature_k for r in completed]}; check the failed runs' reasons"
        )
    if len({r.formula for r in completed}) != 1:
        raise ValueError("results mix materials; fit one material at a time")
    temperatures = [r.temperature_k for r in completed]
    diffusivities = [float(r.diffusivity_cm2_s) for r in completed]
    errors = [float(r.diffusivity_std_dev or 0.0) for r in completed]
    activation, _, activation_std = fit_arrhenius(temperatures, diffusivities)
    structure = Structure.from_dict(completed[0].structure)
    sigma_300k = get_extrapolated_conductivity(
        temperatures, diffusivities, 300, structure, completed[0].mobile_ion
    )
    flags = [r.superionic for r in completed if r.superionic is not None]
    written = None
    if plot_path is not None:
        written = Path(plot_path)
        written.parent.mkdir(parents=True, exist_ok=True)
        axes = get_arrhenius_plot(temperatures, diffusivities, diffusivity_errors=errors)
        axes.set_title(f"{completed[0].formula}: {completed[0].mobile_ion} diffusion")
        axes.figure.savefig(written, dpi=120, bbox_inches="tight")
        axes.figure.clf()
        import matplotlib.pyplot as plt

        plt.close(axes.figure)
    return ArrheniusResult(
        formula=completed[0].formula,
        temperatures_k=temperatures,
        diffusivities_cm2_s=diffusivities,
        activation_energy_ev=float(activation),
        activation_energy_std_dev=None if activation_std is None else float(activation_std),
        conductivity_300k_ms_cm=float(sigma_300k),
        superionic=flags[0] if flags else None,
        plot_path=None if written is None else str(written),
    )
