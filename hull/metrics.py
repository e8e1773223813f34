"""Classification metrics of a stability screen, as Matbench Discovery defines them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def classification_metrics(
    predicted: Sequence[float] | np.ndarray,
    true: Sequence[float] | np.ndarray,
    threshold: float = 0.0,
    predicted_threshold: float | None = None,
) -> dict[str, float]:
    """Precision, recall, F1, accuracy and discovery acceleration factor of a stable label.

    A material is labelled stable when its decomposition energy (or energy above the
    hull) is <= ``threshold``; the prediction calls it stable at <= ``predicted_threshold``
    (default ``threshold``), e.g. a screen's 50 meV/atom gate against the true hull. As in
    Matbench Discovery's ``stable_metrics``: a NaN
    prediction counts as "unstable"; a NaN true value leaves the material out of the
    counts; DAF = precision / prevalence, where prevalence is the fraction of truly
    stable materials. Ratios with a zero denominator are NaN.

    Returns:
        dict with precision, recall, f1, accuracy, daf, prevalence, tpr, fpr, tnr, fnr,
        tp, fp, tn, fn (counts), and mae, rmse, r2 over pairs where neither is NaN.
    """
    pred = np.asarray(predicted, dtype=float)
    true_arr = np.asarray(true, dtype=float)
    if pred.shape != true_arr.shape:
        raise ValueError(
            f"predicted has shape {pred.shape} but true has {true_arr.shape}; "
            "give one prediction per material"
        )
    predicted_threshold = threshold if predicted_threshold is None else predicted_threshold
    for value in (threshold, predicted_threshold):
        if not np.isfinite(value):
            raise ValueError(f"threshold={value} must be a finite number of eV/atom")
    actual_pos = true_arr <= threshold
    actual_neg = true_arr > threshold
    model_pos = pred <= predicted_threshold  # NaN compares False: counted as predicted unstable
    tp = int(np.sum(actual_pos & model_pos))
    fn = int(np.sum(actual_pos & ~model_pos))
    fp = int(np.sum(actual_neg & model_pos))
    tn = int(np.sum(actual_neg & ~model_pos))

    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    prevalence = _ratio(tp + fn, tp + fn + fp + tn)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else np.nan

    both = np.isfinite(pred) & np.isfinite(true_arr)
    error = pred[both] - true_arr[both]
    ss_tot = float(np.sum((true_arr[both] - true_arr[both].mean()) ** 2)) if both.any() else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": float(f1),
        "accuracy": _ratio(tp + tn, tp + fn + fp + tn),
        "daf": precision / prevalence if prevalence > 0 else float("nan"),
        "prevalence": prevalence,
        "tpr": recall,
        "fpr": _ratio(fp, fp + tn),
        "tnr": _ratio(tn, fp + tn),
        "fnr": _ratio(fn, tp + fn),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "mae": float(np.abs(error).mean()) if both.any() else float("nan"),
        "rmse": float(np.sqrt((error**2).mean())) if both.any() else float("nan"),
        "r2": 1.0 - float(np.sum(error**2)) / ss_tot if ss_tot > 0 else float("nan"),
    }


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")
