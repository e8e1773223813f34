"""SiteTemplates: fast decorations of one parent behave as ordinary, independent Structures."""

from pymatgen.core import Lattice, Structure

from hullhunter.generators.common import SiteTemplates, reduced_formula


def test_templates_build_equal_independent_structures():
    parent = Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(3.9), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5] * 3, [0.5, 0.5, 0]]
    )
    templates = SiteTemplates(parent)
    elements = ["Ba", "Ti", "O", "O", "S"]
    first, second = templates.build(elements), templates.build(elements)
    expected = Structure(parent.lattice, elements, parent.frac_coords)
    assert first == expected and first.composition.reduced_formula == "BaTiSO2"
    assert Structure.from_dict(first.as_dict()) == expected
    first.replace(0, "Ca")
    first.translate_sites([1], [0.1, 0, 0])
    first[2].properties["magmom"] = 1.0
    assert second == expected and second[2].properties == {}
    assert templates.build(elements) == expected


def test_reduced_formula_matches_pymatgen():
    assert reduced_formula((("Li", 4.0), ("O", 2.0))) == "Li2O"
    assert reduced_formula((("Fe", 2), ("O", 3))) == "Fe2O3"
