from __future__ import annotations

import math

import pytest
import torch
from ase.calculators.lj import LennardJones
from pymatgen.core import Lattice, Structure

from hullhunter.workflows.md import (
    MDSettings,
    arrhenius,
    conductivity,
    ensure_min_width,
    perpendicular_widths,
    run_md,
)

# Tiny protocol for tests: smoothed="max" needs more than 1 ps of production to fit.
TINY = {"duration_ps": 1.3, "equilibration_ps": 0.05, "sample_every": 5, "min_obs": 2}


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
    assert "production must exceed 1 ps" in result.reason
    assert result.diffusivity_cm2_s is None


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="equilibration_ps < duration_ps"):
        MDSettings(duration_ps=1.0, equilibration_ps=2.0)
    with pytest.raises(ValueError, match="temperature_k > 0"):
        MDSettings(temperature_k=-5)


@pytest.mark.slow
def test_li3n_diffuses_and_gives_an_arrhenius_plot(li3n, tmp_path):
    """alpha-Li3N, a known fast Li conductor, at two temperatures in its primitive cell."""
    torch.set_num_threads(1)
    results = [
        conductivity(li3n, settings=MDSettings(temperature_k=t, min_cell_width=3.0, **TINY))
        for t in (1000.0, 1400.0)
    ]
    for result in results:
        assert result.status == "completed", result.reason
        assert math.isfinite(result.diffusivity_cm2_s) and result.diffusivity_cm2_s > 0
        assert result.conductivity_ms_cm > 0
    assert results[0].superionic is not None and results[1].superionic is None
    fit = arrhenius(results, tmp_path / "arrhenius.png")
    assert (tmp_path / "arrhenius.png").stat().st_size > 1000
    assert fit.temperatures_k == [1000.0, 1400.0]
    assert math.isfinite(fit.activation_energy_ev)
    assert fit.conductivity_300k_ms_cm > 0


def test_arrhenius_needs_two_completed_temperatures(li3n, nacl):
    skipped = conductivity(nacl, settings=MDSettings(**TINY))
    with pytest.raises(ValueError, match="2\\+ temperatures"):
        arrhenius([skipped])


def test_run_md_keeps_only_sampled_production_frames(li3n):
    """50 steps, 10 of equilibration, a frame every 5: frames at steps 15, 20, ..., 50."""
    settings = MDSettings(duration_ps=0.1, equilibration_ps=0.02, sample_every=5)
    calculator = LennardJones(epsilon=0.01, sigma=1.5, rc=4.0)
    positions, steps, drift, failure = run_md(li3n, calculator, settings)
    assert failure == ""
    assert steps == settings.n_steps == 50
    assert positions.shape == (8, len(li3n), 3)
    assert math.isfinite(drift) and drift <= settings.max_drift_ev_per_atom
