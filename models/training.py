"""Training of GNoME ensembles: composition-hash split, early stopping, warm starts.

Each member is trained on its own (own seed for initialisation and batch order), or with
``joint_members`` all members at once in one stacked network (own initialisation, shared
batch order; several times faster for small networks on a CPU); the members are then
stacked into one network for prediction. The target is the formation energy
per atom relative to ``elemental_energies``, standardised with the training set's mean
and standard deviation (stored in the checkpoint).
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pymatgen.core import Composition, Structure
from rich.progress import Progress
from torch_geometric.data import Data

from .config import ARCHITECTURE_FIELDS, GNoMEConfig, resolve_config
from .ensemble import (
    CompositionEnsemble,
    Ensemble,
    build_network,
    reference_energies,
    resolve_device,
    torch_threads,
)
from .graphs import average_neighbours, collate, composition_to_graph, structures_to_graphs
from .networks import GNoMENetwork, StackedLinear, member_state_dict, stack_state_dicts

TRAIN_BUCKETS = 85
"""GNoME: int(md5(reduced formula), 16) % 100 < 85 is the training set."""


def _hash_bucket(formula: str | Composition, salt: str = "") -> int:
    reduced = Composition(formula).reduced_formula
    return int(hashlib.md5((salt + reduced).encode()).hexdigest(), 16) % 100


def composition_hash_split(formulas: Sequence[str | Composition]) -> np.ndarray:
    """GNoME's split: True (train) where MD5(reduced formula) mod 100 < 85.

    Every polymorph of a composition lands on the same side, so none leaks into the test set.
    """
    return np.array([_hash_bucket(f) < TRAIN_BUCKETS for f in formulas], dtype=bool)


@dataclass
class _Dataset:
    """Graphs, standardisable targets and hash splits of the usable training examples."""

    graphs: list[Data]
    formation: np.ndarray
    is_train: np.ndarray
    is_val: np.ndarray
    n_skipped: int


def _prepare(
    inputs: Sequence[Structure] | Sequence[Composition | str],
    energies_per_atom: Sequence[float],
    elemental_energies: dict[str, float],
    config: GNoMEConfig,
    compositional: bool,
) -> _Dataset:
    if len(inputs) != len(energies_per_atom):
        raise ValueError(
            f"{len(inputs)} inputs but {len(energies_per_atom)} energies; give one energy each"
        )
    energies = np.asarray(energies_per_atom, dtype=np.float64)
    finite = np.isfinite(energies)
    n_skipped = int((~finite).sum())
    if n_skipped:
        warnings.warn(
            f"skipped {n_skipped} training example(s) with a NaN/inf energy", stacklevel=3
        )
    kept = [x for x, ok in zip(inputs, finite, strict=True) if ok]
    energies = energies[finite]
    if not kept:
        raise ValueError("no training example with a finite energy; nothing to train on")
    if compositional:
        compositions = [Composition(c) for c in kept]
        graphs = [composition_to_graph(c) for c in compositions]
    else:
        compositions = [s.composition for s in kept]
        graphs = structures_to_graphs(kept, config.cutoff)
    formation = energies - reference_energies(compositions, elemental_energies)
    formulas = [c.reduced_formula for c in compositions]
    is_train = (
        composition_hash_split(formulas)
        if config.test_split
        else np.ones(len(formulas), dtype=bool)
    )
    in_val = np.array(
        [_hash_bucket(f, "validation:") < 100 * config.val_fraction for f in formulas], dtype=bool
    )
    return _Dataset(graphs, formation, is_train & ~in_val, is_train & in_val, n_skipped)


def _lr_factor(schedule: str, step: int, total: int) -> float:
    progress = min(step / max(total, 1), 1.0)
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "constant":
        return 1.0
    raise ValueError(f"unknown schedule {schedule!r}; use 'linear', 'cosine' or 'constant'")


def _loss(config: GNoMEConfig, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if config.loss == "mse":
        return torch.nn.functional.mse_loss(pred, target)
    if config.loss == "huber":
        return torch.nn.functional.huber_loss(pred, target, delta=0.1)
    raise ValueError(f"unknown loss {config.loss!r}; use 'mse' or 'huber'")


@torch.no_grad()
def _standardised_predictions(
    network: GNoMENetwork, graphs: Sequence[Data], config: GNoMEConfig, device: torch.device
) -> torch.Tensor:
    network.eval()
    parts = []
    for start in range(0, len(graphs), config.batch_size):
        batch = collate(graphs[start : start + config.batch_size], cutoff=config.cutoff)
        parts.append(network(batch.to(device)))
    return torch.cat(parts, dim=1)


def _train_members(
    network: GNoMENetwork,
    train_graphs: list[Data],
    train_y: torch.Tensor,
    val_graphs: list[Data],
    val_y: torch.Tensor,
    config: GNoMEConfig,
    seed: int,
    device: torch.device,
    on_epoch: Any,
    keep_start: bool = False,
) -> tuple[list[dict[str, torch.Tensor]], list[int]]:
    """Train the members of ``network`` (one, or several stacked sharing the batch order).

    Members share no parameters and the loss is a sum over members, so each member gets
    exactly its own gradient and Adam state; each member keeps its own best state (by
    validation MAE) and stops after ``patience`` epochs without improvement. With
    ``keep_start`` (warm starts) the starting weights compete too, so fine-tuning on a few
    crystals never ends worse on the validation set than the model it started from, and
    the learning rate is scaled by ``warm_start_lr_factor``.
    """
    n_members = network.n_members
    rng = np.random.default_rng(seed)
    optimizer_cls = torch.optim.AdamW if config.weight_decay > 0 else torch.optim.Adam
    learning_rate = config.learning_rate * (config.warm_start_lr_factor if keep_start else 1.0)
    optimizer = optimizer_cls(
        network.parameters(), lr=learning_rate, weight_decay=config.weight_decay
    )
    n_batches = math.ceil(len(train_graphs) / config.batch_size)
    total_steps = config.epochs * n_batches
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(config.schedule, step, total_steps)
    )
    train_y = train_y.to(device)
    val_y = val_y.to(device)
    best_mae = np.full(n_members, np.inf)
    since_best = np.zeros(n_members, dtype=int)
    stopped_at = np.zeros(n_members, dtype=int)
    best_states: list[dict[str, torch.Tensor]] = [{} for _ in range(n_members)]
    if keep_start:  # scored as the epochs are: on the validation set, else the training set
        graphs, y = (val_graphs, val_y) if val_graphs else (train_graphs, train_y)
        best_mae = (_standardised_predictions(network, graphs, config, device) - y).abs()
        best_mae = best_mae.mean(dim=1).cpu().numpy()
        state = network.state_dict()
        best_states = [
            {k: v.detach().clone() for k, v in member_state_dict(state, member).items()}
            for member in range(n_members)
        ]
    for epoch in range(1, config.epochs + 1):
        network.train()
        order = rng.permutation(len(train_graphs))
        abs_error = torch.zeros(n_members, device=device)
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            batch = collate([train_graphs[i] for i in idx], cutoff=config.cutoff).to(device)
            pred = network(batch)
            target = train_y[idx].expand_as(pred)
            loss = n_members * _loss(config, pred, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            abs_error += (pred.detach() - target).abs().sum(dim=1)
        if val_graphs:
            pred_val = _standardised_predictions(network, val_graphs, config, device)
            mae = (pred_val - val_y).abs().mean(dim=1).cpu().numpy()
        else:
            mae = abs_error.cpu().numpy() / len(train_graphs)
        on_epoch()
        if not np.all(np.isfinite(mae)):
            raise FloatingPointError(
                f"training diverged (MAE {mae}) at epoch {epoch}; lower the learning rate"
            )
        active = stopped_at == 0
        improved = active & (mae < best_mae)
        if improved.any():
            state = network.state_dict()
            for member in np.flatnonzero(improved):
                best_states[member] = {
                    k: v.detach().clone() for k, v in member_state_dict(state, member).items()
                }
        best_mae[improved] = mae[improved]
        since_best[improved] = 0
        since_best[active & ~improved] += 1
        stopped_at[active & (since_best >= config.patience)] = epoch
        if np.all(stopped_at > 0):
            break
    stopped_at[stopped_at == 0] = epoch
    return best_states, stopped_at.tolist()


@dataclass
class _Standardisation:
    """Constants fixed before training: mean neighbour count and the target's shift and scale."""

    avg_neighbors: float
    shift: float
    scale: float

    def targets(self, formation: np.ndarray) -> torch.Tensor:
        """Standardised formation energies: what the networks are trained to predict."""
        return torch.tensor((formation - self.shift) / self.scale, dtype=torch.float32)


def _fit(
    data: _Dataset,
    config: GNoMEConfig,
    n_models: int,
    elemental_energies: dict[str, float],
    compositional: bool,
    init_from: Ensemble | CompositionEnsemble | None,
    train_index: np.ndarray | None = None,
) -> tuple[Ensemble | CompositionEnsemble, dict[str, Any]]:
    """Train ``n_models`` members, stack them into one ensemble, and measure it on each split.

    ``train_index`` overrides the training split (scaling curves train on subsets of it).
    """
    started = time.perf_counter()
    if n_models < 1:
        raise ValueError(f"n_models must be >= 1, got {n_models}")
    train_idx = np.flatnonzero(data.is_train) if train_index is None else train_index
    val_idx = np.flatnonzero(data.is_val)
    test_idx = np.flatnonzero(~(data.is_train | data.is_val))
    if len(train_idx) == 0:
        raise ValueError(
            "no training example after the composition-hash split; give more compositions "
            "or set test_split=False"
        )
    constants = _standardisation(data, train_idx, config, compositional, init_from)
    device = resolve_device(config.device)
    states, epochs_run = _train_groups(
        data, train_idx, val_idx, config, n_models, compositional, init_from, constants, device
    )
    stacked = build_network(config, n_models, compositional, constants.avg_neighbors)
    stacked.load_state_dict(stack_state_dicts(states))
    ensemble_cls = CompositionEnsemble if compositional else Ensemble
    ensemble = ensemble_cls(stacked.to(device), config, elemental_energies)
    metrics: dict[str, Any] = {
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "n_test": len(test_idx),
        "n_skipped_nonfinite": data.n_skipped,
        "n_models": n_models,
        "epochs_run": epochs_run,
        "avg_neighbors": constants.avg_neighbors,
        "warm_start": init_from is not None,
    }
    splits = {"train": train_idx, "val": val_idx, "test": test_idx}
    metrics.update(_split_errors(ensemble, data, splits))
    metrics["wall_time_s"] = time.perf_counter() - started
    ensemble.metadata = {"metrics": metrics}
    return ensemble, metrics


def _standardisation(
    data: _Dataset,
    train_idx: np.ndarray,
    config: GNoMEConfig,
    compositional: bool,
    init_from: Ensemble | CompositionEnsemble | None,
) -> _Standardisation:
    """The training split's target mean and spread; a warm start keeps its neighbour count.

    The target constants follow the data on every fit, warm starts included (the warm
    network's readout is rescaled to them, :func:`_group_network`), so a campaign's
    normalisation is never frozen at its first, smallest training set.
    """
    if init_from is not None:
        _check_warm_start(init_from, config, compositional)
        avg_neighbors = float(init_from.network.avg_neighbors)
    elif config.avg_neighbors == "auto":
        avg_neighbors = average_neighbours([data.graphs[i] for i in train_idx])
    else:
        avg_neighbors = float(config.avg_neighbors)
    return _Standardisation(
        avg_neighbors=avg_neighbors,
        shift=float(data.formation[train_idx].mean()),
        scale=float(max(data.formation[train_idx].std(), 1e-3)),
    )


def _group_network(
    config: GNoMEConfig,
    members: list[int],
    compositional: bool,
    init_from: Ensemble | CompositionEnsemble | None,
    constants: _Standardisation,
    device: torch.device,
) -> GNoMENetwork:
    """A fresh stacked network for these members, warm-started from ``init_from`` if given.

    A warm start keeps its predictions exactly: its readout is rescaled from its own target
    constants to ``constants``.
    """
    network = build_network(config, len(members), compositional, constants.avg_neighbors)
    if init_from is not None:
        warm = init_from.member_state_dicts()
        network.load_state_dict(stack_state_dicts([warm[m % init_from.n_models] for m in members]))
        restandardise(network, constants.shift, constants.scale)
    network.target_shift.fill_(constants.shift)
    network.target_scale.fill_(constants.scale)
    return network.to(device)


@torch.no_grad()
def restandardise(network: GNoMENetwork, shift: float, scale: float) -> None:
    """Give ``network`` new target constants without changing what it predicts.

    The output is ``y * scale + shift`` and ``y`` is the readout's last linear layer, so
    that layer's weights and bias absorb the change of constants.
    """
    old_shift = float(network.target_shift)
    old_scale = float(network.target_scale)
    last = [m for m in network.readout.global_mlp.modules() if isinstance(m, StackedLinear)][-1]
    last.weight.mul_(old_scale / scale)
    last.bias.mul_(old_scale / scale).add_((old_shift - shift) / scale)
    network.target_shift.fill_(shift)
    network.target_scale.fill_(scale)


def _train_groups(
    data: _Dataset,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    config: GNoMEConfig,
    n_models: int,
    compositional: bool,
    init_from: Ensemble | CompositionEnsemble | None,
    constants: _Standardisation,
    device: torch.device,
) -> tuple[list[dict[str, torch.Tensor]], list[int]]:
    """Each member's trained weights (on the CPU) and epochs run, in member order.

    With ``joint_members`` all members train in one stacked network (shared batch order),
    else one at a time; a group's seed is ``config.seed`` plus its first member.
    """
    train_graphs = [data.graphs[i] for i in train_idx]
    val_graphs = [data.graphs[i] for i in val_idx]
    states: list[dict[str, torch.Tensor]] = []
    epochs_run: list[int] = []
    groups = [list(range(n_models))] if config.joint_members else [[m] for m in range(n_models)]
    with Progress(disable=not config.progress) as bar:
        task = bar.add_task("training", total=len(groups) * config.epochs)
        for number, members in enumerate(groups):
            seed = config.seed + members[0]
            torch.manual_seed(seed)
            network = _group_network(config, members, compositional, init_from, constants, device)
            group_states, group_epochs = _train_members(
                network,
                train_graphs,
                constants.targets(data.formation[train_idx]),
                val_graphs,
                constants.targets(data.formation[val_idx]),
                config,
                seed,
                device,
                lambda: bar.advance(task),
                keep_start=init_from is not None,
            )
            states += [{k: v.cpu() for k, v in st.items()} for st in group_states]
            epochs_run += group_epochs
            bar.update(task, completed=(number + 1) * config.epochs)
    return states, epochs_run


def _split_errors(
    ensemble: Ensemble | CompositionEnsemble, data: _Dataset, splits: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Per non-empty split: the MAE of the members' median and of each member (eV/atom)."""
    errors: dict[str, Any] = {}
    networks = ensemble._member_networks()
    for name, idx in splits.items():
        if len(idx):
            members = ensemble._formation_energies(networks, [data.graphs[i] for i in idx], [1.0])
            error = np.median(members, axis=1) - data.formation[idx]
            errors[f"{name}_mae"] = float(np.abs(error).mean())
            errors[f"{name}_member_mae"] = (
                np.abs(members - data.formation[idx, None]).mean(0).tolist()
            )
    return errors


def _check_warm_start(
    init_from: Ensemble | CompositionEnsemble, config: GNoMEConfig, compositional: bool
) -> None:
    if init_from.compositional != compositional:
        raise ValueError(f"cannot warm-start from a {init_from.kind} ensemble")
    changed = [
        name
        for name in ARCHITECTURE_FIELDS
        if getattr(init_from.config, name) != getattr(config, name)
    ]
    if changed:
        raise ValueError(
            f"warm start needs the same architecture; {changed} differ from init_from's config"
        )


def train_ensemble(
    structures: Sequence[Structure],
    energies_per_atom: Sequence[float],
    elemental_energies: dict[str, float],
    config: GNoMEConfig | dict[str, Any] | None = None,
    n_models: int = 10,
    init_from: Ensemble | None = None,
) -> tuple[Ensemble, dict[str, Any]]:
    """Train ``n_models`` structural networks on (structure, total energy per atom).

    Splits by composition hash (test MAE in ``metrics``), stops early on a validation
    set, and warm-starts from ``init_from``'s members when given. NaN energies are
    skipped and counted (``metrics["n_skipped_nonfinite"]``). MAEs are in eV/atom.
    """
    config = resolve_config(config)
    with torch_threads(config.torch_threads):
        data = _prepare(structures, energies_per_atom, elemental_energies, config, False)
        return _fit(data, config, n_models, elemental_energies, False, init_from)  # type: ignore[return-value]


def train_composition_ensemble(
    compositions: Sequence[Composition | str],
    energies_per_atom: Sequence[float],
    elemental_energies: dict[str, float],
    config: GNoMEConfig | dict[str, Any] | None = None,
    n_models: int = 10,
    init_from: CompositionEnsemble | None = None,
) -> tuple[CompositionEnsemble, dict[str, Any]]:
    """Train compositional networks on (composition, lowest energy per atom); as
    :func:`train_ensemble`."""
    config = resolve_config(config)
    with torch_threads(config.torch_threads):
        data = _prepare(compositions, energies_per_atom, elemental_energies, config, True)
        return _fit(data, config, n_models, elemental_energies, True, init_from)  # type: ignore[return-value]


def scaling_curve(
    structures: Sequence[Structure],
    energies_per_atom: Sequence[float],
    elemental_energies: dict[str, float],
    config: GNoMEConfig | dict[str, Any] | None = None,
    fractions: Sequence[float] = (0.125, 0.25, 0.5, 1.0),
    n_models: int = 1,
) -> dict[str, Any]:
    """Test MAE against training-set size, and a power-law fit MAE = a * N^(-b).

    Training sets are nested random subsets of the hash-split training set; the test and
    validation sets stay fixed, so the points are comparable (GNoME Fig. 1e).
    """
    config = resolve_config(config)
    if not config.test_split:
        raise ValueError("a scaling curve needs the test split; set test_split=True")
    data = _prepare(structures, energies_per_atom, elemental_energies, config, False)
    pool = np.random.default_rng(config.seed).permutation(np.flatnonzero(data.is_train))
    sizes, maes = [], []
    for fraction in sorted(fractions):
        if not 0 < fraction <= 1:
            raise ValueError(f"fractions must lie in (0, 1], got {fraction}")
        subset = pool[: max(1, round(fraction * len(pool)))]
        with torch_threads(config.torch_threads):
            _, metrics = _fit(data, config, n_models, elemental_energies, False, None, subset)
        if "test_mae" not in metrics:
            raise ValueError("the test split is empty; give more distinct compositions")
        sizes.append(len(subset))
        maes.append(metrics["test_mae"])
    slope, intercept = np.polyfit(np.log(sizes), np.log(maes), 1) if len(sizes) > 1 else (0, 0)
    return {
        "train_sizes": sizes,
        "test_mae": maes,
        "exponent": float(-slope),
        "prefactor": float(np.exp(intercept)),
    }
