"""Typed outputs of a round's jobs (jobflow ``output_schema``), small and JSON-safe.

Each is what the next job of the round consumes: the references between them are what
orders the round, as in atomate2's flows.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class GenerateOutput(BaseModel):
    """New candidates stored this round, by generator, plus ``duplicates`` dropped."""

    counts: dict[str, int] = Field(default_factory=dict)


class ScreenOutput(BaseModel):
    """How many candidates went to the oracle, in how many relaxation jobs."""

    selected: int
    batches: int
    shards: int = 1


class RelaxOutput(BaseModel):
    """Calculations of one batch by state, plus ``skipped_finished`` (done by a lost run)."""

    counts: dict[str, int] = Field(default_factory=dict)


class HullOutput(BaseModel):
    """The round on the hull: hits, totals, and the hull's elemental energies (eV/atom)."""

    accepted: int | None = None
    hits: int | None = None
    hit_rate: float | None = None
    on_hull_total: int | None = None
    calculations: dict[str, int] = Field(default_factory=dict)
    elemental_energies: dict[str, float] = Field(default_factory=dict)


class RetrainOutput(BaseModel):
    """The model versions trained this round, by kind ("structural", "compositional")."""

    versions: dict[str, int] = Field(default_factory=dict)


class AdvanceOutput(BaseModel):
    """The next round submitted, or why the campaign stopped."""

    next_round: int | None = None
    stopped: str | None = None
