"""Sanity checks for seed crystals: distances, coordination and charge balance.

A seed that fails feeds every generator a wrong parent, so shipped seeds are checked when
the seed file is built and user seeds when they are loaded. Each check names what is wrong:

- distance: no two atoms closer than ``MIN_DISTANCE_FRACTION`` of their covalent radii sum
  (ASE's Cordero radii); real crystals, hydrides included, stay above 0.65.
- coordination (oxides and fluorides, metal cations of charge 2+ or more; alkali and other
  monovalent ions sit in irregular, oversized sites too often to judge): each cation has an
  O/F neighbour, and
  its first shell (neighbours within 1.2x the shortest bond) has the mean bond length that
  Shannon's ionic radii give for that cation at that coordination number, within
  ``MAX_BOND_MISMATCH``. Shannon radii are reliable for oxides and fluorides; elsewhere the
  check would flag real compounds, so it is not applied.
- charge balance (simple salts: metals with one of O, S, Se, Te, N, F, Cl, Br, I): some
  assignment of known oxidation states balances the composition.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
from ase.data import covalent_radii
from pymatgen.core import Composition, Element, Species, Structure

from hullhunter.generators.common import guess_oxidation_states

MIN_DISTANCE_FRACTION = 0.6
MAX_BOND_MISMATCH = 0.12
_SHELL_FACTOR = 1.2
_NEIGHBOUR_CUTOFF = 4.0
_ROMAN = dict(enumerate(["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X"], 1))
_COORDINATION_ANIONS = {"O": -2, "F": -1}
_SALT_ANIONS = frozenset({"O", "S", "Se", "Te", "N", "F", "Cl", "Br", "I"})


def seed_problem(structure: Structure) -> str | None:
    """The first sanity check ``structure`` fails, as a one-line reason, or None."""
    if not structure.is_ordered:
        return None  # disordered seeds are skipped by the generators (parent_problem)
    return (
        _distance_problem(structure)
        or _charge_problem(structure.composition)
        or _coordination_problem(structure)
    )


def _distance_problem(structure: Structure) -> str | None:
    """Atoms closer than MIN_DISTANCE_FRACTION of their covalent radii sum."""
    if len(structure) == 1 and min(structure.lattice.abc) > 0.5:
        return None
    centres, neighbours, _, distances = structure.get_neighbor_list(3.0)
    if not len(distances):
        return None
    numbers = np.array([site.specie.Z for site in structure])
    limits = covalent_radii[numbers[centres]] + covalent_radii[numbers[neighbours]]
    ratios = distances / limits
    worst = int(np.argmin(ratios))
    if ratios[worst] >= MIN_DISTANCE_FRACTION:
        return None
    first = structure[int(centres[worst])].specie.symbol
    second = structure[int(neighbours[worst])].specie.symbol
    return (
        f"atoms too close: {first}-{second} {distances[worst]:.2f} Å is under "
        f"{MIN_DISTANCE_FRACTION} x their covalent radii sum {limits[worst]:.2f} Å"
    )


def _charge_problem(composition: Composition) -> str | None:
    """A simple salt (metals and one anion element) that no known oxidation states balance."""
    symbols = {el.symbol for el in composition.elements}
    anions = symbols & _SALT_ANIONS
    if len(anions) != 1 or len(symbols) < 2:
        return None
    if not all(Element(symbol).is_metal for symbol in symbols - anions):
        return None
    if guess_oxidation_states(composition.reduced_formula) is not None:
        return None
    if _balances_with_any_state(composition.reduced_formula):
        return None
    return (
        f"not charge-balanced: no known oxidation states of {composition.reduced_formula} "
        "sum to zero"
    )


@cache
def _balances_with_any_state(formula: str) -> bool:
    """Whether any of pymatgen's known oxidation states balance ``formula`` (slow: cached)."""
    return bool(Composition(formula).oxi_state_guesses(all_oxi_states=True, max_sites=-1))


def _coordination_problem(structure: Structure) -> str | None:
    """A 2+ or higher metal cation of an oxide or fluoride with no O/F neighbour, or a first
    shell whose mean bond length is off Shannon's radii sum by more than MAX_BOND_MISMATCH.

    Judged with pymatgen's most likely oxidation states first; a seed that fails there
    passes when any other charge-balancing assignment makes every cation plausible (the
    likeliest guess is wrong often enough, e.g. Ni4+ for Ni2+ in NiPbF6).
    """
    formula = structure.composition.reduced_formula
    states = guess_oxidation_states(formula)
    if not states:
        return None
    problem = _coordination_problem_for(structure, states)
    if problem is None:
        return None
    guesses = Composition(formula).oxi_state_guesses(max_sites=-1)
    if any(_coordination_problem_for(structure, dict(guess)) is None for guess in guesses[1:]):
        return None
    return problem


def _coordination_problem_for(structure: Structure, states: dict[str, float]) -> str | None:
    """The coordination check under one oxidation-state assignment."""
    anions = {symbol for symbol, state in states.items() if state < 0}
    if not anions or any(_COORDINATION_ANIONS.get(a) != states[a] for a in anions):
        return None
    neighbour_lists = structure.get_all_neighbors(_NEIGHBOUR_CUTOFF)
    for site, neighbours in zip(structure, neighbour_lists, strict=True):
        symbol = site.specie.symbol
        state = states[symbol]
        if state < 2 or not Element(symbol).is_metal:
            continue
        bonds = sorted(n.nn_distance for n in neighbours if n.specie.symbol in anions)
        if not bonds:
            return f"{symbol}{state:+g} has no O/F neighbour within {_NEIGHBOUR_CUTOFF} Å"
        shell = [d for d in bonds if d <= _SHELL_FACTOR * bonds[0]]
        expected = _shannon_bond(symbol, state, len(shell), anions)
        if expected is None:
            continue
        mismatch = float(np.mean(shell)) / expected - 1
        if abs(mismatch) > MAX_BOND_MISMATCH:
            return (
                f"implausible coordination: {symbol}{state:+g} has {len(shell)} neighbours at "
                f"{np.mean(shell):.2f} Å, Shannon's radii give {expected:.2f} Å for that "
                f"coordination ({mismatch:+.0%})"
            )
    return None


def _shannon_bond(symbol: str, state: float, coordination: int, anions: set[str]) -> float | None:
    """Cation-anion bond length from Shannon's radii, or None where they have no entry."""
    if not float(state).is_integer() or coordination not in _ROMAN:
        return None
    anion = "O" if "O" in anions else "F"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cation = Species(symbol, int(state)).get_shannon_radius(_ROMAN[coordination])
            anion_radius = Species(anion, _COORDINATION_ANIONS[anion]).get_shannon_radius("IV")
    except (KeyError, ValueError):
        return None
    return float(cation + anion_radius)
