"""The CHGNet oracle against CHGNet called directly, on real structures shipped with pymatgen."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources import files
from importlib.util import find_spec

import numpy as np
import pytest
import torch
from chgnet.model import CHGNet, StructOptimizer
from jobflow import run_locally
from pymatgen.core import Lattice, Structure

from hullhunter.workflows.oracles import ForceFieldOracle, OracleResult, get_oracle, relax_batch

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
    seen: list[str] = []
    results = oracle.relax(batch, REAL_STRUCTURES, on_result=lambda r: seen.append(r.candidate_id))
    assert seen == list(REAL_STRUCTURES)
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


def test_bad_structures_fail_alone_and_the_batch_continues(oracle: ForceFieldOracle) -> None:
    good = real_structure("CsCl", 3)
    crowded = good.copy()
    crowded.append("Cs", crowded[0].coords + np.array([0.2, 0.0, 0.0]), coords_are_cartesian=True)
    beyond_chgnet = Structure(Lattice.cubic(3.5), ["Am"], [[0, 0, 0]])
    results = oracle.relax([crowded, beyond_chgnet, good], ["crowded", "am", "cscl"])
    assert [r.candidate_id for r in results] == ["crowded", "am", "cscl"]
    assert "closer than 0.5" in results[0].error
    assert results[1].error == "element(s) Am not covered by this oracle"
    assert not results[0].ok and not results[1].ok
    assert results[2].ok and results[2].converged


def test_relax_batch_job_returns_result_dicts(oracle: ForceFieldOracle) -> None:
    structure = real_structure("CsCl", 5)
    job = relax_batch([structure.as_dict()], ["cscl"], "chgnet", {"fmax": 0.1, "threads": 1})
    responses = run_locally(job, log=False, ensure_success=True)
    (output,) = responses[job.uuid][1].output
    result = OracleResult.from_dict(output)
    assert result.candidate_id == "cscl"
    assert result.ok and result.converged
    assert result.to_entry().entry_id == "cscl"


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'LBFGS'"):
        get_oracle("chgnet", optimizer="LBFGS")
    with pytest.raises(ValueError, match="fmax > 0"):
        get_oracle("chgnet", fmax=0)


@pytest.mark.skipif(find_spec("sevenn") is not None, reason="sevenn is installed here")
def test_sevennet_missing_says_how_to_install() -> None:
    with pytest.raises(ImportError, match=r"pip install 'hullhunter\[sevennet\]'"):
        get_oracle("sevennet")
