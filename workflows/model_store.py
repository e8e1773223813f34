"""The one model store: every model a campaign trains is a ModelVersion, its weights in GridFS.

Screening ensembles (structural and compositional, checkpoint folders packed as one tar.gz)
and potentials fine-tuned on the campaign's trajectories (one torch file) share the version
numbering, the document and the GridFS bucket; only how the weights become bytes differs.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from hullhunter import models
from hullhunter.documents import ModelVersion, mongo_safe

ENSEMBLE_FILE = "model.pt"


def next_model_version(campaign: str, kind: str) -> int:
    """The version number the campaign's next model of ``kind`` gets (1 for the first)."""
    last = ModelVersion.objects(campaign=campaign, kind=kind).order_by("-version").first()
    return (last.version + 1) if last else 1


def save_model_version(
    campaign: str,
    kind: str,
    weights: bytes,
    *,
    n_train: int,
    metrics: dict[str, Any],
    hyperparameters: dict[str, Any],
    round_number: int | None = None,
    content_type: str = "application/octet-stream",
) -> int:
    """Store ``weights`` as the campaign's next version of ``kind``; returns its number."""
    version = next_model_version(campaign, kind)
    document = ModelVersion(
        campaign=campaign,
        kind=kind,
        version=version,
        round=round_number,
        n_train=n_train,
        metrics=mongo_safe(metrics),
        hyperparameters=mongo_safe(hyperparameters),
    )
    document.weights.put(
        io.BytesIO(weights), content_type=content_type, filename=f"{campaign}-{kind}-{version}"
    )
    document.save()
    return version


def latest_version(campaign: str, kind: str) -> int | None:
    """The newest version number of ``kind`` for the campaign, or None."""
    document = ModelVersion.objects(campaign=campaign, kind=kind).order_by("-version").first()
    return None if document is None else document.version


def model_weights(campaign: str, kind: str, version: int | None = None) -> bytes | None:
    """The stored weights of ``version`` (default: the newest), or None if there is none."""
    query = ModelVersion.objects(campaign=campaign, kind=kind)
    if version is not None:
        query = query.filter(version=version)
    document = query.order_by("-version").first()
    return None if document is None else document.weights.read()


def save_ensemble(
    campaign: str,
    round_number: int,
    ensemble: models.Ensemble | models.CompositionEnsemble,
    metrics: dict[str, Any],
    n_train: int,
) -> int:
    """Store a trained screening ensemble's checkpoint folder as the next version."""
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as folder:
        path = ensemble.save(Path(folder) / ENSEMBLE_FILE)
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for member in sorted(Path(path).parent.iterdir()):
                archive.add(member, arcname=member.name)
    return save_model_version(
        campaign,
        ensemble.kind,
        buffer.getvalue(),
        n_train=n_train,
        metrics=metrics,
        hyperparameters=ensemble.config.to_dict(),
        round_number=round_number,
        content_type="application/gzip",
    )


def latest_ensemble(
    campaign: str, kind: str
) -> models.Ensemble | models.CompositionEnsemble | None:
    """The newest screening ensemble of ``kind`` for the campaign, or None."""
    weights = model_weights(campaign, kind)
    if weights is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        with tarfile.open(fileobj=io.BytesIO(weights), mode="r:gz") as archive:
            archive.extractall(folder, filter="data")
        return models.load_ensemble(Path(folder) / ENSEMBLE_FILE)
