"""Fixtures for the hull tests: real MP entries and random synthetic entry sets."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry

from hullhunter.hull import load_mp_reference_entries

SYNTHETIC_ELEMENTS = ("Li", "Fe", "O", "P", "S")


def entry(
    formula: str | dict | Composition, energy_per_atom: float, entry_id: str
) -> ComputedEntry:
    """A ComputedEntry with the given energy per atom."""
    comp = Composition(formula)
    return ComputedEntry(comp, energy_per_atom * comp.num_atoms, entry_id=entry_id)


@pytest.fixture
def make_entry() -> Callable[[str | dict | Composition, float, str], ComputedEntry]:
    """``make_entry(formula, energy_per_atom, entry_id)`` -> ComputedEntry."""
    return entry


@pytest.fixture(scope="session")
def mp_entries() -> list[ComputedEntry]:
    """pymatgen's bundled MP entries with MP2020 corrections."""
    return load_mp_reference_entries()


@pytest.fixture
def make_entries() -> Callable[..., list[ComputedEntry]]:
    """Factory of random entries over the first ``n_elements`` synthetic elements.

    Small integer amounts make duplicate compositions and polymorphs common; formation
    energies are uniform in [-1, 0.3] eV/atom, so some entries are above the elements.
    """

    def make(
        n_elements: int, n_entries: int, seed: int, prefix: str = "syn", max_amount: int = 4
    ) -> list[ComputedEntry]:
        rng = np.random.default_rng(seed)
        elements = SYNTHETIC_ELEMENTS[:n_elements]
        refs = dict(zip(elements, rng.uniform(-6, -2, n_elements), strict=True))
        out = []
        for el in elements:  # the reference polymorph and a higher one
            out.append(entry(el, refs[el], f"{prefix}-{el}-0"))
            out.append(entry(el, refs[el] + rng.uniform(0.01, 0.2), f"{prefix}-{el}-1"))
        while len(out) < n_entries:
            amounts = rng.integers(0, max_amount + 1, n_elements)
            if amounts.sum() == 0:
                continue
            comp = Composition(dict(zip(elements, amounts.tolist(), strict=True)))
            fractions = comp.fractional_composition
            base = sum(fractions[el] * refs[el.symbol] for el in comp.elements)
            out.append(entry(comp, base + rng.uniform(-1.0, 0.3), f"{prefix}-{len(out)}"))
        return out

    return make
