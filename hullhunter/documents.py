"""The documents analysts query: campaigns, rounds, candidates, calculations, materials,
models and application screens.

Defined with mongoengine and indexed for the usual questions (by campaign, round, chemical
system, formula, status, decomposition energy). Structures are stored as pymatgen dicts;
each document with one has a ``get_structure()`` that gives the ``Structure`` back.
Campaigns are referenced by name, so plain pymongo queries stay simple.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import numpy as np
from mongoengine import (
    BooleanField,
    DateTimeField,
    DictField,
    Document,
    FileField,
    FloatField,
    IntField,
    ListField,
    StringField,
)
from mongoengine.base import BaseField
from monty.json import jsanitize
from pymatgen.core import Composition, Structure

from hullhunter.frames import Frame, frames_from_bytes

CANDIDATE_STATES = ("generated", "selected", "relaxing", "relaxed", "failed", "rejected")
CALCULATION_STATES = ("completed", "unconverged", "failed")
CAMPAIGN_STATES = ("submitted", "running", "paused", "completed", "failed", "cancelled")


def utcnow() -> datetime:
    return datetime.now(UTC)


def structure_dict(structure: Structure) -> dict[str, Any]:
    """A pymatgen structure as a JSON-safe dict that MongoDB accepts."""
    return jsanitize(structure.as_dict(), strict=True)


def mongo_safe(value: Any) -> Any:
    """Plain types MongoDB stores: string keys, Python floats, None for NaN."""
    if isinstance(value, dict):
        return {str(key): mongo_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [mongo_safe(item) for item in value]
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value


def chemsys_of(composition: Composition | str) -> str:
    """Chemical system label, elements sorted alphabetically and joined by '-'."""
    return "-".join(sorted(el.symbol for el in Composition(composition).elements))


def chemsys_subsystems(chemsys: str) -> list[str]:
    """Every chemical system inside ``chemsys`` (itself included), for 'in the X-Y-Z space'."""
    elements = sorted(chemsys.split("-"))
    return [
        "-".join(combo)
        for size in range(1, len(elements) + 1)
        for combo in itertools.combinations(elements, size)
    ]


class StructureField(BaseField):
    """A pymatgen structure as its ``as_dict()``, stored and read as it is.

    mongoengine's ``DictField`` walks every nested value on each read and write: 0.69 ms per
    candidate document against 0.02 ms here, about a tenth of generation's cost at scale.
    Edits inside the dict are not tracked: assign a new dict to save a change.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("default", dict)
        super().__init__(**kwargs)

    def validate(self, value: Any) -> None:
        if not isinstance(value, dict):
            self.error("a structure is stored as a dict: pass Structure.as_dict()")


class _HasStructure:
    structure: dict

    def get_structure(self) -> Structure:
        return Structure.from_dict(self.structure)


class Campaign(Document):
    """One discovery campaign: its configuration and where it stands."""

    name = StringField(required=True, unique=True)
    config = DictField(required=True)
    status = StringField(choices=CAMPAIGN_STATES, default="submitted")
    current_round = IntField(default=0)
    workflow_ids = ListField(IntField())
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    meta = {"collection": "campaigns", "indexes": ["status"]}


class Round(Document):
    """One turn of the flywheel: counts and metrics as the round ends."""

    campaign = StringField(required=True)
    number = IntField(required=True, min_value=0)
    status = StringField(default="running")
    model_version = IntField()
    counts = DictField()
    metrics = DictField()
    started_at = DateTimeField(default=utcnow)
    finished_at = DateTimeField()
    # who is adding the round's workflow ("host:pid") and since when; its root fw_id once added
    submitter = StringField()
    submitted_at = DateTimeField()
    workflow_id = IntField()
    meta = {
        "collection": "rounds",
        "indexes": [{"fields": ["campaign", "number"], "unique": True}],
    }


class Candidate(_HasStructure, Document):
    """A generated structure with its provenance, prediction and status."""

    candidate_id = StringField(required=True, unique=True)
    campaign = StringField(required=True)
    round = IntField(required=True)
    pipeline = StringField(choices=("structural", "compositional"), default="structural")
    structure = StructureField(required=True)
    formula = StringField(required=True)
    chemsys = StringField(required=True)
    elements = ListField(StringField())
    nelements = IntField()
    nsites = IntField()
    generator = StringField(required=True)
    parent_id = StringField()
    params = DictField()
    dedup_key = StringField()
    predicted_energy_per_atom = FloatField()
    predicted_uncertainty = FloatField()
    predicted_decomposition_energy = FloatField()
    scored_by_model = IntField()  # the structural model version whose prediction this is
    status = StringField(choices=CANDIDATE_STATES, default="generated")
    # why the screen picked it (workflows.round.records.SELECTION_KINDS); None if never picked
    selected_as = StringField(choices=("seed", "screened", "exploration", "compositional"))
    created_at = DateTimeField(default=utcnow)
    meta = {
        "collection": "candidates",
        "indexes": [
            ("campaign", "round", "status"),
            ("campaign", "round", "selected_as"),
            ("campaign", "status", "predicted_decomposition_energy"),
            ("chemsys", "predicted_decomposition_energy"),
            ("campaign", "dedup_key"),
            "formula",
            "elements",
        ],
    }


class Calculation(_HasStructure, Document):
    """One oracle relaxation of a candidate (or seed): energies, structure, what custodian did.

    ``trajectory`` holds every relaxation step (structure, energy, forces, stress) as one
    compressed ``.npz`` in GridFS; :meth:`get_frames` reads it back.
    """

    candidate_id = StringField(required=True)
    campaign = StringField(required=True)
    round = IntField(required=True)
    oracle = StringField(required=True)
    oracle_version = StringField()
    state = StringField(choices=CALCULATION_STATES, required=True)
    formula = StringField()
    chemsys = StringField()
    elements = ListField(StringField())
    energy = FloatField()
    energy_per_atom = FloatField()
    structure = StructureField()
    converged = BooleanField()
    n_steps = IntField()
    wall_time_s = FloatField()
    error = StringField()
    corrections = ListField(DictField())
    directory = StringField()
    decomposition_energy = FloatField()
    n_frames = IntField(default=0)
    trajectory = FileField(collection_name="trajectories")
    created_at = DateTimeField(default=utcnow)
    meta = {
        "collection": "calculations",
        "indexes": [
            {"fields": ["campaign", "candidate_id", "oracle"], "unique": True},
            ("campaign", "round", "state"),
            ("chemsys", "energy_per_atom"),
        ],
    }

    def get_frames(self) -> list[Frame]:
        """The relaxation's frames (:class:`hullhunter.frames.Frame`), from GridFS."""
        if not self.n_frames:
            return []
        return frames_from_bytes(self.trajectory.read())


class Material(_HasStructure, Document):
    """A crystal on (or once on) the campaign's hull: seeds and discoveries alike."""

    material_id = StringField(required=True)
    campaign = StringField(required=True)
    formula = StringField(required=True)
    chemsys = StringField(required=True)
    elements = ListField(StringField())
    nelements = IntField()
    structure = StructureField()
    energy_per_atom = FloatField(required=True)
    formation_energy_per_atom = FloatField()
    decomposition_energy = FloatField()
    e_above_hull = FloatField()
    is_stable = BooleanField(default=False)
    oracle = StringField()
    is_seed = BooleanField(default=False)
    round_found = IntField(default=0)
    generator = StringField()
    stable_vs_reference = BooleanField(default=False)
    on_hull = BooleanField(default=False)
    # against the known world before the campaign (generators.known.NOVELTY_CLASSES); None
    # for seeds. known_in: sources that know the composition; novelty_match: the known
    # crystal it matches (rediscovered)
    novelty = StringField(choices=("novel", "new_polymorph", "rediscovered"))
    known_in = ListField(StringField())
    novelty_match = StringField()
    updated_at = DateTimeField(default=utcnow)
    meta = {
        "collection": "materials",
        "indexes": [
            {"fields": ["campaign", "material_id"], "unique": True},
            ("campaign", "chemsys", "decomposition_energy"),
            ("campaign", "chemsys", "e_above_hull"),
            ("campaign", "is_stable", "chemsys"),
            ("campaign", "round_found", "on_hull"),
            ("campaign", "novelty", "on_hull"),
            "elements",
            "formula",
        ],
    }


class ModelVersion(Document):
    """A trained model, weights in GridFS: a screening ensemble ("structural",
    "compositional") or a potential fine-tuned on the campaign's trajectories ("potential").
    """

    campaign = StringField(required=True)
    kind = StringField(choices=("structural", "compositional", "potential"), required=True)
    version = IntField(required=True)
    round = IntField()
    n_train = IntField()
    metrics = DictField()
    hyperparameters = DictField()
    weights = FileField(collection_name="model_weights")
    created_at = DateTimeField(default=utcnow)
    meta = {
        "collection": "model_versions",
        "indexes": [{"fields": ["campaign", "kind", "-version"], "unique": True}],
    }


class ScreenResult(Document):
    """One run of an application screen over a campaign's materials, and what passed."""

    campaign = StringField(required=True)
    screen = StringField(required=True)
    params = DictField()
    chemsys = StringField()
    n_screened = IntField(required=True)
    n_passed = IntField(required=True)
    passed = ListField(DictField())
    created_at = DateTimeField(default=utcnow)
    meta = {
        "collection": "screen_results",
        "indexes": [("campaign", "screen", "-created_at")],
    }


ALL_DOCUMENTS = (
    Campaign,
    Round,
    Candidate,
    Calculation,
    Material,
    ModelVersion,
    ScreenResult,
)


def ensure_indexes() -> None:
    """Create every index now (mongoengine otherwise builds them on first use)."""
    for document in ALL_DOCUMENTS:
        document.ensure_indexes()
