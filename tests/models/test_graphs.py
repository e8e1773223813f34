"""Crystal and composition graphs."""

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure

from hullhunter.models import collate, composition_to_graph, structure_to_graph


def test_neighbours_match_pymatgen(structures):
    for structure in structures:
        graph = structure_to_graph(structure, cutoff=4.0)
        centre, _, _, distance = structure.get_neighbor_list(4.0)
        ours = graph.edge_index[0].tolist(), np.round(graph.edge_length.numpy(), 4).tolist()
        theirs = centre.tolist(), np.round(distance.astype(np.float32), 4).tolist()
        assert sorted(zip(*ours, strict=True)) == sorted(zip(*theirs, strict=True))
        assert graph.z.tolist() == list(structure.atomic_numbers)


def test_isolated_atom_has_no_edges():
    lonely = Structure(Lattice.cubic(10.0), ["Cu"], [[0, 0, 0]])
    graph = structure_to_graph(lonely)
    assert graph.edge_index.shape == (2, 0)
    assert graph.num_nodes == 1


def test_unknown_element_and_disorder_are_clear_errors():
    americium = Structure(Lattice.cubic(3.0), ["Am"], [[0, 0, 0]])
    with pytest.raises(ValueError, match="Am"):
        structure_to_graph(americium)
    disordered = Structure(Lattice.cubic(3.0), [{"Na": 0.5, "K": 0.5}], [[0, 0, 0]])
    with pytest.raises(ValueError, match="disordered"):
        structure_to_graph(disordered)
    with pytest.raises(ValueError, match="empty batch"):
        collate([])


def test_composition_graph_is_fully_connected_with_fractions():
    graph = composition_to_graph("Fe2O3")
    assert graph.z.tolist() == [8, 26]
    assert np.allclose(graph.fraction.numpy(), [0.6, 0.4])
    assert sorted(map(tuple, graph.edge_index.T.tolist())) == [(0, 1), (1, 0)]
    ternary = composition_to_graph(Composition("LiFePO4"))
    assert ternary.edge_index.shape == (2, 4 * 3)


def test_collate_masks_edges_per_length_scale(make_rocksalt):
    nacl = make_rocksalt("Na", "Cl", 5.64)  # 2 atoms: 6 neighbours at 2.82 Å, 12 at 3.99 Å
    graph = structure_to_graph(nacl, cutoff=4.5)
    batch = collate([graph], length_scales=[0.95, 1.05], cutoff=4.0)
    per_copy = np.bincount(batch.node_graph[batch.edge_index[0]].numpy(), minlength=2)
    assert per_copy.tolist() == [2 * 18, 2 * 6]
    assert np.allclose(batch.edge_length.numpy().min(), 2.82 * 0.95, atol=1e-3)
