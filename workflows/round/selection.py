"""GNoME's selection rule, pure: which scored candidates the oracle relaxes, and why.

Predicted decomposition energy at most the campaign's threshold, the lowest-energy structure
per composition, best first, plus an exploration share drawn at random from the whole pool,
the unscreened baseline the screen's hit rate is measured against. :class:`Selection`
applies the rule to a stream in bounded memory; :func:`select_for_oracle` to a list. The
random generator is passed in, so a selection is reproducible.
"""

from __future__ import annotations

import bisect
import heapq
import random
from typing import Any, NamedTuple

import numpy as np

from hullhunter.workflows.round.records import EXPLORATION, SCREENED


class Pick(NamedTuple):
    """One selected candidate: its index in the pool (offer order) and why it was picked."""

    index: int
    kind: str


class Selection:
    """GNoME's selection rule over a stream of candidates, in bounded memory.

    Offer every candidate once, in pool order; :meth:`picks` then gives the picks for up to
    ``max_places`` places. The exploration share is a uniform draw from the whole pool: a
    reservoir (Algorithm R) of ``round(max_places * exploration_fraction)`` candidates, from
    which the picks draw the share they need. Screened picks are the best candidates at or
    below ``threshold`` that were not drawn. Kept are the best of each formula (with
    ``one_per_composition``) or overall, as many as the draw could take away plus what the
    places need, so the bound never loses a candidate that would have been picked. Ties keep
    pool order. Memory grows with the number of formulas at most, never with the pool.
    """

    def __init__(
        self,
        max_places: int,
        threshold: float,
        exploration_fraction: float,
        one_per_composition: bool,
        rng: random.Random,
    ) -> None:
        self.max_places = max(max_places, 0)
        self.threshold = threshold
        self.exploration_fraction = exploration_fraction
        self.one_per_composition = one_per_composition
        self.rng = rng
        self.capacity = round(self.max_places * exploration_fraction)
        self.n_offered = 0
        self._reservoir: list[int] = []
        self._best: dict[str, list[tuple[float, int]]] = {}
        self._overall: list[tuple[float, int]] = []  # max-heap: negated (energy, index)
        self._kept: set[int] = set()
        self._labels: dict[int, Any] = {}

    def offer(self, formula: str, decomposition_energy: float, label: Any = None) -> None:
        """Consider one candidate; ``label`` comes back through :meth:`label` if it is picked."""
        index = self.n_offered
        self.n_offered += 1
        self._labels[index] = label
        self._sample(index)
        if decomposition_energy <= self.threshold:  # NaN never passes
            self._rank(formula, (float(decomposition_energy), index))
        self._release(index)

    def _sample(self, index: int) -> None:
        """Algorithm R: every candidate offered so far is in the reservoir with equal chance."""
        if len(self._reservoir) < self.capacity:
            self._reservoir.append(index)
        elif self.capacity:
            slot = self.rng.randrange(index + 1)
            if slot < self.capacity:
                replaced, self._reservoir[slot] = self._reservoir[slot], index
                self._release(replaced)

    def _rank(self, formula: str, key: tuple[float, int]) -> None:
        """Keep the candidate if it can still be a screened pick; drop what no longer can."""
        self._kept.add(key[1])
        if self.one_per_composition:
            kept = self._best.setdefault(formula, [])
            bisect.insort(kept, key)
            dropped = [index for _, index in kept[self.capacity + 1 :]]
            del kept[self.capacity + 1 :]
        else:
            heapq.heappush(self._overall, (-key[0], -key[1]))
            dropped = []
            if len(self._overall) > self.max_places + self.capacity:
                dropped = [-heapq.heappop(self._overall)[1]]
        for index in dropped:
            self._kept.discard(index)
            self._release(index)

    def _release(self, index: int) -> None:
        """Forget the label of a candidate that can no longer be picked."""
        if index not in self._kept and index not in self._reservoir:
            self._labels.pop(index, None)

    def label(self, index: int) -> Any:
        """The label a picked candidate was offered with."""
        return self._labels[index]

    def picks(self, places: int) -> list[Pick]:
        """Screened picks best first, then the exploration draw (``places <= max_places``)."""
        places = min(places, self.max_places)
        if places <= 0:
            return []
        n_explore = min(round(places * self.exploration_fraction), self.n_offered)
        explore = self.rng.sample(self._reservoir, n_explore) if n_explore else []
        drawn = set(explore)
        if self.one_per_composition:
            ranked = sorted(
                next(key for key in kept if key[1] not in drawn)
                for kept in self._best.values()
                if any(key[1] not in drawn for key in kept)
            )
        else:
            ranked = sorted((-energy, -index) for energy, index in self._overall)
            ranked = [key for key in ranked if key[1] not in drawn]
        screened = [index for _, index in ranked][: places - n_explore]
        return [Pick(i, SCREENED) for i in screened] + [Pick(i, EXPLORATION) for i in explore]


def select_for_oracle(
    formulas: list[str],
    decomposition: np.ndarray,
    places: int,
    threshold: float,
    exploration_fraction: float,
    one_per_composition: bool,
    rng: random.Random,
) -> list[Pick]:
    """GNoME's selection over a list: the candidates to relax and why, screened best first.

    The exploration share, ``round(places * exploration_fraction)`` picks, is drawn from the
    whole pool, so its hit rate is an honest unscreened baseline (a draw from what the screen
    rejected would understate it). The other places go to undrawn candidates at or below
    ``threshold``, best first; with ``one_per_composition`` only the lowest predicted
    decomposition energy of each formula competes. Picks index into the list.
    """
    selection = Selection(places, threshold, exploration_fraction, one_per_composition, rng)
    for formula, value in zip(formulas, decomposition, strict=True):
        selection.offer(formula, float(value))
    return selection.picks(places)
