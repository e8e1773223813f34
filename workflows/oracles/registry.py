"""Oracles by name, so settings files and job arguments can pick one with a string."""

from __future__ import annotations

from typing import Any

from hullhunter.workflows.oracles.base import Oracle
from hullhunter.workflows.oracles.forcefield import ForceFieldOracle
from hullhunter.workflows.oracles.vasp import VaspOracle

ORACLE_NAMES = ("chgnet", "sevennet", "vasp")


def get_oracle(name: str, **settings: Any) -> Oracle:
    """Build the oracle called ``name`` ("chgnet", "sevennet" or "vasp") with its settings.

    ``settings`` are the keyword arguments of :class:`ForceFieldOracle` or :class:`VaspOracle`
    (for "vasp": vasp_cmd, vasp_gamma_cmd, max_errors, handlers, root_dir, maker, prerelax,
    prerelax_settings, custodian_kwargs, user_incar_settings, wall_time_s, progress); an
    unknown one raises TypeError naming it.
    """
    key = name.lower()
    if key in ("chgnet", "sevennet"):
        return ForceFieldOracle(key, **settings)
    if key == "vasp":
        return VaspOracle(**settings)
    raise ValueError(f"unknown oracle {name!r}; choose one of {', '.join(ORACLE_NAMES)}")
