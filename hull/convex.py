"""Lower convex hulls per chemical system, evaluated by vectorised facet arithmetic.

pymatgen's ``PhaseDiagram`` answers one composition at a time by looping over facets in
Python (about 0.1-2 ms per call). A campaign scores 10^5-10^6 candidates per round, so
this module builds each chemical system's hull once with the same qhull recipe as
pymatgen (same filtering, same ``"Qt i"`` options, same extra apex point) and then turns
every lower facet into a plane ``E(x) = mu . x`` (mu = the facet's chemical potentials).
The lower hull is convex, so its energy at ``x`` is the largest plane value there: one
matrix product and a row maximum answer thousands of compositions at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy.spatial import ConvexHull

# Same tolerances as pymatgen's PhaseDiagram so that the filtered point sets match.
FORMATION_ENERGY_TOL = 1e-11
DEGENERATE_FACET_TOL = 1e-14
# Compositions whose atomic fractions agree to this many decimals are the same composition.
COMPOSITION_DECIMALS = 9
_QUERY_CHUNK = 8192

Chemsys = tuple[str, ...]


def chemsys_string(chemsys: Iterable[str]) -> str:
    """'A-B-C' with sorted element symbols, as pymatgen's ``Composition.chemical_system``."""
    return "-".join(sorted(chemsys))


def subsystems(chemsys: Chemsys) -> list[Chemsys]:
    """All non-empty subsets of a chemical system (sorted tuples), itself included."""
    return [sub for k in range(1, len(chemsys) + 1) for sub in combinations(chemsys, k)]


@dataclass
class Hull:
    """Lower convex hull of one chemical system.

    Attributes:
        elements: the system's element symbols, sorted; column order of ``planes``.
        planes: one row per lower facet: chemical potentials ``mu`` with E_hull = mu . x.
        facets: one row per lower facet: indices into ``point_rows`` of its vertices.
        vertex_rows: rows (ids given by the caller) that are vertices of the lower hull.
        point_rows: rows used for the hull: lowest energy per composition with a negative
            formation energy, plus the elemental references (pymatgen's ``qhull_entries``).
        point_fractions: atomic fractions of ``point_rows`` (columns = ``elements``).
        point_energies: energies per atom of ``point_rows``.
    """

    elements: Chemsys
    planes: np.ndarray
    facets: np.ndarray
    vertex_rows: set[int]
    point_rows: np.ndarray
    point_fractions: np.ndarray
    point_energies: np.ndarray
    _vertex_keys: dict[bytes, int] = field(default_factory=dict, repr=False)

    def energy(self, fractions: np.ndarray) -> np.ndarray:
        """Hull energy per atom at each row of ``fractions`` (columns = ``elements``)."""
        fractions = np.atleast_2d(fractions)
        out = np.empty(len(fractions))
        for start in range(0, len(fractions), _QUERY_CHUNK):
            block = fractions[start : start + _QUERY_CHUNK]
            out[start : start + _QUERY_CHUNK] = (block @ self.planes.T).max(axis=1)
        return out

    def vertex_with_composition(self, fractions: np.ndarray) -> int | None:
        """Row of the hull vertex at exactly this composition, or None."""
        if not self._vertex_keys:
            for row, frac in zip(self.point_rows, self.point_fractions, strict=True):
                if int(row) in self.vertex_rows:
                    self._vertex_keys[composition_key(frac)] = int(row)
        return self._vertex_keys.get(composition_key(fractions))


def composition_key(fractions: np.ndarray) -> bytes:
    """Hashable key of a composition given by its atomic fractions."""
    return np.round(np.asarray(fractions, dtype=float), COMPOSITION_DECIMALS).tobytes()


def build_hull(
    elements: Chemsys,
    rows: Sequence[int],
    fractions: np.ndarray,
    energies: np.ndarray,
) -> Hull:
    """Build the lower hull of ``elements`` from points that all lie in that system.

    Args:
        elements: sorted element symbols of the system.
        rows: caller's ids of the points; exact ties keep the lowest id (pymatgen keeps
            the first entry).
        fractions: (n, len(elements)) atomic fractions.
        energies: (n,) energies per atom.

    Raises:
        ValueError: an element of the system has no point at the pure element.
    """
    rows = np.asarray(rows, dtype=int)
    fractions = np.asarray(fractions, dtype=float).reshape(len(rows), len(elements))
    return build_hulls([elements], np.zeros(len(rows), dtype=int), rows, fractions, energies)[0]


def build_hulls(
    systems: Sequence[Chemsys],
    system_of: np.ndarray,
    rows: np.ndarray,
    fractions: np.ndarray,
    energies: np.ndarray,
) -> list[Hull]:
    """Build the lower hulls of many chemical systems in one batch.

    Everything but the qhull call itself runs once on the points of all systems together
    (a few dozen array operations in all instead of per system): with ~100 points per
    system those per-call overheads cost more than qhull does.

    Args:
        systems: sorted element symbols of each system.
        system_of: (n,) index into ``systems`` of each point.
        rows: (n,) caller's ids of the points; exact ties keep the lowest id.
        fractions: (n, width) atomic fractions in the column order of each point's own
            system, zero beyond its length (width >= the largest system).
        energies: (n,) energies per atom.

    Raises:
        ValueError: an element of a system has no point at the pure element.
    """
    system_of = np.asarray(system_of, dtype=int)
    rows = np.asarray(rows, dtype=int)
    fractions = np.asarray(fractions, dtype=float)
    energies = np.asarray(energies, dtype=float)
    dims = np.array([len(system) for system in systems])
    in_system = np.arange(fractions.shape[1]) < dims[:, None]
    ref_point = _elemental_references(systems, system_of, rows, fractions, energies, in_system)
    ref_energy = np.where(in_system, energies[ref_point], 0.0)
    kept = _lowest_compounds_below_references(system_of, rows, fractions, energies, ref_energy)
    points = _gather_points(kept, ref_point[in_system], dims, system_of, rows, fractions, energies)
    data = _qhull_input(points, dims, in_system)
    bounds = list(zip(points.starts.tolist(), points.ends.tolist(), dims.tolist(), strict=True))
    planes_of, facets_of = _facet_planes(_lower_simplices(data, bounds), points)
    return _assemble_hulls(systems, points, bounds, planes_of, facets_of)


@dataclass
class _HullPoints:
    """Every system's hull points, one block per system, in pymatgen's order within a block.

    ``system`` is each point's index into the systems; block ``k`` is
    ``starts[k]:ends[k]``.
    """

    system: np.ndarray
    rows: np.ndarray
    fractions: np.ndarray
    energies: np.ndarray
    starts: np.ndarray
    ends: np.ndarray


def _elemental_references(
    systems: Sequence[Chemsys],
    system_of: np.ndarray,
    rows: np.ndarray,
    fractions: np.ndarray,
    energies: np.ndarray,
    in_system: np.ndarray,
) -> np.ndarray:
    """Per system and element column, the lowest pure point (-1 beyond the system's elements).

    Exact energy ties keep the lowest id, as pymatgen keeps the first entry.

    Raises:
        ValueError: an element of a system has no point at the pure element.
    """
    pure = np.flatnonzero(fractions.max(axis=1) == 1.0)
    pure_column = fractions[pure].argmax(axis=1)
    order = np.lexsort((rows[pure], energies[pure], pure_column, system_of[pure]))
    pure, pure_column = pure[order], pure_column[order]
    pure_system = system_of[pure]
    first = np.ones(len(pure), dtype=bool)
    first[1:] = (pure_system[1:] != pure_system[:-1]) | (pure_column[1:] != pure_column[:-1])
    ref_point = np.full(in_system.shape, -1)
    ref_point[pure_system[first], pure_column[first]] = pure[first]
    missing = in_system & (ref_point < 0)
    if missing.any():
        k = int(np.flatnonzero(missing.any(axis=1))[0])
        names = ", ".join(systems[k][c] for c in np.flatnonzero(missing[k]))
        raise ValueError(
            f"missing elemental reference for {names}: add an entry for each pure element"
        )
    return ref_point


def _lowest_compounds_below_references(
    system_of: np.ndarray,
    rows: np.ndarray,
    fractions: np.ndarray,
    energies: np.ndarray,
    ref_energy: np.ndarray,
) -> np.ndarray:
    """pymatgen's qhull compounds: the lowest point per composition, if below the references.

    A point is kept when its formation energy is negative; exact ties keep the lowest id.
    Filtering first and then taking the lowest per composition among the survivors gives
    the same points from far fewer rows.
    """
    formation = energies - np.einsum("ij,ij->i", fractions, ref_energy[system_of])
    below = np.flatnonzero(formation < -FORMATION_ENERGY_TOL)
    rounded = np.round(fractions[below], COMPOSITION_DECIMALS)
    order = np.lexsort((rows[below], energies[below], *rounded.T, system_of[below]))
    below, rounded = below[order], rounded[order]
    same_system = system_of[below[1:]] == system_of[below[:-1]]
    same_composition = (rounded[1:] == rounded[:-1]).all(axis=1)
    first = np.ones(len(below), dtype=bool)
    first[1:] = ~(same_system & same_composition)
    return below[first]


def _gather_points(
    kept: np.ndarray,
    refs: np.ndarray,
    dims: np.ndarray,
    system_of: np.ndarray,
    rows: np.ndarray,
    fractions: np.ndarray,
    energies: np.ndarray,
) -> _HullPoints:
    """Each system's points in pymatgen's order: compounds by id, then the references."""
    n_systems = len(dims)
    point_idx = np.concatenate([kept, refs])
    point_system = np.concatenate([system_of[kept], np.repeat(np.arange(n_systems), dims)])
    rank = np.concatenate([rows[kept], np.full(len(refs), np.iinfo(int).max)])
    order = np.lexsort((rank, point_system))
    point_idx, point_system = point_idx[order], point_system[order]
    counts = np.bincount(point_system, minlength=n_systems)
    ends = np.cumsum(counts)
    return _HullPoints(
        system=point_system,
        rows=rows[point_idx],
        fractions=fractions[point_idx],
        energies=energies[point_idx],
        starts=ends - counts,
        ends=ends,
    )


def _qhull_input(points: _HullPoints, dims: np.ndarray, in_system: np.ndarray) -> np.ndarray:
    """pymatgen's qhull input of every system, stacked, each block followed by its apex row.

    A block holds its points' fractions without the first element, then the energy; the
    apex sits above the centroid so that every non-lower facet contains it.
    """
    n_systems, width = in_system.shape
    data = np.zeros((len(points.rows) + n_systems, width))
    at = np.arange(len(points.rows)) + points.system
    data[at, : width - 1] = points.fractions[:, 1:]
    data[at, dims[points.system] - 1] = points.energies
    apex_at = points.ends + np.arange(n_systems)
    top = np.maximum.reduceat(data.max(axis=1), points.starts + np.arange(n_systems))
    apex = np.where(in_system, 1.0 / dims[:, None], 0.0)
    apex[np.arange(n_systems), dims - 1] = top + 1.0
    data[apex_at] = apex
    return data


def _lower_simplices(
    data: np.ndarray, bounds: list[tuple[int, int, int]]
) -> dict[int, list[np.ndarray]]:
    """qhull of each system of 2+ elements: its simplices without the apex, by dimension.

    The simplices index the stacked points, so one dimension's systems batch together.
    """
    lower: dict[int, list[np.ndarray]] = {}
    for k, (start, end, dim) in enumerate(bounds):
        if dim > 1:
            block = data[start + k : end + k + 1, :dim]
            simplices = ConvexHull(block, qhull_options="Qt i").simplices
            without_apex = simplices[simplices.max(axis=1) < end - start]
            lower.setdefault(dim, []).append(without_apex + start)
    return lower


def _facet_planes(
    lower: dict[int, list[np.ndarray]], points: _HullPoints
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Per dimension: the non-degenerate lower facets and the plane through each.

    One batched determinant and solve per dimension rather than per system.
    """
    planes_of: dict[int, np.ndarray] = {}
    facets_of: dict[int, np.ndarray] = {}
    for dim, blocks in lower.items():
        simplices = np.concatenate(blocks)
        mats = np.ones((len(simplices), dim, dim))
        mats[..., :-1] = points.fractions[simplices, 1:dim]
        facets = simplices[np.abs(np.linalg.det(mats)) > DEGENERATE_FACET_TOL]
        solution = np.linalg.solve(
            points.fractions[facets, :dim], points.energies[facets][..., None]
        )
        planes_of[dim] = solution[..., 0]
        facets_of[dim] = facets
    return planes_of, facets_of


def _assemble_hulls(
    systems: Sequence[Chemsys],
    points: _HullPoints,
    bounds: list[tuple[int, int, int]],
    planes_of: dict[int, np.ndarray],
    facets_of: dict[int, np.ndarray],
) -> list[Hull]:
    """Split the batched planes, facets and vertices back into one :class:`Hull` per system.

    A one-element system's hull is its reference alone: one facet, one plane at its energy.
    """
    n_systems = len(systems)
    facet_ends = {
        dim: np.cumsum(np.bincount(points.system[f[:, 0]], minlength=n_systems)).tolist()
        for dim, f in facets_of.items()
    }
    is_vertex = np.zeros(len(points.rows), dtype=bool)
    for facets in facets_of.values():
        is_vertex[facets.ravel()] = True
    vertex_rows = points.rows[is_vertex].tolist()
    vertex_ends = np.cumsum(np.bincount(points.system[is_vertex], minlength=n_systems)).tolist()

    hulls = []
    for k, (start, end, dim) in enumerate(bounds):
        if dim == 1:
            planes = points.energies[end - 1 : end].reshape(1, 1)
            facets = np.array([[end - 1 - start]])
            vertices = {int(points.rows[end - 1])}
        else:
            first_facet = facet_ends[dim][k - 1] if k else 0
            planes = planes_of[dim][first_facet : facet_ends[dim][k]]
            facets = facets_of[dim][first_facet : facet_ends[dim][k]] - start
            vertices = set(vertex_rows[vertex_ends[k - 1] if k else 0 : vertex_ends[k]])
        hulls.append(
            Hull(
                elements=tuple(systems[k]),
                planes=planes,
                facets=facets,
                vertex_rows=vertices,
                point_rows=points.rows[start:end],
                point_fractions=points.fractions[start:end, :dim],
                point_energies=points.energies[start:end],
            )
        )
    return hulls


def hull_without_composition(hull: Hull, fractions: np.ndarray) -> Hull:
    """The hull of the same system rebuilt without the points at one composition."""
    key = composition_key(fractions)
    mask = np.array([composition_key(f) != key for f in hull.point_fractions])
    return build_hull(
        hull.elements,
        hull.point_rows[mask],
        hull.point_fractions[mask],
        hull.point_energies[mask],
    )
