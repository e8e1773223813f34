"""The known world: crystals and compositions known before a campaign, and novelty classes.

A discovery counts as new only against what was already known, not against the campaign's own
seeds. The known world here is every shipped seed crystal (all elements, not only a
campaign's), the compositions of the Materials Project entries that ship with pymatgen (423
computed entries and 2,135 experimental formation enthalpies with mp-ids; formulas only, no
structures), and the user's own seed crystals. OQMD compositions are not included: no package
that ships them (qmpy) is on the local package index.

Each stable material is then one of three classes (:func:`KnownWorld.classify`):

- ``novel``: its reduced formula is absent from the known world;
- ``new_polymorph``: the formula is known but no known crystal of it matches the structure
  (pymatgen ``StructureMatcher``, elements only). Where a formula is known from the MP formula
  lists alone there is no structure to compare, so ``known_in`` says which sources know it and
  ``compared`` how many structures were tried;
- ``rediscovered``: a known crystal matches (``match_id`` names it).
"""

from __future__ import annotations

import gzip
import json
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from pymatgen.analysis.structure_matcher import ElementComparator, StructureMatcher
from pymatgen.core import Composition, Structure

from hullhunter.generators.seeds import Seed, load_seeds

NOVEL = "novel"
NEW_POLYMORPH = "new_polymorph"
REDISCOVERED = "rediscovered"
NOVELTY_CLASSES = (NOVEL, NEW_POLYMORPH, REDISCOVERED)

SHIPPED_SOURCE = "shipped seeds"
USER_SOURCE = "user seeds"
MP_COMPOSITION_FILES = {
    "mp computed entries (pymatgen)": "calc_compounds.json.gz",
    "mp experimental enthalpies (pymatgen)": "exp_compounds.json.gz",
}


@dataclass(frozen=True)
class Novelty:
    """A material's novelty class and the evidence for it.

    Attributes:
        novelty: one of :data:`NOVELTY_CLASSES`.
        known_in: sources that know the composition (empty for novel ones).
        compared: known crystals of the composition tried with the matcher.
        match_id: the known crystal that matches (rediscovered only).
    """

    novelty: str
    known_in: tuple[str, ...]
    compared: int
    match_id: str | None = None


class KnownWorld:
    """Known crystals (by reduced formula) and known compositions, each with its sources.

    Args:
        seeds: known crystals as ``(source, seeds)`` pairs.
        compositions: reduced formula -> names of the sources that know the formula.
        matcher: decides whether two crystals are the same; default ``StructureMatcher``
            comparing elements only (oracle relaxations drop oxidation states).
    """

    def __init__(
        self,
        seeds: Iterable[tuple[str, Iterable[Seed]]] = (),
        compositions: Mapping[str, Iterable[str]] | None = None,
        matcher: StructureMatcher | None = None,
    ) -> None:
        self.matcher = matcher or StructureMatcher(comparator=ElementComparator())
        self._sources: dict[str, set[str]] = defaultdict(set)
        self._crystals: dict[str, list[Seed]] = defaultdict(list)
        with _noble_gases_quiet():
            for formula, sources in (compositions or {}).items():
                self._sources[reduced_formula(formula)].update(sources)
            for source, group in seeds:
                for seed in group:
                    self._sources[seed.formula].add(source)
                    self._crystals[seed.formula].append(seed)

    def __len__(self) -> int:
        """Number of known compositions."""
        return len(self._sources)

    def known_in(self, formula: str | Composition) -> tuple[str, ...]:
        """Sources that know this composition (empty: the composition is new)."""
        return tuple(sorted(self._sources.get(reduced_formula(formula), ())))

    def classify(self, structure: Structure) -> Novelty:
        """Novelty class of ``structure``: novel, new polymorph or rediscovered."""
        formula = structure.composition.reduced_formula
        known_in = self.known_in(formula)
        if not known_in:
            return Novelty(NOVEL, known_in, 0)
        crystals = self._crystals.get(formula, [])
        for seed in crystals:
            if self.matcher.fit(seed.structure, structure):
                return Novelty(REDISCOVERED, known_in, len(crystals), seed.id)
        return Novelty(NEW_POLYMORPH, known_in, len(crystals))


def reduced_formula(formula: str | Composition) -> str:
    """pymatgen's reduced formula, the key compositions are compared by."""
    return Composition(formula).reduced_formula


def mp_compositions() -> dict[str, set[str]]:
    """Reduced formulas of the MP data that ships inside pymatgen, with the file they are in."""
    folder = files("pymatgen.analysis.compatibility")
    out: dict[str, set[str]] = defaultdict(set)
    for source, name in MP_COMPOSITION_FILES.items():
        with gzip.open(str(folder.joinpath(name)), "rt") as handle:
            data = json.load(handle)
        # calc_compounds maps a formula to its entry; exp_compounds is a list of records
        formulas = data if isinstance(data, dict) else [record["formula"] for record in data]
        with _noble_gases_quiet():
            for formula in formulas:
                out[reduced_formula(formula)].add(source)
    return dict(out)


@contextmanager
def _noble_gases_quiet() -> Iterator[None]:
    """Reduced formulas of He, Ne, Ar warn (no Pauling electronegativity; pymatgen uses NaN)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No Pauling electronegativity")
        yield


@lru_cache(maxsize=4)
def known_world(user_seeds: str | Path | None = None) -> KnownWorld:
    """The known world of a campaign: all shipped seeds, MP compositions and the user's seeds.

    ``user_seeds`` is the campaign's ``seeds.source`` when it is not the built-in set. Cached,
    since loading every shipped crystal takes seconds.
    """
    seeds = [(SHIPPED_SOURCE, load_seeds())]
    if user_seeds is not None:
        seeds.append((USER_SOURCE, load_seeds(user_seeds)))
    return KnownWorld(seeds, mp_compositions())
