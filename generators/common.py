"""Shared helpers of the generators: element validation, skip statistics, parent checks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from pymatgen.core import Composition, Element, Structure


@dataclass
class GenerationStats:
    """Counts of what a generator did: parents seen, candidates yielded, skips by reason.

    Pass one as ``stats=`` to any generator; it is updated while the stream is consumed.
    """

    parents: int = 0
    yielded: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def validate_elements(symbols: Iterable[str] | None) -> frozenset[str] | None:
    """Return the symbols as a frozenset, raising ValueError naming any that are no element."""
    if symbols is None:
        return None
    if isinstance(symbols, str):
        symbols = [s for s in symbols.replace(",", "-").split("-") if s]
    symbols = [str(s).strip() for s in symbols]
    unknown = sorted({s for s in symbols if not Element.is_valid_symbol(s)})
    if unknown:
        raise ValueError(
            f"unknown element symbol(s) {unknown}: use symbols from the periodic table, e.g. 'Li', 'O'"
        )
    return frozenset(symbols)


def parent_problem(structure: Structure) -> str | None:
    """Why a parent cannot be used (a short reason), or None when it is usable."""
    if not isinstance(structure, Structure):
        return "not_a_structure"
    if not structure.is_ordered:
        return "disordered"
    if len(structure) == 0:
        return "empty"
    return None


@lru_cache(maxsize=200_000)
def guess_oxidation_states(formula: str) -> dict[str, float] | None:
    """Most likely oxidation state per element of a formula (pymatgen's guess), or None.

    Cached by formula because the guess enumerates many assignments and parents repeat.
    """
    guesses = Composition(formula).oxi_state_guesses()
    return dict(guesses[0]) if guesses else None


def is_charge_balanceable(formula: str) -> bool:
    """True when pymatgen finds a charge-neutral assignment of common oxidation states."""
    return guess_oxidation_states(formula) is not None
