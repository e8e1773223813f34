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
        rows: caller's ids of the points, in insertion order (ties keep the first).
        fractions: (n, len(elements)) atomic fractions.
        energies: (n,) energies per atom.

    Raises:
        ValueError: an element of the system has no point at the pure element.
    """
    rows = np.asarray(rows, dtype=int)
    fractions = np.asarray(fractions, dtype=float).reshape(len(rows), len(elements))
    energies = np.asarray(energies, dtype=float)
    dim = len(elements)

    # Lowest energy per composition; a stable sort keeps the first of exact ties (pymatgen).
    rounded = np.round(fractions, COMPOSITION_DECIMALS)
    order = np.lexsort((energies, *rounded.T))  # by composition, then energy; stable
    ordered = rounded[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    min_idx = np.sort(order[first])

    pure = min_idx[fractions[min_idx].max(axis=1) == 1.0]
    ref_idx = np.full(dim, -1)
    ref_idx[fractions[pure].argmax(axis=1)] = pure
    if missing := [elements[k] for k in np.flatnonzero(ref_idx < 0)]:
        raise ValueError(
            f"missing elemental reference for {', '.join(missing)}: "
            "add an entry for each pure element"
        )
    refs = energies[ref_idx]

    formation = energies[min_idx] - fractions[min_idx] @ refs
    is_ref = np.zeros(len(rows), dtype=bool)
    is_ref[ref_idx] = True
    keep = min_idx[(formation < -FORMATION_ENERGY_TOL) & ~is_ref[min_idx]]
    point_idx = np.concatenate([keep, ref_idx])
    pts_frac = fractions[point_idx]
    pts_e = energies[point_idx]

    if dim == 1:
        return Hull(
            elements=elements,
            planes=refs.reshape(1, 1),
            facets=np.array([[len(point_idx) - 1]]),
            vertex_rows={int(rows[ref_idx[0]])},
            point_rows=rows[point_idx],
            point_fractions=pts_frac,
            point_energies=pts_e,
        )

    # pymatgen's qhull input: fractions without the first element, then energy, plus an
    # apex above the centroid so that every non-lower facet contains it.
    data = np.column_stack([pts_frac[:, 1:], pts_e])
    apex = np.full(dim, 1.0 / dim)
    apex[-1] = data.max() + 1.0
    data = np.vstack([data, apex])
    simplices = ConvexHull(data, qhull_options="Qt i").simplices
    simplices = simplices[simplices.max(axis=1) < len(data) - 1]
    mats = data[simplices]
    mats[..., -1] = 1.0
    facets_arr = simplices[np.abs(np.linalg.det(mats)) > DEGENERATE_FACET_TOL]
    planes = np.linalg.solve(pts_frac[facets_arr], pts_e[facets_arr][..., None])[..., 0]
    vertices = {int(rows[point_idx[i]]) for i in np.unique(facets_arr)}
    return Hull(
        elements=elements,
        planes=planes,
        facets=facets_arr,
        vertex_rows=vertices,
        point_rows=rows[point_idx],
        point_fractions=pts_frac,
        point_energies=pts_e,
    )


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
