"""Li-ion conductor screen in stages: a chemistry pre-filter, then a cheap structural ranking.

Stage 1 (:func:`chemistry_check`) keeps ordered, Li-containing, closed-shell ionic solids:
the Li atom fraction lies in [0.02, 0.8] (admits NASICON LiTi2(PO4)3 at 0.056 and LATP at
0.07 up to Li3N and Li3P at 0.75; excludes Li-metal-like phases), the composition
charge-balances with an anion in common oxidation states (the wide-gap proxy), and every
d-block metal is d0 or d10 in that assignment (Ti4+, Zr4+, Nb5+, Ta5+, Zn2+, ...) and every
lanthanide is a fixed-valence 3+ ion (Y, La, Er, ...): an open d shell or a redox-active
lanthanide means electronic conduction or a narrow window. This admits the known fast
families: nitrides, NASICON, garnets, argyrodites, halides and thiophosphates.

Stage 2 (:func:`bvse_barrier`) ranks what passed by the bond-valence site-energy (BVSE)
percolation barrier of the Li sublattice, computed by bvlain: the energy a Li ion needs to
cross the cell along the easiest connected path (Adams' softBV method: an established
cheap proxy for migration barriers, seconds per structure against hours of MD). It sees
migration only: a low barrier in a crystal without vacancies or interstitials can still
conduct poorly. It covers the ion pairs
in bvlain's softBV table; others get a per-material reason.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from bvlain import Lain
from pymatgen.core import Composition, Element, Structure

# Lanthanides whose 3+ state is not the only one in practice (4+ or 2+ compounds are common).
VARIABLE_LANTHANIDES = frozenset({"Ce", "Pr", "Tb", "Sm", "Eu", "Yb", "Tm"})
MIN_ION_FRACTION = 0.02
MAX_ION_FRACTION = 0.8


@dataclass
class StageResult:
    """One stage's verdict on one material: passed, its figure and the reason in one line."""

    passed: bool
    reason: str
    figure: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


def chemistry_check(
    structure: Structure,
    mobile_ion: str = "Li",
    min_ion_fraction: float = MIN_ION_FRACTION,
    max_ion_fraction: float = MAX_ION_FRACTION,
) -> StageResult:
    """Stage 1: an ordered closed-shell ionic solid with a fitting mobile-ion fraction.

    The figure is the mobile ion's atom fraction. A disordered structure is unscreenable
    here (charge balance needs integer amounts) and gets that reason, not an exception.
    """
    if not structure.is_ordered:
        return StageResult(
            False,
            "unscreenable: disordered (partial occupancies); order it first, e.g. with "
            "pymatgen's OrderDisorderedStructureTransformation",
        )
    composition = structure.composition
    fraction = composition.get_atomic_fraction(mobile_ion)
    if fraction == 0:
        return StageResult(False, f"contains no {mobile_ion}", 0.0)
    if not min_ion_fraction <= fraction <= max_ion_fraction:
        return StageResult(
            False,
            f"{mobile_ion} fraction {fraction:.3f} outside "
            f"[{min_ion_fraction}, {max_ion_fraction}]",
            fraction,
        )
    states = closed_shell_states(composition)
    if isinstance(states, str):
        return StageResult(False, states, fraction)
    return StageResult(
        True,
        f"{mobile_ion} fraction {fraction:.3f}; closed-shell ionic "
        f"({', '.join(f'{el}{v:+g}' for el, v in sorted(states.items()))})",
        fraction,
        {"oxidation_states": states},
    )


def closed_shell_states(composition: Composition) -> dict[str, float] | str:
    """Oxidation states making ``composition`` a closed-shell ionic solid, or why there are none.

    The first charge-balancing assignment of common oxidation states (pymatgen's guess,
    most likely first) that has an anion, no open d shell and no redox-active lanthanide.
    """
    guesses = composition.oxi_state_guesses(all_oxi_states=False, max_sites=-1)
    if not guesses:
        return "wide-gap proxy fails: not charge-balanced in common oxidation states"
    problems = []
    for guess in guesses:
        if not any(state < 0 for state in guess.values()):
            problems.append("no anion")
            continue
        open_shells = [
            f"{symbol}{state:+g}"
            for symbol, state in guess.items()
            if _open_shell(Element(symbol), state)
        ]
        if not open_shells:
            return dict(guess)
        problems.append(f"open-shell or redox-active: {', '.join(open_shells)}")
    return f"not closed-shell ionic ({problems[0]})"


def _open_shell(element: Element, state: float) -> bool:
    """True for a d-block ion that is neither d0 nor d10, a variable-valence lanthanide or
    a non-3+ one, or any actinide but Th4+."""
    if element.is_transition_metal and not element.is_rare_earth:
        if element.symbol in ("Sc", "Y", "La"):
            return state != 3
        d_electrons = element.group - state
        return not math.isclose(d_electrons, 0) and not math.isclose(d_electrons, 10)
    if element.is_lanthanoid or element.symbol in ("Sc", "Y", "La", "Lu"):
        return element.symbol in VARIABLE_LANTHANIDES or state != 3
    if element.is_actinoid:
        return not (element.symbol == "Th" and state == 4)
    return False


def bvse_barrier(
    structure: Structure,
    oxidation_states: dict[str, float],
    mobile_ion: str = "Li",
    resolution: float = 0.2,
) -> StageResult:
    """Stage 2: the bond-valence site-energy percolation barrier of the mobile ion (eV).

    bvlain (a maintained BVSE code) maps the energy of a test ion on a grid
    (``resolution`` Å) from soft bond-valence Morse terms with the anions and Coulomb
    repulsion with the cations, then finds the lowest energy at which the accessible region
    percolates in 1, 2 and 3 dimensions. The figure is the lowest of the three: long-range
    transport needs one percolating direction. Lower ranks higher.
    """
    decorated = structure.copy()
    decorated.add_oxidation_state_by_element(oxidation_states)
    calculator = Lain(verbose=False)
    try:
        # bvlain prints its own errors and warns about scipy namespaces and empty-grid maths
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calculator.read_structure(decorated, oxi_check=False)
            calculator.bvse_distribution(mobile_ion=f"{mobile_ion}1+", resolution=resolution)
            barriers = calculator.percolation_barriers(encut=5.0)
    except KeyError as error:
        return StageResult(
            False, f"unscreenable: bvlain has no BVSE parameters for ion {error} here"
        )
    values = {key: float(value) for key, value in barriers.items()}
    lowest = min(values.values())
    if not math.isfinite(lowest):
        return StageResult(False, f"{mobile_ion} paths do not percolate below 5 eV", None, values)
    dims = [key[2] for key, value in sorted(values.items()) if value == lowest]
    return StageResult(
        True,
        f"BVSE percolation barrier {lowest:.2f} eV ({'/'.join(dims)}-D; "
        f"3-D {values['E_3D']:.2f} eV)",
        lowest,
        values,
    )
