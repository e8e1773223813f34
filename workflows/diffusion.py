"""Diffusion statistics an analyst can trust: block-averaged errors, no-diffusion checks, fits.

pymatgen's ``DiffusionAnalyzer`` gives the diffusivity of one run (GNoME's protocol), but its
standard deviation is the regression error of strongly correlated MSD points (about 1000x
smaller than the spread between halves of the same trajectory), it clamps a negative MSD
slope to a floor (1e-15 Å²/fs, D = 1.67e-17 cm²/s) that looks like a result, and its
Arrhenius helpers fit whatever they are given. This module adds what a result needs before
it is reported:

- :func:`block_diffusivities`: block averaging. The production run is cut into equal
  consecutive blocks; each block's D is the slope of its own time-origin-averaged MSD
  (lags from a tenth to half the block, fitted with an intercept so vibration does not
  count as diffusion). The standard error of D is the blocks' standard deviation over
  sqrt(number of blocks): the spread that re-running or splitting the trajectory shows.
- :func:`msd_at_lag` and :func:`hop_distance`: a run whose mobile ions move less than one
  hop (the shortest distance between two of their sites) in mean square has not diffused.
- :func:`fit_arrhenius_checked`: a weighted ln D vs 1/T fit that refuses, with a one-line
  reason, what is not physical (see its docstring).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.units import kB
from pymatgen.analysis.diffusion.analyzer import get_conversion_factor
from pymatgen.core import Structure
from vesin import NeighborList

if TYPE_CHECKING:
    from hullhunter.workflows.md import MDResult

# pymatgen's get_diffusivity_from_msd clamps the MSD slope at 1e-15 Å²/fs: D = slope / 60.
PYMATGEN_FLOOR_CM2_S = 1e-15 / 60
# Å²/fs to cm²/s, and 6 = 2 x dimensionality: D = slope / 60, pymatgen's convention.
_SLOPE_TO_D = 1 / 60
MIN_DIFFUSING_TEMPERATURES = 3


def closest_pair_distance(positions: np.ndarray, cell: np.ndarray, cutoff: float) -> float:
    """The shortest periodic pair distance below ``cutoff`` (inf if none), via vesin."""
    (distances,) = NeighborList(cutoff=cutoff, full_list=False).compute(
        points=positions, box=cell, periodic=True, quantities="d"
    )
    return float(distances.min()) if len(distances) else math.inf


def mobile_displacements(
    positions: np.ndarray, species: Sequence[str], mobile_ion: str
) -> np.ndarray:
    """Mobile-ion displacements [ions, frames, 3] from frame 0, framework drift removed.

    ``positions`` are unwrapped Cartesian frames [frames, atoms, 3]. The framework's mean
    displacement is subtracted as pymatgen does (no framework: nothing subtracted).
    """
    mobile = np.array([symbol == mobile_ion for symbol in species])
    displacements = positions - positions[0]
    if (~mobile).any():
        displacements = displacements - displacements[:, ~mobile].mean(axis=1, keepdims=True)
    return np.transpose(displacements[:, mobile], (1, 0, 2))


def msd_at_lag(displacements: np.ndarray, lag: int) -> float:
    """Mean-square displacement (Å²) at ``lag`` frames, averaged over ions and time origins."""
    if lag <= 0:
        return 0.0
    steps = displacements[:, lag:] - displacements[:, :-lag]
    return float(np.mean(np.sum(steps**2, axis=-1)))


def block_diffusivity(displacements: np.ndarray, frame_fs: float) -> float:
    """D (cm²/s) of one stretch of trajectory from the slope of its windowed MSD.

    Lags run from a tenth to half of the stretch (enough time origins at every lag); the
    straight-line fit has an intercept, which absorbs the vibrational plateau. Unlike
    pymatgen's fit, a negative slope is kept: clamping it would hide the noise.
    """
    n_frames = displacements.shape[1]
    lags = np.arange(max(1, n_frames // 10), max(2, n_frames // 2) + 1)
    msd = np.array([msd_at_lag(displacements, int(lag)) for lag in lags])
    slope = np.polyfit(lags * frame_fs, msd, 1)[0]
    return float(slope * _SLOPE_TO_D)


def block_diffusivities(displacements: np.ndarray, frame_fs: float, n_blocks: int) -> list[float]:
    """D (cm²/s) of each of ``n_blocks`` equal consecutive blocks of the trajectory."""
    n_frames = displacements.shape[1]
    size = n_frames // n_blocks
    if n_blocks < 2 or size < 4:
        raise ValueError(
            f"{n_frames} frames cannot make {n_blocks} blocks of 4+ frames; "
            "block averaging needs at least 2"
        )
    blocks = [displacements[:, i * size : (i + 1) * size] for i in range(n_blocks)]
    return [block_diffusivity(block - block[:, :1], frame_fs) for block in blocks]


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean of independent block estimates."""
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def hop_distance(structure: Structure, mobile_ion: str, cutoff: float = 8.0) -> float:
    """Shortest distance (Å) between two sites of ``mobile_ion``, periodic images included.

    One hop of the mobile ion: its mean-square displacement must exceed this squared
    before a run counts as diffusing. Falls back to ``cutoff`` when no pair is closer.
    """
    sites = [site.coords for site in structure if site.specie.symbol == mobile_ion]
    closest = closest_pair_distance(np.array(sites), structure.lattice.matrix, cutoff)
    return min(closest, cutoff)


@dataclass
class ArrheniusFit:
    """A weighted ln D = ln D0 - Ea / kT fit, or the reason it was refused."""

    accepted: bool
    reason: str
    activation_energy_ev: float | None = None
    activation_energy_std_dev: float | None = None
    ln_prefactor: float | None = None
    covariance: list[list[float]] | None = None


def fit_arrhenius_checked(
    temperatures: Sequence[float],
    diffusivities: Sequence[float],
    errors: Sequence[float],
) -> ArrheniusFit:
    """Fit D(T) of the diffusing runs, refusing a non-physical fit with a one-line reason.

    Refused when fewer than 3 temperatures are given, when D falls between two temperatures
    by more than their combined error bars, when Ea <= 0, or when Ea's standard error exceeds
    Ea. The fit weights each ln D by its error (sigma_D / D); the standard error of Ea is
    the larger of the weighted one and the one the scatter of the points implies, so neither
    tiny error bars nor a lucky line can make it small. Written here because pymatgen's
    ``fit_arrhenius`` ignores the errors in its linear mode and never refuses.
    """
    temps = np.asarray(temperatures, dtype=float)
    values = np.asarray(diffusivities, dtype=float)
    sigmas = np.asarray(errors, dtype=float)
    order = np.argsort(temps)
    temps, values, sigmas = temps[order], values[order], sigmas[order]
    if len(temps) < MIN_DIFFUSING_TEMPERATURES:
        return ArrheniusFit(
            False,
            f"only {len(temps)} temperature(s) diffuse; an Arrhenius fit needs "
            f"{MIN_DIFFUSING_TEMPERATURES}",
        )
    for i in range(len(temps) - 1):
        drop = values[i] - values[i + 1]
        combined = math.hypot(sigmas[i], sigmas[i + 1])
        if drop > combined:
            return ArrheniusFit(
                False,
                f"D does not rise with temperature: {values[i]:.3g} cm²/s at {temps[i]:.0f} K "
                f"but {values[i + 1]:.3g} at {temps[i + 1]:.0f} K (error bars {combined:.2g})",
            )
    if (values <= 0).any() or (sigmas <= 0).any():
        return ArrheniusFit(False, "every D and its error must be positive to fit ln D")
    x = 1 / temps
    y = np.log(values)
    weights = (values / sigmas) ** 2
    design = np.stack([np.ones_like(x), x], axis=1)
    covariance = np.linalg.inv(design.T @ (design * weights[:, None]))
    intercept, slope = covariance @ design.T @ (weights * y)
    reduced_chi2 = float(np.sum(weights * (y - intercept - slope * x) ** 2) / (len(x) - 2))
    covariance = covariance * max(1.0, reduced_chi2)
    activation = float(-slope * kB)
    activation_std = float(math.sqrt(covariance[1, 1]) * kB)
    fit = ArrheniusFit(
        True,
        "",
        activation,
        activation_std,
        float(intercept),
        covariance.tolist(),
    )
    if activation <= 0:
        fit.accepted = False
        fit.reason = f"activation energy {activation:.3g} eV is not positive"
    elif activation_std > activation:
        fit.accepted = False
        fit.reason = (
            f"activation energy {activation:.3g} ± {activation_std:.2g} eV: "
            "the uncertainty exceeds the value"
        )
    return fit


def extrapolate(fit: ArrheniusFit, temperature_k: float) -> tuple[float, float]:
    """D (cm²/s) at ``temperature_k`` from an accepted fit, with its standard error."""
    if not fit.accepted or fit.covariance is None:
        raise ValueError(f"cannot extrapolate a refused fit ({fit.reason})")
    x = np.array([1.0, 1 / temperature_k])
    slope = -fit.activation_energy_ev / kB
    value = math.exp(fit.ln_prefactor + slope / temperature_k)
    ln_error = math.sqrt(float(x @ np.array(fit.covariance) @ x))
    return value, value * ln_error


@dataclass
class ArrheniusResult:
    """An Arrhenius fit D = D0 exp(-Ea / kT) over the diffusing runs, or why it was refused.

    ``per_temperature`` always lists every run (status, D and sigma with their errors, MSD,
    reason), so a refused fit still shows what each temperature gave. The fitted values
    and the 300 K extrapolation are None when ``accepted`` is False.
    """

    formula: str
    mobile_ion: str
    accepted: bool
    reason: str
    per_temperature: list[dict[str, Any]]
    temperatures_k: list[float]
    diffusivities_cm2_s: list[float]
    diffusivity_std_devs: list[float]
    activation_energy_ev: float | None
    activation_energy_std_dev: float | None
    conductivity_300k_ms_cm: float | None
    conductivity_300k_std_dev: float | None
    superionic: bool | None
    plot_path: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_PER_TEMPERATURE_KEYS = (
    "temperature_k",
    "status",
    "diffusivity_cm2_s",
    "diffusivity_std_dev",
    "conductivity_ms_cm",
    "conductivity_std_dev",
    "msd_a2",
    "hop_distance_a",
    "production_ps",
    "profile",
    "reason",
)


def arrhenius(results: Sequence[MDResult], plot_path: str | Path | None = None) -> ArrheniusResult:
    """Fit the diffusing runs of one material; refuse a non-physical fit with its reason.

    Runs that did not complete (no diffusion, failed, skipped) are reported but not fitted;
    see :func:`~hullhunter.workflows.diffusion.fit_arrhenius_checked` for when a fit is
    refused. The plot (written to ``plot_path``) shows every diffusing D with its error bar,
    and the fitted line only when the fit is accepted.
    """
    if not results:
        raise ValueError("no MD results to fit; run conductivity() at 3+ temperatures")
    if len({r.formula for r in results}) != 1:
        raise ValueError("results mix materials; fit one material at a time")
    ordered = sorted(results, key=lambda r: r.temperature_k)
    completed = [r for r in ordered if r.status == "completed"]
    temperatures = [r.temperature_k for r in completed]
    diffusivities = [float(r.diffusivity_cm2_s) for r in completed]
    errors = [float(r.diffusivity_std_dev) for r in completed]
    fit = fit_arrhenius_checked(temperatures, diffusivities, errors)
    if not fit.accepted and len(completed) < len(ordered):
        others = "; ".join(
            f"{r.temperature_k:.0f} K: {r.status}" for r in ordered if r not in completed
        )
        fit.reason = f"{fit.reason} ({others})"
    sigma_300k = sigma_300k_error = None
    if fit.accepted:
        d_300k, d_300k_error = extrapolate(fit, 300.0)
        factor = get_conversion_factor(
            Structure.from_dict(completed[0].structure), completed[0].mobile_ion, 300.0
        )
        sigma_300k, sigma_300k_error = d_300k * factor, d_300k_error * factor
    flags = [r.superionic for r in completed if r.superionic is not None]
    written = None
    if plot_path is not None:
        written = Path(plot_path)
        _arrhenius_plot(ordered[0], temperatures, diffusivities, errors, fit, written)
    return ArrheniusResult(
        formula=ordered[0].formula,
        mobile_ion=ordered[0].mobile_ion,
        accepted=fit.accepted,
        reason=fit.reason,
        per_temperature=[{key: getattr(r, key) for key in _PER_TEMPERATURE_KEYS} for r in ordered],
        temperatures_k=temperatures,
        diffusivities_cm2_s=diffusivities,
        diffusivity_std_devs=errors,
        activation_energy_ev=fit.activation_energy_ev if fit.accepted else None,
        activation_energy_std_dev=fit.activation_energy_std_dev if fit.accepted else None,
        conductivity_300k_ms_cm=sigma_300k,
        conductivity_300k_std_dev=sigma_300k_error,
        superionic=flags[0] if flags else None,
        plot_path=None if written is None else str(written),
    )


def _arrhenius_plot(
    first: MDResult,
    temperatures: list[float],
    diffusivities: list[float],
    errors: list[float],
    fit: ArrheniusFit,
    path: Path,
) -> None:
    """log D vs 1000/T with error bars; the fitted line and Ea, or the refusal, as title."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(6, 4.5))
    x = 1000 / np.array(temperatures)
    values = np.array(diffusivities)
    # a log axis cannot show a bar below zero: clip the lower bar just above it
    lower = np.minimum(np.array(errors), values * 0.999)
    axes.errorbar(x, values, yerr=[lower, errors], fmt="ko", capsize=4)
    title = f"{first.formula}: {first.mobile_ion} diffusion"
    if fit.accepted:
        line_x = np.linspace(x.min(), x.max(), 50)
        slope = -fit.activation_energy_ev / kB
        axes.plot(line_x, np.exp(fit.ln_prefactor + slope * line_x / 1000), "k--")
        title += f", Ea = {fit.activation_energy_ev:.2f} ± {fit.activation_energy_std_dev:.2f} eV"
    else:
        title += f"\nfit refused: {fit.reason}"
    axes.set_yscale("log")
    axes.set_xlabel("1000 / T (1/K)")
    axes.set_ylabel("D (cm²/s)")
    axes.set_title(title, fontsize=8)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
