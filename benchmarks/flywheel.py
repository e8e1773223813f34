"""Rediscovery benchmark: does the flywheel find withheld known phases, and faster than chance?

For each ternary chemical space (default Li-Co-O, Li-Mn-O, Na-Mn-O) the known ternaries are
withheld from the seed set (from the campaign's seeds and from the known world its generators
take parents from). With ``--withhold own`` (the default) each space's campaign loses only its
own ternaries, so the other spaces' crystals stay in its known world as analogues (LiMnO2 for
Li-Co-O, as GNoME's substitutions carried NaCoO2 to LiCoO2); ``--withhold all`` withholds every
listed space's ternaries from every campaign, a stricter world with fewer structure types.
Campaigns (arms) run per space with the CHGNet oracle and the same oracle budget per round,
in-process on the embedded MongoDB:

- ``screened``: the campaign as configured (GNN screen, with its exploration share);
- ``random``: every pick random from the same kind of generated pool (exploration share 1);
- ``relaxed-only`` (with ``--arms``): the screened arm with models that learn from relaxed
  structures alone (``model.learn_generated: false``), as GNoME trained them.

Per round it prints: new unique candidates (and how many each generator made: a generator
below its limit has run out of new products), screened and exploration hit rates, the model's
MAE on the round's relaxations, how many withheld phases that lie on the oracle's own hull
were generated so far (a candidate as generated matches the phase: StructureMatcher, which
ignores volume) and how many were rediscovered (a relaxation matches it), with the oracle
calls spent so far. After each table, one line per withheld phase says where it was lost:
never generated, generated but never picked (its predicted rank in the final pool), or
relaxed.

Run: python benchmarks/flywheel.py [--rounds 6] [--top-k 10] [--spaces Li-Co-O,Li-Mn-O]
[--arms screened,relaxed-only,random] [--withhold own|all]
(several minutes per round and arm on 2 CPU cores; --quick: 2 rounds, one space).
The embedded MongoDB lives under a temporary HULLHUNTER_HOME, stopped at the end (its data
stays for inspection: ``HULLHUNTER_HOME=... hullhunter db start``), unless --home is given.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

ARMS = ("screened", "relaxed-only", "random")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", default="Li-Co-O,Li-Mn-O,Na-Mn-O")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--top-k", type=int, default=10, help="oracle calls per round")
    parser.add_argument("--arms", default="screened,random", help=f"some of {', '.join(ARMS)}")
    parser.add_argument(
        "--withhold",
        choices=("own", "all"),
        default="own",
        help="withhold each space's own ternaries (own) or every listed space's (all)",
    )
    parser.add_argument("--home", type=Path, default=None, help="HULLHUNTER_HOME to use")
    parser.add_argument("--quick", action="store_true", help="2 rounds, the first space only")
    args = parser.parse_args()
    args.arms = args.arms.split(",")
    unknown = sorted(set(args.arms) - set(ARMS))
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    return args


def withheld_seeds(spaces: list[frozenset[str]], path: Path) -> tuple[Path, list[Any], list[Any]]:
    """The shipped seeds minus every compound whose elements are exactly one of ``spaces``,
    written as a seed file at ``path``; returns it, the withheld seeds and the kept ones."""
    from hullhunter.generators import load_seeds
    from hullhunter.generators.seeds import write_seed_file

    seeds = load_seeds()
    withheld = [seed for seed in seeds if seed.elements in spaces]
    kept = [seed for seed in seeds if seed.elements not in spaces]
    write_seed_file(kept, path, {"benchmark": {"withheld": [s.id for s in withheld]}})
    return path, withheld, kept


def campaign_config(name: str, space: str, seeds: Path, arm: str, args: argparse.Namespace):
    """The benchmark's campaign: the quickstart's settings on one ternary space."""
    from hullhunter.campaign_config import parse_config

    return parse_config(
        {
            "name": name,
            "pipelines": ["structural"],
            "chemical_space": {"systems": [space]},
            "seeds": {"source": str(seeds), "max_seeds": 40, "elemental_polymorphs": 2},
            "generators": {
                "substitution": {"limit": 150},
                "saps": {"limit": 150, "max_per_parent": 10},
                "prototypes": {"limit": 60},
            },
            "screening": {
                "top_k": args.top_k,
                "max_decomposition_energy": 0.05,
                "exploration_fraction": 1.0 if arm == "random" else 0.25,
            },
            "model": {
                "preset": "small",
                "n_models": 3,
                "epochs": 50,
                "learn_generated": arm != "relaxed-only",
            },
            "oracle": {"name": "chgnet", "fmax": 0.1, "max_steps": 200, "batch_size": 6},
            "budget": {"rounds": args.rounds, "max_oracle_calls": 10_000},
        }
    )


def stable_withheld(name: str, withheld: list[Any]) -> list[Any]:
    """The withheld phases that lie on the oracle's own hull: each relaxed with the campaign's
    oracle and placed on the hull of the campaign's relaxed seeds."""
    from hullhunter.hull import HullSet
    from hullhunter.workflows.oracles import get_oracle
    from hullhunter.workflows.round.hull import entry
    from hullhunter.workflows.round.records import SEED_ROUND, usable_calculations

    oracle = get_oracle("chgnet", fmax=0.1, max_steps=200)
    results = oracle.relax([s.structure for s in withheld], [s.id for s in withheld])
    relaxed = [r for r in results if r.ok]
    seeds = [entry(c) for c in usable_calculations(name, SEED_ROUND)]
    hull = HullSet(seeds)
    hull.add([r.to_entry() for r in relaxed], round=1)
    on_hull = {record.entry_id for record in hull.records() if record.on_hull}
    return [r for r in relaxed if r.candidate_id in on_hull]


def generated_matches(name: str, targets: list[Any]) -> dict[str, list[Any]]:
    """For each target (by id), the campaign's candidates whose generated structure matches it,
    in generation order. Only candidates of the target's reduced formula are compared."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from hullhunter.documents import Candidate

    matcher = StructureMatcher()
    matches: dict[str, list[Any]] = {}
    for target in targets:
        formula = target.structure.composition.reduced_formula
        same = Candidate.objects(campaign=name, formula=formula).order_by("round", "id")
        matches[target.candidate_id] = [
            c for c in same if matcher.fit(c.get_structure(), target.structure)
        ]
    return matches


def analogues(target: Any, known: list[Any]) -> list[str]:
    """Formulas of the known crystals with the target's structure type (same anonymised
    formula, StructureMatcher.fit_anonymous): the parents substitution could make it from."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher()
    anonymous = target.structure.composition.anonymized_formula
    return sorted(
        {
            seed.structure.composition.reduced_formula
            for seed in known
            if seed.structure.composition.anonymized_formula == anonymous
            and matcher.fit_anonymous(seed.structure, target.structure)
        }
    )


def fate(name: str, target: Any, matches: list[Any], known: list[Any]) -> str:
    """Where a withheld phase was lost: never generated (with the known crystals of its
    structure type), never picked (with its predicted rank in the pool the last screen
    scored), or picked and relaxed."""
    from hullhunter.documents import Candidate

    formula = target.structure.composition.reduced_formula
    if not matches:
        types = analogues(target, known)
        return f"{formula}: never generated; its structure type in the known world: " + (
            ", ".join(types) if types else "none (substitution cannot make it)"
        )
    first = matches[0].round
    picked = [c for c in matches if c.selected_as]
    if picked:
        kinds = ", ".join(f"round {c.round} {c.selected_as}" for c in picked)
        return f"{formula}: generated in round {first} ({len(matches)} matching), picked: {kinds}"
    best = min(
        (
            c.predicted_decomposition_energy
            for c in matches
            if c.predicted_decomposition_energy is not None
        ),
        default=None,
    )
    if best is None:
        return f"{formula}: generated in round {first} ({len(matches)} matching), never scored"
    pool = Candidate.objects(campaign=name, status="rejected")
    rank = pool.filter(predicted_decomposition_energy__lt=best).count() + 1
    return (
        f"{formula}: generated in round {first} ({len(matches)} matching), never picked; "
        f"best predicted decomposition energy {1000 * best:.0f} meV/atom, "
        f"rank {rank} of {pool.count()} in the last screen's pool"
    )


def round_rows(name: str, targets: list[Any], generated: dict[str, list[Any]]) -> list[dict]:
    """Per round: new candidates, hit rates by pick kind, MAE, targets generated so far,
    rediscoveries and oracle calls."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from hullhunter.documents import Calculation, Candidate, Round
    from hullhunter.workflows.round.records import EXPLORATION, SCREENED

    matcher = StructureMatcher()
    first_generated = [found[0].round for found in generated.values() if found]
    found: set[str] = set()
    calls = 0
    rows = []
    for number in sorted(Round.objects(campaign=name).distinct("number")):
        if number == 0:
            calls += Calculation.objects(campaign=name, round=0).count()
            continue
        round_doc = Round.objects.get(campaign=name, number=number)
        metrics = round_doc.metrics
        by_generator = round_doc.counts.get("generated", {})
        calcs = list(Calculation.objects(campaign=name, round=number))
        calls += len(calcs)
        selection = metrics.get("selection", {})
        hits = {}
        for kind in (SCREENED, EXPLORATION):
            counts = selection.get(kind, {})
            hits[kind] = [counts.get("hits", 0), counts.get("accepted", 0)]
        for calc in calcs:
            if calc.state != "completed":
                continue
            structure = calc.get_structure()
            for target in targets:
                if target.candidate_id not in found and matcher.fit(structure, target.structure):
                    found.add(target.candidate_id)
        rows.append(
            {
                "round": number,
                "generated": Candidate.objects(campaign=name, round=number).count(),
                "by_generator": "/".join(
                    str(by_generator.get(g, 0)) for g in ("substitution", "saps", "prototype")
                ),
                "screened": hits[SCREENED],
                "exploration": hits[EXPLORATION],
                "mae": metrics.get("model_mae_ev_per_atom"),
                "generated_targets": sum(first <= number for first in first_generated),
                "rediscovered": len(found),
                "calls": calls,
            }
        )
    return rows


def rate(pair: list[int]) -> str:
    hits, picks = pair
    return f"{hits}/{picks} ({100 * hits / picks:.0f}%)" if picks else "-"


def print_table(
    space: str, n_targets: int, rows: dict[str, list[dict[str, Any]]], fates: dict[str, list[str]]
) -> None:
    """One table per space: the arms side by side, one line per round; then each withheld
    phase's fate per arm."""
    print(f"\n## {space}: {n_targets} withheld phases on the oracle's hull\n")
    print(
        "| round | arm | new candidates | subst./SAPS/proto. | screened hits | exploration hits |"
        " MAE meV/atom | generated | rediscovered | oracle calls |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for index in range(max(len(r) for r in rows.values())):
        for arm in rows:
            if index >= len(rows[arm]):
                continue
            row = rows[arm][index]
            mae = f"{1000 * row['mae']:.0f}" if row["mae"] is not None else "-"
            print(
                f"| {row['round']} | {arm} | {row['generated']} | {row['by_generator']} | "
                f"{rate(row['screened'])} | "
                f"{rate(row['exploration'])} | {mae} | {row['generated_targets']}/{n_targets} | "
                f"{row['rediscovered']}/{n_targets} | {row['calls']} |"
            )
    for arm, lines in fates.items():
        print(f"\n{arm}:")
        for line in lines:
            print(f"- {line}")


def main() -> None:
    args = parse_args()
    if args.quick:
        args.rounds, args.spaces = 2, args.spaces.split(",")[0]
    home = args.home or Path(tempfile.mkdtemp(prefix="hullhunter-flywheel-"))
    os.environ["HULLHUNTER_HOME"] = str(home)
    os.environ.setdefault("HULLHUNTER_TORCH_THREADS", "1")  # more oversubscribes 2 cores

    from hullhunter.db import connect
    from hullhunter.workflows.campaign import run_local, submit_campaign

    connect()
    spaces = args.spaces.split(",")
    print(f"HULLHUNTER_HOME={home}")
    for space in spaces:
        withhold = spaces if args.withhold == "all" else [space]
        seed_file, withheld, known = withheld_seeds(
            [frozenset(s.split("-")) for s in withhold], home / f"seeds-without-{space}.json.gz"
        )
        print(f"{space}: withheld {len(withheld)} known ternaries of {', '.join(withhold)}")
        rows: dict[str, list[dict[str, Any]]] = {}
        fates: dict[str, list[str]] = {}
        targets: list[Any] = []
        for arm in args.arms:
            name = f"flywheel-{space.lower()}-{arm}"
            start = time.perf_counter()
            submit_campaign(campaign_config(name, space, seed_file, arm, args))
            states = run_local(name)
            if states.get("FIZZLED"):
                raise SystemExit(f"{name}: a job failed; see `lpad get_fws -s FIZZLED -d all`")
            if not targets:
                mine = [s for s in withheld if s.elements == frozenset(space.split("-"))]
                targets = stable_withheld(name, mine)
            generated = generated_matches(name, targets)
            rows[arm] = round_rows(name, targets, generated)
            fates[arm] = [fate(name, t, generated[t.candidate_id], known) for t in targets]
            print(f"{name}: {time.perf_counter() - start:.0f} s")
        print_table(space, len(targets), rows, fates)
    if args.home is None:  # the temporary home's embedded MongoDB goes with the run
        from hullhunter.server import LocalServer
        from hullhunter.settings import get_settings

        LocalServer(get_settings().local_db_dir).stop()


if __name__ == "__main__":
    main()
