"""Plots are written to the requested path and format."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from hullhunter.hull import HullSet, plot_hit_rate, plot_parity, plot_ternary_hull

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
