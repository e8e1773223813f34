from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase.calculators.lj import LennardJones
from pymatgen.core import Lattice, Structure

from hullhunter.workflows.finetune import chgnet_calculator
from hullhunter.workflows.md import (
    MDResult,
    MDSettings,
    analyse_diffusion,
    arrhenius,
    conductivity,
    ensure_min_width,
    md_settings,
    perpendicular_widths,
    run_md,
)

# Tiny protocol for tests: smoothed="max" needs more than 1 ps of production to fit.
TINY = {"duration_ps": 1.3, "equilibration_ps": 0.05, "sample_every": 5, "min_obs": 2}
KB_EV = 8.617333e-5


def test_narrow_cell_becomes_a_supercell_and_says_so(li3n):
    cell, scaling, note = ensure_min_width(li3n, 6.0)
    assert scaling == [2, 2, 2]
    assert len(cell) == 32
    assert perpendicular_widths(cell).min() >= 6.0
    assert "2x2x2 supercell (32 atoms)" in note
    assert ensure_min_width(cell, 6.0)[1:] == ([1, 1, 1], "")


def test_no_mobile_ion_is_skipped_with_a_reason(nacl):
    result = conductivity(nacl, settings=MDSettings(**TINY))
    assert result.status == "skipped"
    assert result.reason == "no Li in NaCl: nothing to diffuse"
    assert result.conductivity_ms_cm is None and result.diffusivity_cm2_s is None


def test_atoms_too_close_stop_before_md():
    crushed = Structure(Lattice.cubic(4.0), ["Li", "Li", "O"], [[0, 0, 0], [0.05, 0, 0], [0.5] * 3])
    result = conductivity(crushed, settings=MDSettings(**TINY, min_cell_width=3.0))
    assert result.status == "failed"
    assert "atoms too close in the input (0.20 Å" in result.reason
    assert result.conductivity_ms_cm is None and result.steps_run == 0


def test_energy_drift_stops_the_run(li3n):
    torch.set_num_threads(1)
    settings = MDSettings(**TINY, min_cell_width=3.0, max_drift_ev_per_atom=1e-9)
    result = conductivity(li3n, settings=settings)
    assert result.status == "failed"
    assert result.reason.startswith("energy drift")
    assert result.steps_run == settings.sample_every
    assert result.conductivity_ms_cm is None and result.superionic is None


def test_too_short_a_run_records_why_not_a_conductivity(li3n):
    torch.set_num_threads(1)
    settings = MDSettings(
        duration_ps=0.1, equilibration_ps=0.02, sample_every=5, min_cell_width=3.0
    )
    result = conductivity(li3n, settings=settings)
    assert result.status == "failed"
    assert result.reason.startswith("too short: 0.08 ps of production")
    assert result.diffusivity_cm2_s is None


@pytest.mark.slow
def test_vibrating_solid_is_no_diffusion_with_its_msd():
    """Rocksalt LiF well below melting: Li rattles in its site and never hops.

    4 fs steps (Li's vibration period is about 100 fs) keep the run to about 280 steps.
    """
    torch.set_num_threads(1)
    lif = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.03), ["Li", "F"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    settings = MDSettings(
        temperature_k=600,
        timestep_fs=4.0,
        duration_ps=1.1,
        equilibration_ps=0.02,
        sample_every=5,
        min_obs=2,
        min_cell_width=3.0,
    )
    result = conductivity(lif, settings=settings)
    assert result.status == "no_diffusion", result.reason
    assert 0 < result.msd_a2 < 0.5 < result.hop_distance_a**2
    assert math.isclose(result.hop_distance_a, 4.03 / math.sqrt(2), rel_tol=1e-6)
    assert result.reason.startswith("no diffusion: Li mean-square displacement")
    assert result.diffusivity_cm2_s is None and result.conductivity_ms_cm is None
    assert result.superionic is None


def _random_walk(
    cell: Structure, n_frames: int, step: float, seed: int = 0, vibration: float = 0.0
) -> np.ndarray:
    """Unwrapped frames where the Li atoms random-walk and every atom vibrates (Å, per axis)."""
    rng = np.random.default_rng(seed)
    positions = np.repeat(cell.cart_coords[None], n_frames, axis=0)
    li = [i for i, site in enumerate(cell) if site.specie.symbol == "Li"]
    positions[:, li] += np.cumsum(rng.normal(0, step, size=(n_frames, len(li), 3)), axis=0)
    return positions + rng.normal(0, vibration, size=positions.shape)


def test_too_few_mobile_ions_is_named_as_the_cause(li3n):
    """3 Li, 150 frames, min_obs 30: lags stop at 0.3 ps, below the fit's 1 ps start."""
    settings = MDSettings(duration_ps=3.0, equilibration_ps=0.0, sample_every=10)
    positions = _random_walk(li3n, 150, 0.5)
    result = analyse_diffusion(li3n, positions, settings)
    assert result.status == "failed"
    assert result.reason.startswith("too few mobile ions: 3 Li x 150 frames / min_obs 30")
    enough = analyse_diffusion(li3n, positions, MDSettings(**{**vars(settings), "min_obs": 2}))
    assert enough.status == "completed", enough.reason
    assert enough.diffusivity_std_dev > 0 and len(enough.block_diffusivities_cm2_s) == 4


def _run(temperature: float, diffusivity: float, error: float, cell: Structure) -> MDResult:
    """A completed per-temperature result with the given D and error (no MD)."""
    return MDResult(
        formula="Li3N",
        mobile_ion="Li",
        temperature_k=temperature,
        status="completed",
        diffusivity_cm2_s=diffusivity,
        diffusivity_std_dev=error,
        structure=cell.as_dict(),
    )


def test_fit_on_falling_diffusivity_is_refused_with_its_reason(li3n, tmp_path):
    falling = [
        _run(800, 2e-5, 2e-6, li3n),
        _run(1000, 3e-5, 3e-6, li3n),
        _run(1200, 1e-5, 1e-6, li3n),
    ]
    fit = arrhenius(falling, tmp_path / "refused.png")
    assert not fit.accepted
    assert fit.reason.startswith("D does not rise with temperature: 3e-05 cm²/s at 1000 K")
    assert fit.activation_energy_ev is None and fit.conductivity_300k_ms_cm is None
    assert [row["temperature_k"] for row in fit.per_temperature] == [800, 1000, 1200]
    assert [row["diffusivity_cm2_s"] for row in fit.per_temperature] == [2e-5, 3e-5, 1e-5]
    assert (tmp_path / "refused.png").stat().st_size > 1000


def test_fit_refusals_name_their_cause(li3n):
    flat = [_run(t, 2e-5, 5e-6, li3n) for t in (800, 1000, 1200)]
    flat_fit = arrhenius(flat)
    assert not flat_fit.accepted
    assert "not positive" in flat_fit.reason or "uncertainty exceeds" in flat_fit.reason
    no_diffusion = MDResult("Li3N", "Li", 600, "no_diffusion", msd_a2=0.1)
    two = arrhenius([no_diffusion, *flat[:2]])
    assert two.reason == (
        "only 2 temperature(s) diffuse; an Arrhenius fit needs 3 (600 K: no_diffusion)"
    )
    assert two.per_temperature[0]["msd_a2"] == 0.1
    with pytest.raises(ValueError, match="mix materials"):
        arrhenius([*flat, MDResult("LiF", "Li", 900, "completed")])


def test_fit_accepts_arrhenius_behaviour_with_error_bars(li3n, tmp_path):
    """D = 1e-2 exp(-0.3 eV / kT) with 10 % errors: Ea comes back within its error."""
    rows = []
    for temperature in (700, 900, 1100, 1300):
        diffusivity = 1e-2 * math.exp(-0.3 / (KB_EV * temperature))
        rows.append(_run(temperature, diffusivity, 0.1 * diffusivity, li3n))
    fit = arrhenius(rows, tmp_path / "accepted.png")
    assert fit.accepted, fit.reason
    assert math.isclose(fit.activation_energy_ev, 0.3, abs_tol=1e-4)
    assert 0 < fit.activation_energy_std_dev < 0.1
    assert fit.conductivity_300k_ms_cm > 0 and fit.conductivity_300k_std_dev > 0
    assert (tmp_path / "accepted.png").stat().st_size > 1000


def test_block_error_matches_the_spread_of_reruns(li3n):
    """40 independent random walks (with vibration) of the same Li3N supercell.

    The error reported with each D must match how much D differs between reruns, and D must
    come back to the walk's true diffusivity. pymatgen's single fit, kept beside it, spreads
    more than twice as wide, which is why it is not the figure reported with that error.
    """
    cell = li3n * (2, 2, 2)
    settings = MDSettings(duration_ps=4.0, equilibration_ps=0.0, sample_every=10, min_obs=2)
    step = 0.25  # Å per axis per 20 fs frame: D = 3 step² / (6 frame) Å²/fs
    true_diffusivity = 3 * step**2 / (6 * settings.frame_fs) / 10
    results = [
        analyse_diffusion(cell, _random_walk(cell, 200, step, seed, vibration=0.1), settings)
        for seed in range(40)
    ]
    assert all(r.status == "completed" for r in results), results[0].reason
    diffusivities = np.array([r.diffusivity_cm2_s for r in results])
    errors = np.array([r.diffusivity_std_dev for r in results])
    spread = diffusivities.std(ddof=1)
    assert 0.7 < np.sqrt(np.mean(errors**2)) / spread < 1.4
    assert abs(diffusivities.mean() - true_diffusivity) < 3 * spread / np.sqrt(len(results))
    pymatgen_spread = np.std([r.pymatgen_diffusivity_cm2_s for r in results], ddof=1)
    assert pymatgen_spread > 2 * spread
    for r in results[:3]:
        assert r.diffusivity_cm2_s == pytest.approx(np.mean(r.block_diffusivities_cm2_s))
        assert r.conductivity_std_dev / r.conductivity_ms_cm == pytest.approx(
            r.diffusivity_std_dev / r.diffusivity_cm2_s
        )


def test_fit_window_under_a_picosecond_is_too_short(li3n):
    """1.5 ps of production leaves lags from 1 to 1.5 ps: a slope of noise, refused."""
    cell = li3n * (2, 2, 2)
    settings = MDSettings(duration_ps=1.5, equilibration_ps=0.0, sample_every=10, min_obs=2)
    result = analyse_diffusion(cell, _random_walk(cell, 75, 0.25), settings)
    assert result.status == "failed"
    assert result.reason.startswith(
        "too short: 1.50 ps of production gives the fit lags from 1 to 1.48 ps; "
        "it needs at least 1 ps of them"
    )
    assert result.diffusivity_cm2_s is None


@pytest.mark.slow
def test_real_diffusing_run_completes_with_its_error(li3n):
    """Li3N with one Li vacancy (2x1x1, 7 atoms) at 1,500 K diffuses within a picosecond.

    2.1 ps of production gives the fit its 1 ps of lags past the 1 ps start.
    """
    torch.set_num_threads(1)
    cell = li3n * (2, 1, 1)
    cell.remove_sites([[site.specie.symbol for site in cell].index("Li")])
    assert cell.composition.reduced_formula == "Li5N2"
    settings = MDSettings(
        temperature_k=1500,
        duration_ps=2.2,
        equilibration_ps=0.1,
        sample_every=2,
        min_obs=2,
        min_cell_width=3.0,
    )
    positions, _, _, failure = run_md(cell, chgnet_calculator(), settings)
    assert failure == ""
    result = analyse_diffusion(cell, positions, settings)
    assert result.status == "completed", result.reason
    assert result.msd_a2 > result.hop_distance_a**2
    assert result.diffusivity_std_dev > 0 and len(result.block_diffusivities_cm2_s) == 4
    assert result.pymatgen_diffusivity_cm2_s > 0


def test_profiles_name_themselves_in_results(nacl):
    laptop = md_settings("laptop")
    assert laptop.profile == "laptop" and laptop.duration_ps < MDSettings().duration_ps
    assert md_settings("cluster") == MDSettings(profile="cluster")
    assert conductivity(nacl, settings=md_settings("laptop")).profile == "laptop"
    with pytest.raises(ValueError, match="unknown MD profile 'phone'"):
        md_settings("phone")


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="equilibration_ps < duration_ps"):
        MDSettings(duration_ps=1.0, equilibration_ps=2.0)
    with pytest.raises(ValueError, match="temperature_k > 0"):
        MDSettings(temperature_k=-5)
    with pytest.raises(ValueError, match="n_blocks must be at least 2"):
        MDSettings(n_blocks=1)


def test_run_md_keeps_only_sampled_production_frames(li3n):
    """50 steps, 10 of equilibration, a frame every 5: frames at steps 15, 20, ..., 50."""
    settings = MDSettings(duration_ps=0.1, equilibration_ps=0.02, sample_every=5)
    calculator = LennardJones(epsilon=0.01, sigma=1.5, rc=4.0)
    positions, steps, drift, failure = run_md(li3n, calculator, settings)
    assert failure == ""
    assert steps == settings.n_steps == 50
    assert positions.shape == (8, len(li3n), 3)
    assert math.isfinite(drift) and drift <= settings.max_drift_ev_per_atom
