"""A campaign's learned potential: CHGNet fine-tuned on the campaign's stored trajectories.

The trajectories come from the Calculation documents (frames in GridFS); the fine-tuned
weights go to the one model store as the campaign's next version of kind "potential".
The data pipeline and the training itself are in :mod:`hullhunter.workflows.finetune`.
"""

from __future__ import annotations

import io
from typing import Any

import torch
from chgnet.model import CHGNet
from monty.json import jsanitize

from hullhunter.documents import Calculation
from hullhunter.frames import Frame
from hullhunter.workflows.finetune import finetune_on_trajectories
from hullhunter.workflows.model_store import model_weights, save_model_version
from hullhunter.workflows.oracles.result import FRAME_ENERGY_TOLERANCE


def campaign_trajectories(
    campaign: str, oracle: str | None = None
) -> tuple[list[list[Frame]], dict[str, int]]:
    """Every relaxation trajectory a campaign stored in GridFS (needs a connection), and the
    frames of those skipped, by candidate id.

    A trajectory is skipped when its last frame's energy is not its calculation's energy
    (within :data:`FRAME_ENERGY_TOLERANCE`): such frames are wrong labels, e.g. VASP 5.x step
    energies stored before they were repaired.
    """
    query: dict[str, Any] = {"campaign": campaign, "n_frames__gt": 0}
    if oracle is not None:
        query["oracle"] = oracle
    kept: list[list[Frame]] = []
    skipped: dict[str, int] = {}
    for calc in Calculation.objects(**query).order_by("candidate_id"):
        frames = calc.get_frames()
        last = frames[-1].energy_per_atom if frames else None
        if last is None or calc.energy_per_atom is None:
            continue
        if abs(last - calc.energy_per_atom) > FRAME_ENERGY_TOLERANCE:
            skipped[calc.candidate_id] = len(frames)
        else:
            kept.append(frames)
    return kept, skipped


def finetune_campaign(
    campaign: str, *, n_frames: int = 1024, oracle: str | None = None, **settings: Any
) -> dict[str, Any]:
    """Fine-tune CHGNet on a campaign's stored trajectories; store it as a potential version.

    The weights go to GridFS as the campaign's next ``ModelVersion`` of kind "potential",
    with the held-out comparison as its metrics; :func:`load_potential` reads it back. The
    report counts the trajectories and frames skipped by :func:`campaign_trajectories`.
    """
    trajectories, skipped = campaign_trajectories(campaign, oracle)
    if not trajectories:
        raise ValueError(
            f"campaign {campaign!r} has no stored relaxation trajectories whose frames match "
            f"their results ({len(skipped)} skipped); run a round with an oracle that records "
            "frames first"
        )
    result, report = finetune_on_trajectories(trajectories, n_frames=n_frames, **settings)
    report = {
        **report,
        "skipped_trajectories": len(skipped),
        "skipped_frames": sum(skipped.values()),
    }
    buffer = io.BytesIO()
    torch.save({"model": result.model.as_dict()}, buffer)
    version = save_model_version(
        campaign,
        "potential",
        buffer.getvalue(),
        n_train=report["n_train_trajectories"],
        metrics=report,
        hyperparameters=jsanitize(settings, strict=False),
    )
    return {"version": version, **report}


def load_potential(campaign: str, version: int | None = None) -> CHGNet:
    """A campaign's fine-tuned CHGNet from GridFS: the newest, or ``version``."""
    weights = model_weights(campaign, "potential", version)
    if weights is None:
        which = f"version {version}" if version is not None else "any version"
        raise LookupError(
            f"campaign {campaign!r} has no fine-tuned potential ({which}); "
            f"run: hullhunter campaign finetune {campaign}"
        )
    state = torch.load(io.BytesIO(weights), map_location="cpu")
    return CHGNet.from_dict(state["model"])
