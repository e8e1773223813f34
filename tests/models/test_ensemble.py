"""Ensemble predictions: invariances, supercells, IQR, volume TTA, save/load, registry."""

import json

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from hullhunter.models import Ensemble, GNoMEConfig, load_ensemble
from hullhunter.models.ensemble import build_network
from hullhunter.models.networks import member_state_dict, stack_state_dicts


def random_ensemble(elemental_energies, n_models=3, seed=0, **overrides) -> Ensemble:
    config = GNoMEConfig.small(
        **{"embed_dim": 32, "mlp_hidden": (32,), "torch_threads": 1, **overrides}
    )
    torch.manual_seed(seed)
    return Ensemble(build_network(config, n_models, False, 12.0), config, elemental_energies)


def rotated(structure: Structure, seed: int) -> Structure:
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return Structure(
        Lattice(structure.lattice.matrix @ rotation.T),
        structure.species,
        structure.cart_coords @ rotation.T,
        coords_are_cartesian=True,
    )


def test_rotation_translation_permutation_invariance(structures, elemental_energies):
    ensemble = random_ensemble(elemental_energies)
    reference = ensemble.predict(structures).members
    moved = []
    for k, structure in enumerate(structures):
        copy = rotated(structure, seed=k)
        copy.translate_sites(range(len(copy)), [0.31, -0.17, 0.05])
        order = np.random.default_rng(k).permutation(len(copy))
        moved.append(Structure.from_sites([copy[i] for i in order]))
    assert np.allclose(ensemble.predict(moved).members, reference, atol=1e-5)
    assert np.ptp(reference) > 1e-3  # the structures really get different energies


def test_supercell_gives_the_same_energy_per_atom(structures, elemental_energies):
    ensemble = random_ensemble(elemental_energies)
    cells = structures[:4]
    supercells = [s.make_supercell([2, 1, 1], in_place=False) for s in cells]
    supercells += [cells[1].make_supercell([2, 2, 2], in_place=False)]
    for tta in (False, True):
        base = ensemble.predict([*cells, cells[1]], tta=tta).members
        assert np.allclose(ensemble.predict(supercells, tta=tta).members, base, atol=1e-5)


def test_median_and_iqr_over_members(structures, elemental_energies):
    ensemble = random_ensemble(elemental_energies, n_models=4)
    prediction = ensemble.predict(structures[:5])
    q1, q3 = np.percentile(prediction.members, [25, 75], axis=1)
    assert prediction.members.shape == (5, 4)
    assert np.allclose(prediction.energy_per_atom, np.median(prediction.members, axis=1))
    assert np.allclose(prediction.iqr, q3 - q1)
    assert np.all(prediction.iqr > 0)


def test_iqr_is_zero_for_identical_members(structures, elemental_energies):
    single = random_ensemble(elemental_energies, n_models=1)
    state = single.network.state_dict()
    clones = build_network(single.config, 5, False, 12.0)
    clones.load_state_dict(stack_state_dicts([member_state_dict(state, 0)] * 5))
    ensemble = Ensemble(clones, single.config, elemental_energies)
    prediction = ensemble.predict(structures)
    assert np.all(prediction.iqr == 0)
    assert np.allclose(prediction.energy_per_atom, single.predict(structures).energy_per_atom)


def test_volume_tta_is_the_minimum_over_scaled_copies(structures, elemental_energies):
    ensemble = random_ensemble(elemental_energies)
    sample = structures[:6]
    tta = ensemble.predict(sample, tta=True).members
    volumes = np.linspace(0.8, 1.2, 20)
    explicit = np.stack(
        [
            ensemble.predict(
                [s.copy().scale_lattice(s.volume * v) for s in sample], tta=False
            ).members
            for v in volumes
        ]
    )
    assert np.allclose(tta, explicit.min(axis=0), atol=1e-5)
    # the minimum is not always at the same end of the range: the test has teeth
    assert len(set(explicit.argmin(axis=0).ravel().tolist())) > 1


def test_isolated_atoms_get_finite_predictions(structures, elemental_energies):
    lonely = Structure(Lattice.cubic(12.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    prediction = random_ensemble(elemental_energies).predict([lonely, structures[0]])
    assert np.all(np.isfinite(prediction.members))


def test_bad_input_is_a_clear_error(structures, elemental_energies):
    ensemble = random_ensemble(elemental_energies)
    with pytest.raises(ValueError, match="empty batch"):
        ensemble.predict([])
    uranium = Structure(Lattice.cubic(3.0), ["U"], [[0, 0, 0]])
    with pytest.raises(ValueError, match="no elemental energy for U"):
        ensemble.predict([structures[0], uranium])


def test_save_load_round_trips_predictions_exactly(tmp_path, structures, elemental_energies):
    ensemble = random_ensemble(elemental_energies)
    ensemble.metadata = {"metrics": {"test_mae": 0.05}}
    path = ensemble.save(tmp_path / "model.pt")
    loaded = Ensemble.load(path)
    assert np.array_equal(loaded.predict(structures).members, ensemble.predict(structures).members)
    metadata = json.loads(path.with_suffix(".json").read_text())
    assert metadata["config"]["embed_dim"] == 32
    assert metadata["elemental_energies"] == elemental_energies
    assert metadata["metadata"]["metrics"]["test_mae"] == 0.05
    raw = torch.load(path, weights_only=True)  # plain tensors and dicts only
    assert raw["kind"] == "structural"
    assert isinstance(load_ensemble(path), Ensemble)


def test_model_store_versions_in_gridfs(database, structures, elemental_energies):
    from hullhunter.documents import ModelVersion
    from hullhunter.workflows.model_store import (
        latest_ensemble,
        model_weights,
        save_ensemble,
        save_model_version,
    )

    assert latest_ensemble("store", "structural") is None
    first = random_ensemble(elemental_energies, seed=1)
    second = random_ensemble(elemental_energies, seed=2)
    assert save_ensemble("store", 0, first, {"test_mae": 0.09}, n_train=10) == 1
    assert save_ensemble("store", 1, second, {"test_mae": np.float64(0.07)}, n_train=12) == 2
    rows = ModelVersion.objects(campaign="store", kind="structural").order_by("version")
    assert [(r.version, r.round, r.n_train) for r in rows] == [(1, 0, 10), (2, 1, 12)]
    assert [r.metrics["test_mae"] for r in rows] == [0.09, 0.07]
    latest = latest_ensemble("store", "structural").predict(structures[:3]).members
    assert np.array_equal(latest, second.predict(structures[:3]).members)
    # potentials share the store and the document, with their own version numbers
    assert save_model_version("store", "potential", b"weights", n_train=3, metrics={},
                              hyperparameters={}) == 1  # fmt: skip
    assert model_weights("store", "potential") == b"weights"
    assert model_weights("store", "potential", version=9) is None
