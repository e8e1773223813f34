"""Candidate generators (substitution, SAPS, prototypes, compositions, random search) and dedup."""

from hullhunter.generators.candidate import Candidate
from hullhunter.generators.common import GenerationStats
from hullhunter.generators.dedup import Deduplicator
from hullhunter.generators.saps import saps
from hullhunter.generators.seeds import Seed, load_seeds
from hullhunter.generators.substitution import SubstitutionModel, substitute

__all__ = [
    "Candidate",
    "Deduplicator",
    "GenerationStats",
    "Seed",
    "SubstitutionModel",
    "load_seeds",
    "saps",
    "substitute",
]
