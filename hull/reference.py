"""Reference data: elemental references and the MP entries that ship with pymatgen."""

from __future__ import annotations

import gzip
import json
import warnings
from collections.abc import Iterable
from importlib.resources import files

import numpy as np
from monty.json import MontyDecoder
from pymatgen.entries import Entry
from pymatgen.entries.compatibility import MaterialsProject2020Compatibility
from pymatgen.entries.computed_entries import ComputedEntry

MP_CALC_COMPOUNDS = "calc_compounds.json.gz"


def load_mp_reference_entries(apply_mp2020: bool = True) -> list[ComputedEntry]:
    """The 423 Materials Project entries pymatgen ships for fitting MP2020 corrections.

    They hold raw PBE/PBE+U energies (89 elements, 156 binaries, 178 ternaries; MP data,
    CC BY 4.0), so MaterialsProject2020Compatibility is applied by default to put them on
    the corrected scale that CHGNet and corrected VASP results use.

    Args:
        apply_mp2020: apply MP2020 corrections (drop entries it rejects).
    """
    path = files("pymatgen.analysis.compatibility").joinpath(MP_CALC_COMPOUNDS)
    with gzip.open(str(path), "rt") as handle:
        entries = list(json.load(handle, cls=MontyDecoder).values())
    if not apply_mp2020:
        return entries
    with warnings.catch_warnings():
        # MP2020 warns for each peroxide/superoxide it cannot assign oxidation states to.
        warnings.filterwarnings("ignore", message="Failed to guess oxidation states")
        # Noble gases have no Pauling electronegativity; pymatgen warns and uses NaN.
        warnings.filterwarnings("ignore", message="No Pauling electronegativity")
        return MaterialsProject2020Compatibility(check_potcar=False).process_entries(entries)


def elemental_references(
    entries: Iterable[Entry], elements: Iterable[str] | None = None
) -> dict[str, Entry]:
    """Lowest-energy-per-atom polymorph of each element (entries with NaN energy ignored).

    Args:
        entries: any entries; only pure elements are used.
        elements: elements that must have a reference.

    Raises:
        ValueError: one of ``elements`` has no finite elemental entry (names it).
    """
    best: dict[str, Entry] = {}
    for entry in entries:
        comp = entry.composition
        if not comp.is_element or not np.isfinite(entry.energy_per_atom):
            continue
        symbol = comp.elements[0].symbol
        if symbol not in best or entry.energy_per_atom < best[symbol].energy_per_atom:
            best[symbol] = entry
    if elements is not None and (missing := sorted(set(elements) - set(best))):
        raise ValueError(
            f"missing elemental reference for {', '.join(missing)}: "
            "add an entry for each pure element"
        )
    return dict(sorted(best.items()))


def elemental_energies(
    entries: Iterable[Entry], elements: Iterable[str] | None = None
) -> dict[str, float]:
    """Energy per atom of each element's reference polymorph (see elemental_references)."""
    return {
        el: float(entry.energy_per_atom)
        for el, entry in elemental_references(entries, elements).items()
    }


def mp_hull_of(elements: Iterable[str], corrected: bool = True) -> dict[str, tuple[float, float]]:
    """MP's hull among pymatgen's MP entries made of ``elements``: for each reduced formula,
    its lowest polymorph's formation energy and energy above the hull (eV/atom).

    ``corrected`` picks the MP2020-corrected energies (the scale of CHGNet and corrected
    VASP); False gives MP's raw PBE(+U) energies, the like-for-like comparison for an
    uncorrected DFT code such as CP2K. Empty when MP lacks an element's reference.
    """
    from pymatgen.analysis.phase_diagram import PhaseDiagram

    allowed = set(elements)
    entries = [
        entry
        for entry in load_mp_reference_entries(apply_mp2020=corrected)
        if {element.symbol for element in entry.composition} <= allowed
    ]
    if {symbol for symbol in elemental_references(entries)} != allowed:
        return {}
    diagram = PhaseDiagram(entries)
    lowest: dict[str, tuple[float, float]] = {}
    for entry in entries:
        formula = entry.composition.reduced_formula
        row = (diagram.get_form_energy_per_atom(entry), diagram.get_e_above_hull(entry))
        if formula not in lowest or row[1] < lowest[formula][1]:
            lowest[formula] = row
    return dict(sorted(lowest.items()))
