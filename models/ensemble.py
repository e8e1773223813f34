"""Deep ensembles of GNoME networks: median prediction, IQR uncertainty, volume TTA.

Checkpoints are one ``torch.save`` file of plain tensors and dicts (loadable with
``weights_only=True``, no hullhunter classes pickled) plus a JSON metadata file beside it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pymatgen.core import Composition, Structure
from rich.progress import Progress

from .config import GNoMEConfig
from .graphs import collate, composition_to_graph, structures_to_graphs
from .networks import GNoMENetwork, member_state_dict

CHECKPOINT_FORMAT = "hullhunter-gnome-ensemble/1"


@dataclass
class Prediction:
    """Ensemble prediction: median and IQR over members, plus every member's value.

    ``energy_per_atom`` and ``members`` are total energies per atom on the oracle scale (eV).
    """

    energy_per_atom: np.ndarray
    iqr: np.ndarray
    members: np.ndarray


def resolve_device(device: str) -> torch.device:
    """``"auto"`` picks CUDA when present; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def reference_energies(
    compositions: Sequence[Composition], elemental_energies: dict[str, float]
) -> np.ndarray:
    """Composition-weighted elemental reference energy per atom (formation-energy zero)."""
    missing = sorted(
        {el.symbol for c in compositions for el in c.elements} - set(elemental_energies)
    )
    if missing:
        raise ValueError(
            f"no elemental energy for {', '.join(missing)}; add them to elemental_energies "
            "(eV/atom of the elemental ground state on the oracle scale)"
        )
    return np.array(
        [
            sum(
                frac * elemental_energies[el.symbol]
                for el, frac in c.fractional_composition.items()
            )
            for c in compositions
        ],
        dtype=np.float64,
    )


@contextmanager
def torch_threads(n_threads: int | None) -> Iterator[None]:
    """Run the block with ``n_threads`` intra-op threads (unchanged when None), then restore."""
    if n_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def median_and_iqr(members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and interquartile range over the member axis (last) of ``members``."""
    q1, median, q3 = np.percentile(members, [25, 50, 75], axis=-1)
    return median, q3 - q1


class _BaseEnsemble:
    """Shared machinery of structural and compositional ensembles."""

    kind: ClassVar[str]
    compositional: ClassVar[bool]

    def __init__(
        self,
        network: GNoMENetwork,
        config: GNoMEConfig,
        elemental_energies: dict[str, float],
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if network.compositional != self.compositional:
            raise ValueError(f"{type(self).__name__} needs compositional={self.compositional}")
        self.network = network.eval()
        self.config = config
        self.elemental_energies = {k: float(v) for k, v in elemental_energies.items()}
        self.metadata = dict(metadata or {})

    @property
    def n_models(self) -> int:
        """Number of ensemble members."""
        return self.network.n_members

    def member_state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """Single-member state dicts (for warm starts)."""
        state = self.network.state_dict()
        return [member_state_dict(state, m) for m in range(self.n_models)]

    def _chunks(self, n: int, copies: int, progress: bool, what: str) -> Iterator[slice]:
        size = max(1, self.config.predict_batch_graphs // copies)
        with Progress(disable=not progress) as bar:
            task = bar.add_task(f"predicting {what}", total=n)
            for start in range(0, n, size):
                yield slice(start, min(start + size, n))
                bar.advance(task, min(size, n - start))

    def _member_networks(self) -> list[GNoMENetwork]:
        """The members as single-member networks, for prediction.

        Training keeps the members stacked in one network; predicting, a loop over members
        is faster on CPU (small preset, 4 models x 20 volumes, 1 thread: 26.8 against 14.8
        structures/s stacked, the same numbers to 1e-6; ``benchmarks/screening.py`` prints
        both). Built per call from the current weights, so they are never stale.
        """
        state = self.network.state_dict()
        device = next(self.network.parameters()).device
        members = []
        for member in range(self.n_models):
            network = build_network(
                self.config, 1, self.compositional, float(self.network.avg_neighbors)
            )
            network.load_state_dict(member_state_dict(state, member))
            members.append(network.to(device).eval())
        return members

    @torch.no_grad()
    def _formation_energies(
        self, members: list[GNoMENetwork], graphs: Sequence, length_scales: Sequence[float]
    ) -> np.ndarray:
        """Formation energy per atom of every member, min over length scales: ``[n, K]``."""
        device = next(self.network.parameters()).device
        batch = collate(graphs, length_scales, self.config.cutoff).to(device)
        out = torch.cat([network(batch) for network in members])
        out = out * self.network.target_scale + self.network.target_shift
        out = out.view(self.n_models, len(length_scales), len(graphs)).amin(dim=1)
        return out.T.double().cpu().numpy()

    def _finish(self, formation: np.ndarray, reference: np.ndarray) -> Prediction:
        if not np.all(np.isfinite(formation)):
            raise FloatingPointError("the network produced a non-finite prediction")
        members = formation + reference[:, None]
        energy, iqr = median_and_iqr(members)
        return Prediction(energy_per_atom=energy, iqr=iqr, members=members)

    def to(self, device: str | torch.device) -> _BaseEnsemble:
        """Move the ensemble to ``device`` ("cpu", "cuda", "auto")."""
        self.network.to(resolve_device(str(device)))
        return self

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint to ``path`` and its JSON metadata to ``path`` with ``.json``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = self._header()
        state = {k: v.detach().cpu() for k, v in self.network.state_dict().items()}
        torch.save({**header, "state_dict": state}, path)
        metadata_path = path.with_suffix(".json")
        metadata_path.write_text(json.dumps(header, indent=2, default=float))
        return path

    def _header(self) -> dict[str, Any]:
        n_parameters = sum(p.numel() for p in self.network.parameters())
        return {
            "format": CHECKPOINT_FORMAT,
            "kind": self.kind,
            "n_models": self.n_models,
            "n_parameters_per_model": n_parameters // self.n_models,
            "avg_neighbors": float(self.network.avg_neighbors),
            "target_shift": float(self.network.target_shift),
            "target_scale": float(self.network.target_scale),
            "config": self.config.to_dict(),
            "elemental_energies": self.elemental_energies,
            "metadata": self.metadata,
        }

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> _BaseEnsemble:
        """Load a checkpoint written by :meth:`save` (plain tensors and dicts only)."""
        checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
        if checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a hullhunter GNoME checkpoint ({CHECKPOINT_FORMAT})")
        ensemble_cls = {c.kind: c for c in (Ensemble, CompositionEnsemble)}[checkpoint["kind"]]
        if not issubclass(ensemble_cls, cls):
            raise ValueError(f"{path} holds a {checkpoint['kind']} ensemble, not {cls.kind}")
        config = GNoMEConfig.from_dict(checkpoint["config"])
        network = build_network(
            config, checkpoint["n_models"], ensemble_cls.compositional, checkpoint["avg_neighbors"]
        )
        network.load_state_dict(checkpoint["state_dict"])
        ensemble = ensemble_cls(
            network, config, checkpoint["elemental_energies"], checkpoint["metadata"]
        )
        return ensemble.to(device)


def build_network(
    config: GNoMEConfig, n_members: int, compositional: bool, avg_neighbors: float
) -> GNoMENetwork:
    """A fresh network with ``config``'s architecture."""
    return GNoMENetwork(
        n_members=n_members,
        compositional=compositional,
        embed_dim=config.embed_dim,
        mlp_hidden=config.mlp_hidden,
        steps=config.steps,
        n_gaussians=config.n_gaussians,
        gaussian_min=config.gaussian_min,
        gaussian_max=config.gaussian_max,
        gaussian_width=config.gaussian_width,
        avg_neighbors=avg_neighbors,
        init_gain=config.init_gain,
    )


class Ensemble(_BaseEnsemble):
    """Ensemble of structural GNoME networks."""

    kind = "structural"
    compositional = False

    def predict(
        self,
        structures: Sequence[Structure],
        tta: bool = True,
        progress: bool | None = None,
    ) -> Prediction:
        """Total energy per atom (median over members), IQR and member values.

        With ``tta`` each member takes the minimum over ``config.n_volumes`` isotropic
        volume scalings (GNoME's volume TTA), then the median is taken over members.
        """
        structures = list(structures)
        if not structures:
            raise ValueError("empty batch: give at least one structure to predict")
        reference = reference_energies([s.composition for s in structures], self.elemental_energies)
        scales = self.config.volume_scales() if tta else [1.0]
        # one neighbour list per structure, at the smallest volume: it holds every edge
        # that any larger scale keeps
        graph_cutoff = self.config.cutoff / min(scales)
        progress = self.config.progress if progress is None else progress
        parts = []
        with torch_threads(self.config.torch_threads):
            members = self._member_networks()
            for chunk in self._chunks(len(structures), len(scales), progress, "structures"):
                graphs = structures_to_graphs(structures[chunk], graph_cutoff)
                parts.append(self._formation_energies(members, graphs, scales))
        return self._finish(np.concatenate(parts), reference)


class CompositionEnsemble(_BaseEnsemble):
    """Ensemble of compositional GNoME networks (energy of the lowest polymorph)."""

    kind = "compositional"
    compositional = True

    def predict(
        self, compositions: Sequence[Composition | str], progress: bool | None = None
    ) -> Prediction:
        """Total energy per atom (median over members), IQR and member values."""
        compositions = [Composition(c) for c in compositions]
        if not compositions:
            raise ValueError("empty batch: give at least one composition to predict")
        reference = reference_energies(compositions, self.elemental_energies)
        progress = self.config.progress if progress is None else progress
        parts = []
        with torch_threads(self.config.torch_threads):
            members = self._member_networks()
            for chunk in self._chunks(len(compositions), 1, progress, "compositions"):
                graphs = [composition_to_graph(c) for c in compositions[chunk]]
                parts.append(self._formation_energies(members, graphs, [1.0]))
        return self._finish(np.concatenate(parts), reference)


def load_ensemble(path: str | Path, device: str = "cpu") -> Ensemble | CompositionEnsemble:
    """Load either kind of ensemble checkpoint."""
    return _BaseEnsemble.load(path, device)  # type: ignore[return-value]
