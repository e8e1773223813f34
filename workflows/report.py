"""The campaign report: plots and a Markdown summary written to a folder.

The round table and the figures keep the kinds of oracle picks apart: the screen's picks
against the random exploration baseline (their ratio is the enrichment), AIRSS picks on their
own, and each new material on the hull classed against the known world.
"""

from __future__ import annotations

from pathlib import Path

from hullhunter.db import connect
from hullhunter.documents import Material, ModelVersion, Round
from hullhunter.generators.known import NOVELTY_CLASSES
from hullhunter.hull import (
    mp_hull_of,
    plot_hit_rate,
    plot_model_error,
    plot_novelty,
    plot_parity,
    plot_selection_hit_rate,
    plot_ternary_hull,
)
from hullhunter.models.prior import ORACLE_ENERGY_SCALE
from hullhunter.workflows.applications import run_screen
from hullhunter.workflows.campaign import status
from hullhunter.workflows.finetune import format_comparison
from hullhunter.workflows.oracles.registry import energy_scale
from hullhunter.workflows.round.hull import build_hull
from hullhunter.workflows.round.records import SEED_ROUND, load_campaign

MAX_TERNARY_PLOTS = 6


def write_report(name: str, folder: Path | str) -> Path:
    """Write the round table, hit-rate (overall and per selection kind), model-error,
    novelty, parity and ternary-hull plots into ``summary.md``; returns its path."""
    connect()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = status(name)
    rounds = list(Round.objects(campaign=name, number__gt=SEED_ROUND).order_by("number"))
    lines = [
        f"# Campaign {name}",
        "",
        f"Status: **{state['status']}**, current round {state['current_round']}. "
        "Stability is measured on the campaign's own oracle-recomputed hull.",
        "",
        "Hits are results on or below the hull as it stood before their round. Screened "
        "picks passed the model's filter; exploration picks were drawn at random from the "
        "same pool, the unscreened baseline; enrichment = screened / exploration hit rate. "
        "Precision and recall grade the screen's stable call on every relaxed candidate with "
        "a prediction. New materials on the hull are classed against the known world (all "
        "shipped seeds, pymatgen's MP compositions, the user's seeds): novel composition / "
        "new polymorph / rediscovered.",
        "",
        "| round | generated | selected | relaxed | hits | hit rate (all picks) | screened hits "
        "| exploration hits | AIRSS hits | enrichment | model MAE (meV/atom) "
        "| screen precision | screen recall | novel / polymorph / rediscovered "
        "| on hull (total) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    metrics = {r.number: r.metrics or {} for r in rounds}
    for row in state["rounds"]:
        m = metrics.get(row["round"], {})
        selection = m.get("selection", {})
        screening = m.get("screening", {})
        novelty = m.get("novelty")
        lines.append(
            f"| {row['round']} | {_cell(row['generated'])} | {_cell(row['selected'])} "
            f"| {_cell(row['relaxed'])} | {_cell(row['hits'])} | {_pct(row['hit_rate'])} "
            f"| {_hits(selection.get('screened'))} | {_hits(selection.get('exploration'))} "
            f"| {_hits(selection.get('compositional'))} | {_times(m.get('enrichment'))} "
            f"| {_mev(row['model_mae'])} | {_pct(screening.get('precision'))} "
            f"| {_pct(screening.get('recall'))} "
            f"| {_novelty(novelty)} "
            f"| {_cell(row['on_hull_total'])} |"
        )
    finished = [m for m in metrics.values() if "cumulative_selection" in m]
    lines += _all_rounds(finished[-1]) if finished else []
    with_metrics = [r.metrics for r in rounds if r.metrics and "hit_rate" in r.metrics]
    if with_metrics:
        plot_hit_rate(with_metrics, folder / "hit_rate.png")
        lines += ["", "![hit rate per round](hit_rate.png)"]
    with_selection = [m for m in with_metrics if "selection" in m]
    if with_selection:
        plot_selection_hit_rate(with_selection, folder / "selection_hit_rate.png")
        plot_novelty(with_selection, folder / "novelty.png")
        lines += [
            "",
            "![hit rate per round: screened vs exploration](selection_hit_rate.png)",
            "",
            "![new materials on the hull per round, by novelty class](novelty.png)",
        ]
    if any(m.get("model_mae_ev_per_atom") is not None for m in with_metrics):
        plot_model_error(with_metrics, folder / "model_error.png")
        lines += ["", "![model error per round](model_error.png)"]
    for round_doc in rounds:
        parity = (round_doc.metrics or {}).get("parity")
        if parity and parity["predicted"]:
            file = f"parity_round{round_doc.number}.png"
            plot_parity(parity["predicted"], parity["oracle"], folder / file)
            lines += [
                "",
                f"Round {round_doc.number}: predicted vs oracle energy",
                "",
                f"![]({file})",
            ]
    new = Material.objects(campaign=name, is_seed=False, on_hull=True).order_by(
        "decomposition_energy"
    )
    lines += ["", f"## New materials on the hull ({new.count()})", ""]
    if new.count():
        lines += [
            "| formula | system | round | generator | decomposition energy (meV/atom) "
            "| novelty | known in |"
        ]
        lines += ["|---|---|---|---|---|---|---|"]
        for material in new:
            lines.append(
                f"| {material.formula} | {material.chemsys} | {material.round_found} "
                f"| {material.generator} | {_mev(material.decomposition_energy)} "
                f"| {_cell(material.novelty)} | {', '.join(material.known_in) or '–'} |"
            )
    ternaries = sorted({m.chemsys for m in new if m.nelements == 3})[:MAX_TERNARY_PLOTS]
    if ternaries:
        hull = build_hull(name)
        for chemsys in ternaries:
            file = f"hull_{chemsys}.png"
            plot_ternary_hull(hull, chemsys, folder / file)
            lines += ["", f"![{chemsys} hull]({file})"]
    lines += _beside_mp(name)
    lines += _application_screens(name)
    lines += _learned_potential(name)
    summary = folder / "summary.md"
    summary.write_text("\n".join(lines) + "\n")
    return summary


def _all_rounds(latest: dict) -> list[str]:
    """Hit rates and the screen's call over every round so far (a round's samples are small)."""
    selection, screening = latest["cumulative_selection"], latest.get("cumulative_screening")
    if not screening:
        return []
    n = sum(screening[key] for key in ("tp", "fp", "tn", "fn"))
    return [
        "",
        f"All rounds so far: screened hits {_hits(selection['screened'])}, exploration hits "
        f"{_hits(selection['exploration'])}, AIRSS hits {_hits(selection['compositional'])}, "
        f"enrichment {_times(latest.get('cumulative_enrichment'))}; the screen's call on "
        f"{n} labelled picks: precision {_pct(screening['precision'])}, recall "
        f"{_pct(screening['recall'])}, F1 {_fraction(screening['f1'])}, "
        f"DAF {_times(screening['daf'])} (over the picks' own prevalence).",
    ]


def _beside_mp(name: str) -> list[str]:
    """The campaign's hull beside MP's for the compositions both hold, on matching scales:
    MP2020-corrected for oracles on that scale, MP's raw PBE(+U) for uncorrected DFT (CP2K)."""
    _, config = load_campaign(name)
    scale = energy_scale(config.oracle.name)
    corrected = scale == ORACLE_ENERGY_SCALE
    mp = mp_hull_of(config.chemical_space.all_elements, corrected=corrected)
    lowest: dict[str, Material] = {}
    for material in Material.objects(campaign=name, formation_energy_per_atom__ne=None):
        known = lowest.get(material.formula)
        if known is None or material.energy_per_atom < known.energy_per_atom:
            lowest[material.formula] = material
    shared = sorted(set(lowest) & set(mp))
    if not shared:
        return []
    mp_scale = "MP2020-corrected" if corrected else "raw PBE(+U), uncorrected"
    lines = [
        "",
        "## The campaign's hull beside the Materials Project's",
        "",
        f"Formation energies (meV/atom) of each composition's lowest polymorph: the campaign's "
        f"{config.oracle.name} energies ({scale}) against MP's {mp_scale} energies from the "
        "entries pymatgen ships; above-hull energies are each on its own hull.",
        "",
        "| formula | campaign ΔHf | MP ΔHf | difference | campaign above hull | MP above hull |",
        "|---|---|---|---|---|---|",
    ]
    for formula in shared:
        material, (mp_formation, mp_above) = lowest[formula], mp[formula]
        lines.append(
            f"| {formula} | {_mev(material.formation_energy_per_atom)} | {_mev(mp_formation)} "
            f"| {_mev(material.formation_energy_per_atom - mp_formation)} "
            f"| {_mev(material.e_above_hull)} | {_mev(mp_above)} |"
        )
    return lines


def _application_screens(name: str) -> list[str]:
    """GNoME's application screens over the campaign's materials."""
    lines = ["", "## Application screens (seeds and discoveries)", ""]
    for screen in ("layered", "li_ion_conductor_candidates"):
        passed = [r for r in run_screen(screen, name, save=True) if r.passed]
        formulas = ", ".join(sorted({r.formula for r in passed})) or "none"
        lines.append(f"- {screen}: {len(passed)} ({formulas})")
    return lines


def _learned_potential(name: str) -> list[str]:
    """The newest potential fine-tuned on the campaign's trajectories, if any."""
    latest = ModelVersion.objects(campaign=name, kind="potential").order_by("-version").first()
    if latest is None:
        return []
    report = latest.metrics
    return [
        "",
        f"## Learned potential (version {latest.version})",
        "",
        f"CHGNet fine-tuned on {report['n_train_trajectories']} relaxation trajectories; "
        f"errors on {report['n_heldout_trajectories']} held-out ones (composition-hash split):",
        "",
        "```",
        format_comparison(report["comparison"]),
        "```",
    ]


def _cell(value: object) -> str:
    return "–" if value is None else str(value)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _hits(selection: dict | None) -> str:
    """``hits/picks (rate)`` of one selection kind, or a dash when it had no picks."""
    if not selection or not selection.get("accepted"):
        return "–"
    return f"{selection['hits']}/{selection['accepted']} ({_pct(selection['hit_rate'])})"


def _novelty(counts: dict | None) -> str:
    """``novel / new polymorph / rediscovered`` counts of a round."""
    if counts is None:
        return "–"
    return " / ".join(str(counts.get(kind, 0)) for kind in NOVELTY_CLASSES)


def _fraction(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}×"


def _mev(value: float | None) -> str:
    return "–" if value is None else f"{1000 * value:.0f}"
