"""Deduplication at campaign scale: a cheap symmetry key to bucket, StructureMatcher within it.

The key is (reduced formula, space-group number, sorted (element, orbit size / cell size) of
every crystallographic orbit), from one spglib call at a tolerant ``symprec``. Orbit sizes
per cell are used rather than Wyckoff letters because letters are not invariant under the
space group's normalizer (rocksalt's cation may sit on 4a or 4b depending on the origin) while
multiplicities are, and the ratio is unchanged by supercells. Lookup is a dict access, so the
cost per candidate does not grow with the number of structures already seen; only structures
sharing a key are compared with pymatgen's StructureMatcher, on spglib's primitive cells.

Low-symmetry candidates (e.g. SAPS decorations of one parent) often share a key while being
distinct, so each bucket also holds a fingerprint per member: for each element pair, the
per-atom sum of Gaussians of pair distances in units of (V/N)^(1/3) (invariant to rotation,
translation, supercells and uniform scaling). Only members whose fingerprint lies within
``fingerprint_tol`` (relative, per component) are matched, at most ``max_fits`` of them,
closest first, which bounds the cost per candidate. ``fingerprint_tol=None`` with
``max_fits=None`` matches against the whole bucket (slower).
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
from vesin import NeighborList

from hullhunter.generators.candidate import Candidate

BucketKey = tuple[str, int, tuple[tuple[str, int, int], ...]]


class Deduplicator:
    """Remembers structures by id and tells, for each new one, which earlier one it duplicates."""

    def __init__(
        self,
        symprec: float = 0.1,
        matcher: StructureMatcher | None = None,
        fingerprint_tol: float | None = 0.2,
        max_fits: int | None = 8,
    ) -> None:
        self.symprec = symprec
        self.fingerprint_tol = fingerprint_tol
        self.max_fits = max_fits
        # Each structure is reduced at most once (spglib primitive cell, then Niggli) and
        # matched with skip_structure_reduction=True: StructureMatcher otherwise re-reduces
        # both structures on every fit, through a cache whose lookups grow with its size.
        self.matcher = matcher or StructureMatcher()
        self._buckets: dict[BucketKey, _Bucket] = {}
        self.stats: Counter[str] = Counter()

    def __len__(self) -> int:
        return sum(len(bucket.ids) for bucket in self._buckets.values())

    def key(self, structure: Structure) -> tuple[BucketKey, Structure]:
        """The bucket key of a structure and its primitive cell.

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
        dataset = spglib.get_symmetry_dataset(cell, symprec=self.symprec)
        if dataset is None:
            return (formula, 0, ()), structure
        labels, counts = np.unique(dataset.equivalent_atoms, return_counts=True)
        orbits = []
        for label, count in zip(labels, counts, strict=True):
            ratio = Fraction(int(count), len(structure))
            orbits.append((structure[int(label)].specie.symbol, ratio.numerator, ratio.denominator))
        return (formula, int(dataset.number), tuple(sorted(orbits))), structure

    def add(self, structure: Structure, key_id: str) -> str | None:
        """Remember ``structure`` as ``key_id`` unless it duplicates one seen before.

        Returns the id of the earlier structure it duplicates, or None when it is new.
        """
        key, primitive = self.key(structure)
        bucket = self._buckets.setdefault(key, _Bucket())
        fingerprint = pair_fingerprint(primitive)
        reduced = None
        for index in bucket.nearby(fingerprint, self.fingerprint_tol)[: self.max_fits]:
            self.stats["fits"] += 1
            # Niggli reduction only when a match is tried: most candidates never need it.
            if reduced is None:
                reduced = primitive.get_reduced_structure(reduction_algo="niggli")
            if self.matcher.fit(reduced, bucket.reduced(index), skip_structure_reduction=True):
                self.stats["duplicates"] += 1
                return bucket.ids[index]
        if reduced is None:
            bucket.insert(fingerprint, key_id, primitive, is_reduced=False)
        else:
            bucket.insert(fingerprint, key_id, reduced, is_reduced=True)
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


class _Bucket:
    """Structures sharing a key, with their fingerprints as rows of one matrix."""

    def __init__(self) -> None:
        self.fingerprints = np.empty((0, 0))
        self.ids: list[str] = []
        self.structures: list[Structure] = []
        self.is_reduced: list[bool] = []

    def nearby(self, fingerprint: np.ndarray, tol: float | None) -> list[int]:
        """Members whose every fingerprint component is within the relative tolerance,
        closest first (all members when tol is None)."""
        if not self.ids:
            return []
        difference = np.abs(self.fingerprints - fingerprint)
        if tol is None:
            candidates = np.arange(len(self.ids))
        else:
            scale = tol * (np.abs(self.fingerprints) + np.abs(fingerprint)) / 2 + 1e-9
            candidates = np.flatnonzero((difference <= scale).all(axis=1))
        return candidates[np.argsort(difference[candidates].sum(axis=1))].tolist()

    def reduced(self, index: int) -> Structure:
        """Member ``index`` as a Niggli-reduced cell (reduced on first use, then kept)."""
        if not self.is_reduced[index]:
            self.structures[index] = self.structures[index].get_reduced_structure("niggli")
            self.is_reduced[index] = True
        return self.structures[index]

    def insert(
        self, fingerprint: np.ndarray, key_id: str, structure: Structure, is_reduced: bool
    ) -> None:
        if not self.ids:
            self.fingerprints = fingerprint[None, :]
        else:
            self.fingerprints = np.vstack([self.fingerprints, fingerprint])
        self.ids.append(key_id)
        self.structures.append(structure)
        self.is_reduced.append(is_reduced)


def pair_fingerprint(structure: Structure) -> np.ndarray:
    """Per element pair (sorted), the per-atom sum of exp(-(d / a)^2), a = (V/N)^(1/3), d < 2.5 a.

    Invariant to rotation, translation, supercells and uniform scaling; decorations of one
    parent differ in how the pair sums split between species pairs.
    """
    n = len(structure)
    unit = (structure.volume / n) ** (1 / 3)
    i, j, d = NeighborList(cutoff=2.5 * unit, full_list=False).compute(
        points=structure.cart_coords, box=structure.lattice.matrix, periodic=True, quantities="ijd"
    )
    elements = sorted({site.specie.Z for site in structure})
    position = {z: k for k, z in enumerate(elements)}
    species = np.array([position[site.specie.Z] for site in structure])
    m = len(elements)
    low, high = np.minimum(species[i], species[j]), np.maximum(species[i], species[j])
    sums = np.bincount(low * m + high, weights=np.exp(-((d / unit) ** 2)), minlength=m * m)
    upper = np.triu_indices(m)
    return sums.reshape(m, m)[upper] / n
