"""A campaign's convex hull: reference entries plus oracle results added round by round.

``HullSet`` groups entries by chemical system and keeps one lower hull per system that has
been asked about (see ``convex.py``), so adding results rebuilds only the systems they
touch. It records, for every added entry, its decomposition energy against the reference
hull and against the hull as it stood before its round, which gives GNoME's two notions
of success: "stable with respect to previous work" and "on the updated hull".
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Literal

import numpy as np
from pymatgen.core import Composition
from pymatgen.entries import Entry
from rich.progress import track

from hullhunter.hull.convex import (
    Chemsys,
    Hull,
    build_hulls,
    chemsys_string,
    composition_key,
    hull_without_composition,
    subsystems,
)

# Same numerical tolerance as pymatgen's PhaseDiagram.numerical_tol: a decomposition
# energy within this of the threshold counts as on the hull (exact duplicates of hull
# points come out as +-1e-16, not 0).
STABILITY_TOL = 1e-8
MAX_ABS_FORMATION_ENERGY = 5.0

SKIP_NAN_ENERGY = "nan_energy"
SKIP_ELEMENT_NOT_IN_REFERENCE = "element_not_in_reference"
SKIP_FORMATION_ENERGY_OUT_OF_RANGE = "formation_energy_out_of_range"
SKIP_DUPLICATE_ID = "duplicate_entry_id"

_FACTORIZE_SAMPLE = 1024


def parse_composition(composition: Composition | str | dict) -> tuple[Chemsys, np.ndarray]:
    """(sorted element symbols, atomic fractions in that order) of a composition."""
    comp = composition if isinstance(composition, Composition) else Composition(composition)
    amounts: dict[str, float] = {}
    for species, amount in comp.items():
        if amount < 0:
            raise ValueError(f"composition {comp} has a negative amount; use positive amounts")
        if amount > 0:
            amounts[species.symbol] = amounts.get(species.symbol, 0.0) + amount
    if not amounts:
        raise ValueError(f"composition {comp!r} is empty; give at least one element")
    chemsys = tuple(sorted(amounts))
    fractions = np.array([amounts[el] for el in chemsys], dtype=float)
    return chemsys, fractions / fractions.sum()


Groups = dict[Chemsys, tuple[np.ndarray, np.ndarray]]


def group_compositions(compositions: Iterable[Composition | str | dict]) -> Groups:
    """Positions and atomic fractions of many compositions, grouped by chemical system.

    The fast path for scoring 10^5-10^6 candidates. Python touches each composition only
    through C-level iterators (its species-amount dict, the ids of its species and its
    amounts), about 0.5 us per composition; ``parse_composition`` or pymatgen's
    ``fractional_composition``/``chemical_system`` cost several microseconds each. The
    rest is array work: species ids are mapped to element columns, each composition's
    elements become a bit mask (its chemical system), and the fraction matrix of each
    system is cut from one dense amount matrix.
    """
    # Composition keeps its {species: amount} in ``_data`` (the dict behind ``items()``);
    # reading it directly saves a Python-level method call per composition.
    amount_maps = [
        (c if isinstance(c, Composition) else Composition(c))._data for c in compositions
    ]
    if not amount_maps:
        return {}
    counts, starts, amounts = _item_amounts(amount_maps)
    element_symbols, species_code, species_element = _species_elements(
        amount_maps, starts, int(counts.sum())
    )
    system_of, system_masks = _system_codes(
        species_element, species_code, starts, len(element_symbols)
    )
    systems, column_in_system = _systems_of_masks(system_masks, element_symbols)
    element = species_element[species_code]
    return _fractions_by_system(
        systems, system_of, column_in_system, element, counts, starts, amounts
    )


def _item_amounts(amount_maps: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items per composition, each composition's first item, and every item's amount, flat.

    Raises:
        ValueError: a composition is empty or has a negative amount.
    """
    n_comps = len(amount_maps)
    counts = np.fromiter(map(len, amount_maps), dtype=np.intp, count=n_comps)
    if not counts.all():
        raise ValueError("an empty composition was given; give at least one element")
    starts = np.zeros(n_comps, dtype=np.intp)
    np.cumsum(counts[:-1], out=starts[1:])
    amounts = np.fromiter(
        chain.from_iterable(map(dict.values, amount_maps)), dtype=float, count=int(counts.sum())
    )
    if (amounts < 0).any():
        raise ValueError("a composition has a negative amount; use positive amounts")
    return counts, starts, amounts


def _species_elements(
    amount_maps: list[dict], starts: np.ndarray, n_items: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The element symbols (sorted), each item's species code, and each species' element column.

    Only one item per distinct species is looked at in Python, to read its symbol.
    """
    # Species are keyed by id: Elements are singletons, ids hash in C, and the dicts in
    # ``amount_maps`` keep every species alive (so its id unique) until the caller returns.
    species_ids = np.fromiter(
        map(id, chain.from_iterable(amount_maps)), dtype=np.uint64, count=n_items
    )
    distinct_ids, species_code = _factorize(species_ids)
    first_item = _first_positions(species_code, len(distinct_ids))
    owner = np.searchsorted(starts, first_item, side="right") - 1
    symbols = [
        list(amount_maps[row])[item - starts[row]].symbol
        for row, item in zip(owner.tolist(), first_item.tolist(), strict=True)
    ]
    element_symbols = sorted(set(symbols))
    column_of = {symbol: k for k, symbol in enumerate(element_symbols)}
    species_element = np.array([column_of[symbol] for symbol in symbols])
    return element_symbols, species_code, species_element


def _system_codes(
    species_element: np.ndarray, species_code: np.ndarray, starts: np.ndarray, n_elements: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each composition's system code (0..n_systems-1) and each system's element bit mask.

    One bit per element (alphabetical order), in as many 64-bit words as needed; the
    words of a composition's items OR together into its system's mask.
    """
    n_words = (n_elements + 63) // 64
    system_of = np.zeros(len(starts), dtype=np.intp)
    masks = np.zeros((len(starts), n_words), dtype=np.uint64)
    for word in range(n_words):
        species_bits = np.where(
            species_element // 64 == word,
            np.left_shift(np.uint64(1), (species_element % 64).astype(np.uint64)),
            np.uint64(0),
        )
        masks[:, word] = np.bitwise_or.reduceat(species_bits[species_code], starts)
        distinct_words, word_code = _factorize(masks[:, word])
        system_of = system_of * len(distinct_words) + word_code
        if word:
            system_of = _factorize(system_of)[1]
    return system_of, masks[_first_positions(system_of, system_of.max() + 1)]


def _systems_of_masks(
    system_masks: np.ndarray, element_symbols: list[str]
) -> tuple[list[Chemsys], np.ndarray]:
    """Each system's elements and the column of each element within it."""
    systems: list[Chemsys] = []
    column_in_system = np.zeros((len(system_masks), len(element_symbols)), dtype=np.intp)
    for k, words in enumerate(system_masks.tolist()):
        mask = sum(word << (64 * w) for w, word in enumerate(words))
        members = [e for e in range(len(element_symbols)) if mask >> e & 1]
        systems.append(tuple(element_symbols[e] for e in members))
        column_in_system[k, members] = np.arange(len(members))
    return systems, column_in_system


def _fractions_by_system(
    systems: list[Chemsys],
    system_of: np.ndarray,
    column_in_system: np.ndarray,
    element: np.ndarray,
    counts: np.ndarray,
    starts: np.ndarray,
    amounts: np.ndarray,
) -> Groups:
    """Cut each system's positions and fraction matrix from one dense matrix sorted by system.

    Small integer keys sort by radix sort, several times faster than int64 keys; several
    species of one element (oxidation states) add up in bincount.
    """
    n_comps = len(system_of)
    width = max(map(len, systems))
    keys = system_of.astype(np.uint16) if len(systems) <= 2**16 else system_of
    order = np.argsort(keys, kind="stable")
    rank = np.empty(n_comps, dtype=np.intp)
    rank[order] = np.arange(n_comps)
    rows = np.repeat(np.arange(n_comps), counts)
    cells = rank[rows] * width + column_in_system[system_of[rows], element]
    item_fractions = amounts / np.add.reduceat(amounts, starts)[rows]
    dense = np.bincount(cells, weights=item_fractions, minlength=n_comps * width)
    dense = dense.reshape(n_comps, width)
    ends = np.cumsum(np.bincount(system_of, minlength=len(systems))).tolist()
    return {
        system: (order[start:end], dense[start:end, : len(system)])
        for system, start, end in zip(systems, [0, *ends[:-1]], ends, strict=True)
    }


def _first_positions(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """Index of the first occurrence of each code 0..n_codes-1 in ``codes``."""
    first = np.empty(n_codes, dtype=np.intp)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    return first


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, index of each value among them) for few distinct values.

    Cheaper than ``np.unique(return_inverse=True)`` when there are few distinct values
    (species ids: tens): the distinct set is grown from a sample until a binary search
    finds every value in it, instead of sorting every value.
    """
    distinct = np.unique(values[:_FACTORIZE_SAMPLE])
    while True:
        codes = np.minimum(np.searchsorted(distinct, values), len(distinct) - 1)
        missing = distinct[codes] != values
        if not missing.any():
            return distinct, codes
        distinct = np.union1d(distinct, values[missing])


class _HullIndex:
    """Points grouped by chemical system, with one cached hull per queried system."""

    def __init__(self) -> None:
        self._points: dict[Chemsys, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._hulls: dict[Chemsys, Hull] = {}
        self.elements: set[str] = set()

    def add(
        self,
        rows: Sequence[int],
        chemsystems: Sequence[Chemsys],
        fractions: Sequence[np.ndarray],
        energies: Sequence[float],
    ) -> None:
        """Add points in row order; the caller invalidates the hulls with ``invalidate``.

        Points are kept as one set of arrays per system, so that building hulls does not
        convert per-point lists again.
        """
        members: dict[Chemsys, list[int]] = defaultdict(list)
        for i, chemsys in enumerate(chemsystems):
            members[chemsys].append(i)
        for chemsys, idx in members.items():
            new = (
                np.array([rows[i] for i in idx], dtype=int),
                np.array([fractions[i] for i in idx]).reshape(len(idx), len(chemsys)),
                np.array([energies[i] for i in idx], dtype=float),
            )
            if chemsys in self._points:
                old = self._points[chemsys]
                new = tuple(np.concatenate(pair) for pair in zip(old, new, strict=True))
            self._points[chemsys] = new
            if len(chemsys) == 1:
                self.elements.add(chemsys[0])

    def invalidate(self, touched: Iterable[Chemsys]) -> None:
        """Drop the cached hulls of every system containing a touched system."""
        touched_sets = [set(t) for t in touched]
        for key in [k for k in self._hulls if any(t <= set(k) for t in touched_sets)]:
            del self._hulls[key]

    def systems(self) -> list[Chemsys]:
        """Chemical systems that hold at least one point."""
        return list(self._points)

    def points(self, chemsys: Chemsys) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, fractions, energies) of the points whose system is exactly ``chemsys``."""
        empty = (np.zeros(0, dtype=int), np.zeros((0, len(chemsys))), np.zeros(0))
        return self._points.get(chemsys, empty)

    def covers(self, chemsys: Chemsys) -> bool:
        """Whether every element of the system has an elemental reference."""
        return self.elements.issuperset(chemsys)

    def hull(self, chemsys: Chemsys) -> Hull:
        """Hull of ``chemsys`` built from every point whose elements are a subset of it."""
        return self.hulls([chemsys])[0]

    def hulls(self, systems: Sequence[Chemsys]) -> list[Hull]:
        """Hulls of several systems; those not cached are built together in one batch."""
        if missing := [s for s in dict.fromkeys(systems) if s not in self._hulls]:
            self._hulls.update(zip(missing, self._build_hulls(missing), strict=True))
        return [self._hulls[s] for s in systems]

    def _build_hulls(self, systems: list[Chemsys]) -> list[Hull]:
        """Gather each system's points (its subsystems' included) and build the hulls."""
        width = max(map(len, systems))
        # Per subsystem size: the system each block belongs to, its points, and the
        # columns of the block's elements in that system's element order.
        blocks: dict[int, tuple[list[int], list[Chemsys], list[list[int]]]] = defaultdict(
            lambda: ([], [], [])
        )
        for k, system in enumerate(systems):
            for sub in subsystems(system):
                if sub in self._points:
                    owners, subs, columns = blocks[len(sub)]
                    owners.append(k)
                    subs.append(sub)
                    columns.append([system.index(el) for el in sub])
        parts = []
        for owners, subs, columns in blocks.values():
            arrays = [self.points(sub) for sub in subs]
            counts = [len(rows) for rows, _, _ in arrays]
            fractions = np.zeros((sum(counts), width))
            at = np.arange(len(fractions))[:, None]
            fractions[at, np.repeat(np.array(columns), counts, axis=0)] = np.concatenate(
                [frac for _, frac, _ in arrays]
            )
            parts.append(
                (
                    np.repeat(owners, counts),
                    np.concatenate([rows for rows, _, _ in arrays]),
                    fractions,
                    np.concatenate([energies for _, _, energies in arrays]),
                )
            )
        system_of, rows, fractions, energies = (np.concatenate(p) for p in zip(*parts, strict=True))
        return build_hulls(systems, system_of, rows, fractions, energies)

    def decomposition_energy(
        self, groups: Groups, energies: np.ndarray, progress: bool = False
    ) -> np.ndarray:
        """E minus hull energy for each point; NaN where an element has no reference."""
        out = np.full(len(energies), np.nan)
        covered = [system for system in groups if self.covers(system)]
        for system, hull in track(
            zip(covered, self.hulls(covered), strict=True),
            total=len(covered),
            description="hull energies",
            disable=not progress,
        ):
            positions, fractions = groups[system]
            out[positions] = energies[positions] - hull.energy(fractions)
        return out


@dataclass(frozen=True)
class EntryRecord:
    """What the hull knows about one entry.

    Attributes:
        entry_id: the entry's id.
        formula: reduced formula.
        chemsys: "A-B-C".
        n_elements: number of elements.
        round: the round it was added in; None for reference entries.
        e_vs_reference: decomposition energy against the reference hull when added
            (NaN for reference entries).
        e_vs_previous: decomposition energy against the hull as it stood before its round
            (NaN for reference entries).
        decomposition_energy: current value (as ``entry_decomposition_energies``); negative
            for the stable entry of a composition, and for an unstable polymorph of a
            composition whose stable entry lies far enough below the hull built without it.
        e_above_hull: energy above the current hull at its composition (>= 0, 0 on the
            hull), as the Materials Project defines it: every polymorph is compared with the
            hull that includes the composition's own lowest entry.
        formation_energy_per_atom: energy per atom relative to the elemental references.
        stable_vs_reference: below or on the reference hull when added (GNoME's "stable
            with respect to previous work").
        hit: below or on the hull as it stood before its round.
        on_hull: a vertex of the current hull (GNoME's "on the updated hull").
    """

    entry_id: str
    formula: str
    chemsys: str
    n_elements: int
    round: int | None
    e_vs_reference: float
    e_vs_previous: float
    decomposition_energy: float
    e_above_hull: float
    formation_energy_per_atom: float
    stable_vs_reference: bool
    hit: bool
    on_hull: bool


class HullSet:
    """Reference entries plus added results, with decomposition energies per chemical system.

    Args:
        entries: reference entries (pymatgen ``ComputedEntry`` or any ``Entry`` with an
            ``entry_id``), e.g. the campaign's seeds relaxed by its oracle. Every element
            that appears must have an elemental entry; the lowest-energy polymorph of each
            element is its reference.
        max_abs_formation_energy: entries further than this (eV/atom) from their elemental
            references are excluded and counted in ``skipped``.
        progress: show rich progress bars for long computations.

    Raises:
        ValueError: an element has no elemental entry, or an entry has no/duplicate id.
    """

    def __init__(
        self,
        entries: Iterable[Entry],
        *,
        max_abs_formation_energy: float = MAX_ABS_FORMATION_ENERGY,
        progress: bool = False,
    ) -> None:
        self.max_abs_formation_energy = max_abs_formation_energy
        self.progress = progress
        self.entries: list[Entry] = []
        self.skipped: Counter[str] = Counter()
        self._skipped_by_round: dict[int, Counter[str]] = defaultdict(Counter)
        self._row_of: dict[str, int] = {}
        self._chemsys: list[Chemsys] = []
        self._fractions: list[np.ndarray] = []
        self._round: list[int | None] = []
        self._e_vs_reference: list[float] = []
        self._e_vs_previous: list[float] = []
        self._reference = _HullIndex()
        self._before_round = _HullIndex()
        self._current = _HullIndex()
        self._open_round: int | None = None
        self._n_before_round = 0
        self._entry_values: dict[Chemsys, dict[int, float]] = {}
        self._above_hull: dict[Chemsys, dict[int, float]] = {}
        self._stable_rows: dict[Chemsys, set[int]] = {}

        parsed = []
        ids: Counter[str] = Counter()
        for entry in entries:
            ids[self._entry_id(entry)] += 1
            chemsys, fractions = parse_composition(entry.composition)
            parsed.append((entry, chemsys, fractions, float(entry.energy_per_atom)))
        if duplicates := sorted(i for i, n in ids.items() if n > 1):
            raise ValueError(f"duplicate entry_id in the reference entries: {duplicates[:5]}")

        finite = [p for p in parsed if np.isfinite(p[3])]
        if n_nan := len(parsed) - len(finite):
            self.skipped[SKIP_NAN_ENERGY] += n_nan
        refs = _lowest_per_element(finite)
        present = {el for p in finite for el in p[1]}
        if missing := sorted(present - set(refs)):
            raise ValueError(
                f"missing elemental reference for {', '.join(missing)}: "
                "add an entry for each pure element"
            )
        kept = []
        for entry, chemsys, fractions, energy in finite:
            formation = energy - fractions @ np.array([refs[el] for el in chemsys])
            if abs(formation) > max_abs_formation_energy:
                self.skipped[SKIP_FORMATION_ENERGY_OUT_OF_RANGE] += 1
                continue
            row = self._store(entry, chemsys, fractions, None, np.nan, np.nan)
            kept.append((row, chemsys, fractions, energy))
        for index in (self._reference, self._before_round, self._current):
            index.add(*([point[k] for point in kept] for k in range(4)))
        self._n_before_round = len(self.entries)

    @staticmethod
    def _entry_id(entry: Entry) -> str:
        entry_id = getattr(entry, "entry_id", None)
        if entry_id is None:
            raise ValueError(f"entry {entry!r} has no entry_id; set entry.entry_id to a unique id")
        return str(entry_id)

    def _store(
        self,
        entry: Entry,
        chemsys: Chemsys,
        fractions: np.ndarray,
        round_: int | None,
        e_vs_reference: float,
        e_vs_previous: float,
    ) -> int:
        row = len(self.entries)
        self.entries.append(entry)
        self._row_of[self._entry_id(entry)] = row
        self._chemsys.append(chemsys)
        self._fractions.append(fractions)
        self._round.append(round_)
        self._e_vs_reference.append(e_vs_reference)
        self._e_vs_previous.append(e_vs_previous)
        return row

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._row_of

    @property
    def elemental_references(self) -> dict[str, Entry]:
        """Lowest-energy entry of each element in the current set."""
        best: dict[str, int] = {}
        for el in self._current.elements:
            rows, _, energies = self._current.points((el,))
            best[el] = int(rows[np.argmin(energies)])
        return {el: self.entries[row] for el, row in sorted(best.items())}

    @property
    def chemical_systems(self) -> set[str]:
        """Chemical systems ("A-B-C") of the entries in the set."""
        return {chemsys_string(c) for c in self._current.systems()}

    def hull(self, chemsys: str | Iterable[str]) -> Hull:
        """Current hull of a chemical system ("A-B-C" or element symbols)."""
        system = tuple(sorted(chemsys.split("-") if isinstance(chemsys, str) else chemsys))
        if missing := sorted(set(system) - self._current.elements):
            raise ValueError(
                f"missing elemental reference for {', '.join(missing)}: "
                "add an entry for each pure element"
            )
        return self._current.hull(system)

    def entry(self, entry_id: str) -> Entry:
        """The entry with this id."""
        return self.entries[self._row_of[entry_id]]

    def add(self, entries: Iterable[Entry], round: int | None = None) -> set[str]:
        """Add results (one round, or one batch of a round) and return the systems touched.

        Each entry is first scored against the reference hull and against the hull as it
        stood before ``round`` (so entries of one round do not compete with each other
        for the hit rate). Entries with NaN energy, elements without a reference, an
        energy more than ``max_abs_formation_energy`` from the elements, or an id already
        in the set are excluded and counted in ``skipped``.

        Args:
            entries: new entries, each with a unique ``entry_id``.
            round: round number; defaults to the last round plus one (1 for the first).
                Several calls may share a round; rounds must not decrease.

        Returns:
            The chemical systems ("A-B-C") whose hull may have changed: those of the added
            entries and every system in the set that contains one of them.
        """
        round_ = self._start_round(round)
        refs = {el: float(e.energy_per_atom) for el, e in self.elemental_references.items()}
        accepted = []
        seen: set[str] = set()
        for entry in entries:
            entry_id = self._entry_id(entry)
            chemsys, fractions = parse_composition(entry.composition)
            energy = float(entry.energy_per_atom)
            if entry_id in self._row_of or entry_id in seen:
                reason = SKIP_DUPLICATE_ID
            elif not np.isfinite(energy):
                reason = SKIP_NAN_ENERGY
            elif not set(chemsys) <= refs.keys():
                reason = SKIP_ELEMENT_NOT_IN_REFERENCE
            elif (
                abs(energy - fractions @ np.array([refs[el] for el in chemsys]))
                > self.max_abs_formation_energy
            ):
                reason = SKIP_FORMATION_ENERGY_OUT_OF_RANGE
            else:
                seen.add(entry_id)
                accepted.append((entry, chemsys, fractions, energy))
                continue
            self.skipped[reason] += 1
            self._skipped_by_round[round_][reason] += 1
        if not accepted:
            return set()

        by_system: dict[Chemsys, list[int]] = defaultdict(list)
        for i, (_, chemsys, _, _) in enumerate(accepted):
            by_system[chemsys].append(i)
        groups = {
            c: (np.array(idx), np.array([accepted[i][2] for i in idx]))
            for c, idx in by_system.items()
        }
        energies = np.array([a[3] for a in accepted])
        e_ref = self._reference.decomposition_energy(groups, energies)
        e_prev = self._before_round.decomposition_energy(groups, energies)
        rows = [
            self._store(entry, chemsys, frac, round_, float(e_r), float(e_p))
            for (entry, chemsys, frac, _), e_r, e_p in zip(accepted, e_ref, e_prev, strict=True)
        ]
        self._current.add(
            rows, [a[1] for a in accepted], [a[2] for a in accepted], energies.tolist()
        )

        new_systems = set(by_system)
        self._current.invalidate(new_systems)
        affected = {
            s for s in self._current.systems() if any(set(t) <= set(s) for t in new_systems)
        }
        for system in affected:
            self._entry_values.pop(system, None)
            self._above_hull.pop(system, None)
            self._stable_rows.pop(system, None)
        return {chemsys_string(s) for s in affected}

    def _start_round(self, round_: int | None) -> int:
        """Open ``round_`` and bring the before-round hull up to the end of earlier rounds."""
        if round_ is None:
            round_ = 1 if self._open_round is None else self._open_round + 1
        if self._open_round is not None and round_ < self._open_round:
            raise ValueError(
                f"round {round_} comes before the open round {self._open_round}; "
                "add rounds in increasing order"
            )
        if round_ != self._open_round:
            new_rows = range(self._n_before_round, len(self.entries))
            self._before_round.add(
                new_rows,
                self._chemsys[new_rows.start :],
                self._fractions[new_rows.start :],
                [float(self.entries[row].energy_per_atom) for row in new_rows],
            )
            self._before_round.invalidate(set(self._chemsys[new_rows.start :]))
            self._n_before_round = len(self.entries)
            self._open_round = round_
        return round_

    def decomposition_energy(
        self,
        compositions: Sequence[Composition | str],
        energies_per_atom: Sequence[float] | np.ndarray,
        against: Literal["current", "reference"] = "current",
    ) -> np.ndarray:
        """Energy per atom minus the hull energy at each composition (negative below the hull).

        For points not in the set (candidates, predictions). Compositions are grouped by
        chemical system and each system's hull is built once. NaN where the energy is NaN
        or an element has no elemental reference.

        Args:
            compositions: pymatgen ``Composition`` objects or formulas.
            energies_per_atom: total energies per atom on the hull's scale.
            against: "current" hull, or the "reference" hull (reference entries only).
        """
        energies = np.asarray(energies_per_atom, dtype=float)
        if len(compositions) != len(energies):
            raise ValueError(
                f"{len(compositions)} compositions but {len(energies)} energies; "
                "give one energy per composition"
            )
        index = {"current": self._current, "reference": self._reference}.get(against)
        if index is None:
            raise ValueError(f"against={against!r}; use 'current' or 'reference'")
        groups = group_compositions(compositions)
        return index.decomposition_energy(groups, energies, progress=self.progress)

    def _system_values(self, chemsys: Chemsys) -> dict[int, float]:
        """Decomposition energies of the entries whose system is exactly ``chemsys``."""
        if chemsys not in self._entry_values:
            hull = self._current.hull(chemsys)
            rows, fractions, energies = self._current.points(chemsys)
            above_hull = energies - hull.energy(fractions)
            values = above_hull.copy()
            if len(chemsys) > 1:
                # Entries sharing a composition with a hull vertex get the phase-separation
                # energy: the distance to the hull rebuilt without that composition.
                by_key: dict[bytes, list[int]] = defaultdict(list)
                for i, frac in enumerate(fractions):
                    by_key[composition_key(frac)].append(i)
                for members in by_key.values():
                    frac = fractions[members[0]]
                    if hull.vertex_with_composition(frac) is not None:
                        without = hull_without_composition(hull, frac)
                        values[members] = energies[members] - without.energy(frac)[0]
            row_list = rows.tolist()
            self._entry_values[chemsys] = dict(zip(row_list, values.tolist(), strict=True))
            # round-off can put a vertex a hair below its own hull
            clipped = np.maximum(above_hull, 0.0).tolist()
            self._above_hull[chemsys] = dict(zip(row_list, clipped, strict=True))
            self._stable_rows[chemsys] = hull.vertex_rows.intersection(row_list)
        return self._entry_values[chemsys]

    def _prepare_values(self, systems: list[Chemsys]) -> None:
        """Build in one batch the hulls that ``_system_values`` of these systems needs."""
        self._current.hulls([s for s in systems if s not in self._entry_values])

    def entry_decomposition_energies(self) -> dict[str, float]:
        """Decomposition energy of every entry in the set, by entry id.

        As pymatgen's ``get_decomp_and_phase_separation_energy`` (GNoME's "decomposition
        energy"): the energy above the hull for entries whose composition has no stable
        entry; for entries at the composition of a stable compound, the energy relative
        to the hull built without that composition (negative for the stable one);
        elements relative to their reference (0 for the reference itself).
        """
        out: dict[str, float] = {}
        systems = self._current.systems()
        self._prepare_values(systems)
        for chemsys in track(systems, description="entry energies", disable=not self.progress):
            for row, value in self._system_values(chemsys).items():
                out[self._entry_id(self.entries[row])] = value
        return out

    def _stable_row_set(self) -> set[int]:
        stable: set[int] = set()
        systems = self._current.systems()
        self._prepare_values(systems)
        for chemsys in systems:
            self._system_values(chemsys)
            stable |= self._stable_rows[chemsys]
        return stable

    @property
    def stable_entries(self) -> list[Entry]:
        """Entries that are vertices of the current hull (pymatgen's ``stable_entries``)."""
        return [self.entries[row] for row in sorted(self._stable_row_set())]

    def records(self, threshold: float = 0.0, chemsys: str | None = None) -> list[EntryRecord]:
        """One record per entry (grouped by chemical system): rounds, scores, hull status.

        Args:
            threshold: decomposition energy (eV/atom) at or below which an entry counts as
                stable (plus ``STABILITY_TOL`` for round-off).
            chemsys: only entries whose elements lie within this system ("A-B-C").
        """
        systems = self._current.systems()
        if chemsys is not None:
            within = set(chemsys.split("-"))
            systems = [s for s in systems if within.issuperset(s)]
        cutoff = threshold + STABILITY_TOL
        out = []
        self._prepare_values(systems)
        references = {el: float(e.energy_per_atom) for el, e in self.elemental_references.items()}
        for system in systems:
            values = self._system_values(system)
            above_hull = self._above_hull[system]
            stable = self._stable_rows[system]
            reference_energies = np.array([references[el] for el in system])
            for row, value in values.items():
                entry = self.entries[row]
                formation = float(entry.energy_per_atom) - self._fractions[row] @ reference_energies
                out.append(
                    EntryRecord(
                        entry_id=self._entry_id(entry),
                        formula=entry.composition.reduced_formula,
                        chemsys=chemsys_string(system),
                        n_elements=len(system),
                        round=self._round[row],
                        e_vs_reference=self._e_vs_reference[row],
                        e_vs_previous=self._e_vs_previous[row],
                        decomposition_energy=value,
                        e_above_hull=above_hull[row],
                        formation_energy_per_atom=float(formation),
                        stable_vs_reference=bool(self._e_vs_reference[row] <= cutoff),
                        hit=bool(self._e_vs_previous[row] <= cutoff),
                        on_hull=row in stable,
                    )
                )
        return out

    def round_metrics(self, threshold: float = 0.0) -> list[dict]:
        """Per-round and cumulative discovery figures, one dict per round.

        Keys: round; evaluated (results given to ``add``, skipped ones included);
        accepted; skipped (by reason); hits (decomposition energy <= threshold against
        the hull before the round) and hit_rate (hits / accepted); stable_vs_reference;
        on_hull (entries of the round on the current hull); by_n_elements ({n: {accepted,
        hits, stable_vs_reference, on_hull}}); and cumulative_* versions of the counts,
        cumulative_by_n_elements included.
        """
        records = [r for r in self.records(threshold) if r.round is not None]
        rounds = sorted({r.round for r in records} | set(self._skipped_by_round))
        out = []
        totals: Counter[str] = Counter()
        totals_by_n: dict[int, Counter[str]] = defaultdict(Counter)
        for round_ in rounds:
            mine = [r for r in records if r.round == round_]
            skipped = dict(self._skipped_by_round.get(round_, {}))
            counts = {
                "accepted": len(mine),
                "evaluated": len(mine) + sum(skipped.values()),
                "hits": sum(r.hit for r in mine),
                "stable_vs_reference": sum(r.stable_vs_reference for r in mine),
                "on_hull": sum(r.on_hull for r in mine),
            }
            totals.update(counts)
            by_n: dict[int, dict[str, int]] = {}
            for n in sorted({r.n_elements for r in mine}):
                group = [r for r in mine if r.n_elements == n]
                by_n[n] = {
                    "accepted": len(group),
                    "hits": sum(r.hit for r in group),
                    "stable_vs_reference": sum(r.stable_vs_reference for r in group),
                    "on_hull": sum(r.on_hull for r in group),
                }
                totals_by_n[n].update(by_n[n])
            out.append(
                {
                    "round": round_,
                    **counts,
                    "skipped": skipped,
                    "hit_rate": _ratio(counts["hits"], counts["accepted"]),
                    "by_n_elements": by_n,
                    **{f"cumulative_{k}": v for k, v in totals.items()},
                    "cumulative_hit_rate": _ratio(totals["hits"], totals["accepted"]),
                    "cumulative_by_n_elements": {
                        n: dict(totals_by_n[n]) for n in sorted(totals_by_n)
                    },
                }
            )
        return out


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def _lowest_per_element(parsed: list[tuple[Entry, Chemsys, np.ndarray, float]]) -> dict[str, float]:
    refs: dict[str, float] = {}
    for _, chemsys, _, energy in parsed:
        if len(chemsys) == 1 and energy < refs.get(chemsys[0], np.inf):
            refs[chemsys[0]] = energy
    return refs
