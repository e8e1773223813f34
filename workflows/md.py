"""MD ionic conductivity at GNoME's protocol: NVT MD, diffusion analysis, Arrhenius fits.

GNoME's ML-MD (Merchant et al. 2023): Nosé-Hoover NVT at 1,000 K, 2 fs steps, 50 ps, the
first 10 ps discarded; diffusivity from pymatgen's ``DiffusionAnalyzer`` (smoothed="max"),
kept beside the block-averaged D reported here;
superionic when sigma(1,000 K) > 10^1.18 mS/cm. MD runs through ASE directly rather than
atomate2's force-field MD maker, because each run must stop early with a recorded reason
(atoms too close, energy drift, non-finite energy) and hand unwrapped positions straight to
the analysis; every setting is configurable so tests can run tiny versions.

Every reported D and sigma carries a block-averaged standard error, a run whose mobile
ions move less than one hop is recorded as "no diffusion" with its mean-square displacement,
and an Arrhenius fit that is not physical is refused with its reason
(:mod:`hullhunter.workflows.diffusion`). :func:`conductivity` runs one temperature;
:func:`arrhenius` fits several of them. :data:`PROFILES` holds run settings sized for a
laptop and for a cluster.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from ase.calculators.calculator import Calculator
from ase.md.nose_hoover_chain import NoseHooverChainNVT
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.units import fs
from pymatgen.analysis.diffusion.analyzer import DiffusionAnalyzer
from pymatgen.core import Element, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from rich.progress import Progress

from hullhunter.workflows.diffusion import (
    PYMATGEN_FLOOR_CM2_S,
    ArrheniusResult,
    arrhenius,
    block_diffusivities,
    closest_pair_distance,
    hop_distance,
    mobile_displacements,
    msd_at_lag,
    standard_error,
)
from hullhunter.workflows.finetune import chgnet_calculator

# GNoME: superionic when the 1,000 K conductivity exceeds 10^1.18 mS/cm (about 15 mS/cm).
SUPERIONIC_LOG10_MS_CM = 1.18
SUPERIONIC_TEMPERATURE_K = 1000.0
__all__ = ["PROFILES", "ArrheniusResult", "MDResult", "MDSettings", "arrhenius", "conductivity"]


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
    ``n_blocks``: blocks the production run is cut into for the standard error of D.
    ``profile``: the name of the profile these settings came from, reported with results.
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
    n_blocks: int = 4
    seed: int = 0
    profile: str = "custom"

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
        if self.n_blocks < 2:
            raise ValueError(
                f"n_blocks must be at least 2 for an error estimate, got {self.n_blocks}"
            )

    @property
    def n_steps(self) -> int:
        return round(self.duration_ps * 1000 / self.timestep_fs)

    @property
    def n_equilibration_steps(self) -> int:
        return round(self.equilibration_ps * 1000 / self.timestep_fs)

    @property
    def frame_fs(self) -> float:
        """Time between stored frames (fs)."""
        return self.timestep_fs * self.sample_every


# Paper scale (GNoME) for a cluster; the laptop profile keeps cells small (about 30-100
# atoms) and runs short enough for 2 CPU cores (CHGNet: about 0.1-0.3 s per step there).
PROFILES: dict[str, dict[str, Any]] = {
    "cluster": {},
    "laptop": {
        "duration_ps": 12.0,
        "equilibration_ps": 2.0,
        "min_cell_width": 7.0,
        "sample_every": 10,
        "min_obs": 10,
    },
}


def md_settings(profile: str = "cluster", **overrides: Any) -> MDSettings:
    """Settings of a named profile (``laptop`` or ``cluster``) with ``overrides`` applied."""
    if profile not in PROFILES:
        raise ValueError(f"unknown MD profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return MDSettings(**{**PROFILES[profile], "profile": profile, **overrides})


@dataclass
class MDResult:
    """One MD run and its diffusion analysis; a conductivity only when ``status == "completed"``.

    ``status``: "completed"; "no_diffusion" (the mobile ions vibrate but do not hop: see
    ``msd_a2`` against ``hop_distance_a``, or pymatgen's fit sat at its floor); "skipped"
    (nothing to simulate, e.g. no mobile ion); "failed" (stopped: atoms too close, energy
    drift, non-finite energy, a run too short or too few mobile ions to analyse).
    Diffusivity in cm²/s, conductivity in mS/cm. D is the mean of the ``n_blocks`` blocks'
    diffusivities (``block_diffusivities_cm2_s``) and its standard deviation their standard
    error: on independent reruns of a random walk that error matched the spread of the block
    mean, while pymatgen's single fit (kept as ``pymatgen_diffusivity_cm2_s``, GNoME's
    figure) spread 2.6x wider, so reporting it with the block error would understate it.
    ``msd_a2`` is the mobile ions' mean-square displacement (Å²) at a lag of half the
    production run (``msd_lag_ps``).
    """

    formula: str
    mobile_ion: str
    temperature_k: float
    status: Literal["completed", "no_diffusion", "skipped", "failed"]
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    profile: str = "custom"
    n_atoms: int = 0
    n_mobile: int = 0
    supercell: list[int] = field(default_factory=lambda: [1, 1, 1])
    steps_run: int = 0
    n_frames: int = 0
    production_ps: float = 0.0
    energy_drift_ev_per_atom: float | None = None
    msd_a2: float | None = None
    msd_lag_ps: float | None = None
    hop_distance_a: float | None = None
    pymatgen_diffusivity_cm2_s: float | None = None
    diffusivity_cm2_s: float | None = None
    diffusivity_std_dev: float | None = None
    block_diffusivities_cm2_s: list[float] = field(default_factory=list)
    conductivity_ms_cm: float | None = None
    conductivity_std_dev: float | None = None
    superionic: bool | None = None
    wall_time_s: float = 0.0
    structure: dict | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def begun(
        cls, cell: Structure, mobile_ion: str, settings: MDSettings, **fields: Any
    ) -> MDResult:
        """A run of ``cell`` not yet done ("skipped" until something happens)."""
        return cls(
            formula=cell.composition.reduced_formula,
            mobile_ion=mobile_ion,
            temperature_k=settings.temperature_k,
            status="skipped",
            profile=settings.profile,
            n_atoms=len(cell),
            **fields,
        )


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
    result = MDResult.begun(structure, mobile_ion, settings)
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
    return analyse_diffusion(cell, positions, settings, result)


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


def analyse_diffusion(
    cell: Structure,
    positions: np.ndarray,
    settings: MDSettings,
    result: MDResult | None = None,
    *,
    mobile_ion: str = "Li",
) -> MDResult:
    """Diffusivity and conductivity of the mobile ion from production frames of ``cell``.

    ``positions`` are unwrapped frames [frames, atoms, 3] as :func:`run_md` returns them;
    ``result`` (made here when None, for ``mobile_ion``) is completed in place.

    In order: a production run no longer than the fit's 1 ps start fails as too short; a
    run whose mobile ions stay within one hop in mean square is "no_diffusion"; one with too
    few mobile ions for ``min_obs``, or too short for 1 ps of fitted lags, fails saying so;
    a fit at pymatgen's floor, or a block-averaged D that is not positive, is
    "no_diffusion"; otherwise the run completes with the block-averaged D and its error.
    The superionic flag is set only at 1,000 K.
    """
    if result is None:
        result = MDResult.begun(cell, mobile_ion, settings, structure=cell.as_dict())
    ion = result.mobile_ion
    species = [site.specie.symbol for site in cell]
    result.n_mobile = species.count(ion)
    result.production_ps = len(positions) * settings.frame_fs / 1000
    if len(positions) < 2:
        result.status = "failed"
        result.reason = "too short: fewer than 2 production frames; lengthen duration_ps"
        return result
    first_lag = int(1000 / settings.frame_fs)
    if len(positions) <= first_lag:
        result.status = "failed"
        result.reason = (
            f"too short: {result.production_ps:.2f} ps of production, but the diffusion fit "
            "starts at a 1 ps lag; lengthen duration_ps"
        )
        return result
    displacements = mobile_displacements(positions, species, ion)
    lag = len(positions) // 2
    result.msd_a2 = msd_at_lag(displacements, lag)
    result.msd_lag_ps = lag * settings.frame_fs / 1000
    result.hop_distance_a = hop_distance(cell, ion)
    cause = _window_problem(result, len(positions), settings)
    if result.msd_a2 < result.hop_distance_a**2:
        result.status = "no_diffusion"
        result.reason = (
            f"no diffusion: {ion} mean-square displacement {result.msd_a2:.3g} Å² over "
            f"{result.msd_lag_ps:.2f} ps is below one hop ({result.hop_distance_a:.2f} Å)² "
            f"in {result.production_ps:.2f} ps of production"
        )
        if cause:
            result.notes.append(f"even a diffusing run could not be analysed: {cause}")
        return result
    if cause:
        result.status, result.reason = "failed", cause
        return result
    analyzer = DiffusionAnalyzer(
        cell,
        np.transpose(positions - positions[0], (1, 0, 2)),
        ion,
        settings.temperature_k,
        settings.timestep_fs,
        settings.sample_every,
        smoothed="max",
        min_obs=settings.min_obs,
    )
    pymatgen_diffusivity = float(analyzer.diffusivity)
    if not math.isfinite(pymatgen_diffusivity) or pymatgen_diffusivity <= PYMATGEN_FLOOR_CM2_S * (
        1 + 1e-6
    ):
        result.status = "no_diffusion"
        result.reason = (
            f"no diffusion: pymatgen's MSD fit sits at its floor ({pymatgen_diffusivity:.3g} "
            f"cm²/s); {ion} mean-square displacement {result.msd_a2:.3g} Å²"
        )
        return result
    result.pymatgen_diffusivity_cm2_s = pymatgen_diffusivity
    blocks = block_diffusivities(displacements, settings.frame_fs, settings.n_blocks)
    result.block_diffusivities_cm2_s = blocks
    diffusivity = float(np.mean(blocks))
    if diffusivity <= 0:
        result.status = "no_diffusion"
        result.reason = (
            f"no diffusion: the mean of the {settings.n_blocks} blocks' MSD slopes is not "
            f"positive ({diffusivity:.3g} cm²/s); {ion} mean-square displacement "
            f"{result.msd_a2:.3g} Å²"
        )
        return result
    factor = float(analyzer.conductivity) / pymatgen_diffusivity
    result.status = "completed"
    result.diffusivity_cm2_s = diffusivity
    result.diffusivity_std_dev = standard_error(blocks)
    result.conductivity_ms_cm = diffusivity * factor
    result.conductivity_std_dev = result.diffusivity_std_dev * factor
    if result.diffusivity_std_dev > diffusivity:
        result.notes.append("the block-averaged error of D exceeds D: run longer")
    if math.isclose(settings.temperature_k, SUPERIONIC_TEMPERATURE_K):
        result.superionic = bool(result.conductivity_ms_cm > 10**SUPERIONIC_LOG10_MS_CM)
    return result


def _window_problem(result: MDResult, n_frames: int, settings: MDSettings) -> str:
    """Why pymatgen's smoothed="max" analysis cannot fit this long-enough run ("" if it can).

    It fits MSD at lags from 1 ps up to n_mobile x frames / min_obs frames (so each lag has
    ``min_obs`` observations) and at most the run's length: few mobile ions leave no lag past
    the 1 ps start, and fewer than 1 ps of lags past it make a slope of noise (a diffusing
    Li5N2 run with 1.05 ps of production fitted a negative slope on another machine).
    """
    first = int(1000 / settings.frame_fs)
    last = min(result.n_mobile * n_frames // settings.min_obs, n_frames - 1)
    if result.n_mobile * n_frames // settings.min_obs <= first:
        return (
            f"too few mobile ions: {result.n_mobile} {result.mobile_ion} x {n_frames} frames / "
            f"min_obs {settings.min_obs} allows lags up to "
            f"{last * settings.frame_fs / 1000:.2f} ps, below the fit's 1 ps start; use a "
            "larger supercell (min_cell_width) or a smaller min_obs"
        )
    if last - first < first:
        return (
            f"too short: {result.production_ps:.2f} ps of production gives the fit lags from 1 "
            f"to {last * settings.frame_fs / 1000:.2f} ps; it needs at least 1 ps of them "
            "(2 ps of production); lengthen duration_ps"
        )
    if n_frames // settings.n_blocks < 4:
        return f"too short: {n_frames} frames cannot make {settings.n_blocks} blocks of 4+"
    return ""
