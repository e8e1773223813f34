"""Application screens over discovered materials: layered crystals, Li-ion conductors, families.

Each screen is a plain, parameterised function over Structures or ``Material`` documents and
returns one :class:`ScreenRecord` per material, with the reasons it passed or failed, so an
analyst sees why a crystal was kept. :func:`campaign_materials` loads the documents from
MongoDB; :func:`run_screen` runs a named screen there and can save what passed as a
``ScreenResult`` document.
"""

from __future__ import annotations

import math
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
from hullhunter.workflows.conductors import (
    MAX_ION_FRACTION,
    MIN_ION_FRACTION,
    bvse_barrier,
    chemistry_check,
)

# GNoME counts a crystal as stable when it lies on the hull within 5e-5 eV/atom.
STABILITY_TOLERANCE = 5e-5


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


def li_ion_conductor_candidates(
    materials: Sequence[Structure | _MaterialLike],
    ids: Sequence[str] | None = None,
    *,
    decomposition_energies: Sequence[float | None] | None = None,
    mobile_ion: str = "Li",
    max_decomposition_energy: float = STABILITY_TOLERANCE,
    min_ion_fraction: float = MIN_ION_FRACTION,
    max_ion_fraction: float = MAX_ION_FRACTION,
    require_stable: bool = True,
    max_barrier_ev: float = 1.0,
    md_top: int = 0,
    md_settings: Any | None = None,
    progress: bool = False,
) -> list[ScreenRecord]:
    """Li-ion conductor screen in stages, ranked: stability and chemistry, BVSE barrier, MD.

    Stage 1: decomposition energy <= ``max_decomposition_energy`` (Material documents carry
    it; for plain structures pass ``decomposition_energies``, or ``require_stable=False``)
    and :func:`~hullhunter.workflows.conductors.chemistry_check` (ordered, ion fraction in
    [min_ion_fraction, max_ion_fraction], closed-shell ionic). Stage 2, for what passed:
    :func:`~hullhunter.workflows.conductors.bvse_barrier`, which must be at most
    ``max_barrier_ev``. Records come back ranked: passed ones by barrier (lowest first,
    ``details["rank"]`` from 1), then the rest; each carries every stage's figure and reason.
    Stage 3, only for the ``md_top`` best-ranked: one MD conductivity run each
    (:func:`hullhunter.workflows.md.conductivity` with ``md_settings``, default the
    ``laptop`` profile: about 30 minutes per material on 2 CPU cores, so the compute budget
    is ``md_top`` such runs); its status, D and sigma with their errors go into
    ``details["md"]``.
    A material that cannot be screened (disordered, missing parameters, a failing library
    call) gets its reason and the batch goes on.
    """
    if not 0 <= min_ion_fraction <= max_ion_fraction <= 1:
        raise ValueError(
            f"need 0 <= min_ion_fraction <= max_ion_fraction <= 1, "
            f"got {min_ion_fraction} and {max_ion_fraction}"
        )
    Element(mobile_ion)  # a clear error for a misspelt ion
    items = _items(materials, ids, decomposition_energies)
    records = [
        _conductor_record(
            item,
            mobile_ion=mobile_ion,
            require_stable=require_stable,
            max_decomposition_energy=max_decomposition_energy,
            ion_fraction=(min_ion_fraction, max_ion_fraction),
            max_barrier_ev=max_barrier_ev,
        )
        for item in track(items, description="conductors", disable=not progress)
    ]

    def order(record: ScreenRecord) -> tuple[bool, float]:
        barrier = record.details.get("barrier_ev")
        return (not record.passed, math.inf if barrier is None else barrier)

    ranked = sorted(records, key=order)
    for rank, record in enumerate((r for r in ranked if r.passed), start=1):
        record.details["rank"] = rank
    if md_top > 0:
        structures = {item.material_id: item.structure for item in items}
        for record in [r for r in ranked if r.passed][:md_top]:
            _md_stage(record, structures[record.material_id], mobile_ion, md_settings)
    return ranked


def _md_stage(record: ScreenRecord, structure: Structure, mobile_ion: str, settings: Any) -> None:
    """Stage 3: one MD conductivity run, its result and reason added to ``record``."""
    from hullhunter.workflows.md import conductivity, md_settings  # CHGNet: import on use

    result = conductivity(
        structure, settings=settings or md_settings("laptop"), mobile_ion=mobile_ion
    )
    keys = (
        "status",
        "temperature_k",
        "profile",
        "diffusivity_cm2_s",
        "diffusivity_std_dev",
        "conductivity_ms_cm",
        "conductivity_std_dev",
        "msd_a2",
        "reason",
    )
    record.details["md"] = {key: getattr(result, key) for key in keys}
    if result.status == "completed":
        outcome = f"sigma {result.conductivity_ms_cm:.3g} ± {result.conductivity_std_dev:.2g} mS/cm"
    else:
        outcome = f"{result.status}: {result.reason}"
    record.reasons.append(
        f"stage 3: MD at {result.temperature_k:.0f} K ({result.profile} profile): {outcome}"
    )


def _conductor_record(
    item: _Item,
    *,
    mobile_ion: str,
    require_stable: bool,
    max_decomposition_energy: float,
    ion_fraction: tuple[float, float],
    max_barrier_ev: float,
) -> ScreenRecord:
    """One material through the conductor stages; never raises for the material's sake."""
    reasons: list[str] = []
    details: dict[str, Any] = {"decomposition_energy": item.decomposition_energy}
    passed = False
    try:
        stable = True
        if require_stable:
            stable, reason = _stability_check(item.decomposition_energy, max_decomposition_energy)
            reasons.append(reason)
        chemistry = chemistry_check(item.structure, mobile_ion, *ion_fraction)
        reasons.append(f"stage 1: {chemistry.reason}")
        details["ion_fraction"] = chemistry.figure
        details["oxidation_states"] = chemistry.details.get("oxidation_states")
        if stable and chemistry.passed:
            barrier = bvse_barrier(
                item.structure, chemistry.details["oxidation_states"], mobile_ion
            )
            details["barrier_ev"] = barrier.figure
            details["barriers_ev"] = barrier.details
            passed = barrier.passed and barrier.figure <= max_barrier_ev
            reason = barrier.reason
            if barrier.passed and not passed:
                reason += f" > {max_barrier_ev} eV"
            reasons.append(f"stage 2: {reason}")
    except Exception as error:  # one odd material must not stop the batch: say why, go on
        reasons.append(f"unscreenable: {type(error).__name__}: {error}")
        passed = False
    return ScreenRecord(
        material_id=item.material_id,
        formula=_formula(item.structure),
        screen="li_ion_conductor_candidates",
        passed=passed,
        reasons=reasons,
        details=details,
    )


def _stability_check(e_decomp: float | None, max_decomposition_energy: float) -> tuple[bool, str]:
    """Whether the material lies within ``max_decomposition_energy`` of the hull, and why."""
    if e_decomp is None:
        return False, "stability unknown: no decomposition energy given"
    if e_decomp > max_decomposition_energy:
        return False, f"unstable: E_decomp {e_decomp:.4f} eV/atom above the hull"
    return True, f"stable: E_decomp {e_decomp:.4f} eV/atom"


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
