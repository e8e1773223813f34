"""Oracles: what gives a candidate its relaxed structure and MP2020-scale energy."""

from hullhunter.workflows.oracles.base import Oracle
from hullhunter.workflows.oracles.forcefield import ForceFieldOracle
from hullhunter.workflows.oracles.jobs import relax_batch
from hullhunter.workflows.oracles.registry import ORACLE_NAMES, get_oracle
from hullhunter.workflows.oracles.result import MIN_DISTANCE_A, OracleResult, structure_problem
from hullhunter.workflows.oracles.vasp import VaspNotFoundError, VaspOracle

__all__ = [
    "MIN_DISTANCE_A",
    "ORACLE_NAMES",
    "ForceFieldOracle",
    "Oracle",
    "OracleResult",
    "VaspNotFoundError",
    "VaspOracle",
    "get_oracle",
    "relax_batch",
    "structure_problem",
]
