"""Application screens over discovered materials: layered crystals, Li-ion conductors, families.

Each screen is a plain, parameterised function over Structures or ``Material`` documents and
returns one :class:`ScreenRecord` per material, with the reasons it passed or failed, so an
analyst sees why a crystal was kept. :func:`campaign_materials` loads the documents from
MongoDB; :func:`run_screen` runs a named screen there and can save what passed as a
``ScreenResult`` document.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from monty.json import jsanitize
from pymatgen.analysis.dimensionality import get_dimensionality_larsen
from pymatgen.analysis.local_env import CrystalNN
from pymatgen.core import Composition, Element, Structure
from rich.progress import track

from hullhunter.documents import Material, ScreenResult, chemsys_of, chemsys_subsystems

# GNoME counts a crystal as stable when it lies on the hull within 5e-5 eV/atom.
STABILITY_TOLERANCE = 5e-5
# Transition metals (and rare earths) that keep one oxidation state in practice; every other
# d- or f-block metal can change valence, which GNoME's conductor screen excludes because a
# redox-active cation narrows the electrochemical window and gives electronic conduction.
FIXED_VALENCE_METALS = frozenset({"Sc", "Y", "La", "Lu", "Gd", "Zr", "Hf", "Zn", "Cd"})


class _MaterialLike(Protocol):
    material_id: str
    formula: str
    decomposition_energy: float | None

    def get_structure(self) -> Structure: ...


@dataclass
class ScreenRecord:
    """The verdict of one screen on one material, with the reasons behind it."""

    material_id: str
    formula: str
    screen: str
    passed: bool
    reasons: list[str]
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Item:
    material_id: str
    structure: Structure
    decomposition_energy: float | None


def _items(
    materials: Sequence[Structure | _MaterialLike],
    ids: Sequence[str] | None,
    decomposition_energies: Sequence[float | None] | None,
) -> list[_Item]:
    """Structures or Material-like documents as uniform items (ids default to the index)."""
    for name, values in (("ids", ids), ("decomposition_energies", decomposition_energies)):
        if values is not None and len(values) != len(materials):
            raise ValueError(
                f"{len(materials)} materials but {len(values)} {name}; give one per material"
            )
    items = []
    for index, material in enumerate(materials):
        if isinstance(material, Structure):
            material_id, structure, e_decomp = str(index), material, None
        elif hasattr(material, "get_structure"):
            material_id = material.material_id
            structure = material.get_structure()
            e_decomp = material.decomposition_energy
        else:
            raise TypeError(
                f"material {index} is a {type(material).__name__}; "
                "pass pymatgen Structures or Material documents"
            )
        if ids is not None:
            material_id = ids[index]
        if decomposition_energies is not None:
            e_decomp = decomposition_energies[index]
        items.append(_Item(material_id, structure, e_decomp))
    return items


def _formula(structure: Structure) -> str:
    return structure.composition.reduced_formula


def layered(
    materials: Sequence[Structure | _MaterialLike],
    ids: Sequence[str] | None = None,
    *,
    nn_method: Any | None = None,
    progress: bool = False,
) -> list[ScreenRecord]:
    """Layered (2-D bonded) crystals by Larsen's dimensionality on the bonded structure.

    Bonds come from ``nn_method`` (default CrystalNN), as in GNoME's layered count. The record
    gives the dimensionality of the most-connected component; 2 passes. Screen relaxed
    structures: an unrelaxed cell can hide or fake a van der Waals gap.
    """
    nn_method = nn_method or CrystalNN()
    items = _items(materials, ids, None)
    records = []
    for item in track(items, description="layered", disable=not progress):
        with warnings.catch_warnings():
            # CrystalNN warns for structures without oxidation states; its fallback radii are
            # what we want for relaxed, undecorated campaign structures.
            warnings.simplefilter("ignore", UserWarning)
            bonded = nn_method.get_bonded_structure(item.structure)
        dimensionality = int(get_dimensionality_larsen(bonded))
        passed = dimensionality == 2
        reason = f"bonded network is {dimensionality}-D (Larsen)" + (
            "" if passed else "; layered needs 2-D"
        )
        records.append(
            ScreenRecord(
                material_id=item.material_id,
                formula=_formula(item.structure),
                screen="layered",
                passed=passed,
                reasons=[reason],
                details={"dimensionality": dimensionality},
            )
        )
    return records


def charge_balanced_ionic(composition: Composition) -> dict[str, float] | None:
    """Oxidation states that balance ``composition`` using only common states, with an anion.

    The wide-gap proxy: without computed band gaps, a compound that is charge-balanced with
    every element in one of its common oxidation states, and has at least one anion, is a
    closed-shell ionic solid, which is the class with large gaps. Intermetallics (no anion)
    and mixed-valence compounds fail. Returns the first balancing assignment or None.
    """
    guesses = composition.oxi_state_guesses(all_oxi_states=False, max_sites=-1)
    for guess in guesses:
        if any(state < 0 for state in guess.values()):
            return dict(guess)
    return None


def li_ion_conductor_candidates(
    materials: Sequence[Structure | _MaterialLike],
    ids: Sequence[str] | None = None,
    *,
    decomposition_energies: Sequence[float | None] | None = None,
    mobile_ion: str = "Li",
    max_decomposition_energy: float = STABILITY_TOLERANCE,
    min_ion_fraction: float = 0.1,
    max_ion_fraction: float = 0.7,
    fixed_valence_metals: frozenset[str] = FIXED_VALENCE_METALS,
    require_stable: bool = True,
) -> list[ScreenRecord]:
    """GNoME's holistic conductor screen: stable, contains the ion, no redox metals, wide gap.

    Criteria, each recorded: (1) decomposition energy <= ``max_decomposition_energy``
    (Material documents carry it; for plain structures pass ``decomposition_energies``);
    (2) contains ``mobile_ion`` with atom fraction in [min_ion_fraction, max_ion_fraction] (our
    defaults: enough carriers, but not a Li-metal-like phase); (3) no d-/f-block metal outside
    ``fixed_valence_metals``; (4) wide-gap proxy :func:`charge_balanced_ionic`, used because
    the campaign computes no band gaps (GNoME required a PBE gap > 1 eV).
    """
    if not 0 <= min_ion_fraction <= max_ion_fraction <= 1:
        raise ValueError(
            f"need 0 <= min_ion_fraction <= max_ion_fraction <= 1, "
            f"got {min_ion_fraction} and {max_ion_fraction}"
        )
    Element(mobile_ion)  # a clear error for a misspelt ion
    records = []
    for item in _items(materials, ids, decomposition_energies):
        composition = item.structure.composition
        checks: list[tuple[bool, str]] = []
        if require_stable:
            checks.append(_stability_check(item.decomposition_energy, max_decomposition_energy))
        fraction = composition.get_atomic_fraction(mobile_ion)
        checks.append(_ion_fraction_check(fraction, mobile_ion, min_ion_fraction, max_ion_fraction))
        redox_metals = _variable_valence_metals(composition, fixed_valence_metals)
        checks.append(
            (False, f"variable-valence metals: {', '.join(redox_metals)}")
            if redox_metals
            else (True, "no variable-valence metals")
        )
        oxidation_states = charge_balanced_ionic(composition)
        checks.append(
            (False, "wide-gap proxy fails: not charge-balanced ionic in common states")
            if oxidation_states is None
            else (True, "wide-gap proxy: charge-balanced ionic in common oxidation states")
        )
        records.append(
            ScreenRecord(
                material_id=item.material_id,
                formula=composition.reduced_formula,
                screen="li_ion_conductor_candidates",
                passed=all(ok for ok, _ in checks),
                reasons=[reason for _, reason in checks],
                details={
                    "ion_fraction": fraction,
                    "decomposition_energy": item.decomposition_energy,
                    "oxidation_states": oxidation_states,
                    "variable_valence_metals": redox_metals,
                },
            )
        )
    return records


def _stability_check(e_decomp: float | None, max_decomposition_energy: float) -> tuple[bool, str]:
    """Whether the material lies within ``max_decomposition_energy`` of the hull, and why."""
    if e_decomp is None:
        return False, "stability unknown: no decomposition energy given"
    if e_decomp > max_decomposition_energy:
        return False, f"unstable: E_decomp {e_decomp:.4f} eV/atom above the hull"
    return True, f"stable: E_decomp {e_decomp:.4f} eV/atom"


def _ion_fraction_check(
    fraction: float, mobile_ion: str, min_fraction: float, max_fraction: float
) -> tuple[bool, str]:
    """Whether the mobile ion's atom fraction is in [min_fraction, max_fraction], and why."""
    if fraction == 0:
        return False, f"contains no {mobile_ion}"
    if not min_fraction <= fraction <= max_fraction:
        return (
            False,
            f"{mobile_ion} fraction {fraction:.3f} outside [{min_fraction}, {max_fraction}]",
        )
    return True, f"{mobile_ion} fraction {fraction:.3f}"


def _variable_valence_metals(
    composition: Composition, fixed_valence_metals: frozenset[str]
) -> list[str]:
    """The d- and f-block metals of ``composition`` that can change valence, sorted."""
    return sorted(
        el.symbol
        for el in composition.elements
        if (el.is_transition_metal or el.is_rare_earth) and el.symbol not in fixed_valence_metals
    )


def family_view(
    materials: Sequence[Structure | _MaterialLike],
    ids: Sequence[str] | None = None,
    *,
    chemsys: str = "Li-Mn-O",
    decomposition_energies: Sequence[float | None] | None = None,
    only_full_system: bool = False,
) -> list[ScreenRecord]:
    """Materials inside a chemical system (e.g. Li-Mn-O), most stable first.

    A material passes when its elements are a subset of ``chemsys`` (all of them with
    ``only_full_system``). Passing records come first, sorted by decomposition energy
    (unknown last), so the family reads like a hull table.
    """
    family = set(chemsys_subsystems(chemsys))
    full = chemsys_of(Composition("".join(chemsys.split("-"))))
    records = []
    for item in _items(materials, ids, decomposition_energies):
        system = chemsys_of(item.structure.composition)
        inside = system in family and (system == full or not only_full_system)
        if inside:
            reason = f"{system} lies in {full}"
        elif system in family:
            reason = f"{system} is a subsystem of {full}; only the full system was asked for"
        else:
            reason = f"{system} is outside {full}"
        records.append(
            ScreenRecord(
                material_id=item.material_id,
                formula=_formula(item.structure),
                screen="family_view",
                passed=inside,
                reasons=[reason],
                details={"chemsys": system, "decomposition_energy": item.decomposition_energy},
            )
        )

    def order(record: ScreenRecord) -> tuple[bool, float]:
        e_decomp = record.details["decomposition_energy"]
        return (not record.passed, float("inf") if e_decomp is None else e_decomp)

    return sorted(records, key=order)


SCREENS: dict[str, Callable[..., list[ScreenRecord]]] = {
    "layered": layered,
    "li_ion_conductor_candidates": li_ion_conductor_candidates,
    "family_view": family_view,
}


def campaign_materials(
    campaign: str, *, chemsys: str | None = None, on_hull: bool | None = None
) -> list[Any]:
    """The campaign's ``Material`` documents (needs a mongoengine connection).

    ``chemsys`` keeps materials inside that system (its subsystems included); ``on_hull``
    filters by the hull flag.
    """
    query: dict[str, Any] = {"campaign": campaign}
    if chemsys is not None:
        query["chemsys__in"] = chemsys_subsystems(chemsys)
    if on_hull is not None:
        query["on_hull"] = on_hull
    return list(Material.objects(**query).order_by("material_id"))


def run_screen(
    name: str,
    campaign: str,
    *,
    chemsys: str | None = None,
    save: bool = False,
    **params: Any,
) -> list[ScreenRecord]:
    """Run the screen called ``name`` on the campaign's materials from MongoDB.

    ``save`` stores the run (parameters, counts, every passing record) as a ``ScreenResult``
    document, so analysts query screens like any other result.
    """
    if name not in SCREENS:
        raise ValueError(f"unknown screen {name!r}; choose one of {', '.join(SCREENS)}")
    materials = campaign_materials(campaign, chemsys=chemsys)
    if name == "family_view" and chemsys is not None:
        params.setdefault("chemsys", chemsys)
    records = SCREENS[name](materials, **params)
    if save:
        ScreenResult(
            campaign=campaign,
            screen=name,
            params=jsanitize(params, strict=False),
            chemsys=chemsys,
            n_screened=len(records),
            n_passed=sum(record.passed for record in records),
            passed=[jsanitize(r.as_dict(), strict=False) for r in records if r.passed],
        ).save()
    return records
