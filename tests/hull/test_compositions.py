"""Batch paths (grouping compositions, building many hulls) agree with one-at-a-time."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from pymatgen.core import Composition, Element, Species

from hullhunter.hull import HullSet, build_hull, parse_composition
from hullhunter.hull.convex import build_hulls
from hullhunter.hull.hullset import group_compositions

# 83 elements: more than one 64-bit word of system mask.
ELEMENTS = [Element.from_Z(z).symbol for z in range(1, 84)]


def random_compositions(n: int, seed: int) -> list[Composition | str | dict]:
    """Compositions of 1-5 elements as Composition objects, formula strings and dicts."""
    rng = np.random.default_rng(seed)
    out: list[Composition | str | dict] = []
    for i in range(n):
        symbols = rng.choice(ELEMENTS, int(rng.integers(1, 6)), replace=False).tolist()
        amounts = rng.uniform(0.1, 5.0, len(symbols)).round(3).tolist()
        amount_of = dict(zip(symbols, amounts, strict=True))
        kind = i % 3
        if kind == 0:
            out.append(Composition(amount_of))
        elif kind == 1:
            out.append("".join(f"{el}{amount}" for el, amount in amount_of.items()))
        else:
            out.append(amount_of)
    return out


def test_groups_match_one_by_one_parsing() -> None:
    compositions = random_compositions(600, seed=3)
    # One element in two oxidation states: its amounts add up.
    compositions.append(Composition({Species("Fe", 2): 1, Species("Fe", 3): 2, "O": 4}))
    groups = group_compositions(compositions)

    seen = np.zeros(len(compositions), dtype=int)
    for system, (positions, fractions) in groups.items():
        assert fractions.shape == (len(positions), len(system))
        for position, row in zip(positions, fractions, strict=True):
            expected_system, expected_fractions = parse_composition(compositions[position])
            assert system == expected_system
            np.testing.assert_allclose(row, expected_fractions, rtol=1e-14)
            seen[position] += 1
    assert (seen == 1).all()
    assert max(len(system) for system in groups) == 5
    assert len({el for system in groups for el in system}) > 64
    assert groups[("Fe", "O")][1][0] == pytest.approx([3 / 7, 4 / 7])


def test_grouping_rejects_empty_and_negative_compositions() -> None:
    assert group_compositions([]) == {}
    with pytest.raises(ValueError, match="empty composition"):
        group_compositions([Composition("Li2O"), Composition({})])
    with pytest.raises(ValueError, match="negative amount"):
        group_compositions([Composition({"Li": -1, "O": 2}, allow_negative=True)])


def test_decomposition_energy_accepts_formulas_and_dicts(make_entry) -> None:
    hull_set = HullSet(
        [
            make_entry("Li", -1.9, "Li"),
            make_entry("O", -4.9, "O"),
            make_entry("Li2O", -4.8, "Li2O"),
            make_entry("Li2O2", -4.5, "Li2O2"),
        ]
    )
    energies = [-4.7, -4.6, -4.0]
    as_objects = hull_set.decomposition_energy(
        [Composition("Li2O"), Composition("LiO"), Composition("LiO3")], energies
    )
    mixed = hull_set.decomposition_energy(["Li4O2", {"Li": 1, "O": 1}, {"O": 3, "Li": 1}], energies)
    np.testing.assert_array_equal(mixed, as_objects)
    assert as_objects[0] == pytest.approx(0.1)


def test_batched_hull_build_equals_one_system_at_a_time(make_entries) -> None:
    entries = make_entries(4, 160, seed=5)
    parsed = [parse_composition(e.composition) for e in entries]
    energies = np.array([e.energy_per_atom for e in entries])
    elements = sorted({el for system, _ in parsed for el in system})
    systems = [s for k in range(1, 5) for s in combinations(elements, k)]

    batch_system, batch_rows, batch_fractions, singles = [], [], [], []
    for k, system in enumerate(systems):
        rows = [i for i, (s, _) in enumerate(parsed) if set(s) <= set(system)]
        fractions = np.zeros((len(rows), len(system)))
        for j, row in enumerate(rows):
            s, frac = parsed[row]
            fractions[j, [system.index(el) for el in s]] = frac
        singles.append(build_hull(system, rows, fractions, energies[rows]))
        padded = np.zeros((len(rows), 4))
        padded[:, : len(system)] = fractions
        batch_system += [k] * len(rows)
        batch_rows += rows
        batch_fractions.append(padded)
    batch = build_hulls(
        systems,
        np.array(batch_system),
        np.array(batch_rows),
        np.vstack(batch_fractions),
        energies[batch_rows],
    )

    rng = np.random.default_rng(0)
    for system, single, batched in zip(systems, singles, batch, strict=True):
        assert batched.elements == system
        assert batched.vertex_rows == single.vertex_rows
        np.testing.assert_array_equal(batched.point_rows, single.point_rows)
        probes = rng.dirichlet(np.ones(len(system)), 50)
        np.testing.assert_allclose(batched.energy(probes), single.energy(probes), atol=1e-12)
    assert len(batch[-1].vertex_rows) > 4  # the quaternary hull has compounds on it


def test_batched_hull_build_names_a_missing_reference() -> None:
    with pytest.raises(ValueError, match="missing elemental reference for O"):
        build_hulls(
            [("Li",), ("Li", "O")],
            np.array([0, 1, 1]),
            np.array([0, 1, 2]),
            np.array([[1.0, 0.0], [1.0, 0.0], [0.5, 0.5]]),
            np.array([-1.9, -1.9, -3.0]),
        )
