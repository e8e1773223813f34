"""Versioned model store on a plain folder: ``root/v0001/model.pt`` + ``model.json``.

A workflow can copy these two files to GridFS unchanged; ``list()`` reads only the JSON.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from .ensemble import CompositionEnsemble, Ensemble, load_ensemble

_VERSION = re.compile(r"^v(\d{4,})$")


class ModelRegistry:
    """Save ensembles as numbered versions, list them with their metrics, load by version."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if _VERSION.match(p.name)]
        return sorted(found, key=lambda name: int(name[1:]))

    def save(
        self, ensemble: Ensemble | CompositionEnsemble, metrics: dict[str, Any] | None = None
    ) -> str:
        """Store ``ensemble`` (with ``metrics``) as the next version; returns e.g. "v0003"."""
        versions = self._versions()
        number = int(versions[-1][1:]) + 1 if versions else 1
        version = f"v{number:04d}"
        ensemble.metadata = {
            **ensemble.metadata,
            "metrics": metrics if metrics is not None else ensemble.metadata.get("metrics", {}),
            "version": version,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        ensemble.save(self.root / version / "model.pt")
        return version

    def list(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every version, oldest first: version, kind, n_models, created and metrics."""
        rows = []
        for version in self._versions():
            header = json.loads((self.root / version / "model.json").read_text())
            if kind is not None and header["kind"] != kind:
                continue
            rows.append(
                {
                    "version": version,
                    "kind": header["kind"],
                    "n_models": header["n_models"],
                    "created": header["metadata"].get("created"),
                    "metrics": header["metadata"].get("metrics", {}),
                }
            )
        return rows

    def load(
        self, version: str = "latest", kind: str | None = None, device: str = "cpu"
    ) -> Ensemble | CompositionEnsemble:
        """Load ``version`` ("latest": the newest, of ``kind`` "structural"/"compositional"
        when given)."""
        if version == "latest":
            rows = self.list(kind)
            if not rows:
                what = f"{kind} " if kind else ""
                raise ValueError(
                    f"no {what}model saved under {self.root}; train and save one first"
                )
            version = rows[-1]["version"]
        path = self.root / version / "model.pt"
        if not path.is_file():
            known = ", ".join(self._versions()) or "none"
            raise ValueError(f"no model version {version!r} under {self.root} (known: {known})")
        return load_ensemble(path, device)
