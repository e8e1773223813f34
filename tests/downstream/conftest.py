"""Real crystals built from literature lattice parameters (pymatgen ``from_spacegroup``)."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure


@pytest.fixture(scope="session")
def mos2() -> Structure:
    """2H-MoS2 (P6_3/mmc, a = 3.16 Å, c = 12.29 Å): van der Waals layers."""
    return Structure.from_spacegroup(
        "P6_3/mmc",
        Lattice.hexagonal(3.16, 12.29),
        ["Mo", "S"],
        [[1 / 3, 2 / 3, 1 / 4], [1 / 3, 2 / 3, 0.621]],
    )


@pytest.fixture(scope="session")
def cdi2() -> Structure:
    """CdI2 (P-3m1, a = 4.24 Å, c = 6.84 Å): the CdI2 layer type."""
    return Structure.from_spacegroup(
        "P-3m1", Lattice.hexagonal(4.24, 6.84), ["Cd", "I"], [[0, 0, 0], [1 / 3, 2 / 3, 0.25]]
    )


@pytest.fixture(scope="session")
def nacl() -> Structure:
    """Rocksalt NaCl (Fm-3m, a = 5.64 Å): a 3-D ionic framework."""
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


@pytest.fixture(scope="session")
def srtio3() -> Structure:
    """Cubic perovskite SrTiO3 (Pm-3m, a = 3.905 Å): corner-sharing octahedra in 3-D."""
    return Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5] * 3, [0.5, 0.5, 0]]
    )


@pytest.fixture(scope="session")
def li2o() -> Structure:
    """Antifluorite Li2O (Fm-3m, a = 4.61 Å)."""
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.61), ["Li", "O"], [[0.25, 0.25, 0.25], [0, 0, 0]]
    )


@pytest.fixture(scope="session")
def licoo2() -> Structure:
    """Layered LiCoO2 (R-3m, a = 2.82 Å, c = 14.05 Å): Co is redox-active."""
    return Structure.from_spacegroup(
        "R-3m",
        Lattice.hexagonal(2.82, 14.05),
        ["Li", "Co", "O"],
        [[0, 0, 0.5], [0, 0, 0], [0, 0, 0.24]],
    )


@pytest.fixture(scope="session")
def li3n() -> Structure:
    """alpha-Li3N (P6/mmm, a = 3.648 Å, c = 3.875 Å): a known fast Li-ion conductor."""
    return Structure.from_spacegroup(
        "P6/mmm",
        Lattice.hexagonal(3.648, 3.875),
        ["N", "Li", "Li"],
        [[0, 0, 0], [0, 0, 0.5], [1 / 3, 2 / 3, 0]],
    )
