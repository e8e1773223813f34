"""Seed crystals: the campaign's starting set of known structures, with provenance.

The shipped seed file (``data/seeds.json.gz``, built by :mod:`build_seeds`) holds real
Materials Project and AFLOW structures that ship inside PyPI packages, so nothing is
downloaded at run time. Users add their own crystals from CIF folders or pymatgen JSON,
or from the Materials Project API when they have a key and network.
"""

from __future__ import annotations

import gzip
import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations
from pathlib import Path
from typing import Any

from pymatgen.core import Structure
from pymatgen.io.cif import CifParser

from hullhunter.generators.common import validate_elements
from hullhunter.generators.sanity import seed_problem

SHIPPED_SEEDS = Path(__file__).parent / "data" / "seeds.json.gz"
SEED_FILE_FORMAT = "hullhunter-seeds"
USER_LICENSE = "user-supplied (check the source's terms)"


@dataclass
class Seed:
    """A known crystal with where it came from (``source``) and under which licence."""

    id: str
    structure: Structure
    source: str
    license: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def elements(self) -> frozenset[str]:
        """Element symbols of the seed."""
        return frozenset(el.symbol for el in self.structure.composition.elements)

    @property
    def formula(self) -> str:
        """Reduced formula."""
        return self.structure.composition.reduced_formula

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe record, the format of the seed file."""
        return {
            "id": self.id,
            "source": self.source,
            "license": self.license,
            "elements": sorted(self.elements),
            "metadata": self.metadata,
            "structure": self.structure.as_dict(verbosity=0),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Seed:
        """Inverse of :meth:`as_dict`."""
        return cls(
            id=data["id"],
            structure=Structure.from_dict(data["structure"]),
            source=data["source"],
            license=data["license"],
            metadata=dict(data.get("metadata", {})),
        )


def write_seed_file(
    seeds: Iterable[Seed],
    path: Path,
    sources: dict[str, Any],
    dropped: list[dict[str, str]] | None = None,
) -> int:
    """Write seeds as gzipped JSON with a header describing each source; returns the count.

    ``dropped`` lists the seeds left out by the sanity check, each with its reason.
    """
    records = [seed.as_dict() for seed in seeds]
    payload = {
        "format": SEED_FILE_FORMAT,
        "version": 1,
        "sources": sources,
        "dropped": dropped or [],
        "seeds": records,
    }
    # mtime=0 keeps the gzip header fixed, so rebuilding gives a byte-identical file.
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as handle:
        handle.write(json.dumps(payload, separators=(",", ":")).encode())
    return len(records)


@lru_cache(maxsize=4)
def _seed_file_records(path: str) -> tuple[dict[str, Any], ...]:
    """Raw records of a seed file, cached so repeated loads only rebuild the structures."""
    return tuple(_read_json(Path(path))["seeds"])


def load_seeds(
    path: str | Path | None = None,
    elements: Iterable[str] | None = None,
    *,
    dropped: list[tuple[str, str]] | None = None,
) -> list[Seed]:
    """Load seeds: the shipped file by default, or a seed file, CIF file/folder or pymatgen JSON.

    ``elements`` keeps only seeds whose elements are a subset of it (a campaign's space).
    User seeds (CIF, JSON, POSCAR) go through :func:`~hullhunter.generators.sanity.seed_problem`:
    one that fails is left out with a warning naming it and why, and ``(id, reason)`` is
    appended to ``dropped`` when a list is given. Seed files were checked when built.
    """
    allowed = validate_elements(elements)
    path = SHIPPED_SEEDS if path is None else Path(path)
    if not path.exists():
        raise ValueError(
            f"seed path {path} does not exist: give a seed file, CIF or JSON file, or folder"
        )
    if path.is_dir():
        seeds = [
            seed
            for file in sorted(path.iterdir())
            if _is_structure_file(file)
            for seed in _read_user_file(file)
        ]
    elif path == SHIPPED_SEEDS or _is_seed_file(path):
        records = _seed_file_records(str(path.resolve()))
        return [
            Seed.from_dict(rec)
            for rec in records
            if allowed is None or set(rec["elements"]) <= allowed
        ]
    else:
        seeds = _read_user_file(path)
    kept = []
    for seed in seeds:
        if allowed is not None and not seed.elements <= allowed:
            continue
        problem = seed_problem(seed.structure)
        if problem is None:
            kept.append(seed)
            continue
        warnings.warn(f"seed {seed.id} dropped: {problem}", UserWarning, stacklevel=2)
        if dropped is not None:
            dropped.append((seed.id, problem))
    return kept


def seeds_from_materials_project(
    elements: Iterable[str], api_key: str | None = None, stable_only: bool = False
) -> list[Seed]:
    """Seeds of every Materials Project structure within ``elements`` (needs mp-api and network)."""
    symbols = sorted(validate_elements(elements) or ())
    try:
        from mp_api.client import MPRester
    except ImportError as err:
        raise ImportError("seeds_from_materials_project needs mp-api: pip install mp-api") from err
    with MPRester(api_key) as rester:
        docs = rester.materials.summary.search(
            chemsys=_all_chemsys(symbols),
            is_stable=True if stable_only else None,
            fields=["material_id", "structure"],
        )
    return [
        Seed(
            id=str(doc.material_id),
            structure=doc.structure,
            source="materials_project_api",
            license="CC BY 4.0 (Materials Project)",
        )
        for doc in docs
    ]


def _all_chemsys(symbols: list[str]) -> list[str]:
    """Every chemical system ('A', 'A-B', ...) over the symbols."""
    return ["-".join(c) for n in range(1, len(symbols) + 1) for c in combinations(symbols, n)]


def _read_json(path: Path) -> Any:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


def _is_seed_file(path: Path) -> bool:
    if not path.name.endswith((".json", ".json.gz")):
        return False
    data = _read_json(path)
    return isinstance(data, dict) and data.get("format") == SEED_FILE_FORMAT


def _is_structure_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and (
        name.endswith((".cif", ".json", ".json.gz", ".vasp"))
        or name.startswith(("poscar", "contcar"))
    )


def _read_user_file(path: Path) -> list[Seed]:
    """Seeds from one user file: CIF (all blocks), pymatgen JSON (one or a list), or POSCAR."""
    name = path.name.lower()
    source = f"user:{path}"
    if name.endswith(".cif"):
        structures = CifParser(path).parse_structures(primitive=False, on_error="warn")
        return [
            Seed(f"{path.stem}#{i}" if len(structures) > 1 else path.stem, s, source, USER_LICENSE)
            for i, s in enumerate(structures)
        ]
    if name.endswith((".json", ".json.gz")):
        data = _read_json(path)
        items = data if isinstance(data, list) else [data]
        seeds = []
        for i, item in enumerate(items):
            record = item if "structure" in item else {"structure": item}
            default_id = (
                f"{path.name.split('.')[0]}#{i}" if len(items) > 1 else path.name.split(".")[0]
            )
            seeds.append(
                Seed(
                    id=str(record.get("id", default_id)),
                    structure=Structure.from_dict(record["structure"]),
                    source=str(record.get("source", source)),
                    license=str(record.get("license", USER_LICENSE)),
                    metadata=dict(record.get("metadata", {})),
                )
            )
        return seeds
    return [Seed(path.stem or path.name, Structure.from_file(path), source, USER_LICENSE)]
