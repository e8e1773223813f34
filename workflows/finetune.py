"""A potential learned from the campaign: relaxation frames, GNoME sampling, CHGNet fine-tuning.

Every relaxation step is a labelled frame (structure, energy per atom, forces, stress).
:func:`record_relaxations` relaxes through ASE with any calculator (the CHGNet oracle by
default, or a VASP-backed or other real potential) and keeps every step. Frames are split by
GNoME's composition hash, sampled as GNoME did (half from all steps, half first steps), and
CHGNet is fine-tuned with chgnet's own ``Trainer``. :func:`compare_models` reports the
pretrained and fine-tuned errors on held-out frames side by side. Frames and their GridFS
blobs are defined in :mod:`hullhunter.workflows.oracles.trajectory`, where the oracles record
them.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from ase.calculators.calculator import Calculator
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE
from chgnet.data.dataset import StructureData, collate_graphs
from chgnet.model import CHGNet, CHGNetCalculator
from chgnet.trainer import Trainer
from pymatgen.core import Element, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from rich.progress import track
from torch.utils.data import DataLoader

from hullhunter.frames import Frame
from hullhunter.models import composition_hash_split
from hullhunter.workflows.oracles.trajectory import frame_from_atoms

# Layers frozen for fine-tuning, as in chgnet's fine-tuning example: the embeddings, basis
# expansions, the first three atom convolutions and all bond/angle updates stay pretrained;
# the last atom convolution, the readout and (optionally) the AtomRef composition model learn.
FROZEN_MODULES = (
    "atom_embedding",
    "bond_embedding",
    "angle_embedding",
    "bond_basis_expansion",
    "angle_basis_expansion",
    "bond_conv_layers",
    "angle_layers",
)
FROZEN_ATOM_CONV_LAYERS = 3


@cache
def pretrained_chgnet(model_name: str = "0.3.0") -> CHGNet:
    """The pretrained CHGNet from the wheel (offline), loaded once per process."""
    return CHGNet.load(model_name=model_name, use_device="cpu", verbose=False)


def chgnet_calculator(model: CHGNet | str | Path | None = None, device: str = "cpu") -> Calculator:
    """An ASE calculator for a CHGNet: None = pretrained, a path = fine-tuned weights file."""
    if model is None:
        model = pretrained_chgnet()
    elif not isinstance(model, CHGNet):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"no CHGNet weights at {path}; pass a saved model file")
        model = CHGNet.from_file(str(path))
    return CHGNetCalculator(model, use_device=device)


def _relax_recording(
    structure: Structure,
    calculator: Calculator,
    trajectory_id: str,
    fmax: float,
    max_steps: int,
    relax_cell: bool,
) -> list[Frame]:
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = calculator
    frames: list[Frame] = []
    optimizer = FIRE(FrechetCellFilter(atoms) if relax_cell else atoms, logfile=None)
    optimizer.attach(lambda: frames.append(frame_from_atoms(atoms, trajectory_id, len(frames))))
    optimizer.run(fmax=fmax, steps=max_steps)
    return frames


def record_relaxations(
    structures: Sequence[Structure],
    ids: Sequence[str] | None = None,
    *,
    calculator: Calculator | None = None,
    fmax: float = 0.05,
    max_steps: int = 200,
    relax_cell: bool = True,
    progress: bool = False,
) -> list[list[Frame]]:
    """Relax each structure (FIRE, cell too by default) and keep every step's frame.

    ``calculator`` is the oracle that labels the frames; the default is pretrained CHGNet,
    the campaign's force-field oracle. Step 0 (the unrelaxed input) is the first frame.
    """
    if ids is not None and len(ids) != len(structures):
        raise ValueError(f"{len(structures)} structures but {len(ids)} ids; give one id each")
    if calculator is None:
        calculator = chgnet_calculator()
    trajectories = []
    for index, structure in enumerate(
        track(structures, description="relaxing", disable=not progress)
    ):
        trajectory_id = ids[index] if ids is not None else str(index)
        trajectories.append(
            _relax_recording(structure, calculator, trajectory_id, fmax, max_steps, relax_cell)
        )
    return trajectories


def split_trajectories(
    trajectories: Sequence[Sequence[Frame]],
) -> tuple[list[list[Frame]], list[list[Frame]]]:
    """GNoME's composition-hash split of whole trajectories: (train, held out).

    Every polymorph of a composition falls on the same side, so held-out errors measure
    transfer to unseen compositions.
    """
    kept = [list(t) for t in trajectories if t]
    is_train = composition_hash_split([t[0].formula for t in kept])
    train = [t for t, flag in zip(kept, is_train, strict=True) if flag]
    heldout = [t for t, flag in zip(kept, is_train, strict=True) if not flag]
    return train, heldout


def gnome_sample(
    trajectories: Sequence[Sequence[Frame]],
    n_frames: int,
    *,
    first_step_fraction: float = 0.5,
    seed: int = 0,
) -> list[Frame]:
    """GNoME's mix: ``first_step_fraction`` of frames are first steps, the rest any step.

    GNoME's batches were 16 frames from all relaxation steps plus 16 first-step frames:
    first steps (far from equilibrium, large forces) are otherwise rare among the many
    near-converged steps. Draws with replacement only where a pool is smaller than asked.
    """
    if not 0 <= first_step_fraction <= 1:
        raise ValueError(f"first_step_fraction must lie in [0, 1], got {first_step_fraction}")
    all_steps = [frame for trajectory in trajectories for frame in trajectory]
    first_steps = [trajectory[0] for trajectory in trajectories if trajectory]
    if not all_steps:
        raise ValueError("no frames to sample from; record relaxations first")
    rng = np.random.default_rng(seed)
    n_first = round(n_frames * first_step_fraction)
    picks = []
    for pool, count in ((first_steps, n_first), (all_steps, n_frames - n_first)):
        indices = rng.choice(len(pool), size=count, replace=count > len(pool))
        picks.extend(pool[i] for i in indices)
    return picks


def _loader(frames: Sequence[Frame], batch_size: int, shuffle: bool) -> DataLoader:
    dataset = StructureData(
        structures=[f.structure for f in frames],
        energies=[f.energy_per_atom for f in frames],
        forces=[f.forces.tolist() for f in frames],
        stresses=[f.stress.tolist() for f in frames],
        shuffle=False,
    )
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_graphs)


def freeze_pretrained_layers(model: CHGNet) -> None:
    """Freeze CHGNet's embeddings and early interaction layers (see ``FROZEN_MODULES``)."""
    for name in FROZEN_MODULES:
        for parameter in getattr(model, name).parameters():
            parameter.requires_grad = False
    for layer in model.atom_conv_layers[:FROZEN_ATOM_CONV_LAYERS]:
        for parameter in layer.parameters():
            parameter.requires_grad = False


def align_reference_energies(model: CHGNet, frames: Sequence[Frame]) -> dict[str, float]:
    """Shift CHGNet's per-element reference energies so its energies match the frames' zero.

    A different oracle (another code, pseudopotentials or potential) puts energies on another
    zero: a per-element offset that gradient steps learn slowly and that otherwise dominates
    the loss. The offset is the least-squares fit of (label - prediction) per atom against
    the composition fractions; only elements present in the frames move. Returns the shifts
    (eV/atom).
    """
    predictions = model.predict_structure([f.structure for f in frames], task="e")
    residuals = np.array(
        [f.energy_per_atom - float(p["e"]) for f, p in zip(frames, predictions, strict=True)]
    )
    numbers = sorted({site.specie.Z for f in frames for site in f.structure})
    fractions = np.array(
        [
            [f.structure.composition.get_atomic_fraction(Element.from_Z(z)) for z in numbers]
            for f in frames
        ]
    )
    shifts, *_ = np.linalg.lstsq(fractions, residuals, rcond=None)
    with torch.no_grad():
        weight = model.composition_model.fc.weight
        for z, shift in zip(numbers, shifts, strict=True):
            weight[0, z - 1] += float(shift)
    return {Element.from_Z(z).symbol: float(d) for z, d in zip(numbers, shifts, strict=True)}


@dataclass
class FineTuneResult:
    """The fine-tuned model, chgnet's per-epoch MAE history and where the weights went."""

    model: CHGNet
    history: dict[str, dict[str, list[float]]]
    model_path: Path | None


def finetune_chgnet(
    train_frames: Sequence[Frame],
    val_frames: Sequence[Frame] | None = None,
    *,
    base_model: str = "0.3.0",
    epochs: int = 20,
    learning_rate: float = 1e-3,
    batch_size: int = 8,
    freeze: bool = True,
    align_energies: bool = True,
    train_composition_model: bool = False,
    targets: Literal["ef", "efs"] = "ef",
    stress_loss_ratio: float = 0.1,
    device: str = "cpu",
    seed: int = 0,
    save_path: str | Path | None = None,
    progress: bool = False,
) -> FineTuneResult:
    """Fine-tune a fresh copy of pretrained CHGNet on frames with ``chgnet.trainer.Trainer``.

    ``targets`` "ef" (default) trains on energies and forces, as GNoME's loss did; "efs"
    adds stresses with ``stress_loss_ratio`` (MSE, chgnet's other defaults).
    ``align_energies`` first moves CHGNet's per-element reference energies onto the
    oracle's zero (:func:`align_reference_energies`);
    ``train_composition_model`` lets the trainer adjust them further.
    ``val_frames`` (default: the training frames) are only monitored, never selected on, so
    held-out frames stay unseen; the model after the last epoch is returned.
    """
    if not train_frames:
        raise ValueError("no training frames; record relaxations and sample them first")
    if epochs < 1 or batch_size < 1 or learning_rate <= 0:
        raise ValueError(
            f"need epochs >= 1, batch_size >= 1, learning_rate > 0; got "
            f"{epochs=}, {batch_size=}, {learning_rate=}"
        )
    model = CHGNet.from_dict(pretrained_chgnet(base_model).as_dict())
    if freeze:
        freeze_pretrained_layers(model)
    if align_energies:
        align_reference_energies(model, train_frames)
    trainer = Trainer(
        model=model,
        targets=targets,
        stress_loss_ratio=stress_loss_ratio,
        optimizer="Adam",
        scheduler="CosLR",
        criterion="MSE",
        epochs=epochs,
        learning_rate=learning_rate,
        use_device=device,
        torch_seed=seed,
        data_seed=seed,
        print_freq=10**9,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    output = contextlib.nullcontext() if progress else contextlib.redirect_stdout(io.StringIO())
    with tempfile.TemporaryDirectory() as checkpoints, output:
        trainer.train(
            _loader(train_frames, batch_size, shuffle=True),
            _loader(val_frames or train_frames, batch_size, shuffle=False),
            save_dir=checkpoints,
            train_composition_model=train_composition_model,
        )
    torch.random.set_rng_state(generator_state)
    trained = trainer.model.to("cpu").eval()
    path = None
    if save_path is not None:
        path = Path(save_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": trained.as_dict()}, path)
    return FineTuneResult(trained, trainer.training_history, path)


def evaluate(model: CHGNet, frames: Sequence[Frame], batch_size: int = 16) -> dict[str, float]:
    """MAE of a CHGNet on frames: energy (eV/atom), forces (eV/Å), stress (GPa)."""
    if not frames:
        raise ValueError("no frames to evaluate on")
    predictions = model.predict_structure(
        [f.structure for f in frames], task="efs", batch_size=batch_size
    )
    energy = [
        abs(float(p["e"]) - f.energy_per_atom) for p, f in zip(predictions, frames, strict=True)
    ]
    forces = np.concatenate(
        [np.abs(p["f"] - f.forces).ravel() for p, f in zip(predictions, frames, strict=True)]
    )
    stress = np.concatenate(
        [np.abs(p["s"] - f.stress).ravel() for p, f in zip(predictions, frames, strict=True)]
    )
    return {
        "energy_mae_ev_per_atom": float(np.mean(energy)),
        "force_mae_ev_per_a": float(forces.mean()),
        "stress_mae_gpa": float(stress.mean()),
        "n_frames": len(frames),
    }


def compare_models(
    heldout_frames: Sequence[Frame], finetuned: CHGNet, pretrained: CHGNet | None = None
) -> dict[str, dict[str, float]]:
    """Held-out errors of the pretrained and the fine-tuned CHGNet, side by side."""
    return {
        "pretrained": evaluate(pretrained or pretrained_chgnet(), heldout_frames),
        "finetuned": evaluate(finetuned, heldout_frames),
    }


def format_comparison(comparison: dict[str, dict[str, float]]) -> str:
    """The comparison as a small text table for reports and logs."""
    keys = ("energy_mae_ev_per_atom", "force_mae_ev_per_a", "stress_mae_gpa")
    lines = [f"{'held-out MAE':<24}" + "".join(f"{name:>14}" for name in comparison)]
    for key in keys:
        lines.append(f"{key:<24}" + "".join(f"{m[key]:>14.4f}" for m in comparison.values()))
    return "\n".join(lines)


def finetune_on_trajectories(
    trajectories: Sequence[Sequence[Frame]],
    *,
    n_frames: int = 1024,
    save_path: str | Path | None = None,
    **settings: Any,
) -> tuple[FineTuneResult, dict[str, Any]]:
    """Split by composition hash, sample GNoME's mix, fine-tune, and compare on held-out data.

    ``settings`` go to :func:`finetune_chgnet`. Returns the fine-tuning result and a report:
    the side-by-side held-out errors and the sizes of both sides of the split.
    """
    train, heldout = split_trajectories(trajectories)
    if not train or not heldout:
        raise ValueError(
            f"the composition split left {len(train)} train and {len(heldout)} held-out "
            "trajectories; relax more compositions before fine-tuning"
        )
    result = finetune_chgnet(gnome_sample(train, n_frames), save_path=save_path, **settings)
    heldout_frames = [frame for trajectory in heldout for frame in trajectory]
    report = {
        "comparison": compare_models(heldout_frames, result.model),
        "n_train_trajectories": len(train),
        "n_heldout_trajectories": len(heldout),
        "n_heldout_frames": len(heldout_frames),
        "n_sampled_frames": n_frames,
    }
    return result, report
