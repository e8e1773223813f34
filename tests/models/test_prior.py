"""The screening prior: shipped weights and card, normalisation that follows the data, the
composition-hash split, packaging, and refusal of a prior from another oracle."""

from __future__ import annotations

import json
import shutil
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
import torch

from hullhunter.generators import load_seeds
from hullhunter.models import GNoMEConfig, composition_hash_split, train_ensemble
from hullhunter.models.ensemble import build_network
from hullhunter.models.graphs import collate, structures_to_graphs
from hullhunter.models.prior import BUILTIN_PRIOR, load_prior, prior_mismatch
from hullhunter.models.training import restandardise
from hullhunter.workflows.pretrain import (
    LABELS_FILE,
    gather_samples,
    load_labels,
    with_references,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def energies(structures) -> np.ndarray:
    """Arbitrary energies per atom spread over 3 eV."""
    return np.random.default_rng(0).uniform(-6.0, -3.0, len(structures))


def test_restandardise_keeps_what_the_network_predicts(structures):
    torch.manual_seed(0)
    network = build_network(GNoMEConfig.small(embed_dim=16, mlp_hidden=(16,)), 2, False, 12.0)
    network.target_shift.fill_(-0.7)
    network.target_scale.fill_(0.9)
    batch = collate(structures_to_graphs(structures, 4.0), cutoff=4.0)
    with torch.no_grad():
        before = network(batch) * network.target_scale + network.target_shift
        restandardise(network, shift=0.4, scale=0.05)
        after = network(batch) * network.target_scale + network.target_shift
    assert float(network.target_shift) == pytest.approx(0.4)
    assert torch.allclose(before, after, atol=1e-4)


def test_warm_start_normalisation_follows_the_new_data(
    structures, energies, elemental_energies, tiny_config
):
    config = GNoMEConfig.from_dict(
        {**tiny_config.to_dict(), "test_split": False, "val_fraction": 0.0}
    )
    first, _ = train_ensemble(structures, energies, elemental_energies, config, 2)
    shifted = [e + 1.0 for e in energies]  # every formation energy 1 eV/atom higher
    frozen = GNoMEConfig.from_dict(
        {**config.to_dict(), "learning_rate": 0.0, "schedule": "constant"}
    )
    warm, _ = train_ensemble(structures, shifted, elemental_energies, frozen, 2, init_from=first)
    assert float(warm.network.target_shift) == pytest.approx(
        float(first.network.target_shift) + 1.0, abs=0.05
    )
    # the constants moved, the warm start's predictions did not (nothing was learned)
    before = first.predict(structures, tta=False).members
    assert np.allclose(warm.predict(structures, tta=False).members, before, atol=1e-4)


def test_hash_split_never_puts_one_formula_on_both_sides():
    seeds = load_seeds()
    structures = [s.structure for s in seeds[::7]]
    structures += [s * (2, 1, 1) for s in structures[:200]]  # same formula, other cell
    split = composition_hash_split([s.composition for s in structures])
    side: dict[str, set[bool]] = {}
    for structure, is_train in zip(structures, split, strict=True):
        side.setdefault(structure.composition.reduced_formula, set()).add(bool(is_train))
    assert all(len(sides) == 1 for sides in side.values())
    assert 0.75 < split.mean() < 0.95  # both sides populated, about 85% training


def test_pyproject_ships_every_package_and_the_prior():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {package: ROOT / folder for package, folder in pyproject["package-dir"].items()}
    tops = {Path(folder).parts[0] for folder in pyproject["package-dir"].values()} - {"hullhunter"}
    on_disk = {
        "hullhunter." + ".".join(init.parent.relative_to(ROOT).parts)
        for top in tops
        for init in (ROOT / top).glob("**/__init__.py")
    }
    missing = sorted(p for p in on_disk | {"hullhunter"} if p not in pyproject["packages"])
    assert not missing, f"packages missing from [tool.setuptools] packages: {missing}"
    assert set(pyproject["packages"]) == set(folders)
    patterns = pyproject["package-data"].get("*", []) + pyproject["package-data"].get(
        "hullhunter.models", []
    )
    prior_files = [p.relative_to(ROOT / "models").as_posix() for p in BUILTIN_PRIOR.iterdir()]
    assert {"card.json", "structural.pt", "compositional.pt"} <= {Path(f).name for f in prior_files}
    unshipped = [f for f in prior_files if not any(fnmatch(f, pat) for pat in patterns)]
    assert not unshipped, f"prior files not in package-data: {unshipped}"


@pytest.mark.slow
def test_builtin_prior_card_and_held_out_accuracy():
    prior = load_prior()
    card = prior.card
    assert prior.oracle == "chgnet" and prior.energy_scale == "MP2020-compatible"
    assert card["labels"]["method"] == "single point"
    assert (
        card["split"]["n_train_structures"] + card["split"]["n_test_structures"]
        == (card["counts"]["labelled"])
    )
    assert {"data", "code"} <= set(card["licence"])
    assert prior.structural.config.embed_dim == GNoMEConfig.small().embed_dim
    assert prior.compositional is not None
    # the shipped weights reproduce the card's held-out error on its own labels
    samples, _ = gather_samples(max_atoms=80)
    labelled = with_references(load_labels(BUILTIN_PRIOR / LABELS_FILE, samples))[0].samples
    is_train = composition_hash_split([s.structure.composition for s in labelled])
    held_out = [
        s
        for s, train in zip(labelled, is_train, strict=True)
        if not train and not s.structure.composition.is_element
    ][:150]
    predicted = prior.structural.predict([s.structure for s in held_out], tta=False)
    error = np.abs(predicted.energy_per_atom - [s.energy_per_atom for s in held_out])
    assert np.mean(error) < 2 * card["metrics"]["structural"]["test_mae"]
    assert np.mean(error) < 0.25


@pytest.fixture
def other_prior(tmp_path) -> Path:
    """A copy of the shipped prior whose card can be edited."""
    folder = tmp_path / "prior"
    shutil.copytree(BUILTIN_PRIOR, folder)
    return folder


def _edit_card(folder: Path, **labels: str) -> None:
    card = json.loads((folder / "card.json").read_text())
    card["labels"].update(labels)
    (folder / "card.json").write_text(json.dumps(card))


def test_a_prior_from_another_oracle_or_scale_is_refused_in_one_line(other_prior):
    small = GNoMEConfig.small()
    chgnet = load_prior(other_prior)
    assert prior_mismatch(chgnet, "chgnet", small) is None
    assert prior_mismatch(chgnet, "vasp", small) is None  # fine-tuned on the VASP seeds
    # CP2K's uncorrected scale differs, but a CHGNet prior is fine-tuned on its seeds first
    assert prior_mismatch(chgnet, "cp2k", small, "CP2K PBE") is None
    refused = prior_mismatch(chgnet, "sevennet", small)
    assert "labelled by 'chgnet'" in refused and "\n" not in refused
    assert "embed_dim" in prior_mismatch(chgnet, "chgnet", GNoMEConfig())
    _edit_card(other_prior, oracle="sevennet")
    assert "'sevennet'" in prior_mismatch(load_prior(other_prior), "vasp", small)
    _edit_card(other_prior, oracle="chgnet", energy_scale="raw PBE")
    assert "energy scale" in prior_mismatch(load_prior(other_prior), "chgnet", small)
    _edit_card(other_prior, oracle="cp2k", energy_scale="CP2K PBE")
    assert prior_mismatch(load_prior(other_prior), "cp2k", small, "CP2K PBE") is None
    assert "energy scale" in prior_mismatch(load_prior(other_prior), "vasp", small)
    with pytest.raises(ValueError, match="not a prior folder"):
        load_prior(other_prior / "structural.pt")
