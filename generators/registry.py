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
from hullhunter.generators.common import Accept
from hullhunter.generators.seeds import Seed


@dataclass(frozen=True)
class GenerationContext:
    """What a round knows when it generates.

    ``parents`` are the campaign's own crystals (its hull, newest discoveries first);
    ``known_world`` the seed set's crystals, inside the campaign's space or not, so that a
    known structure of an analogous system can be carried into the target one (NaCoO2 ->
    LiCoO2). ``accept`` is the campaign's test of each product (inside its space, new to it):
    only accepted products count towards a generator's limit.
    """

    parents: list[Seed]
    known_formulas: set[str] = field(default_factory=set)
    allowed_elements: list[str] = field(default_factory=list)
    accept: Accept | None = None
    known_world: list[Seed] = field(default_factory=list)


class GeneratorSettings(BaseModel):
    """A generator's section of the campaign file; subclasses add their own knobs."""

    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool = True
    limit: int = Field(
        200, ge=0, description="most new candidates inside the space from this generator per round"
    )
    known_world: bool = Field(
        True, description="after the campaign's crystals, also take parents from the seed set"
    )
    max_parent_sites: int = Field(
        48, ge=1, description="parents with more sites are skipped: large products relax slowly"
    )

    def generate(self, context: GenerationContext) -> Iterator[Candidate]:
        """The generator's candidates for ``context``, best first; :meth:`candidates` applies
        ``context.accept`` and ``limit``."""
        raise NotImplementedError

    def parent_groups(self, context: GenerationContext) -> list[list[Seed]]:
        """The parents in the order they are used, at most ``max_parent_sites`` sites each:
        the campaign's crystals, then (with ``known_world``) the seed set's."""
        groups = [context.parents]
        if self.known_world and context.known_world:
            groups.append(context.known_world)
        return [[p for p in group if len(p.structure) <= self.max_parent_sites] for group in groups]

    def candidates(self, context: GenerationContext) -> Iterator[Candidate]:
        """:meth:`generate`'s products that ``context.accept`` takes, at most ``limit``.

        The limit counts accepted products only, so a generator that ignores ``accept`` still
        goes deeper into its list instead of stopping on products the campaign already has.
        Nothing when the section is disabled or its limit is 0.
        """
        if not (self.enabled and self.limit):
            return
        taken = 0
        for candidate in self.generate(context):
            if context.accept is None or context.accept(candidate):
                yield candidate
                taken += 1
                if taken >= self.limit:
                    return


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
