"""Plots are written to the requested path and format."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import matplotlib
import numpy as np
import pytest

from hullhunter.hull import (
    HullSet,
    plot_hit_rate,
    plot_model_error,
    plot_novelty,
    plot_parity,
    plot_selection_hit_rate,
    plot_ternary_hull,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def campaign(make_entries) -> HullSet:
    entries = make_entries(3, 80, seed=5)
    elements = [e for e in entries if e.composition.is_element]
    compounds = [e for e in entries if not e.composition.is_element]
    hull_set = HullSet(elements + compounds[:20])
    hull_set.add(compounds[20:50])
    hull_set.add(compounds[50:])
    return hull_set


def test_hit_rate_plot(campaign: HullSet, tmp_path) -> None:
    png = plot_hit_rate(campaign.round_metrics(), tmp_path / "hit.png")
    assert png.read_bytes().startswith(PNG_MAGIC)
    svg = plot_hit_rate(campaign.round_metrics(), tmp_path / "nested" / "hit.svg")
    assert ET.parse(svg).getroot().tag.endswith("svg")
    with pytest.raises(ValueError, match="round_metrics is empty"):
        plot_hit_rate([], tmp_path / "empty.png")


def test_ternary_hull_plot(campaign: HullSet, tmp_path) -> None:
    path = plot_ternary_hull(campaign, "Fe-Li-O", tmp_path / "hull.svg")
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    assert plot_ternary_hull(campaign, "Fe-Li-O", tmp_path / "hull.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="give three"):
        plot_ternary_hull(campaign, "Li-O", tmp_path / "binary.png")


def test_parity_plot(tmp_path) -> None:
    rng = np.random.default_rng(0)
    oracle = rng.uniform(-6, -2, 50)
    path = plot_parity(oracle + rng.normal(0, 0.02, 50), oracle, tmp_path / "parity.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="no pair of finite"):
        plot_parity([np.nan], [1.0], tmp_path / "nan.png")


def _svg_text(path) -> set[str]:
    return {t.text for t in ET.parse(path).getroot().iter() if t.tag.endswith("text")}


def test_discovery_figures_keep_kinds_and_classes_apart(tmp_path) -> None:
    """Stored round metrics (None where a ratio had no denominator) become three figures."""
    rounds = [
        {
            "round": 1,
            "selection": {
                "screened": {"accepted": 4, "hits": 2, "hit_rate": 0.5},
                "exploration": {"accepted": 3, "hits": 0, "hit_rate": 0.0},
                "compositional": {"accepted": 0, "hits": 0, "hit_rate": None},
            },
            "model_mae_ev_per_atom": 0.08,
            "n_predicted": 7,
            "novelty": {"novel": 1, "new_polymorph": 1, "rediscovered": 0},
        },
        {
            "round": 2,
            "selection": {
                "screened": {"accepted": 5, "hits": 4, "hit_rate": 0.8},
                "exploration": {"accepted": 0, "hits": 0, "hit_rate": None},
                "compositional": {"accepted": 0, "hits": 0, "hit_rate": None},
            },
            "model_mae_ev_per_atom": 0.05,
            "n_predicted": 5,
            "novelty": {"novel": 0, "new_polymorph": 2, "rediscovered": 2},
        },
    ]
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text
        hits = _svg_text(plot_selection_hit_rate(rounds, tmp_path / "hits.svg"))
        error = _svg_text(plot_model_error(rounds, tmp_path / "error.svg"))
        novelty = _svg_text(plot_novelty(rounds, tmp_path / "novelty.svg"))
    assert {"2/4", "0/3", "4/5", "screened picks", "exploration picks"} <= hits
    assert "compositional picks" not in hits  # no AIRSS picks, no line
    assert {"n = 7", "n = 5", "model MAE vs oracle (meV/atom)"} <= error
    assert {"novel composition", "new polymorph", "rediscovered"} <= novelty
    with pytest.raises(ValueError, match="no round has a model error"):
        plot_model_error([{"round": 1}], tmp_path / "none.png")
