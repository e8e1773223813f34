"""Stage 3, relax: the campaign's oracle relaxes one batch, each result saved as it finishes.

Safe to rerun: candidates that already have a calculation by this oracle are skipped, and a
candidate left 'relaxing' by a killed worker after its calculation was saved is repaired.
Bulky trajectory frames are written last, so a kill loses at most the frames.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import numpy as np
from mongoengine import GridFSProxy
from pymatgen.core import Composition

from hullhunter.documents import Calculation, Candidate, chemsys_of, structure_dict
from hullhunter.frames import frames_to_bytes
from hullhunter.workflows.oracles import OracleResult
from hullhunter.workflows.oracles.registry import OracleContext, OracleSettings, build_oracle


def relax(
    name: str,
    round_number: int,
    candidate_ids: list[str],
    oracle: OracleSettings,
    context: OracleContext,
) -> dict[str, int]:
    """Relax a batch with the campaign's ``oracle`` section, built in ``context`` when needed.

    Returns counts by calculation state, and ``skipped_finished`` for those already done.
    """
    finished = Calculation.objects(
        campaign=name, oracle=oracle.name, candidate_id__in=candidate_ids
    ).only("candidate_id", "state")
    done = {calc.candidate_id: calc.state for calc in finished}
    repair_statuses(done)
    todo = [
        c
        for c in Candidate.objects(candidate_id__in=candidate_ids).order_by("candidate_id")
        if c.candidate_id not in done
    ]
    counts = Counter({"skipped_finished": len(done)})
    if not todo:
        return dict(counts)
    Candidate.objects(candidate_id__in=[c.candidate_id for c in todo]).update(
        set__status="relaxing"
    )

    def save(result: OracleResult) -> None:
        save_calculation(name, round_number, result)
        counts[calculation_state(result)] += 1

    build_oracle(oracle, context).relax(
        [c.get_structure() for c in todo], [c.candidate_id for c in todo], on_result=save
    )
    return dict(counts)


def repair_statuses(done: dict[str, str]) -> None:
    """Candidate statuses that match their saved calculations (a worker killed in between)."""
    by_status: dict[str, list[str]] = {}
    for identifier, state in done.items():
        by_status.setdefault(candidate_status(state), []).append(identifier)
    for status, identifiers in by_status.items():
        Candidate.objects(candidate_id__in=identifiers, status__ne=status).update(
            set__status=status
        )


def calculation_state(result: OracleResult) -> str:
    """'failed', 'completed' or 'unconverged': the Calculation state of an oracle result."""
    if result.error:
        return "failed"
    return "completed" if result.converged else "unconverged"


def candidate_status(calculation_state: str) -> str:
    """The status a candidate gets from its calculation's state."""
    return "failed" if calculation_state == "failed" else "relaxed"


def save_calculation(name: str, round_number: int, result: OracleResult) -> None:
    """Upsert the result as the candidate's Calculation; its frames go to GridFS."""
    state = calculation_state(result)
    composition = Composition(result.formula) if result.formula else None
    calculation = Calculation.objects(
        campaign=name, candidate_id=result.candidate_id, oracle=result.oracle
    )
    calculation.update_one(
        upsert=True,
        set__round=round_number,
        set__oracle_version=result.oracle_version,
        set__state=state,
        set__formula=composition.reduced_formula if composition else None,
        set__chemsys=chemsys_of(composition) if composition else None,
        set__elements=sorted(el.symbol for el in composition.elements) if composition else [],
        set__energy=finite_or_none(result.energy),
        set__energy_per_atom=finite_or_none(result.energy_per_atom),
        set__structure=structure_dict(result.structure) if result.structure else {},
        set__converged=bool(result.converged),
        set__n_steps=result.n_steps,
        set__wall_time_s=result.wall_time_s,
        set__error=result.error,
        set__corrections=list(result.corrections or []),
        set__directory=result.directory,
        set__n_frames=0,
        set__created_at=datetime.now(UTC),
    )
    Candidate.objects(candidate_id=result.candidate_id).update_one(
        set__status=candidate_status(state)
    )
    if result.frames:  # last: a worker killed here loses only the frames, never the result
        trajectory = GridFSProxy(collection_name="trajectories")
        trajectory.put(
            frames_to_bytes(result.frames),
            content_type="application/x-npz",
            filename=f"{name}-{result.candidate_id}-{result.oracle}",
        )
        calculation.update_one(
            __raw__={"$set": {"trajectory": trajectory.grid_id, "n_frames": len(result.frames)}}
        )


def finite_or_none(value: float | None) -> float | None:
    """A float MongoDB can store and query, or None for a missing or non-finite value."""
    return float(value) if value is not None and np.isfinite(value) else None
