"""Stage 5, retrain: new screening ensembles, warm-started from the last, on every result.

Structural ensembles learn from every converged relaxation so far; with the compositional
pipeline, a compositional ensemble learns the lowest energy of each formula.
"""

from __future__ import annotations

from pymatgen.core import Composition

from hullhunter import models
from hullhunter.campaign_config import CampaignConfig
from hullhunter.documents import Calculation
from hullhunter.workflows.model_store import latest_ensemble, save_ensemble
from hullhunter.workflows.round.records import usable_calculations


def model_config(
    config: CampaignConfig, device: str = "cpu", torch_threads: int | None = None
) -> models.GNoMEConfig:
    """The campaign's network settings on this worker: a preset with its epochs and seed."""
    overrides = {
        "epochs": config.model.epochs,
        "seed": config.model.seed,
        "device": device,
        "torch_threads": torch_threads,
    }
    if config.model.preset == "small":
        return models.GNoMEConfig.small(**overrides)
    return models.GNoMEConfig(**overrides)


def retrain(
    name: str,
    round_number: int,
    config: CampaignConfig,
    elemental_energies: dict[str, float],
    network: models.GNoMEConfig,
) -> dict[str, int]:
    """Train and store the next ensembles; returns the new version number of each kind.

    ``elemental_energies`` (eV/atom, from the round's hull) set the formation-energy scale;
    ``network`` is :func:`model_config` on this worker.
    """
    calculations = usable_calculations(name, round_number)
    structures = [c.get_structure() for c in calculations]
    ensemble, metrics = models.train_ensemble(
        structures,
        [c.energy_per_atom for c in calculations],
        elemental_energies,
        config=network,
        n_models=config.model.n_models,
        init_from=latest_ensemble(name, "structural"),
    )
    versions = {"structural": save_ensemble(name, round_number, ensemble, metrics, len(structures))}
    if "compositional" in config.pipelines:
        versions["compositional"] = retrain_compositional(
            name, round_number, config, calculations, elemental_energies, network
        )
    return versions


def retrain_compositional(
    name: str,
    round_number: int,
    config: CampaignConfig,
    calculations: list[Calculation],
    elemental_energies: dict[str, float],
    network: models.GNoMEConfig,
) -> int:
    """Train and store the next compositional ensemble on each formula's lowest energy."""
    lowest: dict[str, tuple[Composition, float]] = {}
    for calc in calculations:
        if calc.formula not in lowest or calc.energy_per_atom < lowest[calc.formula][1]:
            lowest[calc.formula] = (Composition(calc.formula), calc.energy_per_atom)
    ensemble, metrics = models.train_composition_ensemble(
        [c for c, _ in lowest.values()],
        [e for _, e in lowest.values()],
        elemental_energies,
        config=network,
        n_models=config.model.n_models,
        init_from=latest_ensemble(name, "compositional"),
    )
    return save_ensemble(name, round_number, ensemble, metrics, len(lowest))
