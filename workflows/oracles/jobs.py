"""A jobflow job that relaxes a batch with any oracle, for the campaign to schedule."""

from __future__ import annotations

from typing import Any

from jobflow import job
from pymatgen.core import Structure

from hullhunter.workflows.oracles.registry import get_oracle


@job(name="oracle relax batch")
def relax_batch(
    structures: list[dict[str, Any]],
    ids: list[str],
    oracle: str = "chgnet",
    settings: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Relax pymatgen structure dicts with ``get_oracle(oracle, **settings)``.

    Returns one :meth:`OracleResult.as_dict` per input, failures included.
    """
    runner = get_oracle(oracle, **(settings or {}))
    results = runner.relax([Structure.from_dict(s) for s in structures], ids)
    return [result.as_dict() for result in results]
