"""The one list of structural generators a campaign can use.

Each generator module registers itself once (:func:`register_generator`) with its name (the
key of its section under ``generators:`` in a campaign file) and its settings class. The
settings class is the section's schema (unknown keys refused) and knows how to run the
generator from it (:meth:`GeneratorSettings.generate`), so the campaign file, the round's
generate stage and the documentation all read this list and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from hullhunter.generators.candidate import Candidate
from hullhunter.generators.seeds import Seed


@dataclass(frozen=True)
class GenerationContext:
    """What a round knows when it generates: the parents and what is known already."""

    parents: list[Seed]
    known_formulas: set[str] = field(default_factory=set)
    allowed_elements: list[str] = field(default_factory=list)


class GeneratorSettings(BaseModel):
    """A generator's section of the campaign file; subclasses add their own knobs."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    limit: int = Field(200, ge=0, description="most candidates from this generator per round")

    def generate(self, context: GenerationContext) -> Iterator[Candidate]:
        """The generator's candidates for ``context``, at most ``limit`` of them."""
        raise NotImplementedError

    def candidates(self, context: GenerationContext) -> Iterator[Candidate]:
        """:meth:`generate`, or nothing when the section is disabled or its limit is 0."""
        if self.enabled and self.limit:
            yield from self.generate(context)


GENERATORS: dict[str, type[GeneratorSettings]] = {}


def register_generator(name: str, settings: type[GeneratorSettings]) -> type[GeneratorSettings]:
    """Add a generator under ``name``; a second registration of the name is refused."""
    if name in GENERATORS and GENERATORS[name] is not settings:
        raise ValueError(f"a generator named {name!r} is already registered")
    GENERATORS[name] = settings
    return settings


def unregister_generator(name: str) -> None:
    """Remove a generator (tests and notebooks that registered their own)."""
    GENERATORS.pop(name, None)


def generator_settings(name: str) -> type[GeneratorSettings]:
    """The settings class of the generator called ``name``; one line naming the known ones."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; choose from {', '.join(GENERATORS)}")
    return GENERATORS[name]
