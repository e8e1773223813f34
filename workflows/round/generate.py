"""Stage 1, generate: this round's candidates, deduplicated against the campaign, stored.

Round 0 takes the campaign's seed crystals. Later rounds run every enabled generator of the
registry (:mod:`hullhunter.generators.registry`) on the crystals on the campaign's hull, and,
with the compositional pipeline, AIRSS structures for the formulas the compositional model
puts near the hull. Only candidates inside the chemical space and new to the campaign are
stored. A rerun of the stage replays its first run (:class:`CampaignNovelty`): it adds nothing
after a complete run, and after a crash exactly what the crash lost.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import numpy as np
from pymatgen.core import Structure

from hullhunter import generators
from hullhunter.campaign_config import CampaignConfig, ChemicalSpace
from hullhunter.documents import Candidate as CandidateDocument
from hullhunter.documents import Material, chemsys_of, structure_dict
from hullhunter.workflows.model_store import latest_ensemble
from hullhunter.workflows.round.hull import build_hull
from hullhunter.workflows.round.records import SEED_ROUND


class Shard(NamedTuple):
    """One of ``count`` generation jobs of a round: it keeps the formulas
    :func:`formula_shard` gives ``index``."""

    index: int
    count: int


def formula_shard(formula: str, count: int) -> int:
    """The generation shard of a reduced formula (a hash, the same on every worker).

    Sharding by formula keeps every possible duplicate pair in one shard (only structures of
    one reduced formula can match), so shards deduplicate on their own, exactly, and write
    without meeting each other.
    """
    return int(hashlib.md5(formula.encode()).hexdigest()[:8], 16) % count


def generate(
    name: str, round_number: int, config: CampaignConfig, shard: Shard | None = None
) -> dict[str, int]:
    """Make this round's candidates and store the new ones; returns counts by generator.

    Generators get the campaign's novelty test as their ``accept``: their limits count only
    candidates inside the chemical space and new to the campaign, so each round goes deeper
    into their ranked lists instead of regenerating the last round's products. A ``shard``
    keeps only its formulas, with its share of each generator's limit (rounded up); the
    shards of a round together make what one job makes when no limit binds.
    """
    novelty = CampaignNovelty(name, config.chemical_space, round_number=round_number, shard=shard)
    if round_number == SEED_ROUND:
        stream = filter(novelty, seed_candidates(config))
    else:
        stream = structural_candidates(name, config, novelty)
        if "compositional" in config.pipelines:
            compositional = compositional_candidates(name, round_number, config, novelty.keeps)
            stream = itertools.chain(stream, filter(novelty, compositional))
    counts = store_new_candidates(name, round_number, stream, novelty)
    if novelty.duplicates:
        counts["duplicates"] = novelty.duplicates
    return counts


MAX_REMEMBERED = 100_000
"""Structures a round's novelty test keeps in memory before it starts afresh (about 1 GB)."""


class CampaignNovelty:
    """The test a generated candidate must pass: inside the space, no duplicate of any
    candidate the campaign has (this round's included).

    Earlier candidates are read from MongoDB one deduplication bucket (reduced formula) at
    a time, the first time a candidate of that formula comes by. Asking again about the
    same accepted candidate answers yes, so a generator and the registry may both ask.

    Memory stays bounded: once the deduplicator has taken ``max_remembered`` structures
    since it was made, it is replaced by an empty one, which reloads buckets from MongoDB as
    their formulas come by again. The candidates accepted but not yet written
    (:meth:`release`, :meth:`stored`) are carried over with their buckets, so a reset never
    lets a duplicate of one through.

    A rerun of a round's generation (``round_number`` given) replays its first run: a product
    the round has already stored is accepted again once, so it counts towards its generator's
    limit as it did the first time, and is not stored again (:meth:`replays`). Generators are
    deterministic, so a rerun after a complete run stores nothing and one after a crash stores
    exactly what the crash lost.
    """

    def __init__(
        self,
        name: str,
        space: ChemicalSpace,
        max_remembered: int = MAX_REMEMBERED,
        round_number: int | None = None,
        shard: Shard | None = None,
    ) -> None:
        self.name = name
        self.space = space
        self.max_remembered = max_remembered
        self.shard = shard
        self.written: set[str] = set()  # stored by an earlier run of this round, not replayed yet
        if round_number is not None:
            stored = CandidateDocument._get_collection().find(
                {"campaign": name, "round": round_number},
                projection={"candidate_id": 1, "dedup_key": 1},
            )
            self.written = {d["candidate_id"] for d in stored if self.keeps(d.get("dedup_key", ""))}
        self.replayed: dict[str, generators.Candidate] = {}
        self.dedup = generators.Deduplicator()
        self.loaded: set[str] = set()
        self.keys: dict[str, str] = {}  # deduplication bucket of each accepted candidate
        self.accepted: dict[str, generators.Candidate] = {}
        self.unstored: dict[str, tuple[str, Structure]] = {}  # released, not yet written
        self.duplicates = 0
        self.resets = 0
        self.carried = 0  # structures the deduplicator held right after its last reset

    def __call__(self, candidate: generators.Candidate) -> bool:
        structure = candidate.structure
        if not self.space.fits(structure):
            return False
        structure.remove_oxidation_states()  # oracles and models take plain elements
        identifier = candidate_id(self.name, structure)
        if self.accepted.get(identifier) is candidate or self.replayed.get(identifier) is candidate:
            return True
        if identifier in self.written:  # once: a second copy is a duplicate, as it was then
            self.written.remove(identifier)
            self.replayed[identifier] = candidate
            return True
        if len(self.dedup) >= self.carried + self.max_remembered:
            self._start_afresh()
        key = dedup_key(self.dedup, structure)
        if not self.keeps(key):
            return False
        self._load(key)
        if self.dedup.add(structure, identifier) is not None:
            self.duplicates += 1
            return False
        self.keys[identifier] = key
        self.accepted[identifier] = candidate
        return True

    def keeps(self, formula: str) -> bool:
        """Whether this novelty test's shard generates the reduced formula (all without one)."""
        return self.shard is None or formula_shard(formula, self.shard.count) == self.shard.index

    def _load(self, key: str) -> None:
        """The campaign's stored candidates of one bucket, into the deduplicator (once)."""
        if key in self.loaded:
            return
        self.loaded.add(key)
        earlier = CandidateDocument._get_collection().find(
            {"campaign": self.name, "dedup_key": key}, projection=["candidate_id", "structure"]
        )
        for document in earlier:  # distinct already: remembered, not searched again
            self.dedup.remember(
                Structure.from_dict(document["structure"]), document["candidate_id"]
            )

    def _start_afresh(self) -> None:
        """An empty deduplicator holding only what MongoDB does not have yet."""
        self.dedup = generators.Deduplicator()
        self.loaded = set()
        self.resets += 1
        waiting = [(self.keys[i], c.structure, i) for i, c in self.accepted.items()]
        waiting += [(key, structure, i) for i, (key, structure) in self.unstored.items()]
        for key, structure, identifier in waiting:  # accepted, so distinct already
            self._load(key)
            self.dedup.remember(structure, identifier)
        self.carried = len(self.dedup)

    def release(self, identifier: str) -> str:
        """The deduplication bucket of an accepted candidate about to be stored; the
        candidate is let go, remembered as unstored until :meth:`stored` says it is written."""
        candidate = self.accepted.pop(identifier)
        key = self.keys.pop(identifier)
        self.unstored[identifier] = (key, candidate.structure)
        return key

    def replays(self, identifier: str) -> bool:
        """Whether an accepted candidate is one the round stored before (then let go)."""
        return self.replayed.pop(identifier, None) is not None

    def stored(self, identifiers: Iterable[str]) -> None:
        """These released candidates are in MongoDB now."""
        for identifier in identifiers:
            self.unstored.pop(identifier, None)


def seed_candidates(config: CampaignConfig) -> Iterator[generators.Candidate]:
    """The campaign's known crystals: the lowest few polymorphs of each element (the hull
    needs every elemental reference), then compounds, smallest cells first; none larger
    than the space's ``max_atoms``."""
    source = None if config.seeds.source == "builtin" else config.seeds.source
    space = config.chemical_space
    seeds = [
        seed
        for seed in generators.load_seeds(source, elements=space.all_elements)
        if space.max_atoms is None or len(seed.structure) <= space.max_atoms
    ]
    by_element: dict[str, list[generators.Seed]] = {}
    for seed in seeds:
        if len(seed.elements) == 1:
            by_element.setdefault(next(iter(seed.elements)), []).append(seed)
    elemental = [
        seed
        for polymorphs in by_element.values()
        for seed in sorted(
            polymorphs,
            key=lambda seed: (seed.metadata.get("energy_rank", 0), len(seed.structure)),
        )[: config.seeds.elemental_polymorphs]
    ]
    compounds = sorted(
        (seed for seed in seeds if len(seed.elements) > 1),
        key=lambda seed: (len(seed.elements), len(seed.structure)),
    )
    for seed in elemental + compounds[: max(config.seeds.max_seeds - len(elemental), 0)]:
        yield generators.Candidate(
            structure=seed.structure,
            generator="seed",
            parent_id=seed.id,
            params={"source": seed.source, "license": seed.license},
        )


def hull_parents(name: str) -> list[generators.Seed]:
    """The crystals on the campaign's hull, newest discoveries first, as parents."""
    return [
        generators.Seed(
            id=m.material_id, structure=m.get_structure(), source="campaign", license=""
        )
        for m in Material.objects(campaign=name, on_hull=True).order_by("-round_found")
    ]


def known_crystals(config: CampaignConfig) -> list[generators.Seed]:
    """Every crystal of the campaign's seed set, inside its space or not: parents from
    analogous systems (the generators keep only products inside the space)."""
    return generators.load_seeds(None if config.seeds.source == "builtin" else config.seeds.source)


def hull_formulas(name: str) -> set[str]:
    """Formulas on the campaign's hull. Generators skip them; a formula relaxed once and
    found unstable stays open to other structures (another polymorph may be stable)."""
    return set(Material.objects(campaign=name, on_hull=True).distinct("formula"))


def structural_candidates(
    name: str, config: CampaignConfig, novelty: CampaignNovelty
) -> Iterator[generators.Candidate]:
    """Every enabled generator of the campaign file, in its order: parents from the
    campaign's hull, then from the known world."""
    context = generators.GenerationContext(
        parents=hull_parents(name),
        known_formulas=hull_formulas(name),
        allowed_elements=config.chemical_space.all_elements,
        accept=novelty,
        known_world=known_crystals(config),
    )
    shards = novelty.shard.count if novelty.shard else 1
    for settings in config.generators.values():
        share = settings.model_copy(update={"limit": math.ceil(settings.limit / shards)})
        yield from share.candidates(context)


def compositional_candidates(
    name: str, round_number: int, config: CampaignConfig, keeps: Callable[[str], bool]
) -> Iterator[generators.Candidate]:
    """Formulas the compositional model puts near the hull, then AIRSS structures for each
    (seeded by campaign and round, so each round draws new ones) that ``keeps`` takes."""
    ensemble = latest_ensemble(name, "compositional")
    if ensemble is None:
        return
    settings = config.compositional
    known = hull_formulas(name)
    formulas = [
        composition
        for composition in generators.enumerate_compositions(
            config.chemical_space.all_elements,
            max_elements=config.chemical_space.max_elements,
            max_atoms=settings.max_atoms,
        )
        if composition.reduced_formula not in known
        and config.chemical_space.allows({el.symbol for el in composition.elements})
    ]
    if not formulas:
        return
    hull = build_hull(name)
    predicted = ensemble.predict(formulas, progress=False).energy_per_atom
    decomposition = hull.decomposition_energy(formulas, predicted)
    order = np.argsort(decomposition)
    chosen = [
        formulas[i] for i in order if decomposition[i] <= config.screening.max_decomposition_energy
    ][: settings.max_formulas]
    seed = int(hashlib.sha1(f"{name}|{round_number}".encode()).hexdigest()[:8], 16)
    for composition in chosen:
        if not keeps(composition.reduced_formula):
            continue
        for candidate in generators.random_structures(
            composition, n=settings.structures_per_formula, seed=seed
        ):
            candidate.params["pipeline"] = "compositional"
            yield candidate


def candidate_id(campaign: str, structure: Structure) -> str:
    """Deterministic id: the same structure in the same campaign always gets the same id."""
    digest = hashlib.sha1(
        f"{campaign}|{[site.species_string for site in structure]}|"
        f"{structure.lattice.parameters}|{structure.frac_coords.round(4).tolist()}".encode()
    ).hexdigest()
    return f"{campaign}-{digest[:12]}"


def dedup_key(dedup: generators.Deduplicator, structure: Structure) -> str:
    """The deduplicator's bucket (the reduced formula) as a string that MongoDB indexes.

    Only candidates with the same key can duplicate each other, so each round loads just
    the earlier candidates of the formulas it generated.
    """
    (formula, _, _), _ = dedup.key(structure)
    return formula


STORE_CHUNK = 1000
"""Candidates inserted per bulk write: generation stores as it goes, so a long round keeps
what it made if its job dies, and memory does not grow with the round's size."""


def store_new_candidates(
    name: str, round_number: int, stream: Iterable[generators.Candidate], novelty: CampaignNovelty
) -> dict[str, int]:
    """Insert the candidates of ``stream`` (judged new by ``novelty``) in bulk writes of
    :data:`STORE_CHUNK`; returns counts by generator, replayed candidates included."""
    counts: Counter[str] = Counter()
    pending: list[CandidateDocument] = []
    for candidate in stream:
        identifier = candidate_id(name, candidate.structure)
        counts[candidate.generator] += 1
        if novelty.replays(identifier):
            continue
        key = novelty.release(identifier)
        pending.append(candidate_document(name, round_number, candidate, identifier, key))
        if len(pending) >= STORE_CHUNK:
            _insert(pending, novelty)
            pending = []
    if pending:
        _insert(pending, novelty)
    return dict(counts)


def _insert(documents: list[CandidateDocument], novelty: CampaignNovelty) -> None:
    CandidateDocument.objects.insert(documents, load_bulk=False)
    novelty.stored(document.candidate_id for document in documents)


def candidate_document(
    name: str, round_number: int, candidate: generators.Candidate, identifier: str, key: str
) -> CandidateDocument:
    """The analyst's Candidate document of a generated candidate."""
    composition = candidate.structure.composition
    elements = sorted(el.symbol for el in composition.elements)
    return CandidateDocument(
        candidate_id=identifier,
        campaign=name,
        round=round_number,
        pipeline=candidate.params.get("pipeline", "structural"),
        structure=structure_dict(candidate.structure),
        formula=composition.reduced_formula,
        chemsys=chemsys_of(composition),
        elements=elements,
        nelements=len(elements),
        nsites=len(candidate.structure),
        generator=candidate.generator,
        parent_id=candidate.parent_id,
        params=candidate.params,
        dedup_key=key,
    )
