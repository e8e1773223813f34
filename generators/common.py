"""Shared helpers of the generators: element validation, skip statistics, parent checks."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Composition, Element, Lattice, PeriodicSite, Structure


@dataclass
class GenerationStats:
    """Counts of what a generator did: parents seen, candidates yielded, skips by reason.

    Pass one as ``stats=`` to any generator; it is updated while the stream is consumed.
    """

    parents: int = 0
    yielded: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


Accept = Callable[[Any], bool]
"""A caller's test of each product (e.g. "inside my space and new to me"): only products it
accepts are yielded and count towards ``limit`` and per-parent caps, so a generator goes
deeper into its ranked list instead of repeating products the caller already has."""


def accepted(candidate: Any, accept: Accept | None, stats: GenerationStats) -> bool:
    """Whether the caller takes ``candidate``; a refusal is counted in ``stats.skipped``."""
    if accept is None or accept(candidate):
        return True
    stats.skipped["not_accepted"] += 1
    return False


def counted(
    candidates: Iterable[Any], accept: Accept | None, limit: int | None, stats: GenerationStats
) -> Iterator[Any]:
    """The candidates ``accept`` takes, counted in ``stats.yielded``, at most ``limit``."""
    for candidate in candidates:
        if not accepted(candidate, accept, stats):
            continue
        stats.yielded += 1
        yield candidate
        if limit is not None and stats.yielded >= limit:
            return


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
            f"unknown element symbol(s) {unknown}: use periodic-table symbols, e.g. 'Li', 'O'"
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


OXIDATION_TABLE = Path(__file__).parent / "data" / "oxidation_guesses.json.gz"


@lru_cache(maxsize=200_000)
def guess_oxidation_states(formula: str) -> dict[str, float] | None:
    """Most likely oxidation state per element of a formula (pymatgen's guess), or None.

    Cached by formula because the guess enumerates many assignments and parents repeat;
    the guesses for the shipped seeds' formulas ship precomputed (:func:`shipped_guesses`).
    """
    shipped = shipped_guesses()
    if formula in shipped:
        return shipped[formula]
    return pymatgen_guess(formula)


def pymatgen_guess(formula: str) -> dict[str, float] | None:
    """pymatgen's most likely oxidation states of ``formula``, or None when none balance."""
    guesses = Composition(formula).oxi_state_guesses()
    return dict(guesses[0]) if guesses else None


@cache
def shipped_guesses() -> dict[str, dict[str, float] | None]:
    """:func:`pymatgen_guess` of every shipped seed's reduced formula, as built by
    ``python -m hullhunter.generators.build_seeds --oxidation-only``. pymatgen's guess takes
    about 30 ms a formula, so guessing the 4,000 seed formulas when a round takes parents
    from the whole seed set would cost minutes every round."""
    if not OXIDATION_TABLE.exists():
        return {}
    with gzip.open(OXIDATION_TABLE, "rt") as handle:
        return json.load(handle)


def is_charge_balanceable(formula: str) -> bool:
    """True when pymatgen finds a charge-neutral assignment of common oxidation states."""
    return guess_oxidation_states(formula) is not None


def iter_parents(parents: Iterable[Any]) -> Iterator[tuple[str, Structure]]:
    """Normalise parents to (id, structure): Seeds, (id, Structure) pairs, Candidates, Structures.

    A Candidate parent is named by its own parent id and generator; a bare Structure by its
    position in the stream.
    """
    for index, parent in enumerate(parents):
        if isinstance(parent, Structure):
            yield f"structure-{index}", parent
        elif isinstance(parent, tuple) and len(parent) == 2:
            yield str(parent[0]), parent[1]
        elif hasattr(parent, "id") and hasattr(parent, "structure"):
            yield str(parent.id), parent.structure
        elif hasattr(parent, "structure") and hasattr(parent, "generator"):
            yield f"{parent.generator}:{parent.parent_id}:{index}", parent.structure
        else:
            raise TypeError(
                f"parent {index} is a {type(parent).__name__}: give Seeds, Structures, "
                "Candidates or (id, Structure) pairs"
            )


def usable_parents(
    parents: Iterable[Any], stats: GenerationStats
) -> Iterator[tuple[str, Structure]]:
    """:func:`iter_parents`, counting every parent in ``stats`` and skipping (with the reason
    counted) those :func:`parent_problem` rejects."""
    for parent_id, structure in iter_parents(parents):
        stats.parents += 1
        problem = parent_problem(structure)
        if problem:
            stats.skipped[problem] += 1
            continue
        yield parent_id, structure


def structure_from_elements(
    lattice: Lattice, elements: list[str], frac_coords: np.ndarray
) -> Structure:
    """A plain Structure (no oxidation states or site properties) on the given lattice."""
    return Structure(lattice, [_element(symbol) for symbol in elements], frac_coords)


class SiteTemplates:
    """Builds decorations of one parent (its lattice and positions, any elements) quickly.

    ``Structure(...)`` validates every site and parses its species into a Composition; at
    ~10 sites per candidate that was 60 % of substitution + SAPS time. Here each (site,
    element) PeriodicSite is built once (species pre-parsed, ``skip_checks``), and candidates get
    fresh copies of it (own coordinates arrays and properties dict, so one candidate can be
    edited without touching another) assembled into a Structure without re-validation.
    """

    def __init__(self, parent: Structure) -> None:
        self.lattice = parent.lattice
        self.frac_coords = parent.frac_coords
        self._sites: dict[tuple[int, str], PeriodicSite] = {}

    def build(self, elements: list[str]) -> Structure:
        """A plain Structure with ``elements[i]`` on the parent's site i."""
        sites = []
        for index, symbol in enumerate(elements):
            template = self._sites.get((index, symbol))
            if template is None:
                template = PeriodicSite(
                    _species(symbol), self.frac_coords[index], self.lattice, skip_checks=True
                )
                self._sites[(index, symbol)] = template
            site = PeriodicSite.__new__(PeriodicSite)
            site.__dict__.update(template.__dict__)
            site.__dict__["_frac_coords"] = template.frac_coords.copy()
            site.__dict__["_coords"] = None
            site.__dict__["properties"] = {}
            sites.append(site)
        structure = Structure.__new__(Structure)
        structure._lattice = self.lattice
        structure._sites = sites
        structure._charge = None
        structure._properties = {}
        return structure


@lru_cache(maxsize=200_000)
def reduced_formula(amounts: tuple[tuple[str, float], ...]) -> str:
    """pymatgen's reduced formula of (element, amount) pairs, cached: generators ask for the
    same few stoichiometries over and over."""
    return Composition(dict(amounts)).reduced_formula


@cache
def _species(symbol: str) -> Composition:
    """A site's species (one element, occupancy 1), shared: pymatgen treats it as immutable."""
    return Composition({_element(symbol): 1})


@cache
def _element(symbol: str) -> Element:
    """Cached Element: parsing symbols dominates building many small structures."""
    return Element(symbol)
