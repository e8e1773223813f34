"""Small real structures shared by the models tests."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.util.testing import PymatgenTest

from hullhunter.models import GNoMEConfig

BUNDLED = ("LiFePO4", "SrTiO3", "Li2O", "CsCl", "Si", "TiO2", "BaNiO3", "Li2O2")
ROCKSALTS = (("Na", "Cl", 5.64), ("Mg", "O", 4.21), ("Li", "F", 4.03), ("K", "Br", 6.60))


def rocksalt(cation: str, anion: str, a: float) -> Structure:
    """Primitive two-atom rocksalt cell with conventional lattice constant ``a``."""
    fcc = Lattice(0.5 * a * (1 - np.eye(3)))
    return Structure(fcc, [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture(scope="session")
def structures() -> list[Structure]:
    """Eight bundled pymatgen structures plus four rocksalts (2-28 atoms)."""
    bundled = [PymatgenTest.get_structure(name) for name in BUNDLED]
    return bundled + [rocksalt(*args) for args in ROCKSALTS]


@pytest.fixture(scope="session")
def make_rocksalt():
    """The rocksalt builder, for tests that need other lattice constants."""
    return rocksalt


@pytest.fixture(scope="session")
def elemental_energies(structures) -> dict[str, float]:
    """Arbitrary but fixed elemental reference energies for every element used."""
    elements = sorted({el.symbol for s in structures for el in s.composition})
    rng = np.random.default_rng(7)
    return {el: float(-rng.uniform(1.0, 8.0)) for el in elements}


@pytest.fixture
def tiny_config() -> GNoMEConfig:
    """A very small network so that training tests take seconds."""
    return GNoMEConfig.small(
        embed_dim=16, mlp_hidden=(16,), steps=2, epochs=5, batch_size=4, torch_threads=1
    )
