"""Candidate generators (substitution, SAPS, prototypes, compositions, random search) and dedup.

Structural generators register themselves in :mod:`.registry` when their module is imported;
the order of the imports below is the order a campaign runs them in when its file names none.
"""

# isort: off
from hullhunter.generators.substitution import SubstitutionModel, SubstitutionSettings, substitute
from hullhunter.generators.saps import SapsSettings, saps
from hullhunter.generators.prototypes import (
    PrototypeSettings,
    aflow_prototypes,
    decorate_prototypes,
)

# isort: on
from hullhunter.generators.candidate import Candidate
from hullhunter.generators.common import GenerationStats
from hullhunter.generators.compositions import enumerate_compositions, is_relaxed_charge_balanced
from hullhunter.generators.dedup import Deduplicator
from hullhunter.generators.random_search import random_structures
from hullhunter.generators.registry import (
    GENERATORS,
    GenerationContext,
    GeneratorSettings,
    generator_settings,
    register_generator,
    unregister_generator,
)
from hullhunter.generators.seeds import Seed, load_seeds

__all__ = [
    "GENERATORS",
    "Candidate",
    "Deduplicator",
    "GenerationContext",
    "GenerationStats",
    "GeneratorSettings",
    "PrototypeSettings",
    "SapsSettings",
    "Seed",
    "SubstitutionModel",
    "SubstitutionSettings",
    "aflow_prototypes",
    "decorate_prototypes",
    "enumerate_compositions",
    "generator_settings",
    "is_relaxed_charge_balanced",
    "load_seeds",
    "random_structures",
    "register_generator",
    "saps",
    "substitute",
    "unregister_generator",
]
