"""Crystal and composition graphs for the GNoME networks.

A crystal graph is a ``torch_geometric.data.Data`` with one node per atom (``z``: atomic
number), directed edges to every periodic neighbour inside the cutoff (``edge_index``,
``edge_length`` in Å) and ``num_nodes``. Edge features (Gaussians) are made inside the
model from ``edge_length`` so that volume test-time augmentation can rescale lengths
without rebuilding the neighbour list.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pymatgen.core import Composition, Element, Structure
from torch import Tensor
from torch_geometric.data import Data
from vesin import NeighborList

MAX_Z = 94
"""Highest atomic number the one-hot encoding covers (GNoME's ``NUM_ELEMENTS``)."""

DEFAULT_CUTOFF = 4.0


def _check_atomic_numbers(numbers: Iterable[int], where: str) -> None:
    bad = sorted({int(z) for z in numbers if not 1 <= int(z) <= MAX_Z})
    if bad:
        names = ", ".join(Element.from_Z(z).symbol if z <= 118 else str(z) for z in bad)
        raise ValueError(
            f"{where} contains element(s) {names} outside Z=1..{MAX_Z}; "
            "the GNoME one-hot encoding cannot represent them, remove such structures"
        )


def structure_to_graph(structure: Structure, cutoff: float = DEFAULT_CUTOFF) -> Data:
    """Periodic crystal graph of ``structure`` with every neighbour closer than ``cutoff`` Å.

    Uses vesin's compiled cell-list neighbour search (fastest measured on this machine).
    """
    if not isinstance(structure, Structure):
        raise TypeError(f"expected a pymatgen Structure, got {type(structure).__name__}")
    if not structure.is_ordered:
        raise ValueError(
            f"{structure.formula} is disordered; order it first "
            "(e.g. pymatgen's OrderDisorderedStructureTransformation)"
        )
    numbers = np.asarray(structure.atomic_numbers, dtype=np.int64)
    _check_atomic_numbers(numbers, f"structure {structure.formula}")
    i, j, d = NeighborList(cutoff=cutoff, full_list=True).compute(
        points=structure.cart_coords,
        box=structure.lattice.matrix,
        periodic=True,
        quantities="ijd",
    )
    keep = d > 1e-8  # vesin never returns self-pairs at zero shift, but guard overlapping atoms
    return Data(
        z=torch.from_numpy(numbers),
        edge_index=torch.from_numpy(np.stack([i[keep], j[keep]]).astype(np.int64)),
        edge_length=torch.from_numpy(d[keep].astype(np.float32)),
        num_nodes=len(numbers),
    )


def structures_to_graphs(
    structures: Sequence[Structure], cutoff: float = DEFAULT_CUTOFF
) -> list[Data]:
    """Crystal graphs of many structures, one after another.

    Serial on purpose: a graph costs well under a millisecond, and a process pool measured
    several times slower (2,146 against 388 graphs/s with 2 processes, ``benchmarks/screening.py``)
    because pickling structures and graphs costs more than building them.
    """
    return [structure_to_graph(s, cutoff) for s in structures]


def composition_to_graph(composition: Composition | str) -> Data:
    """Composition graph: one node per element (``z``, atomic ``fraction``), fully connected."""
    composition = Composition(composition)
    if len(composition) == 0:
        raise ValueError("empty composition; give at least one element")
    fractions = composition.fractional_composition
    elements = sorted(fractions.elements, key=lambda el: el.Z)
    numbers = [el.Z for el in elements]
    _check_atomic_numbers(numbers, f"composition {composition.reduced_formula}")
    n = len(elements)
    src, dst = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    off_diagonal = src != dst
    return Data(
        z=torch.tensor(numbers, dtype=torch.int64),
        fraction=torch.tensor([fractions[el] for el in elements], dtype=torch.float32),
        edge_index=torch.from_numpy(np.stack([src[off_diagonal], dst[off_diagonal]])),
        num_nodes=n,
    )


def average_neighbours(graphs: Sequence[Data]) -> float:
    """Mean number of incoming edges per node over ``graphs`` (GNoME's adjacency constant)."""
    n_nodes = sum(int(g.num_nodes) for g in graphs)
    n_edges = sum(int(g.edge_index.shape[1]) for g in graphs)
    if n_nodes == 0:
        raise ValueError("no nodes in the graphs; cannot compute the average neighbour count")
    return max(n_edges / n_nodes, 1.0)


@dataclass(frozen=True)
class GraphBatch:
    """Tensors of a batch of graphs, the only input the networks need.

    ``edge_length`` is None for composition graphs; ``fraction`` is None for crystals.
    """

    z: Tensor
    node_graph: Tensor
    edge_index: Tensor
    n_graphs: int
    edge_length: Tensor | None = None
    fraction: Tensor | None = None

    def to(self, device: torch.device | str) -> GraphBatch:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return GraphBatch(
            z=self.z.to(device),
            node_graph=self.node_graph.to(device),
            edge_index=self.edge_index.to(device),
            n_graphs=self.n_graphs,
            edge_length=move(self.edge_length),
            fraction=move(self.fraction),
        )


def collate(
    graphs: Sequence[Data],
    length_scales: Sequence[float] | None = None,
    cutoff: float = DEFAULT_CUTOFF,
) -> GraphBatch:
    """Concatenate graphs into one batch, optionally replicated at several length scales.

    With ``length_scales`` (s_1..s_S), copy k of every graph has its edge lengths
    multiplied by s_k and only edges shorter than ``cutoff`` kept: the neighbour list,
    built once at the smallest volume, is masked per scale (fractional coordinates are
    fixed, so every distance scales by the same factor). Graph ``g`` at scale ``k`` is
    graph ``k * len(graphs) + g`` of the batch.
    """
    if len(graphs) == 0:
        raise ValueError("empty batch: give at least one structure or composition")
    n_graphs = len(graphs)
    counts = torch.tensor([int(g.num_nodes) for g in graphs])
    offsets = torch.cumsum(counts, 0) - counts
    z = torch.cat([g.z for g in graphs])
    node_graph = torch.repeat_interleave(torch.arange(n_graphs), counts)
    edge_index = torch.cat(
        [g.edge_index + off for g, off in zip(graphs, offsets.tolist(), strict=True)], dim=1
    )
    fraction = torch.cat([g.fraction for g in graphs]) if "fraction" in graphs[0] else None
    if "edge_length" not in graphs[0]:
        return GraphBatch(z, node_graph, edge_index, n_graphs, fraction=fraction)
    lengths = torch.cat([g.edge_length for g in graphs])
    scales = torch.tensor([1.0] if length_scales is None else list(length_scales))
    scaled = lengths[None, :] * scales[:, None].to(lengths.dtype)
    copy, edge = torch.nonzero(scaled < cutoff, as_tuple=True)
    n_nodes = len(z)
    n_copies = len(scales)
    return GraphBatch(
        z=z.repeat(n_copies),
        node_graph=node_graph.repeat(n_copies)
        + torch.arange(n_copies).repeat_interleave(n_nodes) * n_graphs,
        edge_index=edge_index[:, edge] + copy * n_nodes,
        n_graphs=n_copies * n_graphs,
        edge_length=scaled[copy, edge],
    )
