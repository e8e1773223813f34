"""Round stages (workflows/round/) in-process on the real MongoDB: selection rule, idempotent
reruns, the compositional pipeline."""

from __future__ import annotations

import random

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from hullhunter.campaign_config import parse_config
from hullhunter.documents import Calculation, Campaign, Candidate, ModelVersion, Round
from hullhunter.settings import get_settings
from hullhunter.workflows.oracles import OracleContext
from hullhunter.workflows.round import generate, hull, relax, retrain, screen, selection


def test_selection_keeps_best_per_formula_under_threshold():
    formulas = ["A", "A", "B", "C", "D", "E"]
    decomposition = np.array([0.01, -0.20, 0.03, 0.30, 0.04, 0.50])
    chosen = selection.select_for_oracle(
        formulas, decomposition, places=3, threshold=0.05,
        exploration_fraction=0.0, one_per_composition=True, rng=random.Random(0),
    )  # fmt: skip
    # A's better polymorph, then B and D; C and E are above 50 meV
    assert chosen == [(1, "screened"), (2, "screened"), (4, "screened")]


def test_selection_exploration_draws_from_the_whole_pool():
    """The baseline is a uniform draw from the pool, the screen's favourites included; a draw
    from what the screen rejected would understate it and flatter the screen."""
    formulas = [f"F{i}" for i in range(10)]
    decomposition = np.linspace(-0.1, 0.8, 10)  # only F0 and F1 pass the filter
    explored = []
    for seed in range(100):
        chosen = selection.select_for_oracle(
            formulas, decomposition, places=4, threshold=0.05,
            exploration_fraction=0.5, one_per_composition=True, rng=random.Random(seed),
        )  # fmt: skip
        kinds = dict(chosen)
        assert len(chosen) == len(kinds) <= 4  # no candidate picked twice
        explore = [i for i, kind in chosen if kind == "exploration"]
        screened = [i for i, kind in chosen if kind == "screened"]
        assert len(explore) == 2
        assert screened == [i for i in (0, 1) if i not in explore]  # best undrawn, in order
        explored += explore
    assert set(explored) == set(range(10))  # the filter's picks too, not only its rejects


def test_selection_never_pads_with_filtered_out_candidates():
    chosen = selection.select_for_oracle(
        ["A", "B", "C"], np.array([0.2, 0.3, 0.4]), places=3, threshold=0.05,
        exploration_fraction=0.0, one_per_composition=True, rng=random.Random(0),
    )  # fmt: skip
    assert chosen == []


def test_airss_structures_ranked_by_the_structural_model():
    """AIRSS structures compete on the structural model's score, the best per composition
    (whatever the setting for structural candidates), for at most half of the places;
    structural candidates fill the rest."""
    config = parse_config(
        {
            "name": "rank",
            "pipelines": ["structural", "compositional"],
            "chemical_space": {"systems": ["Ag-Cu"]},
            "screening": {"top_k": 4, "exploration_fraction": 0.0, "one_per_composition": False},
        }
    )
    kinds = (
        [("compositional", "AgCu3")] * 3  # oldest first: c0 is not the best
        + [("compositional", "Ag3Cu")] * 2
        + [("compositional", "AgCu")]
        + [("structural", "Ag2Cu")] * 2
        + [("structural", "AgCu2")]
    )
    scores = [0.04, -0.02, 0.01, 0.03, 0.00, 0.20, -0.01, 0.02, 0.03]
    pool = [
        screen.Scored(f"c{i}", formula, pipeline, score)
        for i, ((pipeline, formula), score) in enumerate(zip(kinds, scores, strict=True))
    ]
    chosen = screen.choose(config, iter(pool), places=4, rng=random.Random(0))
    # AgCu is above the 50 meV filter; then the structural model's best structure of each
    assert chosen[:2] == [("c1", "compositional"), ("c4", "compositional")]
    assert chosen[2:] == [("c6", "screened"), ("c7", "screened")]


def naive_screened(formulas, energies, places, threshold, drawn, one_per_composition):
    """The rule by brute force over the whole pool: best undrawn candidates under the
    threshold (the best of each formula), ties in pool order."""
    order = sorted(range(len(energies)), key=lambda i: (energies[i], i))
    eligible = [i for i in order if energies[i] <= threshold and i not in drawn]
    if one_per_composition:
        best: dict[str, int] = {}
        for i in eligible:
            best.setdefault(formulas[i], i)
        eligible = sorted(best.values(), key=lambda i: (energies[i], i))
    return eligible[:places]


@pytest.mark.parametrize("one_per_composition", [True, False])
@pytest.mark.parametrize("exploration_fraction", [0.0, 0.25, 0.5])
def test_bounded_selection_equals_the_rule_over_the_whole_pool(
    one_per_composition, exploration_fraction
):
    """A pool 100x larger than what the selection keeps: nothing better is ever dropped."""
    rng = np.random.default_rng(7)
    n, places = 20_000, 12
    formulas = [f"F{k}" for k in rng.integers(0, 400, n)]
    energies = np.round(rng.normal(0.1, 0.1, n), 3)  # rounded: ties must keep pool order
    picker = selection.Selection(
        places, 0.05, exploration_fraction, one_per_composition, random.Random(3)
    )
    for i, (formula, energy) in enumerate(zip(formulas, energies, strict=True)):
        picker.offer(formula, float(energy), label=f"c{i}")
    kept = len(picker._overall) + sum(len(v) for v in picker._best.values())
    assert kept <= 400 * (picker.capacity + 1) < n / 5
    assert len(picker._labels) <= kept + picker.capacity
    picks = picker.picks(places)
    drawn = {p.index for p in picks if p.kind == "exploration"}
    assert len(drawn) == round(places * exploration_fraction)
    screened = [p.index for p in picks if p.kind == "screened"]
    assert screened == naive_screened(
        formulas, energies, places - len(drawn), 0.05, drawn, one_per_composition
    )
    assert [picker.label(i) for i in screened] == [f"c{i}" for i in screened]


def test_batches_cover_every_id_once():
    ids = [f"c{i}" for i in range(7)]
    assert screen.batches(ids, 3) == [["c0", "c1", "c2"], ["c3", "c4", "c5"], ["c6"]]


@pytest.mark.slow
def test_seed_round_then_compositional_candidates(database, monkeypatch):
    monkeypatch.setenv("HULLHUNTER_TORCH_THREADS", "1")
    config = parse_config(
        {
            "name": "comp",
            "pipelines": ["structural", "compositional"],
            "chemical_space": {"systems": ["Ag-Au-Cu"]},
            "seeds": {"max_seeds": 6, "elemental_polymorphs": 1},
            "generators": {
                "substitution": {"enabled": False},
                "saps": {"enabled": False},
                "prototypes": {"enabled": False},
            },
            "compositional": {"max_atoms": 4, "max_formulas": 2, "structures_per_formula": 2},
            "screening": {"top_k": 3, "max_decomposition_energy": 10.0},
            "model": {"n_models": 2, "epochs": 15},
            "oracle": {"fmax": 0.2, "max_steps": 40},
        }
    )
    Campaign(name="comp", config=config.model_dump(mode="json")).save()
    assert generate.generate("comp", 0, config) == {"seed": 5}
    # a rerun of the same stage (a lost job run again) replays it and adds nothing
    assert generate.generate("comp", 0, config) == {"seed": 5}
    assert Candidate.objects(campaign="comp").count() == 5
    seeds = screen.screen("comp", 0, config)
    context = OracleContext.for_round(get_settings(), "comp", 0)
    assert relax.relax("comp", 0, seeds, config.oracle, context)["completed"] == 5
    # a worker killed between saving a calculation and its candidate's status: a rerun repairs
    Candidate.objects(candidate_id=seeds[0]).update_one(set__status="relaxing")
    assert relax.relax("comp", 0, seeds, config.oracle, context) == {"skipped_finished": 5}
    assert Candidate.objects.get(candidate_id=seeds[0]).status == "relaxed"
    for calc in Calculation.objects(campaign="comp"):
        frames = calc.get_frames()  # every relaxation step, from GridFS
        assert calc.n_frames == len(frames) == calc.n_steps + 1
        assert frames[-1].energy_per_atom == pytest.approx(calc.energy_per_atom, abs=1e-6)
        assert {f.trajectory_id for f in frames} == {calc.candidate_id}
    placed, metrics = hull.update_hull("comp", 0)
    assert metrics["on_hull_total"] >= 3
    elemental = {el: e.energy_per_atom for el, e in placed.elemental_references.items()}
    network = retrain.model_config(config, torch_threads=1)
    versions = retrain.retrain("comp", 0, config, elemental, network)
    assert versions == {"structural": 1, "compositional": 1}
    assert ModelVersion.objects(campaign="comp").count() == 2

    counts = generate.generate("comp", 1, config)
    assert counts.get("random", 0) >= 1
    airss = Candidate.objects(campaign="comp", round=1, pipeline="compositional")
    assert airss.count() == counts["random"]
    known = set(Calculation.objects(campaign="comp").distinct("formula"))
    assert not known & set(airss.distinct("formula"))
    assert len(set(airss.distinct("formula"))) <= 2
    selected = screen.screen("comp", 1, config, torch_threads=1)
    assert 1 <= len(selected) <= 3
    assert {c.selected_as for c in Candidate.objects(campaign="comp", round=0)} == {"seed"}
    # AIRSS structures are scored by the structural model; the best of each formula is picked
    assert airss.filter(predicted_decomposition_energy=None).count() == 0
    picked = airss.filter(status="selected")
    assert picked.count() == len(set(picked.distinct("formula"))) >= 1
    for candidate in picked:
        assert candidate.selected_as == "compositional"
        rivals = airss.filter(formula=candidate.formula).distinct("predicted_decomposition_energy")
        assert candidate.predicted_decomposition_energy == min(rivals)

    # the pool again, in chunks of 2: the model that scored it is not asked again, and an
    # old document without a structure is skipped and counted
    Candidate._get_collection().insert_one(
        {"candidate_id": "old", "campaign": "comp", "round": 1, "status": "rejected"}
    )  # as an older version wrote it: no structure, no formula
    monkeypatch.setattr(screen, "_predict", lambda *args: pytest.fail("re-scored"))
    chunked = config.model_copy(deep=True)
    chunked.screening.chunk_size = 2
    pool = {"campaign": "comp", "status": {"$in": ["generated", "rejected"]}}
    rows = list(screen.scored_pool("comp", 1, chunked, pool, torch_threads=1))
    assert len(rows) == Candidate.objects(campaign="comp", status="rejected").count() - 1
    assert Round.objects.get(campaign="comp", number=1).counts["screen_skipped"] == {
        "missing structure or formula": 1
    }


def test_models_learn_each_candidate_as_generated_with_its_relaxed_energy(database):
    """The screen predicts a relaxed energy from a generated structure; training pairs teach
    that directly. A seed is a relaxed crystal already and is not doubled."""
    generated = Structure(Lattice.cubic(3.0), ["Cu"], [[0, 0, 0]])
    relaxed = Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]])
    for candidate_id, number, energy in (("seed", 0, -4.1), ("made", 1, -3.7)):
        Candidate(
            candidate_id=candidate_id, campaign="pairs", round=number, formula="Cu",
            chemsys="Cu", generator="seed" if number == 0 else "saps",
            structure=generated.as_dict(),
        ).save()  # fmt: skip
        Calculation(
            candidate_id=candidate_id, campaign="pairs", round=number, oracle="chgnet",
            state="completed", energy_per_atom=energy, structure=relaxed.as_dict(),
        ).save()  # fmt: skip
    calculations = retrain.usable_calculations("pairs")

    structures, energies = retrain.structural_examples("pairs", calculations, True)
    assert energies == [-4.1, -3.7, -3.7]
    assert [s.volume for s in structures] == pytest.approx([3.6**3, 3.6**3, 3.0**3])
    structures, energies = retrain.structural_examples("pairs", calculations, False)
    assert energies == [-4.1, -3.7]
    assert [s.volume for s in structures] == pytest.approx([3.6**3] * 2)


def test_campaign_models_learn_every_formula_they_have_a_label_for(database):
    """The composition-hash split belongs to a prior's model card. In a campaign it kept a
    quarter of the formulas out of training, so the screen picked polymorphs of the same
    unlearned formula round after round. Mn2O3 and MnO3 both hash into the test bucket."""
    assert not retrain.models.composition_hash_split(["Mn2O3", "MnO3"]).any()
    config = parse_config(
        {
            "name": "every",
            "chemical_space": {"systems": ["Mn-O"]},
            "model": {"prior": "none", "n_models": 1, "epochs": 60},
        }
    )
    corners = [[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]
    mn2o3 = Structure(Lattice.cubic(4.0), ["Mn", "O", "O", "O", "Mn"], [*corners, [0.5] * 3])
    mno3 = Structure(Lattice.cubic(3.8), ["Mn", "O", "O", "O"], corners)
    rows = [(mn2o3, -7.9), (mno3, -6.7)]
    for index, (structure, energy) in enumerate(rows):
        Calculation(
            candidate_id=f"every-{index}", campaign="every", round=0, oracle="chgnet",
            state="completed", energy_per_atom=energy, structure=structure.as_dict(),
        ).save()  # fmt: skip
    network = retrain.model_config(config, torch_threads=1)
    retrain.retrain("every", 0, config, {"Mn": -9.0, "O": -4.9}, network)

    version = ModelVersion.objects.get(campaign="every", kind="structural")
    assert (version.metrics["n_train"], version.metrics["n_test"]) == (2, 0)
    ensemble = retrain.latest_ensemble("every", "structural")
    predicted = ensemble.predict([s for s, _ in rows], tta=False).energy_per_atom
    assert predicted == pytest.approx([e for _, e in rows], abs=0.15)
