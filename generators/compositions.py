"""Composition enumeration with GNoME's relaxed oxidation-state balance (gnome-method.md 1.2).

SMACT's ICSD oxidation states, plus 0 for metals, and the GNoME relaxation: up to
``max_interpolated`` elements may take a (non-integer, average) value between two of their
allowed states, so Li15Si4 (Si at -3.75, between -4 and -3) is admitted while strict balancing
rejects it. Electronegativity order (SMACT's Pauling test: cations less electronegative than
anions) is applied to the elements whose sign is fixed by the assignment.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cache, reduce
from math import gcd

import smact
from pymatgen.core import Composition, Element

from hullhunter.generators.common import GenerationStats, validate_elements


@cache
def oxidation_states(symbol: str) -> tuple[int, ...]:
    """SMACT's ICSD-2024 oxidation states of an element, plus 0 for metals, sorted."""
    states = set(smact.Element(symbol).oxidation_states_icsd24 or ())
    if Element(symbol).is_metal:
        states.add(0)
    return tuple(sorted(states))


def _electronegativity_ok(charges: Mapping[str, float]) -> bool:
    """Every cation is less electronegative than every anion (elements without a value pass)."""
    cations = [Element(el).X for el, q in charges.items() if q > 0]
    anions = [Element(el).X for el, q in charges.items() if q < 0]
    cations = [x for x in cations if x == x]
    anions = [x for x in anions if x == x]
    return not cations or not anions or max(cations) < min(anions)


def is_relaxed_charge_balanced(
    composition: Composition | str,
    max_interpolated: int = 2,
    electronegativity: bool = True,
    states: Mapping[str, Sequence[int]] | None = None,
) -> bool:
    """True when a charge-neutral assignment exists under GNoME's relaxed rule.

    Up to ``max_interpolated`` elements take any value between their lowest and highest allowed
    state (a value between two consecutive states, or a state itself); the others take one of
    their allowed states. ``max_interpolated=0`` is strict integer balancing.
    """
    composition = Composition(composition)
    amounts = {el.symbol: amount for el, amount in composition.items()}
    allowed = {el: tuple(states[el]) if states else oxidation_states(el) for el in amounts}
    if any(not allowed[el] for el in amounts):
        return False
    symbols = sorted(amounts)
    for n_free in range(min(max_interpolated, len(symbols)) + 1):
        for free in itertools.combinations(symbols, n_free):
            fixed = [el for el in symbols if el not in free]
            low = sum(amounts[el] * allowed[el][0] for el in free)
            high = sum(amounts[el] * allowed[el][-1] for el in free)
            for choice in itertools.product(*(allowed[el] for el in fixed)):
                charge = sum(amounts[el] * q for el, q in zip(fixed, choice, strict=True))
                if not low - 1e-9 <= -charge <= high + 1e-9:
                    continue
                charges = dict(zip(fixed, choice, strict=True))
                if len(free) == 1:
                    charges[free[0]] = -charge / amounts[free[0]]
                if not electronegativity or _electronegativity_ok(charges):
                    return True
    return False


def _count_vectors(n_elements: int, max_atoms: int) -> Iterator[tuple[int, ...]]:
    """Positive integer vectors with sum <= max_atoms and gcd 1 (reduced formulas)."""
    for counts in itertools.product(range(1, max_atoms + 1), repeat=n_elements):
        if sum(counts) <= max_atoms and reduce(gcd, counts) == 1:
            yield counts


def enumerate_compositions(
    elements: Iterable[str],
    max_elements: int = 3,
    min_elements: int = 2,
    max_atoms: int = 12,
    max_interpolated: int = 2,
    electronegativity: bool = True,
    known_formulas: Iterable[str] = (),
    limit: int | None = None,
    stats: GenerationStats | None = None,
) -> Iterator[Composition]:
    """Reduced compositions over ``elements`` that pass the relaxed oxidation-state rule.

    Bounded by the number of elements (``min_elements``..``max_elements``) and the atoms per
    reduced formula (``max_atoms``); formulas in ``known_formulas`` are skipped.
    """
    symbols = sorted(validate_elements(elements) or ())
    stats = stats if stats is not None else GenerationStats()
    known = set(known_formulas)
    for size in range(min_elements, min(max_elements, len(symbols)) + 1):
        for subset in itertools.combinations(symbols, size):
            for counts in _count_vectors(size, max_atoms):
                composition = Composition(dict(zip(subset, counts, strict=True)))
                if composition.reduced_formula in known:
                    stats.skipped["known"] += 1
                    continue
                if not is_relaxed_charge_balanced(composition, max_interpolated, electronegativity):
                    stats.skipped["not_charge_balanced"] += 1
                    continue
                stats.yielded += 1
                yield composition
                if limit is not None and stats.yielded >= limit:
                    return
