"""Stage 5, retrain: new screening ensembles, warm-started from the last, on every result.

Structural ensembles learn from every converged relaxation so far: its relaxed structure, and
(``model.learn_generated``) the candidate as it was generated, labelled with the energy it
relaxed to. The second is the screen's own question: the relaxed energy of a structure seen
before relaxation. GNoME trained on relaxed structures only and bridged that gap with volume
test-time augmentation, which here deepened the over-binding of generated cells (see
``examples/quickstart.yaml``); a prior trained on known crystals alone has never seen one. With
the compositional pipeline, a compositional ensemble learns the lowest energy of each formula.
Round 0 (the seed round) starts from the campaign's prior (``model.prior``): the shipped
ensembles pretrained on the known world, fine-tuned here on the campaign's relaxed seeds.
Every model version records in its metrics the prior its lineage started from.
"""

from __future__ import annotations

from typing import Any

from pymatgen.core import Composition, Structure

from hullhunter import models
from hullhunter.campaign_config import CampaignConfig
from hullhunter.documents import Calculation, Candidate
from hullhunter.models.prior import Prior, load_prior, prior_mismatch
from hullhunter.workflows.model_store import latest_ensemble, save_ensemble
from hullhunter.workflows.oracles.registry import oracle_plugin
from hullhunter.workflows.round.records import SEED_ROUND, usable_calculations

BUILTIN_PRIOR_PRESET = "small"
"""The preset of the shipped prior; ``prior: builtin`` means none for other presets."""


def model_config(
    config: CampaignConfig, device: str = "cpu", torch_threads: int | None = None
) -> models.GNoMEConfig:
    """The campaign's network settings on this worker: a preset with its epochs and seed.

    A campaign's networks learn from every label it has. The composition-hash split is for a
    prior's model card; in a campaign it held a quarter of the formulas out of training (the
    test split and the validation hash), and the screen kept picking polymorphs of the same
    held-out formula round after round, each as far off as the last (MnO3 four times at
    -0.73 eV/atom in the Li-Mn-O flywheel). The campaign's honest error is prospective: each
    round's MAE on relaxations the model has not seen. The loss is the prior's Huber loss, so
    a relaxation far above its prediction does not pull the whole space's energies with it.
    """
    overrides = {
        "epochs": config.model.epochs,
        "seed": config.model.seed,
        "device": device,
        "torch_threads": torch_threads,
        "test_split": False,
        "val_fraction": 0.0,
        "loss": "huber",
    }
    if config.model.preset == "small":
        return models.GNoMEConfig.small(**overrides)
    return models.GNoMEConfig(**overrides)


def campaign_prior(config: CampaignConfig, network: models.GNoMEConfig) -> Prior | None:
    """The prior this campaign starts from, or None; a mismatched folder is refused in one line.

    ``builtin`` is the shipped prior where it fits (the small preset, an oracle it may
    start: CHGNet, VASP or CP2K), else none: campaigns of other oracles train from scratch.
    """
    choice = config.model.prior
    if choice == "none" or (choice == "builtin" and config.model.preset != BUILTIN_PRIOR_PRESET):
        return None
    prior = load_prior(None if choice == "builtin" else choice)
    scale = oracle_plugin(config.oracle.name).energy_scale
    problem = prior_mismatch(prior, config.oracle.name, network, scale)
    if problem is None:
        return prior
    if choice == "builtin":
        return None
    raise ValueError(problem)


def _start(
    name: str, kind: str, config: CampaignConfig, network: models.GNoMEConfig
) -> tuple[models.Ensemble | models.CompositionEnsemble | None, dict[str, Any] | None]:
    """The ensemble to warm-start from (the newest, else the prior's) and the lineage's prior."""
    latest = latest_ensemble(name, kind)
    if latest is not None:
        return latest, latest.metadata.get("metrics", {}).get("prior")
    prior = campaign_prior(config, network)
    if prior is None:
        return None, None
    start = prior.structural if kind == "structural" else prior.compositional
    return start, None if start is None else prior.summary()


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
    structures, energies = structural_examples(name, calculations, config.model.learn_generated)
    start, prior = _start(name, "structural", config, network)
    ensemble, metrics = models.train_ensemble(
        structures,
        energies,
        elemental_energies,
        config=network,
        n_models=config.model.n_models,
        init_from=start,
    )
    metrics["prior"] = prior
    metrics["n_generated_examples"] = len(structures) - len(calculations)
    versions = {"structural": save_ensemble(name, round_number, ensemble, metrics, len(structures))}
    if "compositional" in config.pipelines:
        versions["compositional"] = retrain_compositional(
            name, round_number, config, calculations, elemental_energies, network
        )
    return versions


def structural_examples(
    name: str, calculations: list[Calculation], learn_generated: bool
) -> tuple[list[Structure], list[float]]:
    """Training pairs (structure, energy per atom): each relaxed structure, and with
    ``learn_generated`` each generated candidate (seed round excluded: a seed is already a
    relaxed crystal) with the energy it relaxed to."""
    structures = [c.get_structure() for c in calculations]
    energies = [c.energy_per_atom for c in calculations]
    if not learn_generated:
        return structures, energies
    relaxed = {c.candidate_id: c.energy_per_atom for c in calculations if c.round > SEED_ROUND}
    for candidate in Candidate.objects(campaign=name, candidate_id__in=list(relaxed)).only(
        "candidate_id", "structure"
    ):
        structures.append(candidate.get_structure())
        energies.append(relaxed[candidate.candidate_id])
    return structures, energies


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
    start, prior = _start(name, "compositional", config, network)
    ensemble, metrics = models.train_composition_ensemble(
        [c for c, _ in lowest.values()],
        [e for _, e in lowest.values()],
        elemental_energies,
        config=network,
        n_models=config.model.n_models,
        init_from=start,
    )
    metrics["prior"] = prior
    return save_ensemble(name, round_number, ensemble, metrics, len(lowest))
