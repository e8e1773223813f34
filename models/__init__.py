"""GNoME graph networks: crystal/composition graphs, ensembles with volume TTA, training,
model registry (plain library on torch and torch-geometric)."""

from .config import GNoMEConfig
from .ensemble import CompositionEnsemble, Ensemble, Prediction, load_ensemble
from .graphs import (
    collate,
    composition_to_graph,
    structure_to_graph,
    structures_to_graphs,
)
from .networks import GNoMENetwork
from .training import (
    composition_hash_split,
    scaling_curve,
    train_composition_ensemble,
    train_ensemble,
)

__all__ = [
    "CompositionEnsemble",
    "Ensemble",
    "GNoMEConfig",
    "GNoMENetwork",
    "Prediction",
    "collate",
    "composition_hash_split",
    "composition_to_graph",
    "load_ensemble",
    "scaling_curve",
    "structure_to_graph",
    "structures_to_graphs",
    "train_composition_ensemble",
    "train_ensemble",
]
