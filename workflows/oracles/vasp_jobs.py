"""A candidate's chain of atomate2 VASP jobs: the MP GGA makers, their run, what they leave.

The VASP oracle decides what to relax and how to report it; this module owns the atomate2
side: which job makers make up the flow, running their job bodies one after the other in
job folders, and reading back the task documents (every ionic step as a frame) and the
CONTCAR a stopped run leaves behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from hullhunter.frames import Frame
from hullhunter.workflows.oracles.vasp_custodian import (
    custodian_corrections,
    fresh_handlers,
    stopped_by_walltime,
)

MAKERS = ("double_relax", "double_relax_static")

Leg = tuple[str, Any]
"""One job of the flow: its name (``relax1``, ``relax2``, ``static``) and its atomate2 maker."""


def mp_gga_legs(
    maker: str, run_vasp_kwargs: dict[str, Any], user_incar_settings: dict[str, Any]
) -> list[Leg]:
    """atomate2's VASP job makers of the MP GGA flow ``maker`` (one of :data:`MAKERS`), in order.

    They are the makers ``MPGGADoubleRelaxMaker`` (and ``MPGGADoubleRelaxStaticMaker``) are
    built from, so the input set generators and copy settings are atomate2's. Each job gets
    fresh copies of ``run_vasp_kwargs["handlers"]`` (:func:`fresh_handlers`).
    """
    from atomate2.vasp.flows.mp import MPGGADoubleRelaxMaker, MPGGADoubleRelaxStaticMaker
    from atomate2.vasp.jobs.mp import MPGGARelaxMaker, MPGGAStaticMaker
    from atomate2.vasp.powerups import update_user_incar_settings

    def common() -> dict[str, Any]:
        """Each job's own settings: its custodian run gets handlers no other run has used."""
        handlers = fresh_handlers(run_vasp_kwargs.get("handlers", ()))
        return {
            "run_vasp_kwargs": {**run_vasp_kwargs, "handlers": handlers},
            # an unconverged run is reported as converged=False, not raised
            "stop_children_kwargs": {"handle_unsuccessful": False},
        }

    from_previous = {"additional_vasp_files": ("WAVECAR", "CHGCAR")}
    flow: Any = MPGGADoubleRelaxMaker(
        relax_maker1=MPGGARelaxMaker(**common()),
        relax_maker2=MPGGARelaxMaker(copy_vasp_kwargs=from_previous, **common()),
    )
    if maker == "double_relax_static":
        flow = MPGGADoubleRelaxStaticMaker(
            relax_maker=flow,
            static_maker=MPGGAStaticMaker(copy_vasp_kwargs=from_previous, **common()),
        )
    if user_incar_settings:
        flow = update_user_incar_settings(flow, user_incar_settings)
    if maker == "double_relax_static":
        double = flow.relax_maker
        return [
            ("relax1", double.relax_maker1),
            ("relax2", double.relax_maker2),
            ("static", flow.static_maker),
        ]
    return [("relax1", flow.relax_maker1), ("relax2", flow.relax_maker2)]


@dataclass
class JobChain:
    """A candidate's VASP jobs, run in its folder, and what they left so far.

    ``task_docs`` holds one task document per finished job, ``corrections`` what custodian
    logged in every job folder (a failed job's included), oldest first.
    """

    directory: Path
    task_docs: list[Any] = field(default_factory=list)
    corrections: list[dict[str, Any]] = field(default_factory=list)

    @property
    def stopped_by_walltime(self) -> bool:
        """Whether custodian stopped one of the jobs at the walltime."""
        return stopped_by_walltime(self.corrections)

    def run(self, legs: Sequence[Leg], structure: Structure) -> None:
        """Run the jobs one after the other, each in its own job folder; may raise.

        Each job runs atomate2's own job body (copy the previous job's outputs, write the
        inputs, run custodian, parse the task document, gzip) called directly rather than
        through jobflow: a candidate's jobs are a fixed chain, and jobflow's output-schema
        checks and in-memory store cost about a second of CPU per calculation. A job stopped
        by the walltime ends the chain.
        """
        from monty.os import cd

        current, previous_dir = structure, None
        for leg, maker in legs:
            job_dir = self.directory / f"job_{datetime.now():%Y-%m-%d-%H-%M-%S-%f}_{leg}"
            job_dir.mkdir(parents=True)
            try:
                with cd(job_dir):
                    response = maker.make.original(maker, current, prev_dir=previous_dir)
            finally:
                self.corrections += custodian_corrections(job_dir)
            self.task_docs.append(response.output)
            if self.stopped_by_walltime:
                break
            current, previous_dir = response.output.output.structure, job_dir

    def frames(self, candidate_id: str, correction_per_atom: float) -> list[Frame]:
        """Every ionic step of the jobs, in run order, as frames numbered from 0.

        Energies are each step's σ→0 energy as :func:`step_energy` repairs it, plus the final
        entry's MP2020 correction per atom, so they sit on the same scale as the result's
        energy and as CHGNet's. VASP writes stress in kBar with positive = compressive; frames
        use GPa with ASE's sign (positive = tensile), hence the factor -0.1.
        """
        frames: list[Frame] = []
        for doc in self.task_docs:
            for step in doc.calcs_reversed[0].output.ionic_steps:
                cell = step.structure
                frames.append(
                    Frame(
                        structure=Structure(cell.lattice, cell.species, cell.frac_coords),
                        energy_per_atom=step_energy(step, len(frames)) / len(cell)
                        + correction_per_atom,
                        forces=np.array(step.forces, dtype=float),
                        stress=-0.1 * np.array(step.stress, dtype=float),
                        trajectory_id=candidate_id,
                        step=len(frames),
                    )
                )
        return frames


def step_energy(step: Any, index: int = 0) -> float:
    """An ionic step's σ→0 energy (eV), repaired as ``Vasprun.final_energy`` repairs the last.

    VASP 5.x writes each ionic step's ``e_0_energy`` as 0.0 in vasprun.xml (VASP forum thread
    16942). pymatgen repairs only the final energy, so the per-step value is rebuilt here the
    same way: the step's free energy plus the σ→0 shift of its last electronic step, rounded
    to 1e-8 eV as pymatgen rounds. ``step`` is an emmet ``IonicStep`` (or a dict from
    ``Vasprun.ionic_steps``); one without electronic steps cannot be repaired and raises.
    """
    electronic = _field(step, "electronic_steps") or []
    free_energy = _field(step, "e_fr_energy")
    if not electronic or free_energy is None:
        raise ValueError(
            f"ionic step {index} of vasprun.xml has no electronic steps or free energy, so "
            "its energy cannot be checked; the file may be truncated"
        )
    last = electronic[-1]
    shift = _field(last, "e_0_energy") - _field(last, "e_fr_energy")
    return float(np.round(free_energy + shift, 8))


def _field(record: Any, name: str) -> Any:
    """A field of an emmet document or of pymatgen's plain dict."""
    return record.get(name) if isinstance(record, dict) else getattr(record, name, None)


def latest_contcar(directory: Path) -> Structure | None:
    """The structure of the newest non-empty CONTCAR left in a candidate's folder."""
    contcars = [p for p in directory.glob("**/CONTCAR*") if p.stat().st_size > 0]
    for path in sorted(contcars, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            return Structure.from_file(path)
        except (ValueError, IndexError, OSError):
            continue
    return None
