"""Hyperparameters of the GNoME networks, their training and their screening.

Defaults are GNoME's published values (gnome-method.md sections 2.1 and 3); choices the
paper leaves open are fields too. ``GNoMEConfig.small()`` is a CPU preset for campaigns
on a laptop.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

ARCHITECTURE_FIELDS = (
    "embed_dim",
    "mlp_hidden",
    "steps",
    "cutoff",
    "n_gaussians",
    "gaussian_min",
    "gaussian_max",
    "gaussian_width",
    "init_gain",
)


REMOVED_FIELDS = frozenset({"n_workers"})
"""Fields older checkpoints may hold, ignored on load: ``n_workers`` (a process pool for
graphs, several times slower than serial at every size measured, ``benchmarks/screening.py``)."""


@dataclass
class GNoMEConfig:
    """Architecture, training and test-time-augmentation settings (GNoME defaults)."""

    # architecture (section 2.1)
    embed_dim: int = 256
    mlp_hidden: tuple[int, ...] = (256,)
    steps: int = 3
    cutoff: float = 4.0
    n_gaussians: int = 30
    gaussian_min: float = 0.05
    gaussian_max: float = 4.0
    gaussian_width: float = 0.5
    avg_neighbors: float | Literal["auto"] = 17.0
    """Edge-aggregation divisor; GNoME's 17 was computed from MP, "auto" computes it from
    the training graphs."""
    init_gain: float = math.sqrt(2.75)
    # training
    epochs: int = 1000
    batch_size: int = 256
    learning_rate: float = 5.55e-4
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    weight_decay: float = 0.0
    loss: Literal["mse", "huber"] = "mse"
    warm_start_lr_factor: float = 0.1
    """Warm starts (the prior, or the last round's model, fine-tuned) train at
    ``learning_rate`` times this. At the full rate a few seeds undo what the prior knew
    (measured, small preset, 6 Mg-O seeds, 30 epochs: error on the 37 shipped Mg-O crystals
    went from 0.15 to 0.55 eV/atom at 2e-3, stayed 0.15 at 2e-4)."""
    patience: int = 100
    """Early stopping: epochs without a better validation MAE before training stops."""
    val_fraction: float = 0.1
    """Share of training compositions (by a second hash) held out for early stopping."""
    test_split: bool = True
    """Hold out the composition-hash test set (MD5 mod 100 >= 85); False trains on all."""
    joint_members: bool = False
    """Train all ensemble members together in one stacked network (different
    initialisations, shared batch order) instead of one after another."""
    seed: int = 0
    device: str = "cpu"
    """"cpu", "cuda", "cuda:N" or "auto" (CUDA when available)."""
    torch_threads: int | None = None
    """Intra-op threads while training/predicting (None: torch's default). Small graphs on
    a busy CPU run several times faster with 1 thread than with spinning thread pools."""
    progress: bool = False
    # screening (section 3)
    n_volumes: int = 20
    volume_min: float = 0.8
    volume_max: float = 1.2
    predict_batch_graphs: int = 160
    """Graphs per forward pass at prediction: 8 structures x 20 volumes with TTA, 160
    structures without. Bounds memory; small chunks stay in cache on a CPU."""

    @classmethod
    def small(cls, **overrides: Any) -> GNoMEConfig:
        """CPU preset: width 64, 3 steps, short training; an ensemble of 3 on a few hundred
        structures trains in about a minute on 2 cores."""
        settings: dict[str, Any] = {
            "embed_dim": 64,
            "mlp_hidden": (64,),
            "steps": 3,
            "epochs": 150,
            "batch_size": 32,
            "learning_rate": 2e-3,
            "avg_neighbors": "auto",
            "patience": 40,
            "joint_members": True,
        }
        settings.update(overrides)
        return cls(**settings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["mlp_hidden"] = list(self.mlp_hidden)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GNoMEConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        data = {key: value for key, value in data.items() if key not in REMOVED_FIELDS}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown GNoMEConfig field(s) {unknown}; valid: {sorted(names)}")
        data = dict(data)
        if "mlp_hidden" in data:
            data["mlp_hidden"] = tuple(data["mlp_hidden"])
        return cls(**data)

    def volume_scales(self) -> list[float]:
        """Isotropic length scales for volume TTA: volumes evenly spaced, lengths ∝ V^(1/3)."""
        if self.n_volumes == 1:
            return [1.0]
        step = (self.volume_max - self.volume_min) / (self.n_volumes - 1)
        return [(self.volume_min + k * step) ** (1 / 3) for k in range(self.n_volumes)]


def resolve_config(config: GNoMEConfig | dict[str, Any] | None) -> GNoMEConfig:
    """Accept a config object, a dict of fields, or None (GNoME defaults)."""
    if config is None:
        return GNoMEConfig()
    if isinstance(config, dict):
        return GNoMEConfig.from_dict(config)
    if isinstance(config, GNoMEConfig):
        return config
    raise TypeError(f"config must be a GNoMEConfig, a dict or None, not {type(config).__name__}")
