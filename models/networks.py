"""GNoME graph networks (gnome-method.md section 2.1/2.2), with ensemble members stacked.

Every weight carries a leading member axis, so one forward pass evaluates all ``K``
members of an ensemble with batched matrix products (``torch.baddbmm``) instead of a
Python loop over models; a single model is the case ``K = 1``. Members are trained
separately and stacked afterwards with :func:`stack_state_dicts`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .graphs import MAX_Z, GraphBatch


class StackedLinear(nn.Module):
    """``K`` independent dense layers applied to ``[K, N, in]`` features."""

    def __init__(self, n_members: int, n_in: int, n_out: int, gain: float | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_members, n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_members, 1, n_out))
        for member_weight in self.weight.data:
            if gain is None:  # variance scaling 1.0 (fan-in), GNoME's last-layer init
                nn.init.normal_(member_weight, std=1.0 / math.sqrt(n_in))
            else:  # orthogonal, GNoME's hidden-layer init
                nn.init.orthogonal_(member_weight.T, gain=gain)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] != self.weight.shape[0]:
            x = x.expand(self.weight.shape[0], -1, -1)
        return torch.baddbmm(self.bias, x, self.weight)


class StackedSwish(nn.Module):
    """Swish ``x * sigmoid(beta * x)`` with a learnable ``beta`` per feature (GNoME code)."""

    def __init__(self, n_members: int, width: int) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.ones(n_members, 1, width))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.beta * x)


class StackedMLP(nn.Module):
    """Shallow MLP: hidden dense layers with swish, then a linear output layer."""

    def __init__(
        self, n_members: int, n_in: int, hidden: Sequence[int], n_out: int, gain: float
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_in
        for h in hidden:
            layers += [StackedLinear(n_members, width, h, gain), StackedSwish(n_members, h)]
            width = h
        layers.append(StackedLinear(n_members, width, n_out, gain=None))
        self.first = layers[0]
        self.rest = nn.Sequential(*layers[1:])

    def forward(self, x: Tensor) -> Tensor:
        return self.rest(self.first(x))

    def forward_gathered(self, parts: Sequence[tuple[Tensor, Tensor | None]]) -> Tensor:
        """The MLP of ``cat([part[index] for part, index in parts])`` without building it.

        The first layer is applied to each part before gathering (``W·[a, b] = W_a·a +
        W_b·b``): for edge updates the node-sized products are gathered onto edges instead
        of multiplying edge-sized concatenations, several times less work and memory.
        """
        weight = self.first.weight
        out = None
        start = 0
        for part, index in parts:
            width = part.shape[-1]
            if part.shape[0] != weight.shape[0]:
                part = part.expand(weight.shape[0], -1, -1)
            term = torch.bmm(part, weight[:, start : start + width])
            term = term if index is None else term[:, index]
            out = term if out is None else out + term
            start += width
        return self.rest(out + self.first.bias)


def _segment_sum(src: Tensor, index: Tensor, size: int) -> Tensor:
    out = src.new_zeros(src.shape[0], size, src.shape[2])
    return out.index_add_(1, index, src)


class GNBlock(nn.Module):
    """One Battaglia/jraph graph-network block: edge, node, then global update.

    Edges are aggregated onto nodes in both directions (outgoing and incoming), divided by
    the adjacency constant (structural) or by each node's degree (compositional).
    Node and edge means go to the global node so the output is intensive (per atom).
    """

    def __init__(
        self, n_members: int, dim: int, hidden: Sequence[int], gain: float, global_out: int
    ) -> None:
        super().__init__()
        self.edge_mlp = StackedMLP(n_members, 4 * dim, hidden, dim, gain)
        self.node_mlp = StackedMLP(n_members, 4 * dim, hidden, dim, gain)
        self.global_mlp = StackedMLP(n_members, 3 * dim, hidden, global_out, gain)

    def forward(
        self,
        nodes: Tensor,
        edges: Tensor,
        globals_: Tensor,
        batch: GraphBatch,
        node_norm: Tensor,
        node_counts: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        sender, receiver = batch.edge_index
        n_nodes = nodes.shape[1]
        edge_graph = batch.node_graph[sender]
        edges = self.edge_mlp.forward_gathered(
            [(edges, None), (nodes, sender), (nodes, receiver), (globals_, edge_graph)]
        )
        outgoing = _segment_sum(edges, sender, n_nodes) / node_norm
        incoming = _segment_sum(edges, receiver, n_nodes) / node_norm
        nodes = self.node_mlp.forward_gathered(
            [(nodes, None), (outgoing, None), (incoming, None), (globals_, batch.node_graph)]
        )
        node_mean = _segment_sum(nodes, batch.node_graph, batch.n_graphs) / node_counts
        # mean over each graph's edges; zero (not NaN) for a graph of isolated atoms
        edge_counts = torch.bincount(edge_graph, minlength=batch.n_graphs).clamp(min=1)
        edge_mean = (
            _segment_sum(edges, edge_graph, batch.n_graphs)
            / edge_counts.to(edges.dtype)[None, :, None]
        )
        globals_ = self.global_mlp(torch.cat([node_mean, edge_mean, globals_], -1))
        return nodes, edges, globals_


class GNoMENetwork(nn.Module):
    """Structural (``compositional=False``) or compositional GNoME network.

    Returns the standardised target per graph for every member, shape ``[K, n_graphs]``;
    ``target_shift``/``target_scale`` buffers map it back to formation energy per atom.
    """

    def __init__(
        self,
        n_members: int = 1,
        compositional: bool = False,
        embed_dim: int = 256,
        mlp_hidden: Sequence[int] = (256,),
        steps: int = 3,
        n_gaussians: int = 30,
        gaussian_min: float = 0.05,
        gaussian_max: float = 4.0,
        gaussian_width: float = 0.5,
        avg_neighbors: float = 17.0,
        init_gain: float = math.sqrt(2.75),
    ) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1 (got {steps}); GNoME uses 3")
        self.compositional = compositional
        self.gaussian_width = gaussian_width
        self.register_buffer("centres", torch.linspace(gaussian_min, gaussian_max, n_gaussians))
        self.register_buffer("avg_neighbors", torch.tensor(float(avg_neighbors)))
        self.register_buffer("target_shift", torch.tensor(0.0))
        self.register_buffer("target_scale", torch.tensor(1.0))
        self.node_embedding = nn.Parameter(torch.empty(n_members, MAX_Z, embed_dim))
        nn.init.normal_(self.node_embedding, std=1.0)
        self.node_embedding_bias = nn.Parameter(torch.zeros(n_members, 1, embed_dim))
        edge_in = 1 if compositional else n_gaussians
        self.edge_embedding = StackedLinear(n_members, edge_in, embed_dim, gain=init_gain)
        self.global_embedding = nn.Parameter(torch.zeros(n_members, 1, embed_dim))
        # GNoME counts the readout block as a step: steps-1 blocks, then a readout block
        self.blocks = nn.ModuleList(
            GNBlock(n_members, embed_dim, mlp_hidden, init_gain, embed_dim)
            for _ in range(steps - 1)
        )
        self.readout = GNBlock(n_members, embed_dim, mlp_hidden, init_gain, 1)

    @property
    def n_members(self) -> int:
        return self.node_embedding.shape[0]

    def forward(self, batch: GraphBatch) -> Tensor:
        n_members = self.n_members
        n_graphs = batch.n_graphs
        nodes = self.node_embedding[:, batch.z - 1]
        if self.compositional:
            nodes = nodes * batch.fraction[None, :, None]
        nodes = nodes + self.node_embedding_bias
        n_edges = batch.edge_index.shape[1]
        if self.compositional:
            edge_input = nodes.new_ones(1, n_edges, 1)
            degree = torch.bincount(batch.edge_index[1], minlength=nodes.shape[1])
            node_norm = degree.clamp(min=1).to(nodes.dtype)[None, :, None]
        else:
            lengths = batch.edge_length[:, None] - self.centres[None, :]
            edge_input = torch.exp(-(lengths**2) / self.gaussian_width**2)[None]
            node_norm = self.avg_neighbors
        edges = self.edge_embedding(edge_input)
        globals_ = self.global_embedding.expand(n_members, n_graphs, -1)
        node_counts = torch.bincount(batch.node_graph, minlength=n_graphs).clamp(min=1)
        node_counts = node_counts.to(nodes.dtype)[None, :, None]
        for block in self.blocks:
            nodes, edges, globals_ = block(nodes, edges, globals_, batch, node_norm, node_counts)
        _, _, out = self.readout(nodes, edges, globals_, batch, node_norm, node_counts)
        return out[..., 0]


def stack_state_dicts(state_dicts: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Concatenate single-member state dicts along the member axis (buffers are shared)."""
    first = state_dicts[0]
    stacked = {}
    for key, value in first.items():
        if value.dim() >= 1 and key != "centres":
            stacked[key] = torch.cat([sd[key] for sd in state_dicts], dim=0)
        else:
            stacked[key] = value
    return stacked


def member_state_dict(state_dict: dict[str, Tensor], member: int) -> dict[str, Tensor]:
    """The single-member state dict of member ``member`` of a stacked state dict."""
    return {
        key: value[member : member + 1] if value.dim() >= 1 and key != "centres" else value
        for key, value in state_dict.items()
    }
