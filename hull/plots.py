"""Figures of a campaign: hit rates per round, model error, novelty classes, ternary hulls,
predicted vs oracle energies.

Figures are drawn on ``matplotlib.figure.Figure`` objects (no pyplot state, no GUI
backend) and written to the path given; the file suffix picks the format (PNG, SVG, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from hullhunter.hull.hullset import HullSet

_TRIANGLE = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])


def plot_hit_rate(round_metrics: Sequence[dict], path: str | Path) -> Path:
    """Hit rate per round (and cumulative) from ``HullSet.round_metrics()``; writes ``path``."""
    if not round_metrics:
        raise ValueError("round_metrics is empty; add results with HullSet.add() first")
    rounds = [m["round"] for m in round_metrics]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(rounds, [m["hit_rate"] for m in round_metrics], "o-", label="hit rate (round)")
    ax.plot(
        rounds,
        [m["cumulative_hit_rate"] for m in round_metrics],
        "s--",
        label="hit rate (cumulative)",
    )
    for m in round_metrics:
        _label_point(ax, f"{m['hits']}/{m['accepted']}", (m["round"], m["hit_rate"]))
    ax.set_xlabel("round")
    ax.set_ylabel("fraction stable vs hull before the round")
    ax.set_xticks(rounds)
    ax.set_ylim(0, 1.05)
    ax.legend()
    return _save(fig, path)


def plot_selection_hit_rate(round_metrics: Sequence[dict], path: str | Path) -> Path:
    """Hit rate per round of screened picks against the random exploration baseline.

    ``round_metrics`` are a campaign's stored round metrics (``selection`` per kind, from
    ``workflows.round.hull``); rounds without picks of a kind leave a gap. Each point is
    annotated hits/picks, so small samples show as small.
    """
    if not round_metrics:
        raise ValueError("round_metrics is empty: no round has finished")
    rounds = [m["round"] for m in round_metrics]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for kind, style, below in (
        ("screened", "o-", False),
        ("exploration", "s--", True),
        ("compositional", "^:", False),
    ):
        counts = [m.get("selection", {}).get(kind, {}) for m in round_metrics]
        if not any(c.get("accepted") for c in counts):
            continue
        rates = [_number(c.get("hit_rate")) for c in counts]
        (line,) = ax.plot(rounds, rates, style, label=f"{kind} picks")
        for round_, rate, c in zip(rounds, rates, counts, strict=True):
            if np.isfinite(rate):
                _label_point(
                    ax,
                    f"{c['hits']}/{c['accepted']}",
                    (round_, rate),
                    rise=-14 if below else 6,  # apart where the rates coincide
                    color=line.get_color(),
                )
    ax.set_xlabel("round")
    ax.set_ylabel("fraction stable vs hull before the round")
    ax.set_xticks(rounds)
    ax.set_ylim(-0.08, 1.05)
    ax.legend()
    return _save(fig, path)


def plot_model_error(round_metrics: Sequence[dict], path: str | Path) -> Path:
    """Screening model's energy MAE (meV/atom) per round, on the round's oracle results."""
    rows = [m for m in round_metrics if m.get("model_mae_ev_per_atom") is not None]
    if not rows:
        raise ValueError("no round has a model error: no prediction met an oracle result yet")
    rounds = [m["round"] for m in rows]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(rounds, [1000 * m["model_mae_ev_per_atom"] for m in rows], "o-")
    for m in rows:
        _label_point(
            ax, f"n = {m.get('n_predicted')}", (m["round"], 1000 * m["model_mae_ev_per_atom"])
        )
    ax.set_xlabel("round")
    ax.set_ylabel("model MAE vs oracle (meV/atom)")
    ax.set_xticks(rounds)
    ax.set_ylim(0, 1.15 * 1000 * max(m["model_mae_ev_per_atom"] for m in rows))  # labels fit
    return _save(fig, path)


def plot_novelty(round_metrics: Sequence[dict], path: str | Path) -> Path:
    """Discoveries on the hull per round, stacked by novelty class (``novelty`` counts)."""
    if not round_metrics:
        raise ValueError("round_metrics is empty: no round has finished")
    rounds = [m["round"] for m in round_metrics]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    bottom = np.zeros(len(rounds))
    for kind, label in (
        ("novel", "novel composition"),
        ("new_polymorph", "new polymorph"),
        ("rediscovered", "rediscovered"),
    ):
        counts = np.array([m.get("novelty", {}).get(kind, 0) for m in round_metrics])
        ax.bar(rounds, counts, bottom=bottom, label=label)
        bottom += counts
    ax.set_xlabel("round")
    ax.set_ylabel("new materials on the hull")
    ax.set_xticks(rounds)
    ax.set_ylim(0, 1.3 * max(bottom.max(), 1))  # room for the legend
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend()
    return _save(fig, path)


def plot_ternary_hull(
    hull_set: HullSet,
    chemsys: str,
    path: str | Path,
    highlight: Iterable[str] | None = None,
) -> Path:
    """Ternary hull diagram: tie lines, stable phases, other entries, new materials marked.

    Args:
        hull_set: the hull.
        chemsys: a three-element system, "A-B-C".
        path: output file (suffix picks the format).
        highlight: entry ids to mark as new; default: every entry added after the
            reference (``HullSet.add``). Marked ones on the hull are drawn as stars.
    """
    hull = hull_set.hull(chemsys)
    if len(hull.elements) != 3:
        raise ValueError(f"chemsys {chemsys!r} has {len(hull.elements)} elements; give three")
    records = hull_set.records(chemsys="-".join(hull.elements))
    marked = (
        {r.entry_id for r in records if r.round is not None}
        if highlight is None
        else set(highlight)
    )

    def xy(fractions: np.ndarray) -> np.ndarray:
        return np.atleast_2d(fractions) @ _TRIANGLE

    fig = Figure(figsize=(6, 5.5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(*_TRIANGLE[[0, 1, 2, 0]].T, color="black", lw=1)
    for facet in hull.facets:
        corners = xy(hull.point_fractions[facet])
        ax.fill(*corners.T, facecolor="none", edgecolor="tab:blue", lw=0.8)
    for k, element in enumerate(hull.elements):
        offset = (0, -14) if k < 2 else (0, 6)
        ax.annotate(
            element,
            _TRIANGLE[k],
            textcoords="offset points",
            xytext=offset,
            ha="center",
            fontsize=11,
            weight="bold",
        )

    for record in records:
        entry = hull_set.entry(record.entry_id)
        amounts = entry.composition.fractional_composition
        point = xy(np.array([amounts[el] for el in hull.elements]))[0]
        new = record.entry_id in marked
        if record.on_hull:
            style = {"marker": "*", "s": 160, "c": "tab:red"} if new else {"s": 30, "c": "black"}
            ax.scatter(*point, zorder=3, **style)
            if len(record.chemsys.split("-")) > 1:
                ax.annotate(
                    record.formula, point, textcoords="offset points", xytext=(4, 4), fontsize=8
                )
        else:
            color = "tab:orange" if new else "lightgrey"
            ax.scatter(*point, marker="x", s=20, c=color, zorder=2)
    ax.scatter([], [], marker="*", s=120, c="tab:red", label="new, on hull")
    ax.scatter([], [], s=30, c="black", label="reference, on hull")
    ax.scatter([], [], marker="x", c="tab:orange", label="new, above hull")
    ax.scatter([], [], marker="x", c="lightgrey", label="reference, above hull")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"{'-'.join(hull.elements)} convex hull")
    return _save(fig, path)


def plot_parity(
    predicted: Sequence[float] | np.ndarray,
    oracle: Sequence[float] | np.ndarray,
    path: str | Path,
    quantity: str = "energy per atom (eV/atom)",
) -> Path:
    """Predicted vs oracle values with the y = x line and the MAE; writes ``path``."""
    pred = np.asarray(predicted, dtype=float)
    true = np.asarray(oracle, dtype=float)
    if pred.shape != true.shape:
        raise ValueError(f"predicted has shape {pred.shape} but oracle has {true.shape}")
    both = np.isfinite(pred) & np.isfinite(true)
    if not both.any():
        raise ValueError("no pair of finite predicted and oracle values to plot")
    pred, true = pred[both], true[both]
    low, high = min(pred.min(), true.min()), max(pred.max(), true.max())
    fig = Figure(figsize=(5, 5), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(true, pred, s=8, alpha=0.6)
    ax.plot([low, high], [low, high], color="black", lw=1)
    ax.set_xlabel(f"oracle {quantity}")
    ax.set_ylabel(f"predicted {quantity}")
    mae = np.abs(pred - true).mean()
    ax.set_title(f"MAE {mae * 1000:.1f} meV/atom, n = {len(true)}")
    ax.set_aspect("equal")
    return _save(fig, path)


def _number(value: float | None) -> float:
    """Stored metrics hold None where a ratio had no denominator."""
    return float("nan") if value is None else float(value)


def _label_point(
    ax: Any, text: str, point: tuple[float, float], rise: float = 6, **style: Any
) -> None:
    """A small centred label ``rise`` points above (below when negative) a plotted point."""
    ax.annotate(
        text, point, textcoords="offset points", xytext=(0, rise), ha="center", fontsize=8, **style
    )


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return path
