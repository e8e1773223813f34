"""Deduplication at campaign scale: a cheap symmetry key to bucket, StructureMatcher within it.

The key is (reduced formula, space-group number, sorted (element, orbit size / cell size) of
every crystallographic orbit), from one spglib call at a tolerant ``symprec``. Orbit sizes
per cell are used rather than Wyckoff letters because letters are not invariant under the
space group's normalizer (rocksalt's cation may sit on 4a or 4b depending on the origin) while
multiplicities are, and the ratio is unchanged by supercells. Lookup is a dict access, so the
cost per candidate does not grow with the number of structures already seen; only structures
sharing a key are compared with pymatgen's StructureMatcher, on spglib's primitive cells.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

import numpy as np
import spglib
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from hullhunter.generators.candidate import Candidate

BucketKey = tuple[str, int, tuple[tuple[str, int, int], ...]]


class Deduplicator:
    """Remembers structures by id and tells, for each new one, which earlier one it duplicates."""

    def __init__(self, symprec: float = 0.1, matcher: StructureMatcher | None = None) -> None:
        self.symprec = symprec
        # Each structure is reduced once (spglib primitive cell, then Niggli) and matched with
        # skip_structure_reduction=True: StructureMatcher otherwise re-reduces both structures
        # on every fit, through a cache whose lookups grow with the number of structures.
        self.matcher = matcher or StructureMatcher()
        self._buckets: dict[BucketKey, list[tuple[str, Structure]]] = {}
        self.stats: Counter[str] = Counter()

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    def key(self, structure: Structure) -> tuple[BucketKey, Structure]:
        """The bucket key of a structure and its reduced (primitive, Niggli) cell.

        Orbits are read on spglib's primitive cell: a supercell's own lattice may not be kept
        by every operation of the space group, and spglib would then split orbits.
        """
        formula = structure.composition.reduced_formula
        cell = (
            structure.lattice.matrix,
            structure.frac_coords,
            [site.specie.Z for site in structure],
        )
        primitive = spglib.standardize_cell(
            cell, to_primitive=True, no_idealize=True, symprec=self.symprec
        )
        if primitive is not None:
            cell = primitive
            structure = Structure(primitive[0], list(primitive[2]), primitive[1])
        reduced = structure.get_reduced_structure(reduction_algo="niggli")
        dataset = spglib.get_symmetry_dataset(cell, symprec=self.symprec)
        if dataset is None:
            return (formula, 0, ()), reduced
        labels, counts = np.unique(dataset.equivalent_atoms, return_counts=True)
        orbits = []
        for label, count in zip(labels, counts, strict=True):
            ratio = Fraction(int(count), len(structure))
            orbits.append((structure[int(label)].specie.symbol, ratio.numerator, ratio.denominator))
        return (formula, int(dataset.number), tuple(sorted(orbits))), reduced

    def add(self, structure: Structure, key_id: str) -> str | None:
        """Remember ``structure`` as ``key_id`` unless it duplicates one seen before.

        Returns the id of the earlier structure it duplicates, or None when it is new.
        """
        key, primitive = self.key(structure)
        bucket = self._buckets.setdefault(key, [])
        for seen_id, seen in bucket:
            self.stats["fits"] += 1
            if self.matcher.fit(primitive, seen, skip_structure_reduction=True):
                self.stats["duplicates"] += 1
                return seen_id
        bucket.append((key_id, primitive))
        self.stats["new"] += 1
        return None

    def add_many(self, structures: Iterable[Structure], ids: Iterable[str]) -> list[str | None]:
        """:meth:`add` for each (structure, id) pair; e.g. to load everything seen so far."""
        return [self.add(s, i) for s, i in zip(structures, ids, strict=True)]

    def unique(self, candidates: Iterable[Any], ids: Iterable[str] | None = None) -> Iterator[Any]:
        """Yield only candidates (Candidates or Structures) not seen before, remembering them.

        ``ids`` names them in order (default: 'candidate-<n>' counting from the current size).
        """
        id_iter = iter(ids) if ids is not None else None
        for candidate in candidates:
            structure = candidate.structure if isinstance(candidate, Candidate) else candidate
            key_id = next(id_iter) if id_iter is not None else f"candidate-{self.stats['new']}"
            if self.add(structure, key_id) is None:
                yield candidate
