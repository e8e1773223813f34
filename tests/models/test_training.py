"""Training: overfitting, bad data, determinism, warm starts, splits, scaling curve."""

import hashlib

import numpy as np
import pytest
import torch
from pymatgen.core import Composition

from hullhunter.models import (
    CompositionEnsemble,
    Ensemble,
    composition_hash_split,
    scaling_curve,
    train_composition_ensemble,
    train_ensemble,
)


@pytest.fixture
def energies(structures) -> np.ndarray:
    """Arbitrary energies per atom spread over 3 eV: nothing a model could know a priori."""
    return np.random.default_rng(0).uniform(-6.0, -3.0, len(structures))


def all_train(config, **changes):
    return type(config)(**{**config.__dict__, "test_split": False, "val_fraction": 0.0, **changes})


def test_tiny_model_overfits_a_tiny_dataset(structures, energies, elemental_energies, tiny_config):
    config = all_train(
        tiny_config, epochs=120, batch_size=len(structures), learning_rate=3e-3, patience=1000
    )
    ensemble, metrics = train_ensemble(structures, energies, elemental_energies, config, 1)
    assert metrics["train_mae"] < 0.005  # eV/atom, against a 0.9 eV/atom spread
    predicted = ensemble.predict(structures, tta=False).energy_per_atom
    assert np.abs(predicted - energies).max() < 0.02


def test_nan_energies_are_counted_skips(structures, energies, elemental_energies, tiny_config):
    energies = energies.copy()
    energies[3] = np.nan
    with pytest.warns(UserWarning, match="skipped 1 training example"):
        _, metrics = train_ensemble(
            structures, energies, elemental_energies, all_train(tiny_config), 1
        )
    assert metrics["n_skipped_nonfinite"] == 1
    assert metrics["n_train"] == len(structures) - 1
    assert np.isfinite(metrics["train_mae"])


def test_bad_training_input_is_a_clear_error(structures, energies, elemental_energies, tiny_config):
    without_oxygen = {k: v for k, v in elemental_energies.items() if k != "O"}
    with pytest.raises(ValueError, match="no elemental energy for O"):
        train_ensemble(structures, energies, without_oxygen, tiny_config, 1)
    with pytest.raises(ValueError, match="one energy each"):
        train_ensemble(structures, energies[:-1], elemental_energies, tiny_config, 1)
    with (
        pytest.warns(UserWarning, match="skipped 12"),
        pytest.raises(ValueError, match="no training example with a finite energy"),
    ):
        train_ensemble(structures, [np.nan] * len(structures), elemental_energies, tiny_config, 1)


@pytest.mark.parametrize("joint", [True, False])
def test_training_is_deterministic_for_a_seed(
    structures, energies, elemental_energies, tiny_config, joint
):
    config = all_train(tiny_config, joint_members=joint)
    runs = [train_ensemble(structures, energies, elemental_energies, config, 2)[0] for _ in "ab"]
    first, second = (run.predict(structures[:4]).members for run in runs)
    assert np.array_equal(first, second)
    assert np.all(np.abs(first[:, 0] - first[:, 1]) > 1e-6)  # members differ
    other_seed = all_train(tiny_config, seed=5, joint_members=joint)
    other = train_ensemble(structures, energies, elemental_energies, other_seed, 2)[0]
    assert not np.allclose(other.predict(structures[:4]).members, first)


def test_warm_start_starts_from_the_previous_members(
    structures, energies, elemental_energies, tiny_config
):
    config = all_train(tiny_config)
    previous, _ = train_ensemble(structures, energies, elemental_energies, config, 2)
    frozen = all_train(tiny_config, learning_rate=0.0, schedule="constant")
    warm, metrics = train_ensemble(
        structures, energies, elemental_energies, frozen, 2, init_from=previous
    )
    assert metrics["warm_start"]
    before = previous.predict(structures).members
    assert np.array_equal(warm.predict(structures).members, before)
    wider = all_train(tiny_config, embed_dim=24)
    with pytest.raises(ValueError, match="same architecture"):
        train_ensemble(structures, energies, elemental_energies, wider, 2, init_from=previous)


def test_composition_hash_split_follows_gnome():
    formulas = ["NaCl", "Fe2O3", "Fe4O6", "LiFePO4", "SrTiO3"]
    split = composition_hash_split(formulas)
    expected = [
        int(hashlib.md5(f.encode()).hexdigest(), 16) % 100 < 85
        for f in ["NaCl", "Fe2O3", "Fe2O3", "LiFePO4", "SrTiO3"]
    ]
    assert split.tolist() == expected
    many = [f"Li{a}Mn{b}O{c}" for a in range(1, 9) for b in range(1, 9) for c in range(1, 9)]
    share = composition_hash_split(many).mean()
    assert 0.80 < share < 0.90


def test_hash_split_keeps_test_compositions_out(
    structures, energies, elemental_energies, tiny_config
):
    _, metrics = train_ensemble(structures, energies, elemental_energies, tiny_config, 1)
    is_train = composition_hash_split([s.composition for s in structures])
    assert metrics["n_test"] == int((~is_train).sum()) > 0
    assert metrics["n_train"] + metrics["n_val"] == int(is_train.sum())
    assert np.isfinite(metrics["test_mae"])


def test_composition_ensemble(tmp_path, structures, energies, elemental_energies, tiny_config):
    compositions = [s.composition for s in structures]
    config = all_train(tiny_config, epochs=150, batch_size=len(structures), learning_rate=3e-3)
    ensemble, metrics = train_composition_ensemble(
        compositions, energies, elemental_energies, config, 2
    )
    assert metrics["train_mae"] < 0.1
    scaled = ensemble.predict(["Fe2O3", Composition("Fe4O6"), "Si"])
    assert scaled.members[0] == pytest.approx(scaled.members[1], abs=1e-6)
    assert np.all(np.isfinite(scaled.members))
    path = ensemble.save(tmp_path / "comp.pt")
    loaded = CompositionEnsemble.load(path)
    assert np.array_equal(
        loaded.predict(compositions).members, ensemble.predict(compositions).members
    )
    with pytest.raises(ValueError, match="compositional ensemble, not structural"):
        Ensemble.load(path)


def test_scaling_curve_returns_a_fitted_power_law(make_rocksalt, tiny_config):
    cations = ["Li", "Na", "K", "Rb", "Cs", "Ag"]
    anions = ["F", "Cl", "Br", "I"]
    structures, energies = [], []
    for i, cation in enumerate(cations):
        for j, anion in enumerate(anions):
            for strain in (0.97, 1.0, 1.03):
                structures.append(make_rocksalt(cation, anion, (4.0 + 0.3 * i + 0.4 * j) * strain))
                energies.append(-3.0 - 0.2 * i + 0.3 * j + 2.0 * (strain - 1.0) ** 2)
    elements = {el: -1.0 for el in cations + anions}
    curve = scaling_curve(
        structures,
        energies,
        elements,
        all_train(tiny_config, test_split=True, val_fraction=0.1),
        fractions=(0.5, 1.0),
    )
    sizes, maes = np.array(curve["train_sizes"]), np.array(curve["test_mae"])
    assert sizes[0] < sizes[1] and np.all(maes > 0)
    fitted = curve["prefactor"] * sizes ** -curve["exponent"]
    assert np.allclose(fitted, maes)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_matches_cpu_predictions(
    structures, energies, elemental_energies, tiny_config
):
    gpu, _ = train_ensemble(
        structures, energies, elemental_energies, all_train(tiny_config, device="cuda"), 1
    )
    on_gpu = gpu.predict(structures).members
    on_cpu = gpu.to("cpu").predict(structures).members
    assert np.allclose(on_gpu, on_cpu, atol=1e-4)
