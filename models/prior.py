"""The screening prior: structural and compositional ensembles pretrained on known crystals.

A prior is a folder with ``structural.pt``, optionally ``compositional.pt`` (checkpoints of
:mod:`.ensemble`) and ``card.json``, the model card: data sources, label oracle and energy
scale, split, held-out figures and licences. The CPU-size ("small" preset) prior labelled
with CHGNet ships in ``data/prior``; ``hullhunter models pretrain`` makes others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ARCHITECTURE_FIELDS, GNoMEConfig
from .ensemble import CompositionEnsemble, Ensemble, load_ensemble

BUILTIN_PRIOR = Path(__file__).parent / "data" / "prior"
CARD_FILE = "card.json"
STRUCTURAL_FILE = "structural.pt"
COMPOSITIONAL_FILE = "compositional.pt"
CARD_FORMAT = "hullhunter-prior-card/1"
ORACLE_ENERGY_SCALE = "MP2020-compatible"
"""The scale every campaign oracle reports (CHGNet/SevenNet as trained on MPtrj, VASP with
MP2020 corrections); a prior on another scale would bias every formation energy."""

FINE_TUNED_ACROSS = {("chgnet", "vasp"), ("chgnet", "cp2k")}
"""(prior oracle, campaign oracle) pairs allowed although they differ: a CHGNet prior is
fine-tuned on the campaign's own relaxed seeds at round 0 before it screens. CHGNet
reproduces the MP2020-corrected PBE(+U) scale that corrected VASP results are on; CP2K's
uncorrected PBE energies are on their own scale, but the networks learn formation energies
against the campaign's own elemental references, which the fine-tuning moves onto CP2K's."""


@dataclass
class Prior:
    """A loaded prior: its ensembles and model card."""

    structural: Ensemble
    compositional: CompositionEnsemble | None
    card: dict[str, Any]
    path: Path

    @property
    def oracle(self) -> str:
        """Name of the oracle that labelled the prior's training data."""
        return str(self.card["labels"]["oracle"])

    @property
    def energy_scale(self) -> str:
        """Energy scale of the labels (e.g. "MP2020-compatible")."""
        return str(self.card["labels"]["energy_scale"])

    def summary(self) -> dict[str, Any]:
        """What a model version records about the prior it started from."""
        return {
            "name": self.card.get("name", self.path.name),
            "path": str(self.path),
            "oracle": self.oracle,
            "oracle_version": self.card["labels"].get("oracle_version"),
            "energy_scale": self.energy_scale,
            "n_labelled": self.card["counts"]["labelled"],
            "test_mae": self.card["metrics"]["structural"].get("test_mae"),
        }


def load_prior(path: str | Path | None = None, device: str = "cpu") -> Prior:
    """Load a prior folder (default: the shipped one); one-line errors name what is missing."""
    folder = BUILTIN_PRIOR if path is None else Path(path)
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise ValueError(
            f"{folder} is not a prior folder (no {CARD_FILE}); make one with "
            "`hullhunter models pretrain --out DIR` or set model.prior: none"
        )
    card = json.loads(card_path.read_text())
    if card.get("format") != CARD_FORMAT:
        raise ValueError(f"{card_path} is not a hullhunter prior card ({CARD_FORMAT})")
    structural = load_ensemble(folder / STRUCTURAL_FILE, device)
    compositional_path = folder / COMPOSITIONAL_FILE
    compositional = (
        load_ensemble(compositional_path, device) if compositional_path.is_file() else None
    )
    return Prior(structural, compositional, card, folder)  # type: ignore[arg-type]


def prior_mismatch(
    prior: Prior, oracle: str, config: GNoMEConfig, energy_scale: str = ORACLE_ENERGY_SCALE
) -> str | None:
    """Why ``prior`` cannot start a campaign with this oracle and network, or None if it can.

    The labels must come from the campaign's oracle on its ``energy_scale`` (or be a CHGNet
    prior for a VASP or CP2K campaign, fine-tuned first, see :data:`FINE_TUNED_ACROSS`) and
    the architecture must be the campaign's.
    """
    across = (prior.oracle, oracle) in FINE_TUNED_ACROSS
    if prior.energy_scale != energy_scale and not across:
        return (
            f"prior {prior.path} is on the {prior.energy_scale!r} energy scale but the "
            f"campaign's oracle reports {energy_scale!r}; relabel its data or set model.prior: "
            "none"
        )
    if prior.oracle != oracle and not across:
        return (
            f"prior {prior.path} was labelled by {prior.oracle!r} but the campaign's oracle is "
            f"{oracle!r}; pretrain one with `hullhunter models pretrain --oracle {oracle}` "
            "or set model.prior: none"
        )
    changed = [
        name
        for name in ARCHITECTURE_FIELDS
        if getattr(prior.structural.config, name) != getattr(config, name)
    ]
    if changed:
        return (
            f"prior {prior.path} has another architecture ({', '.join(changed)} differ from "
            "the campaign's model preset); use the matching preset or set model.prior: none"
        )
    return None
