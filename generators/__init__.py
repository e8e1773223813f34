"""Candidate generators (substitution, SAPS, prototypes, compositions, random search) and dedup."""

from hullhunter.generators.candidate import Candidate
from hullhunter.generators.common import GenerationStats
from hullhunter.generators.seeds import Seed, load_seeds

__all__ = ["Candidate", "GenerationStats", "Seed", "load_seeds"]
