"""One round at scale through the real MongoDB: per-candidate cost and peak memory of each stage.

For each pool size N the script sets up a campaign in a 12-element space (Li Na K Mg Ca Mn Fe
Co Ni Cu Zn O, up to ternaries) whose reference hull is the shipped seeds inside the space with
their CHGNet energies (the prior's labels) and whose structural model is the shipped prior,
then times, in this process:

- **generate + dedup + store**: N candidates through the round's real path (the campaign's
  novelty test: space check and deduplication against the campaign, then bulk inserts;
  the novelty test starts afresh, reloading from MongoDB, each time it has taken
  ``--max-remembered`` structures, and the table counts those resets).
  They are synthetic, made cheaply from real parents: a shipped seed of at most 16 atoms
  and 3 elements (any elements), its elements mapped at random onto the space's (a random
  decoration of a real structure), so generation itself costs almost nothing and the stage
  measures the campaign's side of it;
- **generate, W workers** (``--workers``): the same, fanned out as a campaign with
  ``workers.generation_shards: W`` runs it: W processes at once (started beforehand, as
  running rlaunch workers), each a formula shard with its share of the N candidates, in a
  fresh campaign of the same setup. Each shard walks the same synthetic stream and keeps its
  own formulas, as the real shard jobs walk the generators' lists;
- **screen**: the round's screen stage (read the pool in chunks, predict with the prior at
  the generated volume, decomposition energies against the hull, bulk writes, selection);
- **select again**: the same stage rerun: every candidate already scored by the model, so it
  measures reading, hull and selection alone;
- **screen, W workers** (``--workers``, default 2): the fanned-out screen a campaign runs when
  its pool exceeds ``screening.shard_size``: the pool cut into W shards
  (``pool_shards``), each scored by the campaign's own ``score_job`` code in its own process
  at the same time (as W FireWorks workers would; processes started and imports done before
  the clock starts, as in a running rlaunch), then one ``select_job``-style selection. The
  picks must equal the one-worker screen's; the script says whether they do.

Peak memory is the largest resident-set increase over the stage (sampled every 20 ms; the
workers' memory is not in the fan-out's figure).

Usage::

    python benchmarks/round_scale.py --quick          # 2,000 and 20,000 candidates
    python benchmarks/round_scale.py                  # 10,000 and 100,000
    python benchmarks/round_scale.py --sizes 1000000  # as asked (hours on 2 cores)
    python benchmarks/round_scale.py --workers 4      # a fan-out over 4 processes
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gzip
import json
import math
import multiprocessing
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import torch

SPACE = ["Li", "Na", "K", "Mg", "Ca", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "O"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--quick", action="store_true", help="2,000 and 20,000 candidates")
    parser.add_argument("--home", type=Path, default=None, help="HULLHUNTER_HOME to use")
    parser.add_argument("--workers", type=int, default=2, help="processes of the fanned-out screen")
    parser.add_argument(
        "--max-remembered",
        type=int,
        default=None,
        help="structures the novelty test keeps before it starts afresh (default: the campaign's)",
    )
    return parser.parse_args()


class PeakMemory:
    """The largest RSS increase (MiB) of this process while the block runs."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak_mib = 0.0

    def __enter__(self) -> PeakMemory:
        self.start = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            increase = (self.process.memory_info().rss - self.start) / 2**20
            self.peak_mib = max(self.peak_mib, increase)
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.thread.join()


def timed(stage: Callable[[], Any]) -> tuple[float, float, Any]:
    """Seconds, peak MiB and result of one stage."""
    with PeakMemory() as memory:
        began = time.perf_counter()
        result = stage()
        seconds = time.perf_counter() - began
    return seconds, memory.peak_mib, result


def synthetic_candidates(parents: list[Any], seed: int) -> Iterator[Any]:
    """Random decorations of real parents with the space's elements, endlessly."""
    from hullhunter.generators import Candidate
    from hullhunter.generators.common import structure_from_elements

    rng = random.Random(seed)
    while True:
        parent = rng.choice(parents)
        old = sorted({site.specie.symbol for site in parent.structure})
        mapping = dict(zip(old, rng.sample(SPACE, len(old)), strict=True))
        structure = structure_from_elements(
            parent.structure.lattice,
            [mapping[site.specie.symbol] for site in parent.structure],
            parent.structure.frac_coords,
        )
        yield Candidate(structure, "synthetic", parent.id, {"mapping": mapping})


def set_up(name: str, config: Any) -> None:
    """The campaign, its reference hull (seed energies from the prior's labels) and model."""
    from hullhunter.documents import Calculation, Campaign, chemsys_of, structure_dict
    from hullhunter.generators import load_seeds
    from hullhunter.models.prior import load_prior
    from hullhunter.workflows.model_store import save_ensemble
    from hullhunter.workflows.pretrain import LABELS_FILE

    prior = load_prior()
    with gzip.open(prior.path / LABELS_FILE, "rt") as handle:
        energies = {seed_id: energy for seed_id, _, energy in json.load(handle)["labels"]}
    seeds = [s for s in load_seeds(elements=SPACE) if s.id in energies]
    Campaign(name=name, config=config.model_dump(mode="json"), status="running").save()
    for seed in seeds:
        composition = seed.structure.composition
        Calculation(
            candidate_id=seed.id,
            campaign=name,
            round=0,
            oracle="chgnet",
            state="completed",
            formula=composition.reduced_formula,
            chemsys=chemsys_of(composition),
            elements=sorted(el.symbol for el in composition.elements),
            energy_per_atom=energies[seed.id],
            energy=energies[seed.id] * len(seed.structure),
            structure=structure_dict(seed.structure),
            converged=True,
        ).save()
    save_ensemble(name, 0, prior.structural, metrics={}, n_train=0)


def parent_seeds() -> list[Any]:
    """The synthetic candidates' parents: every shipped seed of at most 16 atoms and 3
    elements, any elements (the known world the real generators take parents from; the
    space's own seeds alone run out of distinct decorations near 10^5)."""
    from hullhunter.generators import load_seeds

    return [seed for seed in load_seeds() if len(seed.structure) <= 16 and len(seed.elements) <= 3]


def start_worker() -> None:
    """A screening worker's start: one torch thread, the imports and the database connection
    done once, as in a running rlaunch."""
    torch.set_num_threads(1)
    from hullhunter.db import connect

    connect()


def generate_in_worker(
    name: str, n: int, seed: int, shard: tuple[int, int], max_remembered: int | None
) -> tuple[int, float, float]:
    """One formula shard's share of ``n`` synthetic candidates, stored; (stored, start, end)."""
    from hullhunter.workflows.round.generate import Shard

    parents = parent_seeds()
    novelty = novelty_test(name, max_remembered, Shard(*shard))
    began = time.time()
    stored = generate_into(name, novelty, parents, math.ceil(n / shard[1]), seed)
    return stored, began, time.time()


def novelty_test(name: str, max_remembered: int | None, shard: Any = None) -> Any:
    """The campaign's novelty test, bounded by ``max_remembered`` (None: the default)."""
    from hullhunter.workflows.round.generate import MAX_REMEMBERED, CampaignNovelty

    space = campaign_config(name).chemical_space
    return CampaignNovelty(name, space, max_remembered or MAX_REMEMBERED, shard=shard)


def generate_into(name: str, novelty: Any, parents: list[Any], n: int, seed: int) -> int:
    """The first ``n`` synthetic candidates ``novelty`` accepts, stored as round 1's."""
    from hullhunter.workflows.round.generate import store_new_candidates

    stream = (c for c in synthetic_candidates(parents, seed=seed) if novelty(c))
    limited = (c for _, c in zip(range(n), stream, strict=False))
    return sum(store_new_candidates(name, 1, limited, novelty).values())


def score_in_worker(name: str, lower: str | None, upper: str | None) -> tuple[int, float, float]:
    """One shard scored by the campaign's score_job code; (candidates read, start, end)."""
    from hullhunter.workflows.jobs import score_job

    began = time.time()
    read = score_job.original(name, 1, lower, upper)
    return read, began, time.time()


def fanned_out_screen(
    name: str, config: Any, workers: concurrent.futures.ProcessPoolExecutor, n_workers: int
) -> tuple[float, float, list[str]]:
    """The pool scored anew in ``n_workers`` shards at once, then selected in this process:
    (seconds scoring, seconds selecting, picks)."""
    from hullhunter.documents import Candidate
    from hullhunter.workflows.round.screen import pool_query, pool_shards, screen

    collection = Candidate._get_collection()
    pool_size = collection.count_documents(pool_query(name))
    collection.update_many({"campaign": name}, {"$unset": {"scored_by_model": ""}})
    shards = pool_shards(name, 1, math.ceil(pool_size / n_workers))
    runs = list(workers.map(score_in_worker, *zip(*[(name, *s) for s in shards], strict=True)))
    scoring = max(end for _, _, end in runs) - min(began for _, began, _ in runs)
    began = time.perf_counter()
    picks = screen(name, 1, config, torch_threads=1)
    return scoring, time.perf_counter() - began, picks


def campaign_config(name: str) -> Any:
    from hullhunter.campaign_config import parse_config

    return parse_config(
        {
            "name": name,
            "chemical_space": {"elements": SPACE, "max_elements": 3},
            "screening": {"top_k": 50, "tta": False},
            "budget": {"max_oracle_calls": 10**9},
        }
    )


def run_size(
    n: int, workers: concurrent.futures.ProcessPoolExecutor, args: argparse.Namespace
) -> dict[str, float]:
    from hullhunter.documents import Candidate
    from hullhunter.workflows.round.screen import screen

    name = f"scale-{n}"
    config = campaign_config(name)
    set_up(name, config)
    parents = parent_seeds()
    novelty = novelty_test(name, args.max_remembered)

    figures: dict[str, float] = {"n": n}
    seconds, mib, stored = timed(lambda: generate_into(name, novelty, parents, n, seed=n))
    figures |= {"generate_s": seconds, "generate_mib": mib, "stored": stored}
    figures |= {"duplicates": novelty.duplicates, "resets": novelty.resets}
    split = f"{name}-split"
    set_up(split, campaign_config(split))
    shards = [(index, args.workers) for index in range(args.workers)]
    runs = list(
        workers.map(
            generate_in_worker,
            *zip(*[(split, n, n, shard, args.max_remembered) for shard in shards], strict=True),
        )
    )
    figures |= {
        "fanout_generate_s": max(end for _, _, end in runs) - min(began for _, began, _ in runs),
        "fanout_stored": sum(stored for stored, _, _ in runs),
    }
    seconds, mib, picked = timed(lambda: screen(name, 1, config, torch_threads=1))
    figures |= {"screen_s": seconds, "screen_mib": mib, "picked": len(picked)}
    Candidate.objects(campaign=name, status="selected").update(set__status="rejected")
    seconds, mib, _ = timed(lambda: screen(name, 1, config, torch_threads=1))
    figures |= {"select_s": seconds, "select_mib": mib}
    Candidate.objects(campaign=name, status="selected").update(set__status="rejected")
    scoring, selecting, fanned = fanned_out_screen(name, config, workers, args.workers)
    figures |= {
        "fanout_score_s": scoring,
        "fanout_select_s": selecting,
        "fanout_s": scoring + selecting,
        "same_picks": float(sorted(fanned) == sorted(picked)),
    }
    return figures


def print_table(rows: list[dict[str, float]], n_workers: int) -> None:
    print(
        f"\n{'candidates':>10} | {'generate+dedup+store':>22} | {'screen':>22} | "
        f"{'select again':>22} | duplicates | novelty resets"
    )
    print(f"{'':>10} | " + " | ".join([f"{'ms/cand.':>10} {'peak MiB':>11}"] * 3) + " |")
    for row in rows:
        cells = [
            f"{1000 * row[f'{stage}_s'] / row['n']:>10.3f} {row[f'{stage}_mib']:>11.0f}"
            for stage in ("generate", "screen", "select")
        ]
        print(
            f"{row['n']:>10,} | " + " | ".join(cells) + f" | {row['duplicates']:>10,} | "
            f"{row['resets']}"
        )
    first, last = rows[0], rows[-1]
    for stage in ("generate", "screen", "select"):
        growth = (last[f"{stage}_s"] / last["n"]) / (first[f"{stage}_s"] / first["n"])
        print(f"{stage}: per-candidate cost x{growth:.2f} from {first['n']:,} to {last['n']:,}")
    print(
        f"\n{'candidates':>10} | {'generate, 1 worker s':>20} | "
        f"{f'generate, {n_workers} workers s':>21} | {'stored by the shards':>20} | "
        "throughput ratio"
    )
    for row in rows:
        ratio = (row["fanout_stored"] / row["fanout_generate_s"]) / (
            row["stored"] / row["generate_s"]
        )
        print(
            f"{row['n']:>10,} | {row['generate_s']:>20.1f} | {row['fanout_generate_s']:>21.1f} | "
            f"{row['fanout_stored']:>20,} | {ratio:>16.2f}"
        )
    print(
        f"\n{'candidates':>10} | {'screen, 1 worker s':>18} | "
        f"{f'screen, {n_workers} workers s':>19} | {'of which select':>15} | "
        f"{'throughput ratio':>16} | same picks"
    )
    for row in rows:
        print(
            f"{row['n']:>10,} | {row['screen_s']:>18.1f} | {row['fanout_s']:>19.1f} | "
            f"{row['fanout_select_s']:>15.1f} | {row['screen_s'] / row['fanout_s']:>16.2f} | "
            f"{'yes' if row['same_picks'] else 'NO'}"
        )


def main() -> None:
    args = parse_args()
    sizes = [2_000, 20_000] if args.quick else args.sizes
    home = args.home or Path(tempfile.mkdtemp(prefix="hullhunter-scale-"))
    os.environ["HULLHUNTER_HOME"] = str(home)
    torch.set_num_threads(1)
    from hullhunter.db import connect

    connect()
    print(f"HULLHUNTER_HOME={home}; torch 1 thread; sizes {sizes}")
    os.environ.setdefault("HULLHUNTER_TORCH_THREADS", "1")
    rows = []
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        args.workers, mp_context=spawn, initializer=start_worker
    ) as workers:
        list(workers.map(time.sleep, [1.0] * args.workers))  # every worker started
        for n in sizes:
            rows.append(run_size(n, workers, args))
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()})
    print_table(rows, args.workers)
    if args.home is None:  # the temporary home's embedded MongoDB goes with it
        from hullhunter.server import LocalServer
        from hullhunter.settings import get_settings

        LocalServer(get_settings().local_db_dir).stop()


if __name__ == "__main__":
    main()
