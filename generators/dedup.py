"""Deduplication at campaign scale: StructureMatcher's own groups, with most fits skipped.

``Deduplicator.add`` gives, in a stream, exactly what ``StructureMatcher.group_structures``
gives on a list: structures are bucketed by reduced composition (the only pre-grouping
StructureMatcher itself does), and a new structure joins the earliest earlier group
representative of its bucket that ``StructureMatcher.fit(representative, new)`` accepts.
Representatives are reduced the way the matcher reduces them (Niggli, then primitive cell).

A fit costs milliseconds, so three cheap tests decide which representatives are worth one:

1. *Identical copies* (same lattice, same species on the same fractional positions, in any
   order) join the group of the earlier copy without a fit: fit is a function of the
   structures, so a copy matches exactly the representatives its original matched.
2. *Same skeleton* (same lattice and positions, other species: decorations of one parent,
   as substitution and SAPS make them): the skeleton's own symmetry operations (spglib on the
   unlabelled sites at ``symprec``) are turned into site permutations once per skeleton, and
   only representatives whose decoration is an image of the new one under them are fitted.
3. *Other skeletons*: only representatives whose pair fingerprint (per element pair, the
   per-atom sum of Gaussians of distances in units of (V/N)^(1/3): invariant to rotation,
   translation, supercells and uniform scaling) lies within ``fingerprint_tol`` (relative L1
   distance) are fitted.

Tests 2 and 3 are filters in front of the matcher: a fit they skip is one they judge could not
succeed; every merge is still a StructureMatcher fit. ``fingerprint_tol=None`` turns both off
and fits against the whole bucket in order, as ``group_structures`` does. Lookups are dict
accesses and work per structure depends on its own bucket only, so the cost per candidate
does not grow with the number of structures already seen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from math import gcd
from typing import Any

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Lattice, Structure
from vesin import NeighborList

from hullhunter.generators.candidate import Candidate

BucketKey = tuple[str, int, tuple[tuple[str, int], ...]]
_ROUND = 6  # decimals of lattice and fractional coordinates that identify copies and skeletons


class Deduplicator:
    """Remembers structures by id and tells, for each new one, which earlier one it duplicates."""

    def __init__(
        self,
        matcher: StructureMatcher | None = None,
        fingerprint_tol: float | None = 0.15,
        max_fits: int | None = None,
        merge_below: float | None = 0.5,
    ) -> None:
        self.fingerprint_tol = fingerprint_tol
        self.max_fits = max_fits
        self.merge_below = merge_below
        self.matcher = matcher or StructureMatcher()
        self._buckets: dict[tuple[tuple[int, int], ...], _Bucket] = {}
        self._skeletons: dict[bytes, _Skeleton] = {}
        self._skeleton_fits: dict[tuple[int, int], bool] = {}
        self.stats: Counter[str] = Counter()

    def __len__(self) -> int:
        return self.stats["new"]

    def key(self, structure: Structure) -> tuple[BucketKey, Structure]:
        """The bucket key of a structure (reduced formula, its number of atoms, its
        (element, amount) pairs) and the structure itself.

        Only structures with equal keys can match: StructureMatcher compares only structures
        of the same reduced composition, so the key never separates a group.
        """
        reduced = Composition(structure.composition.element_composition).reduced_composition
        pairs = tuple(sorted((el.symbol, int(amount)) for el, amount in reduced.items()))
        return (reduced.reduced_formula, int(reduced.num_atoms), pairs), structure

    def add(self, structure: Structure, key_id: str) -> str | None:
        """Remember ``structure`` as ``key_id`` unless it duplicates one seen before.

        Returns the id of the earlier structure it duplicates (its group's first member), or
        None when it is new.
        """
        numbers = np.array(structure.atomic_numbers)
        lattice = np.round(structure.lattice.matrix, _ROUND)
        frac = np.round(structure.frac_coords % 1.0, _ROUND) % 1.0
        order = np.lexsort(frac.T[::-1])
        frac, numbers = frac[order], numbers[order]
        skeleton_key = lattice.tobytes() + frac.tobytes()
        copy_key = skeleton_key + numbers.tobytes()
        bucket = self._buckets.setdefault(_composition_key(numbers), _Bucket())
        if copy_key in bucket.copies:
            self.stats["copies"] += 1
            self.stats["duplicates"] += 1
            return bucket.copies[copy_key]
        skeleton = self._skeletons.get(skeleton_key)
        if skeleton is None:
            skeleton = self._skeletons[skeleton_key] = _Skeleton(lattice, frac)
        match = self._first_match(structure, numbers, skeleton, bucket)
        if match is None:
            skeleton.add(bucket, len(bucket.ids), numbers)
            bucket.add_member(key_id, structure, skeleton)
            self.stats["new"] += 1
        else:
            self.stats["duplicates"] += 1
        bucket.copies[copy_key] = match or key_id
        return match

    def _first_match(
        self, structure: Structure, numbers: np.ndarray, skeleton: _Skeleton, bucket: _Bucket
    ) -> str | None:
        """Id of the earliest representative in the bucket that StructureMatcher matches."""
        if not bucket.ids:
            return None
        if self.fingerprint_tol is None:
            worth = dict.fromkeys(range(len(bucket.ids)), np.inf)
        else:
            worth = skeleton.images_of(bucket, numbers, self.matcher)
            worth.update(
                dict.fromkeys(self._near_fingerprints(structure, skeleton, bucket), np.inf)
            )
        reduced = None
        for fits, index in enumerate(sorted(worth)):
            if (
                self.merge_below is not None
                and worth[index] <= self.merge_below * self.matcher.stol
            ):
                self.stats["mapped"] += 1
                return bucket.ids[index]
            if self.max_fits is not None and fits >= self.max_fits:
                break
            if reduced is None:
                reduced = self._reduce(structure)
            self.stats["fits"] += 1
            source = "fingerprint" if worth[index] == np.inf else "self_map"
            if self.matcher.fit(
                bucket.reduced(index, self), reduced, skip_structure_reduction=True
            ):
                self.stats[f"{source}_fits_matched"] += 1
                return bucket.ids[index]
            self.stats[f"{source}_fits_failed"] += 1
        return None

    def _near_fingerprints(
        self, structure: Structure, skeleton: _Skeleton, bucket: _Bucket
    ) -> list[int]:
        """Bucket members on other skeletons whose fingerprint is within the tolerance."""
        others = [i for i, s in enumerate(bucket.skeletons) if s is not skeleton]
        if not others:
            return []
        fingerprint = pair_fingerprint(structure)
        rows = np.array([bucket.fingerprint(i) for i in others])
        distance = np.abs(rows - fingerprint).sum(axis=1)
        scale = (np.abs(rows).sum(axis=1) + np.abs(fingerprint).sum()) / 2 + 1e-12
        near = [others[i] for i in np.flatnonzero(distance / scale <= self.fingerprint_tol)]
        return [i for i in near if self._skeletons_match(bucket.skeletons[i], skeleton)]

    def _skeletons_match(self, earlier: _Skeleton, later: _Skeleton) -> bool:
        """Whether two skeletons match with every site the same element, fitted once per
        pair: decorations of skeletons that do not match cannot match either (a fit of the
        decorations is also a fit of the bare sites), so their fits are skipped."""
        pair = (id(earlier), id(later))
        if pair not in self._skeleton_fits:
            self.stats["skeleton_fits"] += 1
            self._skeleton_fits[pair] = self.matcher.fit(
                earlier.bare(self), later.bare(self), skip_structure_reduction=True
            )
        return self._skeleton_fits[pair]

    def _reduce(self, structure: Structure) -> Structure:
        """The cell StructureMatcher compares: Niggli-reduced, then its primitive cell.

        Done here rather than through StructureMatcher's cached helper, whose cache hashes
        structures by composition and so slows down as it fills with one formula's decorations.
        """
        reduced = structure.get_reduced_structure(reduction_algo="niggli")
        if getattr(self.matcher, "_primitive_cell", True):
            reduced = reduced.get_primitive_structure()
        return reduced

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


def _composition_key(numbers: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Reduced composition as sorted (Z, amount) pairs: cheaper than a pymatgen formula."""
    elements, counts = np.unique(numbers, return_counts=True)
    divisor = gcd(*counts.tolist())
    return tuple(zip(elements.tolist(), (counts // divisor).tolist(), strict=True))


class _Skeleton:
    """A lattice with a set of positions (sorted), shared by all decorations of one parent.

    Its self-maps are computed only once a second decoration arrives in one bucket: most
    skeletons (random structures, prototypes) carry a single decoration.
    """

    def __init__(self, lattice: np.ndarray, frac: np.ndarray) -> None:
        self.lattice = lattice
        self.frac = frac
        self.permutations: np.ndarray | None = None
        self.displacements = np.empty(0)
        self.bare_cell: Structure | None = None
        self.members: list[tuple[_Bucket, int, np.ndarray]] = []
        self.by_decoration: dict[tuple[int, bytes], list[int]] = {}

    def bare(self, dedup: Deduplicator) -> Structure:
        """The sites all as one element (hydrogen), reduced as the matcher reduces."""
        if self.bare_cell is None:
            self.bare_cell = dedup._reduce(
                Structure(self.lattice, ["H"] * len(self.frac), self.frac)
            )
        return self.bare_cell

    def add(self, bucket: _Bucket, index: int, numbers: np.ndarray) -> None:
        """Record that bucket member ``index`` is the decoration ``numbers`` of this skeleton."""
        self.members.append((bucket, index, numbers))
        self.by_decoration.setdefault((id(bucket), numbers.tobytes()), []).append(index)

    def images_of(
        self, bucket: _Bucket, numbers: np.ndarray, matcher: StructureMatcher
    ) -> dict[int, float]:
        """Bucket members whose decoration is an image of ``numbers`` under a self-map, each
        with the smallest largest displacement (matcher units) of the maps relating them."""
        if not any(member_bucket is bucket for member_bucket, _, _ in self.members):
            return {}
        if self.permutations is None:
            self.permutations, self.displacements = self_maps(self.lattice, self.frac, matcher)
        found: dict[int, float] = {}
        images = numbers[self.permutations]
        for image, displacement in zip(images, self.displacements.tolist(), strict=True):
            for index in self.by_decoration.get((id(bucket), image.tobytes()), ()):
                found[index] = min(found.get(index, np.inf), displacement)
        return found


class _Bucket:
    """Group representatives of one reduced composition, in order, with what the filters use."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.structures: list[Structure] = []
        self.reduced_cells: list[Structure | None] = []
        self.skeletons: list[_Skeleton] = []
        self.fingerprints: list[np.ndarray | None] = []
        self.copies: dict[bytes, str] = {}

    def add_member(self, key_id: str, structure: Structure, skeleton: _Skeleton) -> None:
        self.ids.append(key_id)
        self.structures.append(structure)
        self.reduced_cells.append(None)
        self.skeletons.append(skeleton)
        self.fingerprints.append(None)

    def reduced(self, index: int, dedup: Deduplicator) -> Structure:
        """Member ``index`` as the matcher's reduced cell (computed on first use, then kept)."""
        if self.reduced_cells[index] is None:
            self.reduced_cells[index] = dedup._reduce(self.structures[index])
        return self.reduced_cells[index]

    def fingerprint(self, index: int) -> np.ndarray:
        """Member ``index``'s pair fingerprint (computed on first use, then kept)."""
        if self.fingerprints[index] is None:
            self.fingerprints[index] = pair_fingerprint(self.structures[index])
        return self.fingerprints[index]


def self_maps(
    lattice: np.ndarray, frac: np.ndarray, matcher: StructureMatcher
) -> tuple[np.ndarray, np.ndarray]:
    """Site permutations under which unlabelled sites match themselves as StructureMatcher
    would match two structures, with each one's largest displacement in the matcher's units.

    The same search as the matcher's, done once per skeleton: every lattice within its length
    and angle tolerances, every translation taking a site onto site 0, nearest-site
    assignment, mean displacement removed, normalised by (V/N)^(1/3). Maps up to 1.5 ``stol``
    are kept (the margin only adds fits). Returns (permutations (n_maps, n_sites),
    displacements (n_maps,)).
    """
    n = len(frac)
    own = Lattice(lattice)
    cart = frac @ lattice
    unit = (abs(np.linalg.det(lattice)) / n) ** (1 / 3)
    permutations, displacements = [np.arange(n)], [0.0]
    for mapped, _, _ in own.find_all_mappings(
        own, ltol=matcher.ltol, atol=matcher.angle_tol, skip_rotation_matrix=True
    ):
        # Distances in the lattice of averaged parameters, as the matcher measures them.
        parameters = (np.array(mapped.parameters) + np.array(own.parameters)) / 2
        average = Lattice.from_parameters(*parameters).matrix
        moved = cart @ np.linalg.inv(mapped.matrix)
        # delta[t, i, j]: site i moved so that site t lands on site 0, minus site j
        shifted = moved[None, :, :] - moved[:, None, :] + frac[0]
        delta = shifted[:, :, None, :] - frac[None, None, :, :]
        delta -= np.round(delta)
        distance = np.linalg.norm(delta @ average, axis=-1)
        target = distance.argmin(axis=2)
        close = distance.min(axis=2).max(axis=1) <= 3 * matcher.stol * unit
        for t in np.flatnonzero(close):
            if len(set(target[t].tolist())) < n:
                continue
            offsets = delta[t, np.arange(n), target[t]] @ average
            offsets -= offsets.mean(axis=0)
            largest = np.linalg.norm(offsets, axis=1).max() / unit
            if largest <= 1.5 * matcher.stol:
                permutations.append(target[t])
                displacements.append(largest)
    return np.array(permutations), np.array(displacements)


def pair_fingerprint(structure: Structure) -> np.ndarray:
    """Per element pair (sorted), the per-atom sum of exp(-(d / a)^2), a = (V/N)^(1/3), d < 2.5 a.

    Invariant to rotation, translation, supercells and uniform scaling; decorations of one
    parent differ in how the pair sums split between species pairs.
    """
    n = len(structure)
    matrix = structure.lattice.matrix
    unit = (abs(np.linalg.det(matrix)) / n) ** (1 / 3)
    i, j, d = NeighborList(cutoff=2.5 * unit, full_list=False).compute(
        points=structure.frac_coords @ matrix, box=matrix, periodic=True, quantities="ijd"
    )
    numbers = np.array(structure.atomic_numbers)
    elements, species = np.unique(numbers, return_inverse=True)
    m = len(elements)
    low, high = np.minimum(species[i], species[j]), np.maximum(species[i], species[j])
    sums = np.bincount(low * m + high, weights=np.exp(-((d / unit) ** 2)), minlength=m * m)
    upper = np.triu_indices(m)
    return sums.reshape(m, m)[upper] / n
