"""CP2K oracle: atomate2's CP2K cell optimisation (cell and positions) run through custodian.

CP2K is free and installed on most clusters, so a group without a VASP licence still gets a
real DFT hull. Each candidate runs in its own subfolder of ``root_dir`` (named after its id):
atomate2's ``CellOptMaker`` (or ``RelaxMaker``, positions only) writes the input, custodian
runs the CP2K command with CP2K's handlers (fresh ones for every run), atomate2 parses the
task document. Every optimisation step becomes a training frame.

Defaults, all settings of :class:`Cp2kOracle`: PBE with GTH pseudopotentials and the
DZVP-MOLOPT-SR-GTH basis from CP2K's own data files (Debian's ``cp2k-data`` puts them in
``/usr/share/cp2k``), a 400 Ry cutoff (relative 50 Ry), a Monkhorst-Pack mesh of about 1,000
k-points per reciprocal atom (MP's relaxation density) rounded to odd divisions so that it
holds Γ, Fermi-Dirac smearing at 300 K, and spin polarisation (ferromagnetic start, MP's
moments) when an element of the cell is one MP treats as magnetic, or the cell is solid O2.
Optimisations stop at forces below 0.05 eV/Å and, for cells, within 0.1 GPa of zero pressure
(:data:`OPTIMISATION_CRITERIA`).

Two choices differ from atomate2's input set, each for a measured reason:

- atomate2 writes the k-points reduced by the crystal's symmetry while CP2K is told not to
  symmetrise (``SYMMETRY F``); forces and stress then lose the crystal's symmetry (a 2-atom
  Si cell showed 8 GPa of shear and a cell optimisation that distorted the cubic cell). The
  full mesh is written instead (CP2K still folds it by time reversal).
- ``EPS_DEFAULT`` 1e-10 instead of 1e-12 and CP2K's own ``EPS_PGF_ORB``: 2.5x faster on
  that cell, total energy within 2e-7 Ha.

CP2K energies are raw PBE total energies (eV), on their own scale: no MP2020 correction
exists for them, the seed round recomputes the campaign's reference hull with CP2K (as
GNoME recomputed its seeds), and results say so in :data:`ENERGY_SCALE`.

A relaxation stopped by the walltime (CP2K's own ``WALLTIME``, set to what the batch has
left minus a buffer) leaves its trajectory in the candidate's folder; relaxing the same id
into the same ``root_dir`` again starts from its last structure.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from custodian.cp2k.handlers import (
    AbortHandler,
    DivergingScfErrorHandler,
    FrozenJobErrorHandler,
    NumericalPrecisionHandler,
    StdErrHandler,
    UnconvergedRelaxationErrorHandler,
    UnconvergedScfErrorHandler,
    WalltimeHandler,
)
from custodian.custodian import ErrorHandler, Validator
from pydantic import Field, field_validator
from pymatgen.core import Element, Structure
from pymatgen.io.vasp.inputs import Kpoints

from hullhunter.workflows.oracles.base import ResultCallback, installed_version
from hullhunter.workflows.oracles.cp2k_output import (
    Cp2kFinishedValidator,
    latest_trajectory,
    optimisation_converged,
    read_trajectory,
)
from hullhunter.workflows.oracles.dft import DftOracle, missing_program
from hullhunter.workflows.oracles.registry import (
    OracleContext,
    OraclePlugin,
    OracleSettings,
    register_oracle,
)
from hullhunter.workflows.oracles.result import OracleResult, failure_reason
from hullhunter.workflows.oracles.vasp_custodian import (
    CUSTODIAN_DEFAULTS,
    WALLTIME_BUFFER_S,
    custodian_corrections,
    custodian_handler,
    fresh_handlers,
    known_handler_names,
)

HANDLERS: dict[str, type[ErrorHandler]] = {
    "StdErrHandler": StdErrHandler,
    "UnconvergedScfErrorHandler": UnconvergedScfErrorHandler,
    "DivergingScfErrorHandler": DivergingScfErrorHandler,
    "FrozenJobErrorHandler": FrozenJobErrorHandler,
    "AbortHandler": AbortHandler,
    "NumericalPrecisionHandler": NumericalPrecisionHandler,
    "UnconvergedRelaxationErrorHandler": UnconvergedRelaxationErrorHandler,
    "WalltimeHandler": WalltimeHandler,
}
"""atomate2's default CP2K handler set (``atomate2.cp2k.run._DEFAULT_HANDLERS``), in its order."""

MOTION_SECTIONS = {"cell_opt": "CELL_OPT", "relax": "GEO_OPT"}
"""atomate2's CP2K makers by name, and the MOTION section each one's optimiser reads."""
MAKERS = tuple(MOTION_SECTIONS)
ENERGY_SCALE = "CP2K PBE (GTH pseudopotentials, MOLOPT basis), uncorrected"
DEBIAN_DATA_DIR = Path("/usr/share/cp2k")
BASIS_FILE = "BASIS_MOLOPT"
POTENTIAL_FILE = "GTH_POTENTIALS"
BASIS_FAMILIES = ("DZVP-MOLOPT-SR-GTH", "DZVP-MOLOPT-GTH")
"""Basis sets tried in order: the short-range MOLOPT set is made for condensed phases."""
WALLTIME_MESSAGE = "Walltime error"  # what custodian's CP2K WalltimeHandler logs
OPTIMISATION_CRITERIA = {
    "MAX_FORCE": 1e-3,
    "RMS_FORCE": 5e-4,
    "MAX_DR": 1e-2,
    "RMS_DR": 5e-3,
    "MAX_ITER": 100,
}
"""CP2K's optimisation stops at forces below 1e-3 Ha/bohr (0.05 eV/Å, MP's usual force
criterion) with steps below 0.01 bohr. atomate2's 4.5e-4 Ha/bohr and 3e-3 bohr never
converged for a 1-atom Mg cell at 100 k-points per atom: the metal's smeared energy moved by
1e-5 Ha from step to step, and the optimiser kept stepping 0.06 bohr."""
CELL_PRESSURE_TOLERANCE_BAR = 1000
"""A cell optimisation also stops at pressures within 1 kbar (0.1 GPa) of zero."""
INPUT_DEFAULTS: dict[str, Any] = {
    "xc_functionals": "PBE",
    "eps_default": 1e-10,
    "eps_pgf_orb": None,
}


def _magnetic_elements() -> frozenset[str]:
    """Elements MP starts with a moment above its default 0.6 μB: CP2K runs them spin-polarised."""
    from pymatgen.io.vasp.sets import MPRelaxSet

    moments = MPRelaxSet.CONFIG["INCAR"]["MAGMOM"]
    return frozenset(
        re.sub(r"[\d+-]+$", "", name) for name, value in moments.items() if value > 0.6
    )


class Cp2kSetupError(RuntimeError):
    """CP2K's command or data files named by the settings cannot be used."""


def check_cp2k_command(cp2k_cmd: str) -> None:
    """Raise :class:`Cp2kSetupError` unless the command's CP2K program can be run."""
    program = missing_program(cp2k_cmd, "cp2k")
    if program is not None:
        raise Cp2kSetupError(
            f"CP2K command {cp2k_cmd!r}: {program!r} is not an executable on PATH; set "
            "cp2k_cmd (HULLHUNTER_CP2K_CMD or cp2k_cmd in the hullhunter config) to the "
            "command that runs CP2K here (Debian/Ubuntu: apt-get install cp2k)"
        )


def default_data_dir() -> Path:
    """``CP2K_DATA_DIR`` when set (CP2K's own variable), else Debian's ``/usr/share/cp2k``."""
    return Path(os.environ.get("CP2K_DATA_DIR") or DEBIAN_DATA_DIR)


@functools.cache
def _entries(path: Path) -> dict[str, tuple[str, ...]]:
    """Every name a CP2K basis or potential file gives each element (header lines only)."""
    names: dict[str, list[str]] = {}
    with open(path, encoding="utf-8", errors="replace") as file:
        for line in file:
            words = line.split()
            if len(words) >= 2 and words[0].isalpha() and words[0] in _SYMBOLS:
                names.setdefault(words[0], []).extend(words[1:])
    return {element: tuple(found) for element, found in names.items()}


_SYMBOLS = frozenset(element.symbol for element in Element)


def _valences(names: Sequence[str], family: str) -> list[str]:
    """The ``-qN`` suffixes under which ``family`` appears among ``names``, in file order."""
    pattern = re.compile(re.escape(family) + r"-(q\d+)$")
    return [match.group(1) for name in names if (match := pattern.match(name))]


def basis_and_potential(elements: Sequence[str], data_dir: Path) -> dict[str, Any]:
    """atomate2's ``basis_and_potential`` setting for ``elements`` from CP2K's data files.

    Each element gets the first of :data:`BASIS_FAMILIES` whose valence (``-qN``) matches one
    of its GTH-PBE pseudopotentials, preferring the potential's default valence (the one the
    plain name ``GTH-PBE`` stands for). Files are named by absolute path, so CP2K needs no
    data directory of its own. Raises :class:`Cp2kSetupError` for a missing file, ValueError
    naming the elements that have no matching pair.
    """
    basis_path, potential_path = data_dir / BASIS_FILE, data_dir / POTENTIAL_FILE
    for path in (basis_path, potential_path):
        if not path.is_file():
            raise Cp2kSetupError(
                f"CP2K data file {path} is missing; set cp2k_data_dir (HULLHUNTER_CP2K_DATA_DIR "
                "or cp2k_data_dir in the hullhunter config) to the folder with CP2K's basis and "
                "potential files (Debian/Ubuntu: apt-get install cp2k-data, /usr/share/cp2k)"
            )
    setting: dict[str, Any] = {
        "basis_filenames": [str(basis_path)],
        "potential_filename": str(potential_path),
    }
    missing = []
    for element in sorted(set(elements)):
        choice = _pair(element, basis_path, potential_path)
        if choice is None:
            missing.append(element)
        else:
            setting[element] = {"basis": choice[0], "potential": choice[1], "aux_basis": None}
    if missing:
        raise ValueError(
            f"no {'/'.join(BASIS_FAMILIES)} basis with a matching GTH-PBE pseudopotential for "
            f"{', '.join(missing)} in {data_dir}"
        )
    return setting


def _pair(element: str, basis_path: Path, potential_path: Path) -> tuple[str, str] | None:
    potentials = _entries(potential_path).get(element, ())
    valences = _valences(potentials, "GTH-PBE")
    default = next(
        (v for i, v in enumerate(valences) if "GTH-PBE" in potentials[i + 1 : i + 2]), None
    )
    preferred = ([default] if default else []) + valences
    for family in BASIS_FAMILIES:
        offered = _valences(_entries(basis_path).get(element, ()), family)
        for valence in preferred:
            if valence in offered:
                return f"{family}-{valence}", f"GTH-PBE-{valence}"
    return None


def covered_elements(data_dir: Path) -> set[str]:
    """Elements that have a basis and a pseudopotential in ``data_dir`` (empty if unreadable)."""
    basis_path, potential_path = data_dir / BASIS_FILE, data_dir / POTENTIAL_FILE
    if not (basis_path.is_file() and potential_path.is_file()):
        return set()
    return {
        element
        for element in _entries(potential_path)
        if _pair(element, basis_path, potential_path) is not None
    }


def kpoint_mesh(structure: Structure, density: int) -> Kpoints:
    """A Monkhorst-Pack mesh of about ``density`` k-points per reciprocal atom, odd divisions.

    Divisions come from pymatgen's ``Kpoints.automatic_density`` (what MP's sets use) and are
    rounded up to odd numbers so the mesh holds Γ whatever the lattice; CP2K gets the full mesh.
    """
    divisions = Kpoints.automatic_density(structure, density).kpts[0]
    odd = [int(n) + 1 - int(n) % 2 for n in divisions]
    return Kpoints(style=Kpoints.supported_modes.Monkhorst, kpts=[odd])


def spin_polarised(structure: Structure) -> bool:
    """Whether ``structure`` holds an element MP starts magnetic, or is solid O2 (a triplet)."""
    elements = {element.symbol for element in structure.composition}
    return bool(elements & _magnetic_elements()) or elements == {"O"}


def with_initial_moments(structure: Structure) -> Structure:
    """A copy with MP's ferromagnetic start (``magmom`` per site, 0.6 μB by default)."""
    from pymatgen.io.vasp.sets import MPRelaxSet

    moments = MPRelaxSet.CONFIG["INCAR"]["MAGMOM"]
    start = structure.copy()
    start.add_site_property("magmom", [moments.get(site.specie.symbol, 0.6) for site in start])
    return start


@contextmanager
def _threads(threads: int) -> Iterator[None]:
    """``OMP_NUM_THREADS`` for the CP2K processes custodian starts, restored after."""
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous


class Cp2kOracle(DftOracle):
    """DFT relaxations with CP2K: atomate2's CP2K makers run through custodian.

    Settings (all keywords of ``get_oracle("cp2k", ...)``):

    ``cp2k_cmd``
        command that runs CP2K (``"cp2k.psmp"``, ``"srun cp2k.psmp"``); default: hullhunter's
        setting ``cp2k_cmd``.
    ``data_dir``
        folder with ``BASIS_MOLOPT`` and ``GTH_POTENTIALS``; default: the setting
        ``cp2k_data_dir``, else ``CP2K_DATA_DIR``, else ``/usr/share/cp2k``.
    ``threads``
        OpenMP threads of each CP2K process (``OMP_NUM_THREADS``).
    ``max_errors``, ``handlers``
        custodian's ``max_errors`` per run (default: the setting ``cp2k_max_errors``) and its
        handlers, names of :data:`HANDLERS` or instances (default: all, atomate2's order);
        every run gets fresh copies.
    ``maker``
        ``"cell_opt"`` (cell and positions, default) or ``"relax"`` (positions only).
    ``cutoff``, ``rel_cutoff``
        plane-wave cutoffs of CP2K's multigrid, in Ry.
    ``kpoint_density``
        k-points per reciprocal atom of the Monkhorst-Pack mesh (:func:`kpoint_mesh`);
        0 means Γ only (orbital-transformation SCF, for large cells).
    ``spin``
        ``"auto"`` (spin-polarised when :func:`spin_polarised`), ``True`` or ``False``.
    ``prerelax``, ``prerelax_settings``
        ``"chgnet"`` relaxes each candidate with CHGNet first and starts CP2K from its
        structure; the settings go to that :class:`ForceFieldOracle`.
    ``user_input_settings``
        atomate2 CP2K input settings applied last (``override_default_params`` reaches any
        keyword of the input file).
    ``wall_time_s``, ``walltime_buffer_s``
        seconds the batch may run (default: what SLURM says is left, else no limit) and how
        long before that CP2K is told to stop.
    ``root_dir``, ``custodian_kwargs``, ``progress``
        as for the VASP oracle.

    Results carry every optimisation step as a frame: energies in eV (the result's scale),
    forces in eV/Å and stress in GPa with ASE's sign (positive = tensile).
    """

    name = "cp2k"

    def __init__(
        self,
        *,
        cp2k_cmd: str | None = None,
        data_dir: str | Path | None = None,
        threads: int = 1,
        max_errors: int | None = None,
        handlers: Sequence[str | ErrorHandler] | None = None,
        root_dir: str | Path = ".",
        maker: str = "cell_opt",
        cutoff: float = 400,
        rel_cutoff: float = 50,
        kpoint_density: int = 1000,
        spin: bool | Literal["auto"] = "auto",
        prerelax: str | None = None,
        prerelax_settings: dict[str, Any] | None = None,
        user_input_settings: dict[str, Any] | None = None,
        custodian_kwargs: dict[str, Any] | None = None,
        wall_time_s: int | None = None,
        walltime_buffer_s: int = WALLTIME_BUFFER_S,
        progress: bool = False,
    ) -> None:
        if maker not in MAKERS:
            raise ValueError(f"unknown CP2K maker {maker!r}; choose one of {', '.join(MAKERS)}")
        super().__init__(
            root_dir=root_dir,
            prerelax=prerelax,
            prerelax_settings=prerelax_settings,
            wall_time_s=wall_time_s,
            walltime_buffer_s=walltime_buffer_s,
            progress=progress,
        )
        if spin not in ("auto", True, False):
            raise ValueError(f"CP2K spin must be 'auto', true or false, not {spin!r}")
        site = _site_settings()
        self.cp2k_cmd = cp2k_cmd or site.get("cp2k_cmd") or "cp2k.psmp"
        self.data_dir = Path(data_dir or site.get("cp2k_data_dir") or default_data_dir())
        self.threads = int(threads)
        self.max_errors = int(max_errors or site.get("cp2k_max_errors") or 5)
        self.handlers = [custodian_handler(h, HANDLERS) for h in (handlers or HANDLERS)]
        self.maker = maker
        self.cutoff, self.rel_cutoff = cutoff, rel_cutoff
        self.kpoint_density = int(kpoint_density)
        self.spin = spin
        self.user_input_settings = dict(user_input_settings or {})
        self.custodian_kwargs = {**CUSTODIAN_DEFAULTS, **(custodian_kwargs or {})}

    @property
    def version(self) -> str:
        return self.with_prerelaxation(
            f"atomate2 {installed_version('atomate2')} custodian {installed_version('custodian')} "
            f"CP2K {self.maker} PBE {self.cutoff:g}/{self.rel_cutoff:g} Ry "
            f"{self.kpoint_density} k/atom"
        )

    @property
    def known_elements(self) -> set[str]:
        """Elements with a basis and a pseudopotential in the data folder."""
        return covered_elements(self.data_dir)

    def relax(
        self,
        structures: Sequence[Structure],
        ids: Sequence[str],
        on_result: ResultCallback | None = None,
    ) -> list[OracleResult]:
        """Check the command and the data files first (fail at once), then relax in turn."""
        check_cp2k_command(self.cp2k_cmd)
        basis_and_potential([], self.data_dir)  # the files exist
        self.start_batch()
        with _threads(self.threads):
            return super().relax(structures, ids, on_result)

    def _handlers_for_maker(self) -> list[ErrorHandler]:
        """The handlers, less custodian's UnconvergedRelaxationErrorHandler for a cell
        optimisation: it reads only MOTION/GEO_OPT and raised KeyError on a CELL_OPT that
        reached MAX_ITER (Mg2Si, benchmarks/dft.py), failing a result that has an energy.
        Such a run is reported as not converged instead."""
        if self.maker == "relax":
            return self.handlers
        return [h for h in self.handlers if not isinstance(h, UnconvergedRelaxationErrorHandler)]

    def _validators(self) -> list[Validator]:
        """atomate2's validator for a position relaxation; for a cell optimisation one that
        does not fail a run for stopping at MAX_ITER (see :class:`Cp2kFinishedValidator`)."""
        from atomate2.cp2k.run import _DEFAULT_VALIDATORS

        if self.maker == "relax":
            return list(_DEFAULT_VALIDATORS)
        return [Cp2kFinishedValidator()]

    def _spin(self, structure: Structure) -> bool:
        return spin_polarised(structure) if self.spin == "auto" else bool(self.spin)

    def input_generator_settings(self, structure: Structure) -> dict[str, Any]:
        """atomate2's ``user_input_settings`` for ``structure``: basis, cutoffs, spin, walltime."""
        elements = [element.symbol for element in structure.composition]
        settings: dict[str, Any] = {
            **INPUT_DEFAULTS,
            "basis_and_potential": basis_and_potential(elements, self.data_dir),
            "cutoff": self.cutoff,
            "rel_cutoff": self.rel_cutoff,
            "spin_polarized": self._spin(structure),
        }
        optimiser = dict(OPTIMISATION_CRITERIA)
        if self.maker == "cell_opt":
            optimiser["PRESSURE_TOLERANCE"] = CELL_PRESSURE_TOLERANCE_BAR
        overrides: dict[str, Any] = {"MOTION": {MOTION_SECTIONS[self.maker]: optimiser}}
        seconds_left = self.seconds_left()
        if seconds_left is not None:
            walltime = max(seconds_left - self.walltime_buffer_s, 1)
            overrides["GLOBAL"] = {"WALLTIME": walltime}
        settings["override_default_params"] = overrides
        return _merged(settings, self.user_input_settings)

    def _run(self, structure: Structure) -> None:
        """atomate2's input set for ``structure`` written and run through custodian, here.

        The job body of atomate2's ``CellOptMaker`` / ``RelaxMaker`` without its task
        document: atomate2 0.1.5 cannot parse CP2K 2023.1's output of a spin-restricted run
        (``CalculationInput.cleanup_dft`` calls ``.upper()`` on the integer multiplicity), so
        :func:`read_trajectory` and :func:`optimisation_converged` read the output instead.
        Custodian gets fresh handlers for this run.
        """
        from atomate2.cp2k.files import write_cp2k_input_set
        from atomate2.cp2k.jobs.core import CellOptMaker, RelaxMaker
        from atomate2.cp2k.run import run_cp2k

        maker_class = CellOptMaker if self.maker == "cell_opt" else RelaxMaker
        generator = maker_class().input_set_generator
        generator.user_input_settings = self.input_generator_settings(structure)
        generator.user_kpoints_settings = (
            None if self.kpoint_density == 0 else kpoint_mesh(structure, self.kpoint_density)
        )
        start = with_initial_moments(structure) if self._spin(structure) else structure
        write_cp2k_input_set(start, generator)
        run_cp2k(
            cp2k_cmd=self.cp2k_cmd,
            max_errors=self.max_errors,
            handlers=fresh_handlers(self._handlers_for_maker()),
            validators=self._validators(),
            custodian_kwargs=self.custodian_kwargs,
        )

    def _starting_structure(
        self, structure: Structure, candidate_id: str, directory: Path
    ) -> Structure:
        """The last structure a stopped run left in ``directory``, else the (pre-relaxed) input."""
        frames = latest_trajectory(directory) if directory.exists() else []
        return frames[-1].structure if frames else self.prerelaxed(structure, candidate_id)

    def relax_one(self, structure: Structure, candidate_id: str) -> OracleResult:
        """Run the CP2K job in a new job folder of the candidate's folder; report it.

        Any failure, a stop at the walltime included, is reported with the candidate's
        folder and the custodian corrections so far.
        """
        from monty.os import cd

        start = time.perf_counter()
        directory = self.candidate_folder(candidate_id)
        if (refused := self.not_started(candidate_id, structure)) is not None:
            return refused
        current = self._starting_structure(structure, candidate_id, directory)
        job_dir = directory / f"job_{datetime.now():%Y-%m-%d-%H-%M-%S-%f}_{self.maker}"
        job_dir.mkdir(parents=True)
        corrections: list[dict[str, Any]] = []
        problem = None
        try:
            with cd(job_dir):
                self._run(current)
        except Exception as exc:  # recorded below with the folder and corrections so far
            problem = failure_reason(exc)
        finally:
            corrections = custodian_corrections(job_dir)
        if any(WALLTIME_MESSAGE in c["errors"] for c in corrections):
            problem = "stopped by the walltime; rerun the batch to continue from its last structure"
        if problem is None:
            try:
                return self._result(candidate_id, job_dir, corrections, start)
            except ValueError as exc:
                problem = str(exc)
        return self.failed_result(
            candidate_id,
            structure,
            problem,
            started=start,
            directory=str(directory),
            corrections=corrections,
        )

    def _result(
        self,
        candidate_id: str,
        job_dir: Path,
        corrections: list[dict[str, Any]],
        start: float,
    ) -> OracleResult:
        """The successful result: the last step's structure and energy, every step a frame."""
        frames = read_trajectory(job_dir, candidate_id)
        if not frames:
            raise ValueError(f"CP2K left no optimisation steps in {job_dir}")
        final = frames[-1]
        n_atoms = len(final.structure)
        return OracleResult(
            candidate_id=candidate_id,
            formula=final.structure.composition.reduced_formula,
            energy_per_atom=final.energy_per_atom,
            energy=final.energy_per_atom * n_atoms,
            structure=final.structure,
            converged=optimisation_converged(job_dir),
            n_steps=len(frames),
            wall_time_s=time.perf_counter() - start,
            oracle=self.name,
            oracle_version=self.version,
            corrections=corrections,
            directory=str(job_dir.parent),
            frames=frames,
        )


def _merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _site_settings() -> dict[str, Any]:
    """``cp2k_cmd``, ``cp2k_data_dir`` and ``cp2k_max_errors`` from hullhunter's settings."""
    from hullhunter.settings import get_settings

    settings = get_settings()
    names = ("cp2k_cmd", "cp2k_data_dir", "cp2k_max_errors")
    return {name: getattr(settings, name) for name in names}


class Cp2kSettings(OracleSettings):
    """Campaign section of the CP2K oracle: maker, cutoffs, k-points, spin, pre-relaxation."""

    cp2k_maker: Literal["cell_opt", "relax"] = "cell_opt"
    cp2k_cutoff: float = Field(400, gt=0, description="multigrid cutoff, Ry")
    cp2k_rel_cutoff: float = Field(50, gt=0, description="relative cutoff, Ry")
    cp2k_kpoint_density: int = Field(
        1000, ge=0, description="k-points per reciprocal atom (0: Γ only)"
    )
    cp2k_spin: bool | Literal["auto"] = "auto"
    cp2k_threads: int = Field(1, ge=1, description="OpenMP threads per CP2K process")
    cp2k_prerelax: Literal["chgnet"] | None = Field(
        None, description="relax with CHGNet before CP2K"
    )
    cp2k_input: dict[str, Any] = Field(
        default_factory=dict, description="atomate2 CP2K input settings applied last"
    )
    cp2k_handlers: list[str] | None = Field(
        None, description="custodian CP2K handlers by name, in order; default: atomate2's set"
    )

    @field_validator("cp2k_handlers")
    @classmethod
    def _known_handlers(cls, names: list[str] | None) -> list[str] | None:
        return known_handler_names(names, HANDLERS)

    def oracle_kwargs(self, context: OracleContext) -> dict[str, Any]:
        context.run_dir.mkdir(parents=True, exist_ok=True)
        return {
            "root_dir": context.run_dir,
            "maker": self.cp2k_maker,
            "cutoff": self.cp2k_cutoff,
            "rel_cutoff": self.cp2k_rel_cutoff,
            "kpoint_density": self.cp2k_kpoint_density,
            "spin": self.cp2k_spin,
            "threads": self.cp2k_threads,
            "prerelax": self.cp2k_prerelax,
            "user_input_settings": self.cp2k_input or None,
            "handlers": self.cp2k_handlers,
            "cp2k_cmd": context.site.cp2k_cmd,
            "data_dir": context.site.cp2k_data_dir,
            "max_errors": context.site.cp2k_max_errors,
        }


register_oracle(
    OraclePlugin(
        "cp2k",
        Cp2kOracle,
        Cp2kSettings,
        requires="atomate2",
        site_settings=("cp2k_cmd", "cp2k_data_dir"),
        energy_scale=ENERGY_SCALE,
    )
)
