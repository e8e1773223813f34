"""Classification metrics (Matbench Discovery definitions) and per-round campaign metrics."""

from __future__ import annotations

import numpy as np
import pytest

from hullhunter.hull import HullSet, classification_metrics


def test_classification_metrics_counts_and_ratios() -> None:
    predicted = [-0.10, 0.05, -0.02, 0.30, np.nan, 0.20]
    true = [-0.05, -0.01, 0.10, 0.20, -0.30, np.nan]
    m = classification_metrics(predicted, true)
    # TP: 0; FN: 1 and 4 (NaN prediction = unstable); FP: 2; TN: 3; NaN truth left out.
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (1, 2, 1, 1)
    assert m["precision"] == pytest.approx(1 / 2)
    assert m["recall"] == pytest.approx(1 / 3)
    assert m["prevalence"] == pytest.approx(3 / 5)
    assert m["daf"] == pytest.approx((1 / 2) / (3 / 5))
    assert m["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert m["accuracy"] == pytest.approx(2 / 5)
    assert m["fpr"] + m["tnr"] == pytest.approx(1.0)
    errors = np.array([-0.05, 0.06, -0.12, 0.10])
    assert m["mae"] == pytest.approx(np.abs(errors).mean())


def test_threshold_moves_the_stable_label() -> None:
    predicted = np.array([0.01, 0.04, 0.2])
    true = np.array([0.03, 0.02, 0.08])
    assert classification_metrics(predicted, true)["tp"] == 0
    shifted = classification_metrics(predicted, true, threshold=0.05)
    assert (shifted["tp"], shifted["tn"]) == (2, 1)
    assert shifted["daf"] == pytest.approx(1.0 / (2 / 3))


def test_screen_gate_calls_stable_against_the_true_hull() -> None:
    """A screen passing everything within 50 meV/atom is graded against stability at 0."""
    predicted = np.array([0.01, 0.04, 0.2, -0.01])
    true = np.array([-0.03, 0.02, -0.08, 0.01])
    m = classification_metrics(predicted, true, predicted_threshold=0.05)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (1, 2, 1, 0)
    assert m["mae"] == pytest.approx(np.abs(predicted - true).mean())  # thresholds move no value


def test_perfect_screen_has_daf_of_one_over_prevalence() -> None:
    rng = np.random.default_rng(0)
    true = rng.normal(0.1, 0.1, 500)
    m = classification_metrics(true, true)
    prevalence = np.mean(true <= 0)
    assert m["precision"] == m["recall"] == m["f1"] == m["accuracy"] == 1.0
    assert m["daf"] == pytest.approx(1 / prevalence)
    assert m["r2"] == pytest.approx(1.0)


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="one prediction per material"):
        classification_metrics([0.1, 0.2], [0.1])


def test_round_metrics_agree_with_records(make_entries) -> None:
    entries = make_entries(3, 150, seed=3)
    elements = [e for e in entries if e.composition.is_element]
    compounds = [e for e in entries if not e.composition.is_element]
    hull_set = HullSet(elements + compounds[:30])
    for batch in np.array_split(compounds[30:], 4):
        hull_set.add(list(batch))
    metrics = hull_set.round_metrics()
    records = hull_set.records()
    assert [m["round"] for m in metrics] == [1, 2, 3, 4]
    for m in metrics:
        mine = [r for r in records if r.round == m["round"]]
        assert m["accepted"] == len(mine)
        assert m["hits"] == sum(r.e_vs_previous <= 1e-8 for r in mine)
        assert m["hit_rate"] == pytest.approx(m["hits"] / m["accepted"])
        assert sum(v["accepted"] for v in m["by_n_elements"].values()) == m["accepted"]
        assert sum(v["on_hull"] for v in m["by_n_elements"].values()) == m["on_hull"]
    assert metrics[-1]["cumulative_accepted"] == len(compounds) - 30
    assert metrics[-1]["cumulative_on_hull"] == sum(r.on_hull for r in records if r.round)
    for m in metrics:
        so_far = [r for r in records if r.round and r.round <= m["round"]]
        assert m["cumulative_by_n_elements"] == {
            n: {
                "accepted": sum(r.n_elements == n for r in so_far),
                "hits": sum(r.hit for r in so_far if r.n_elements == n),
                "stable_vs_reference": sum(
                    r.stable_vs_reference for r in so_far if r.n_elements == n
                ),
                "on_hull": sum(r.on_hull for r in so_far if r.n_elements == n),
            }
            for n in sorted({r.n_elements for r in so_far})
        }
    assert set(metrics[-1]["cumulative_by_n_elements"]) == {2, 3}
    # Later rounds face a lower hull: hit rate against the previous hull cannot exceed
    # the share that is stable against the (higher) reference hull.
    for m in metrics:
        assert m["hits"] <= m["stable_vs_reference"]
