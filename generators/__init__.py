"""Candidate generators (substitution, SAPS, prototypes, compositions, random search) and dedup."""

from hullhunter.generators.candidate import Candidate
from hullhunter.generators.common import GenerationStats
from hullhunter.generators.compositions import enumerate_compositions, is_relaxed_charge_balanced
from hullhunter.generators.dedup import Deduplicator
from hullhunter.generators.prototypes import aflow_prototypes, decorate_prototypes
from hullhunter.generators.random_search import random_structures
from hullhunter.generators.saps import saps
from hullhunter.generators.seeds import Seed, load_seeds
from hullhunter.generators.substitution import SubstitutionModel, substitute

__all__ = [
    "Candidate",
    "Deduplicator",
    "GenerationStats",
    "Seed",
    "SubstitutionModel",
    "aflow_prototypes",
    "decorate_prototypes",
    "enumerate_compositions",
    "is_relaxed_charge_balanced",
    "load_seeds",
    "random_structures",
    "saps",
    "substitute",
]
