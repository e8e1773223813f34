"""The CHGNet oracle against CHGNet called directly, on real structures shipped with pymatgen;
lockstep batches against one relaxation after another."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources import files
from importlib.util import find_spec

import numpy as np
import pytest
import torch
from chgnet.model import CHGNet, StructOptimizer
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from hullhunter.workflows.oracles import (
    ForceFieldOracle,
    OracleContext,
    OracleResult,
    build_oracle,
    get_oracle,
)
from hullhunter.workflows.oracles.forcefield import load_chgnet
from hullhunter.workflows.oracles.forcefield_batch import CHGNetEvaluator, ServedCalculator

REAL_STRUCTURES = ("Li2O", "Si", "CsCl", "SrTiO3")


def real_structure(name: str, seed: int) -> Structure:
    """A pymatgen-shipped MP structure, strained and rattled so the relaxation has work to do."""
    structure = Structure.from_file(files("pymatgen.util.structures") / f"{name}.json")
    rng = np.random.default_rng(seed)
    structure.apply_strain(0.03)
    structure.perturb(0.05, min_distance=0.02, seed=int(rng.integers(1000)))
    return structure


@pytest.fixture(scope="module")
def batch() -> list[Structure]:
    return [real_structure(name, seed) for seed, name in enumerate(REAL_STRUCTURES)]


@pytest.fixture(scope="module")
def oracle() -> ForceFieldOracle:
    return ForceFieldOracle("chgnet", fmax=0.05, max_steps=300, threads=1)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """CHGNet called directly runs with one thread too (an oversubscribed CPU crawls)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_batch_energies_match_chgnet_called_directly(
    oracle: ForceFieldOracle, batch: list[Structure]
) -> None:
    assert oracle.batched
    seen: list[str] = []
    results = oracle.relax(batch, REAL_STRUCTURES, on_result=lambda r: seen.append(r.candidate_id))
    assert [r.candidate_id for r in results] == list(REAL_STRUCTURES)
    assert sorted(seen) == sorted(REAL_STRUCTURES)
    steps = {r.candidate_id: r.n_steps for r in results}
    assert [steps[i] for i in seen] == sorted(steps.values())  # reported as each finishes
    model = CHGNet.load(verbose=False)
    direct = StructOptimizer(model=model, optimizer_class="FIRE")
    for structure, result in zip(batch, results, strict=True):
        assert result.ok, result.error
        assert result.converged
        assert 0 < result.n_steps < 300
        relaxed = direct.relax(structure, fmax=0.05, steps=300, relax_cell=True, verbose=False)
        direct_energy = relaxed["trajectory"].energies[-1] / len(structure)
        assert result.energy_per_atom == pytest.approx(direct_energy, abs=0.003)
        on_our_structure = float(model.predict_structure(result.structure)["e"])
        assert result.energy_per_atom == pytest.approx(on_our_structure, abs=0.001)
        assert result.formula == structure.composition.reduced_formula
        assert result.oracle == "chgnet"
        assert "0.3.0" in result.oracle_version


@pytest.mark.slow
def test_lockstep_batch_equals_one_at_a_time_with_one_model_call_per_step(
    batch: list[Structure],
) -> None:
    batched = ForceFieldOracle("chgnet", fmax=0.05, max_steps=300, threads=1, batch_size=4)
    sequential = ForceFieldOracle("chgnet", fmax=0.05, max_steps=300, threads=1, batch_size=1)
    together = batched.relax(batch, REAL_STRUCTURES)
    alone = sequential.relax(batch, REAL_STRUCTURES)
    for a, b in zip(together, alone, strict=True):
        assert a.ok and b.ok and a.converged and b.converged
        assert a.energy_per_atom == pytest.approx(b.energy_per_atom, abs=0.001)
        assert abs(a.n_steps - b.n_steps) <= 2
        assert len(a.frames) == a.n_steps + 1
        np.testing.assert_allclose(a.structure.lattice.abc, b.structure.lattice.abc, atol=0.01)
    assert batched.evaluator.forward_passes == max(r.n_steps for r in together) + 1
    assert sequential.evaluator.forward_passes == sum(r.n_steps + 1 for r in alone)


def test_served_labels_are_used_only_for_the_state_they_belong_to() -> None:
    evaluator = CHGNetEvaluator(load_chgnet(None, "cpu"))
    structure = real_structure("CsCl", 9)
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = ServedCalculator(evaluator)
    (labels,) = evaluator([atoms])
    atoms.calc.serve(atoms, labels)
    passes = evaluator.forward_passes
    np.testing.assert_array_equal(atoms.get_forces(), labels["forces"])
    assert evaluator.forward_passes == passes
    atoms.positions[0] += 0.05
    moved = atoms.get_potential_energy()
    assert evaluator.forward_passes == passes + 1
    direct = CHGNet.load(verbose=False).predict_structure(AseAtomsAdaptor.get_structure(atoms))
    assert moved / len(atoms) == pytest.approx(float(direct["e"]), abs=1e-4)
    assert moved != pytest.approx(labels["energy"], abs=1e-6)


def test_step_limit_gives_unconverged_result_with_energy(oracle: ForceFieldOracle) -> None:
    strained = real_structure("SrTiO3", 7)
    strained.apply_strain(0.08)
    limited = ForceFieldOracle("chgnet", fmax=0.01, max_steps=2, threads=1)
    (result,) = limited.relax([strained], ["sto"])
    assert result.ok
    assert not result.converged
    assert result.n_steps == 2
    assert result.energy_per_atom < -5.0
    assert result.energy == pytest.approx(result.energy_per_atom * len(strained))


def test_every_step_is_recorded_with_chgnet_labels(oracle: ForceFieldOracle) -> None:
    strained = real_structure("Li2O", 11)
    limited = ForceFieldOracle("chgnet", fmax=0.01, max_steps=4, threads=1)
    (result,) = limited.relax([strained], ["li2o"])
    assert [frame.step for frame in result.frames] == list(range(result.n_steps + 1))
    assert result.frames[-1].energy_per_atom == pytest.approx(result.energy_per_atom, abs=1e-6)
    first = result.frames[0]
    np.testing.assert_allclose(first.structure.cart_coords, strained.cart_coords, atol=1e-8)
    prediction = CHGNet.load(verbose=False).predict_structure(strained, task="efs")
    np.testing.assert_allclose(first.forces, prediction["f"], atol=2e-3)
    assert first.energy_per_atom == pytest.approx(float(prediction["e"]), abs=2e-3)
    assert "frames" not in result.as_dict()
    unrecorded = ForceFieldOracle("chgnet", max_steps=2, threads=1, record_frames=False)
    assert unrecorded.relax([strained], ["li2o"])[0].frames == []


@pytest.mark.parametrize("batch_size", [1, 8])
def test_bad_structures_fail_alone_and_the_batch_continues(batch_size: int) -> None:
    oracle = ForceFieldOracle("chgnet", fmax=0.05, max_steps=300, threads=1, batch_size=batch_size)
    good = real_structure("CsCl", 3)
    crowded = good.copy()
    crowded.append("Cs", crowded[0].coords + np.array([0.2, 0.0, 0.0]), coords_are_cartesian=True)
    beyond_chgnet = Structure(Lattice.cubic(3.5), ["Am"], [[0, 0, 0]])
    isolated = Structure(Lattice.cubic(20.0), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    ids = ["crowded", "am", "isolated", "cscl"]
    seen: list[str] = []
    results = oracle.relax(
        [crowded, beyond_chgnet, isolated, good],
        ids,
        on_result=lambda r: seen.append(r.candidate_id),
    )
    assert [r.candidate_id for r in results] == ids
    assert sorted(seen) == sorted(ids)
    assert "closer than 0.5" in results[0].error
    assert results[1].error == "element(s) Am not covered by this oracle"
    assert "isolated atom" in results[2].error
    assert not any(r.ok for r in results[:3])
    assert results[3].ok and results[3].converged


def test_campaign_section_builds_the_oracle_on_a_worker(tmp_path, monkeypatch) -> None:
    from hullhunter.campaign_config import oracle_section
    from hullhunter.settings import load_settings

    monkeypatch.setenv("HULLHUNTER_TORCH_THREADS", "1")
    section = oracle_section({"name": "chgnet", "fmax": 0.1, "max_steps": 120})
    context = OracleContext(run_dir=tmp_path, site=load_settings())
    oracle = build_oracle(section, context)
    assert (oracle.fmax, oracle.max_steps, oracle.threads) == (0.1, 120, 1)
    (result,) = oracle.relax([real_structure("CsCl", 5)], ["cscl"])
    assert OracleResult.from_dict(result.as_dict()).candidate_id == "cscl"
    assert result.ok and result.converged
    assert result.to_entry().entry_id == "cscl"


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'LBFGS'"):
        get_oracle("chgnet", optimizer="LBFGS")
    with pytest.raises(ValueError, match="fmax > 0"):
        get_oracle("chgnet", fmax=0)
    with pytest.raises(ValueError, match="batch_size >= 1"):
        get_oracle("chgnet", batch_size=0)


@pytest.mark.skipif(find_spec("sevenn") is not None, reason="sevenn is installed here")
def test_sevennet_missing_says_how_to_install() -> None:
    with pytest.raises(ImportError, match=r"pip install 'hullhunter\[sevennet\]'"):
        get_oracle("sevennet")
