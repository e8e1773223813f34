"""Oracles: what gives a candidate its relaxed structure and energy (CHGNet, VASP, CP2K)."""

from hullhunter.workflows.oracles.base import Oracle
from hullhunter.workflows.oracles.cp2k import Cp2kOracle, Cp2kSetupError
from hullhunter.workflows.oracles.forcefield import ForceFieldOracle
from hullhunter.workflows.oracles.registry import (
    ORACLES,
    OracleContext,
    OraclePlugin,
    OracleSettings,
    build_oracle,
    get_oracle,
    register_oracle,
    unregister_oracle,
)
from hullhunter.workflows.oracles.result import MIN_DISTANCE_A, OracleResult, structure_problem
from hullhunter.workflows.oracles.vasp import VaspNotFoundError, VaspOracle

__all__ = [
    "MIN_DISTANCE_A",
    "ORACLES",
    "Cp2kOracle",
    "Cp2kSetupError",
    "ForceFieldOracle",
    "Oracle",
    "OracleContext",
    "OraclePlugin",
    "OracleResult",
    "OracleSettings",
    "VaspNotFoundError",
    "VaspOracle",
    "build_oracle",
    "get_oracle",
    "register_oracle",
    "structure_problem",
    "unregister_oracle",
]
