"""`hullhunter models pretrain` on a tiny folder, and campaigns that start from the prior."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from pymatgen.core import Lattice, Structure

from hullhunter import models
from hullhunter.campaign_config import parse_config
from hullhunter.documents import Calculation, Campaign, ModelVersion
from hullhunter.generators import load_seeds
from hullhunter.models.prior import BUILTIN_PRIOR
from hullhunter.settings import get_settings
from hullhunter.workflows import pretrain
from hullhunter.workflows.oracles import OracleContext
from hullhunter.workflows.round import generate, hull, relax, retrain, screen


def fcc(symbols: list[str], a: float) -> Structure:
    """Conventional fcc cell (4 sites) with ``symbols`` on its sites in order."""
    sites = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    return Structure(Lattice.cubic(a), symbols, sites)


def hullhunter(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hullhunter", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    """Cu-Ag-Au crystals as CIF, POSCAR and JSON, and five that cannot be labelled."""
    folder = tmp_path / "structures"
    folder.mkdir()
    for symbol, a in (("Cu", 3.61), ("Ag", 4.09), ("Au", 4.08)):
        fcc([symbol] * 4, a).to(filename=str(folder / f"{symbol}.cif"))
    fcc(["Au", "Cu", "Cu", "Cu"], 3.75).to(filename=str(folder / "POSCAR_Cu3Au"), fmt="poscar")
    alloys = [fcc(["Au", "Ag", "Ag", "Ag"], 4.09), fcc(["Au", "Au", "Cu", "Cu"], 3.85)]
    alloys += [fcc(["Ag", "Cu", "Cu", "Cu"], 3.75), fcc(["Ag", "Ag", "Au", "Cu"], 4.0)]
    alloys += [fcc(["Cu", "Au", "Au", "Au"], 4.0), fcc(["Ag", "Ag", "Cu", "Cu"], 3.9)]
    (folder / "alloys.json").write_text(json.dumps([s.as_dict() for s in alloys]))
    disordered = Structure(Lattice.cubic(3.8), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    disordered.to(filename=str(folder / "disordered.cif"))
    lonely = Structure(Lattice.cubic(15.0), ["Cu"], [[0, 0, 0]])  # no neighbour in reach
    (folder / "lonely.json").write_text(json.dumps(lonely.as_dict()))
    fcc(["Cf"] * 4, 5.0).to(filename=str(folder / "californium.cif"))  # beyond CHGNet
    crushed = Structure(Lattice.cubic(4.0), ["Cu", "Au"], [[0, 0, 0], [0.05, 0, 0]])
    (folder / "crushed.json").write_text(json.dumps(crushed.as_dict()))
    (folder / "broken.cif").write_text("data_broken\n_cell_length_a nonsense\n")
    return folder


@pytest.mark.slow
def test_pretrain_reports_unlabellable_structures_and_finishes(tiny_folder, tmp_path):
    out = tmp_path / "prior"
    result = hullhunter(
        "models", "pretrain", "--no-shipped", "--structures", str(tiny_folder),
        "--out", str(out), "--epochs", "3", "--n-models", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    printed = " ".join(result.stdout.split())
    assert "disordered" in printed and "not covered by this oracle" in printed
    assert "isolated atom" in printed and "closer than" in printed and "broken.cif" in printed
    card = json.loads((out / "card.json").read_text())
    assert card["counts"]["labelled"] == 10 and card["counts"]["skipped"] == 5
    assert card["labels"]["oracle"] == "chgnet" and card["labels"]["method"] == "single point"
    assert set(card["labels"]["elemental_references"]) == {"Ag", "Au", "Cu"}
    assert card["model"]["preset_config"]["loss"] == "huber"  # pretraining's default
    prior = models.prior.load_prior(out)
    assert prior.structural.predict([fcc(["Au", "Cu", "Cu", "Cu"], 3.75)]).energy_per_atom < 0


def test_pretrain_on_energies_given_in_the_data(tmp_path):
    records = [
        {"structure": fcc([el] * 4, a).as_dict(), "energy_per_atom": e}
        for el, a, e in (("Cu", 3.61, -4.1), ("Au", 4.08, -3.2))
    ]
    records += [
        {"structure": fcc(["Au", "Cu", "Cu", "Cu"], 3.75).as_dict(), "energy": 4 * -3.95},
        {"structure": fcc(["Au", "Au", "Cu", "Cu"], 3.85).as_dict()},  # no energy
    ]
    (tmp_path / "data.json").write_text(json.dumps(records))
    samples, skipped = pretrain.gather_samples(shipped=False, extra=tmp_path / "data.json")
    labelled = pretrain.label_from_data(samples, oracle="vasp")
    assert [s.energy_per_atom for s in labelled.samples] == [-4.1, -3.2, -3.95]
    assert not skipped and "no energy in the data" in labelled.skipped[0].reason
    usable, references = pretrain.with_references(labelled)
    assert references == {"Cu": -4.1, "Au": -3.2} and len(usable.samples) == 3


def test_submit_refuses_a_prior_from_another_oracle_in_one_line(tmp_path):
    folder = tmp_path / "sevennet-prior"
    folder.mkdir()
    card = json.loads((BUILTIN_PRIOR / "card.json").read_text())
    card["labels"]["oracle"] = "sevennet"
    (folder / "card.json").write_text(json.dumps(card))
    for name in ("structural.pt", "compositional.pt"):
        (folder / name).write_bytes((BUILTIN_PRIOR / name).read_bytes())
    campaign = {
        "name": "mismatch",
        "chemical_space": {"systems": ["Ag-Au-Cu"]},
        "model": {"prior": str(folder)},
    }
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(campaign))
    result = hullhunter("campaign", "submit", str(path))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "labelled by 'sevennet'" in result.stderr and "chgnet" in result.stderr


@pytest.mark.slow
def test_round_zero_model_starts_from_the_prior(database, monkeypatch):
    monkeypatch.setenv("HULLHUNTER_TORCH_THREADS", "1")
    config = parse_config(
        {
            "name": "primed",
            "chemical_space": {"systems": ["Mg-O"]},
            "seeds": {"max_seeds": 6, "elemental_polymorphs": 1},
            "model": {"n_models": 2, "epochs": 30},
            "oracle": {"fmax": 0.2, "max_steps": 40},
        }
    )
    Campaign(name="primed", config=config.model_dump(mode="json")).save()
    generate.generate("primed", 0, config)
    seeds = screen.screen("primed", 0, config)
    context = OracleContext.for_round(get_settings(), "primed", 0)
    relax.relax("primed", 0, seeds, config.oracle, context)
    placed, _ = hull.update_hull("primed", 0)
    elemental = {el: e.energy_per_atom for el, e in placed.elemental_references.items()}
    network = retrain.model_config(config, torch_threads=1)
    assert retrain.retrain("primed", 0, config, elemental, network) == {"structural": 1}

    version = ModelVersion.objects.get(campaign="primed", kind="structural", version=1)
    assert version.metrics["warm_start"] and version.metrics["prior"]["oracle"] == "chgnet"
    assert version.metrics["prior"]["path"] == str(BUILTIN_PRIOR)
    # on every shipped Mg-O crystal, the prior-started model is far better than the same
    # training from scratch on the campaign's few seeds
    calculations = Calculation.objects(campaign="primed", state="completed")
    structures = [c.get_structure() for c in calculations]
    energies = np.array([c.energy_per_atom for c in calculations])
    scratch, _ = models.train_ensemble(structures, energies, elemental, network, n_models=2)
    primed = retrain.latest_ensemble("primed", "structural")
    samples = [pretrain.Sample(s.id, s.structure, "seeds") for s in load_seeds(None, ["Mg", "O"])]
    known = pretrain.label_with_chgnet(samples, progress=False).samples
    crystals = [s.structure for s in known]
    labels = np.array([s.energy_per_atom for s in known])
    primed_error = np.abs(primed.predict(crystals, tta=False).energy_per_atom - labels).mean()
    scratch_error = np.abs(scratch.predict(crystals, tta=False).energy_per_atom - labels).mean()
    assert primed_error < 0.2 and scratch_error > 2 * primed_error

    # the next version keeps the lineage's prior in its metrics
    assert retrain.retrain("primed", 1, config, elemental, network) == {"structural": 2}
    second = ModelVersion.objects.get(campaign="primed", kind="structural", version=2)
    assert second.metrics["prior"] == version.metrics["prior"]


def test_builtin_prior_applies_where_it_fits():
    def prior_of(**model):
        config = parse_config(
            {"name": "a", "chemical_space": {"systems": ["Li-O"]}, "model": model}
        )
        return retrain.campaign_prior(config, retrain.model_config(config))

    assert prior_of().oracle == "chgnet"
    assert prior_of(preset="gnome") is None  # the shipped prior is the small preset
    assert prior_of(prior="none") is None
    with pytest.raises(ValueError, match="not a prior folder"):
        prior_of(prior="/nonexistent/prior")


@pytest.mark.slow
def test_generated_candidates_relaxed_for_the_prior_resume_and_train(tmp_path):
    """`models relax-generated`'s work: a sample of the generators' products of one system,
    relaxed, written after the system; a rerun relaxes nothing again, a rerun with other
    oracle settings is refused; the prior then learns each candidate as generated and as
    relaxed, with its relaxed energy, and its card says so."""
    from hullhunter.workflows import pretrain_generated as pg
    from hullhunter.workflows.oracles import get_oracle

    world = load_seeds(None, ["Mg", "Al", "O"])
    path = tmp_path / pg.GENERATED_FILE
    oracle = get_oracle("chgnet", fmax=0.2, max_steps=3)
    payload = pg.relax_generated(path, oracle, ["Mg-Al-O"], per_generator=1, known_world=world)
    records = payload["records"]
    assert 1 <= len(records) <= len(pg.GENERATORS)
    assert len({r["generator"] for r in records}) == len(records)  # one per generator
    for record in records:
        elements = {el.symbol for el in Structure.from_dict(record["generated"]).composition}
        assert elements == {"Mg", "Al", "O"} and record["energy_per_atom"] is not None
    assert payload["systems"] == {"Mg-Al-O": {"candidates": len(records), "relaxed": len(records)}}
    again = pg.relax_generated(path, oracle, ["Mg-Al-O"], 1, world, report=pytest.fail)
    assert [r["id"] for r in again["records"]] == [r["id"] for r in records]
    before = path.read_bytes()
    with pytest.raises(ValueError, match="relax with the same settings") as refused:
        pg.relax_generated(path, get_oracle("chgnet", fmax=0.2, max_steps=4), ["Mg-Al-O"], 1, world)
    assert "\n" not in str(refused.value) and path.read_bytes() == before

    samples = pg.generated_samples(pg.read_generated(path))
    assert len(samples) == 2 * len(records)
    assert [s.energy_per_atom for s in samples[:2]] == [records[0]["energy_per_atom"]] * 2
    crystals = [pretrain.Sample(s.id, s.structure, "seeds") for s in world]
    labelled = pretrain.label_with_chgnet(crystals, progress=False)
    labelled.samples += samples
    config = models.GNoMEConfig.small(
        embed_dim=16, mlp_hidden=(16,), epochs=2, progress=False, torch_threads=1
    )
    card = pretrain.pretrain(
        labelled, tmp_path / "prior", config, n_models=1, compositional=False,
        generated=pg.summary(pg.read_generated(path)),
    )  # fmt: skip
    assert card["data"]["sources"][pretrain.GENERATED_SOURCE] == len(samples)
    assert card["data"]["generated"]["systems"] == payload["systems"]
    assert card["data"]["generated"]["labels"]["max_steps"] == 3
    by_source = card["metrics"]["structural"]["test_mae_by_source"]
    assert set(by_source) <= {"seeds", pretrain.GENERATED_SOURCE} and by_source
