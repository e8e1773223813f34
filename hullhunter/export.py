"""A campaign's materials as files: CSV or JSON rows for pandas, pymatgen entries for pymatgen.

Files are written whole or not at all: into a temporary file beside the target, then renamed
over it, so an export that fails (a full disk, a folder that cannot be written) leaves no
partial file and never damages an earlier export of the same name.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from monty.json import MontyEncoder
from pymatgen.entries.computed_entries import ComputedStructureEntry

from hullhunter.documents import Material, chemsys_subsystems
from hullhunter.workflows.oracles.registry import energy_scale

FIELDS = (
    "material_id",
    "formula",
    "chemsys",
    "nelements",
    "energy_per_atom",
    "formation_energy_per_atom",
    "decomposition_energy",
    "e_above_hull",
    "is_stable",
    "on_hull",
    "stable_vs_reference",
    "oracle",
    "is_seed",
    "round_found",
    "generator",
    "novelty",
    "known_in",
    "novelty_match",
)
"""The columns of a CSV or JSON export, in order (README.md defines each)."""

FORMATS = ("csv", "json", "entries")


class ExportError(ValueError):
    """An export that cannot be written; nothing was written."""


def export_format(path: Path, given: str | None) -> str:
    """The format asked for, else the one the file's suffix names (``.csv``, ``.json``)."""
    fmt = given or {".csv": "csv", ".json": "json"}.get(path.suffix.lower())
    if fmt not in FORMATS:
        raise ExportError(
            f"cannot tell the export format of {path.name!r}; pass --format "
            f"({', '.join(FORMATS)}) or name the file .csv or .json"
        )
    return fmt


def materials(
    campaign: str, *, chemsys: str | None = None, stable_only: bool = False
) -> Iterator[Material]:
    """The campaign's Material documents (needs a connection), nearest the hull first."""
    query: dict[str, Any] = {"campaign": campaign}
    if chemsys:
        query["chemsys__in"] = chemsys_subsystems(chemsys)
    if stable_only:
        query["is_stable"] = True
    return Material.objects(**query).order_by("chemsys", "e_above_hull", "material_id")


def row(material: Material) -> dict[str, Any]:
    """One material as a flat row of :data:`FIELDS`."""
    return {name: getattr(material, name) for name in FIELDS}


def entry(material: Material) -> ComputedStructureEntry:
    """One material as a pymatgen entry: its structure and oracle energy (on the oracle's own
    scale, named in ``parameters``: MP2020-compatible ones must not be corrected again),
    its fields in ``data``."""
    structure = material.get_structure()
    return ComputedStructureEntry(
        structure,
        material.energy_per_atom * len(structure),
        entry_id=material.material_id,
        parameters={"oracle": material.oracle, "energy_scale": energy_scale(material.oracle)},
        data={name: value for name, value in row(material).items() if name != "material_id"},
    )


def export_materials(
    campaign: str,
    path: Path,
    fmt: str | None = None,
    *,
    chemsys: str | None = None,
    stable_only: bool = False,
) -> int:
    """Write the campaign's materials to ``path``; returns how many were written."""
    path = Path(path)
    fmt = export_format(path, fmt)
    selected = list(materials(campaign, chemsys=chemsys, stable_only=stable_only))
    if not selected:
        raise ExportError(
            f"campaign {campaign!r} has no materials to export"
            + (" with these filters" if chemsys or stable_only else "")
        )
    folder = path.resolve().parent
    if not folder.is_dir():
        raise ExportError(f"cannot write {path}: folder {folder} does not exist")
    try:
        descriptor, name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.")
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    partial = Path(name)
    try:
        with os.fdopen(descriptor, "w", newline="") as handle:
            _write(handle, fmt, selected)
        os.replace(partial, path)
    except BaseException as exc:  # never leave a partial file behind
        partial.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _cannot_write(path, exc) from exc
        raise
    return len(selected)


def _cannot_write(path: Path, exc: OSError) -> ExportError:
    return ExportError(
        f"cannot write {path}: {exc.strerror or exc}; choose a folder you can write to"
    )


def _write(handle: Any, fmt: str, selected: list[Material]) -> None:
    if fmt == "csv":
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for material in selected:
            values = row(material)
            values["known_in"] = ";".join(values["known_in"] or [])
            writer.writerow(values)
    elif fmt == "json":
        json.dump([row(material) for material in selected], handle, indent=1)
    else:
        json.dump([entry(material) for material in selected], handle, cls=MontyEncoder)
