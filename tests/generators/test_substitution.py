"""Ionic substitution: GNoME-modified and original Hautier models, filters, bad parents."""

import math

import pytest
from pymatgen.core import Lattice, Species, Structure
from pymatgen.core.structure_prediction.substitutor import Substitutor

from hullhunter.generators import GenerationStats, substitute
from hullhunter.generators.substitution import get_model


@pytest.fixture(scope="module")
def rocksalt():
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def test_hautier_variant_reproduces_pymatgen_predictor():
    species = [Species("Na", 1), Species("Cl", -1)]
    ours = get_model("hautier").replacements(species)
    theirs = Substitutor(threshold=1e-3).pred_from_list(species)
    theirs_maps = {
        frozenset(p["substitutions"].items()): p["probability"]
        for p in theirs
        if any(new != old for old, new in p["substitutions"].items())
    }
    ours_maps = {frozenset(m.items()): p for m, p in ours}
    assert ours_maps.keys() == theirs_maps.keys()
    assert all(math.isclose(ours_maps[k], theirs_maps[k], rel_tol=1e-9) for k in ours_maps)


def test_gnome_variant_ignores_unchanged_species_and_clips_lambda():
    species = [Species("Na", 1), Species("Cl", -1)]
    gnome = dict((frozenset(m.items()), p) for m, p in get_model("gnome").replacements(species))
    hautier = dict((frozenset(m.items()), p) for m, p in get_model("hautier").replacements(species))
    na_to_k = frozenset(
        {(Species("Na", 1), Species("K", 1)), (Species("Cl", -1), Species("Cl", -1))}
    )
    assert gnome[na_to_k] > hautier[na_to_k]
    # unchanged Cl- contributes a factor of 1: the probability is the single conditional one
    model = get_model("gnome")
    expected = model.cond[model.index[Species("K", 1)], model.index[Species("Na", 1)]]
    assert gnome[na_to_k] == pytest.approx(expected)
    # clipping lambda at 0 admits more substitutions than the original model
    assert len(gnome) > len(hautier)
    assert all(p >= 1e-3 for p in gnome.values())


def test_substitute_full_species_swap_with_filters(rocksalt):
    allowed = ["Na", "K", "Rb", "Cl", "Br", "I"]
    candidates = list(
        substitute([("nacl", rocksalt)], known_formulas={"KBr"}, allowed_elements=allowed)
    )
    formulas = {c.formula for c in candidates}
    assert {"KCl", "NaBr", "RbCl"} <= formulas
    assert "KBr" not in formulas and "NaCl" not in formulas
    for c in candidates:
        assert set(c.chemsys.split("-")) <= set(allowed)
        assert c.generator == "substitution" and c.parent_id == "nacl"
        assert len(c.structure) == len(rocksalt)
        assert c.structure.lattice == rocksalt.lattice
        assert c.params["probability"] >= 1e-3 and c.params["model"] == "gnome"


def test_substitute_limit_and_original_model(rocksalt):
    assert len(list(substitute([rocksalt], limit=3))) == 3
    hautier = list(substitute([rocksalt], model="hautier", charge_balance=False))
    gnome = list(substitute([rocksalt], model="gnome", charge_balance=False))
    assert {c.params["model"] for c in hautier} == {"hautier"}
    assert len(hautier) < len(gnome)
    assert any(_charge(c) != 0 for c in gnome)


def _charge(candidate):
    """Total charge of a substituted Na4Cl4 cell, from the substitution in its params."""
    subs = {
        Species.from_str(o): Species.from_str(n)
        for o, n in candidate.params["substitution"].items()
    }
    return sum(4 * subs.get(sp, sp).oxi_state for sp in (Species("Na", 1), Species("Cl", -1)))


def test_bad_parents_are_counted_not_raised(rocksalt):
    disordered = rocksalt.copy()
    disordered.replace_species({"Na": {"Na": 0.5, "K": 0.5}})
    intermetallic = Structure(Lattice.cubic(3.0), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    elemental = Structure(Lattice.cubic(3.5), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    stats = GenerationStats()
    out = list(substitute([disordered, intermetallic, elemental, rocksalt], stats=stats))
    assert out and all(c.parent_id == "structure-3" for c in out)
    assert stats.skipped == {"disordered": 1, "no_oxidation_states": 1, "elemental_parent": 1}
    assert stats.parents == 4 and stats.yielded == len(out)


def test_unknown_elements_raise(rocksalt):
    with pytest.raises(ValueError, match="Qq"):
        list(substitute([rocksalt], allowed_elements=["Na", "Qq"]))
    with pytest.raises(ValueError, match="unknown substitution model"):
        list(substitute([rocksalt], model="other"))
