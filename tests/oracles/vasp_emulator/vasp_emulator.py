#!/usr/bin/env python3

"""A stand-in for the ``vasp_std`` binary, so atomate2 + custodian can run end to end in tests.

It reads INCAR, POSCAR, KPOINTS and POTCAR (or POTCAR.spec) in the working folder, computes
energies, forces and stress with a cheap pairwise Morse potential (any element; no torch, so a
run starts in about a second), relaxes as the INCAR asks (IBRION, NSW, ISIF, EDIFFG; STOPCAR
is honoured), and writes vasprun.xml, OUTCAR, OSZICAR, CONTCAR and stdout in VASP's formats,
which pymatgen, emmet and custodian parse as they parse real VASP output.

Faults for custodian to catch are injected through environment variables:

``HULLHUNTER_VASP_EMULATOR_FAULTS``
    comma-separated faults for successive runs: the n-th run (counted in the file named by
    ``HULLHUNTER_VASP_EMULATOR_STATE``, else in ``.vasp_emulator_runs`` in the working folder)
    gets the n-th fault; ``none`` lets a run pass. Faults: ``zbrent``, ``brmix``,
    ``subspacematrix``, ``tet`` (VaspErrorHandler messages; the run crashes), ``unconverged``
    (the last ionic step's SCF hits NELM: UnconvergedErrorHandler), ``nonconverging`` (every
    SCF hits NELM: NonConvergingErrorHandler), ``positive_energy``
    (PositiveEnergyErrorHandler), ``frozen`` (output stops until killed: FrozenJobErrorHandler).
``HULLHUNTER_VASP_EMULATOR_DELAY``
    extra seconds to sleep per run, standing in for real compute time.
``HULLHUNTER_VASP_EMULATOR_STEP_DELAY``
    seconds to sleep after each ionic step (so monitors can act mid-run).
``HULLHUNTER_VASP_EMULATOR_LOOP_SECONDS``
    the time per ionic step that OUTCAR reports (``LOOP+`` lines, which custodian's
    WalltimeHandler reads) from step ``HULLHUNTER_VASP_EMULATOR_SLOW_FROM_STEP`` (default 1)
    on; other steps report the real time taken.
``HULLHUNTER_VASP_EMULATOR_TIMING``
    a file to which each run appends its wall time in seconds (from process start), so a
    benchmark can separate time inside the "binary" from time spent around it.
``HULLHUNTER_VASP_EMULATOR_VERSION``
    the VASP version the output claims (default 6.4.2). A 5.x version writes vasprun.xml as
    VASP 5.x does: every ionic step's ``e_0_energy`` is 0.0 (its electronic steps and OSZICAR
    keep the real values).
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    version = os.environ.get("HULLHUNTER_VASP_EMULATOR_VERSION", "6.4.2")
    print(f" vasp.{version} 18Apr23 (build) complex (emulator): starting", flush=True)
    for stale in ("OSZICAR", "OUTCAR", "vasprun.xml"):  # VASP truncates these when it starts
        if os.path.exists(stale):
            os.remove(stale)
    for threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(threads, "1")  # 3x3 cell algebra: extra BLAS threads only contend

import re
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.filters import FrechetCellFilter
from ase.neighborlist import neighbor_list
from ase.optimize import BFGS, FIRE
from ase.units import GPa
from pymatgen.core import Element, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.vasp import Incar, Kpoints, Poscar

VERSION = os.environ.get("HULLHUNTER_VASP_EMULATOR_VERSION", "6.4.2")

FAULT_MESSAGES = {
    "zbrent": "ZBRENT: fatal error in bracketing\n please rerun with smaller EDIFF, "
    "or copy CONTCAR\n to POSCAR and continue",
    "brmix": "BRMIX: very serious problems\n the old and the new charge density differ",
    "subspacematrix": "WARNING: Sub-Space-Matrix is not hermitian in DAV",
    "tet": "Tetrahedron method fails for NKPT<4. NKPT =           1",
}
OUTPUT_FAULTS = ("unconverged", "nonconverging", "positive_energy", "frozen")
MORSE_DEPTH_EV = 0.35
MORSE_WIDTH_PER_A = 1.4
REFERENCE_ENERGY_EV = -2.5  # per atom, so totals look like PBE's (-3 to -8 eV/atom)
KBAR_PER_EV_A3 = 10.0 / GPa


class MorseCalculator(Calculator):
    """Pairwise Morse potential; equilibrium distance = sum of the two atomic radii."""

    implemented_properties = ("energy", "forces", "stress")

    def __init__(self, cutoff: float = 6.0) -> None:
        super().__init__()
        self.cutoff = cutoff

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        radii = np.array([Element(s).atomic_radius or 1.5 for s in self.atoms.symbols], float)
        # ASE's list, not vesin: importing vesin imports torch, seconds per emulator start.
        # A full list: every pair appears twice (i->j and j->i), hence the halves below.
        i, j, vectors = neighbor_list("ijD", self.atoms, self.cutoff)
        distances = np.linalg.norm(vectors, axis=1)
        r0 = radii[i] + radii[j]
        decay = np.exp(-MORSE_WIDTH_PER_A * (distances - r0))
        tail = np.exp(-MORSE_WIDTH_PER_A * (self.cutoff - r0))
        pair_energy = MORSE_DEPTH_EV * ((1 - decay) ** 2 - (1 - tail) ** 2)
        d_energy_d_r = 2 * MORSE_DEPTH_EV * MORSE_WIDTH_PER_A * (1 - decay) * decay
        pair_force = (d_energy_d_r / distances)[:, None] * vectors  # on i, along i->j
        forces = np.zeros((len(self.atoms), 3))
        np.add.at(forces, i, pair_force)
        stress = 0.5 * np.einsum("pa,pb->ab", vectors, pair_force) / self.atoms.get_volume()
        self.results = {
            "energy": REFERENCE_ENERGY_EV * len(self.atoms) + 0.5 * pair_energy.sum(),
            "forces": forces,
            "stress": stress.flat[[0, 4, 8, 5, 2, 1]],
        }


def next_fault() -> str | None:
    """The fault for this run, advancing the run counter."""
    faults = [
        f.strip().lower()
        for f in os.environ.get("HULLHUNTER_VASP_EMULATOR_FAULTS", "").split(",")
        if f.strip()
    ]
    state = Path(os.environ.get("HULLHUNTER_VASP_EMULATOR_STATE", ".vasp_emulator_runs"))
    run = int(state.read_text() or 0) if state.exists() else 0
    state.write_text(str(run + 1))
    fault = faults[run] if run < len(faults) else None
    if fault in (None, "none"):
        return None
    if fault not in FAULT_MESSAGES and fault not in OUTPUT_FAULTS:
        raise SystemExit(f"vasp_emulator: unknown fault {fault!r}")
    return fault


def potcar_titles(elements: list[str]) -> list[str]:
    """TITEL of each POTCAR in order (from POTCAR, else POTCAR.spec symbols)."""
    if Path("POTCAR").exists():
        titles = re.findall(r"TITEL\s*=\s*(.+)", Path("POTCAR").read_text())
        return [t.strip() for t in titles]
    if Path("POTCAR.spec").exists():
        symbols = Path("POTCAR.spec").read_text().split()
        return [f"PAW_PBE {symbol} 06Sep2000" for symbol in symbols]
    raise SystemExit("vasp_emulator: neither POTCAR nor POTCAR.spec found")


class Writer:
    """Accumulates a run and writes VASP's output files."""

    def __init__(self, incar: Incar, kpoints: Kpoints, structure: Structure, fault: str | None):
        self.incar = incar
        self.kpoints = kpoints
        self.initial = structure
        self.fault = fault
        self.elements = [str(el) for el in dict.fromkeys(s.specie for s in structure)]
        self.titles = potcar_titles(self.elements)
        self.nelm = int(incar.get("NELM", 60))
        self.ispin = int(incar.get("ISPIN", 1))
        self.steps: list[dict] = []
        self.step_started = time.perf_counter()
        self.loop_seconds = os.environ.get("HULLHUNTER_VASP_EMULATOR_LOOP_SECONDS")
        self.slow_from_step = int(os.environ.get("HULLHUNTER_VASP_EMULATOR_SLOW_FROM_STEP", 1))
        self.log(" running on    1 total cores")

    def log(self, text: str) -> None:
        print(text, flush=True)

    def energy_shift(self) -> float:
        return 50.0 if self.fault == "positive_energy" else 0.0

    def record(self, atoms: Atoms) -> None:
        """Store one ionic step and update OSZICAR / stdout."""
        energy = float(atoms.get_potential_energy()) + self.energy_shift() * len(atoms)
        n_scf = self.nelm if self.fault == "nonconverging" else min(6, self.nelm - 1)
        electronic = [energy + 10.0 * 0.1**k for k in range(n_scf - 1)] + [energy]
        self.steps.append(
            {
                "structure": AseAtomsAdaptor.get_structure(atoms),
                "energy": energy,
                "forces": atoms.get_forces(),
                "stress": -atoms.get_stress(voigt=False) * KBAR_PER_EV_A3,
                "electronic": electronic,
                "loop_seconds": float(self.loop_seconds)
                if self.loop_seconds and len(self.steps) + 1 >= self.slow_from_step
                else time.perf_counter() - self.step_started,
            }
        )
        self.step_started = time.perf_counter()
        index = len(self.steps)
        for k, value in enumerate(electronic, start=1):
            previous = electronic[k - 2] if k > 1 else 0.0
            self.log(
                f"DAV: {k:3d}    {value: .12E}   {value - previous: .5E}   "
                f"{-abs(value - previous) * 0.1: .5E}   100   0.100E+00"
            )
        last = electronic[-2] if index == 1 else self.steps[-2]["energy"]
        self.log(
            f"{index:4d} F= {energy: .8E} E0= {energy: .8E}  d E ={energy - last: .6E}"
            + ("  mag=     0.0000" if self.ispin == 2 else "")
        )
        self.write_oszicar()
        self.write_outcar(finished=False, stopped=False)

    def write_oszicar(self) -> None:
        lines = ["       N       E                     dE             d eps       ncg     rms"]
        for index, step in enumerate(self.steps, start=1):
            values = step["electronic"]
            for k, value in enumerate(values, start=1):
                previous = values[k - 2] if k > 1 else 0.0
                lines.append(
                    f"DAV: {k:3d}    {value: .12E}   {value - previous: .5E}   "
                    f"{-abs(value - previous) * 0.1: .5E}   100   0.100E+00"
                )
            delta = step["energy"] - (self.steps[index - 2]["energy"] if index > 1 else 0.0)
            mag = "  mag=     0.0000" if self.ispin == 2 else ""
            lines.append(
                f"{index:4d} F= {step['energy']: .8E} E0= {step['energy']: .8E}"
                f"  d E ={delta: .6E}{mag}"
            )
        Path("OSZICAR").write_text("\n".join(lines) + "\n")

    def write_contcar(self) -> None:
        Poscar(self.steps[-1]["structure"]).write_file("CONTCAR")

    def write_charge_and_wavefunction(self) -> None:
        """CHGCAR (a flat 2x2x2 density) and WAVECAR (empty unless LWAVE, as VASP does)."""
        structure = self.steps[-1]["structure"]
        if self.incar.get("LCHARG", True):
            density = " ".join(["0.1000000000E+01"] * 8)
            Path("CHGCAR").write_text(f"{Poscar(structure)}\n    2    2    2\n {density}\n")
        Path("WAVECAR").write_bytes(b"\0" * 64 if self.incar.get("LWAVE", True) else b"")

    def write_outcar(self, finished: bool, stopped: bool) -> None:
        n_atoms = len(self.initial)
        lines = [
            f" vasp.{VERSION} 18Apr23 (build) complex (emulator)",
            " running on    1 total cores",
            f"   k-points           NKPTS =      1   k-points in BZ     NKDIM =      1"
            f"   number of bands    NBANDS= {self.nbands():6d}",
            f"   number of dos      NEDOS =    301   number of ions     NIONS = {n_atoms:6d}",
            "   total plane-waves  NPLWV =  10000",
            f"   ISPIN  = {self.ispin:6d}",
            f"   IBRION = {int(self.incar.get('IBRION', -1)):6d}",
            f"   NELM   = {self.nelm:6d}",
        ]
        for step in self.steps:
            energy = step["energy"]
            lines += [
                " E-fermi :   0.0000     XC(G=0): -10.0000     alpha+bet : -1.0000",
                f" number of electron      {4.0 * n_atoms:.7f} magnetization       0.0000000",
                "  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)",
                "  ---------------------------------------------------",
                f"  free  energy   TOTEN  =     {energy:.8f} eV",
                "",
                f"  energy  without entropy=     {energy:.8f}  energy(sigma->0) =     {energy:.8f}",
                " total drift:      0.000000      0.000000      0.000000",
                f"      LOOP+:  cpu time {step['loop_seconds']:9.4f}: "
                f"real time {step['loop_seconds']:9.4f}",
            ]
        lines += [" magnetization (x)", "", "# of ion       s       p       d       tot", "-" * 41]
        lines += [f"    {k + 1:d}        0.000   0.000   0.000   0.000" for k in range(n_atoms)]
        lines += ["-" * 41, "tot          0.000   0.000   0.000   0.000", ""]
        if stopped:
            lines.append(" soft stop encountered!  aborting job")
        if finished:
            lines += [
                " General timing and accounting informations for this job:",
                " ========================================================",
                "",
                "                  Total CPU time used (sec):        1.000",
                "                            User time (sec):        0.900",
                "                          System time (sec):        0.100",
                "                         Elapsed time (sec):        1.000",
                "",
                "                   Maximum memory used (kb):       100000.",
                "                   Average memory used (kb):          N/A",
            ]
        Path("OUTCAR").write_text("\n".join(lines) + "\n")

    def write_vasprun(self, finished: bool) -> None:
        Path("vasprun.xml").write_text(self.vasprun_text(finished))

    def vasprun_text(self, finished: bool) -> str:
        structure = self.steps[-1]["structure"]
        kpts = kpoint_list(self.kpoints, structure)
        out = [
            '<?xml version="1.0" encoding="ISO-8859-1"?>',
            "<modeling>",
            " <generator>",
            '  <i name="program" type="string">vasp </i>',
            f'  <i name="version" type="string">{VERSION}  </i>',
            '  <i name="subversion" type="string">18Apr23 (build) complex  serial </i>',
            '  <i name="platform" type="string">LinuxGNU </i>',
            f'  <i name="date" type="string">{datetime.now():%Y %m %d} </i>',
            f'  <i name="time" type="string">{datetime.now():%H:%M:%S} </i>',
            " </generator>",
            " <incar>",
            *[xml_item(key, value, "  ") for key, value in self.incar.items()],
            " </incar>",
            " <kpoints>",
            '  <varray name="kpointlist" >',
            *[f"   <v> {k[0]:16.8f} {k[1]:16.8f} {k[2]:16.8f} </v>" for k in kpts],
            "  </varray>",
            '  <varray name="weights" >',
            *[f"   <v> {1 / len(kpts):16.8f} </v>" for _ in kpts],
            "  </varray>",
            " </kpoints>",
            " <parameters>",
            *[xml_item(key, value, "  ") for key, value in self.parameters().items()],
            " </parameters>",
            self.atominfo(),
            structure_xml(self.initial, "initialpos"),
        ]
        for step in self.steps:
            step_e0 = 0.0 if VERSION.startswith("5") else step["energy"]
            out.append(" <calculation>")
            for value in step["electronic"]:
                out += [
                    "  <scstep>",
                    "   <energy>",
                    f'    <i name="e_fr_energy"> {value:16.8f} </i>',
                    f'    <i name="e_wo_entrp"> {value:16.8f} </i>',
                    f'    <i name="e_0_energy"> {value:16.8f} </i>',
                    "   </energy>",
                    "  </scstep>",
                ]
            out += [
                structure_xml(step["structure"], None),
                '  <varray name="forces" >',
                *[f"   <v> {f[0]:16.8f} {f[1]:16.8f} {f[2]:16.8f} </v>" for f in step["forces"]],
                "  </varray>",
                '  <varray name="stress" >',
                *[f"   <v> {s[0]:16.8f} {s[1]:16.8f} {s[2]:16.8f} </v>" for s in step["stress"]],
                "  </varray>",
                "  <energy>",
                f'   <i name="e_fr_energy"> {step["energy"]:16.8f} </i>',
                f'   <i name="e_wo_entrp"> {step["energy"]:16.8f} </i>',
                f'   <i name="e_0_energy"> {step_e0:16.8f} </i>',
                "  </energy>",
            ]
            if step is self.steps[-1] and finished:
                out += [self.eigenvalues(len(kpts)), self.dos()]
            out.append(" </calculation>")
        if finished:
            out += [structure_xml(structure, "finalpos"), "</modeling>"]
        return "\n".join(out) + "\n"

    def parameters(self) -> dict:
        defaults = {
            "NELM": self.nelm,
            "NELMIN": 2,
            "ISPIN": self.ispin,
            "NBANDS": self.nbands(),
            "NSW": int(self.incar.get("NSW", 0)),
            "IBRION": int(self.incar.get("IBRION", -1 if self.incar.get("NSW", 0) == 0 else 0)),
            "ISIF": int(self.incar.get("ISIF", 2)),
            "EDIFF": float(self.incar.get("EDIFF", 1e-4)),
            "EDIFFG": float(self.incar.get("EDIFFG", 1e-3)),
            "ENCUT": float(self.incar.get("ENCUT", 400)),
            "ISMEAR": int(self.incar.get("ISMEAR", 1)),
            "SIGMA": float(self.incar.get("SIGMA", 0.2)),
            "LORBIT": int(self.incar.get("LORBIT", 0)),
            "GGA": str(self.incar.get("GGA", "--")),
            "LDAU": bool(self.incar.get("LDAU", False)),
            "LHFCALC": False,
            "AEXX": 0.0,
            "HFSCREEN": 0.0,
            "LUSE_VDW": False,
            "NELECT": 4.0 * len(self.initial),
        }
        for key in ("LDAUU", "LDAUJ", "LDAUL", "LDAUTYPE", "MAGMOM", "ALGO", "PREC", "LASPH"):
            if key in self.incar:
                defaults[key] = self.incar[key]
        return defaults

    def nbands(self) -> int:
        return max(8, 4 * len(self.initial))

    def atominfo(self) -> str:
        species = [str(site.specie) for site in self.initial]
        rows = "\n".join(
            f"    <rc><c>{el:2s}</c><c>{self.elements.index(el) + 1:4d}</c></rc>" for el in species
        )
        types = "\n".join(
            f"    <rc><c>{species.count(el):4d}</c><c>{el:2s}</c>"
            f"<c> {Element(el).atomic_mass:16.8f}</c><c> {4.0:16.8f}</c>"
            f"<c>  {title:36s}</c></rc>"
            for el, title in zip(self.elements, self.titles, strict=True)
        )
        return f"""  <atominfo>
  <atoms> {len(species)} </atoms>
  <types> {len(self.elements)} </types>
  <array name="atoms" >
   <dimension dim="1">ion</dimension>
   <field type="string">element</field>
   <field type="int">atomtype</field>
   <set>
{rows}
   </set>
  </array>
  <array name="atomtypes" >
   <dimension dim="1">type</dimension>
   <field type="int">atomspertype</field>
   <field type="string">element</field>
   <field>mass</field>
   <field>valence</field>
   <field type="string">pseudopotential</field>
   <set>
{types}
   </set>
  </array>
 </atominfo>"""

    def eigenvalues(self, n_kpoints: int) -> str:
        nbands, n_occupied = self.nbands(), self.nbands() // 2
        band = "\n".join(
            f"       <r> {-5.0 + 10.0 * b / nbands:10.4f} {float(b < n_occupied):9.4f} </r>"
            for b in range(nbands)
        )
        spins = []
        for spin in range(1, self.ispin + 1):
            kblocks = "\n".join(
                f'      <set comment="kpoint {k + 1}">\n{band}\n      </set>'
                for k in range(n_kpoints)
            )
            spins.append(f'     <set comment="spin {spin}">\n{kblocks}\n     </set>')
        return (
            "  <eigenvalues>\n   <array>\n"
            '    <dimension dim="1">band</dimension>\n'
            '    <dimension dim="2">kpoint</dimension>\n'
            '    <dimension dim="3">spin</dimension>\n'
            "    <field>eigene</field>\n    <field>occ</field>\n    <set>\n"
            + "\n".join(spins)
            + "\n    </set>\n   </array>\n  </eigenvalues>"
        )

    def dos(self) -> str:
        grid = np.linspace(-10, 10, 21)
        spins = []
        for spin in range(1, self.ispin + 1):
            rows = "\n".join(
                f"       <r> {e:10.4f} {0.5:10.4f} {0.5 * (k + 1):10.4f} </r>"
                for k, e in enumerate(grid)
            )
            spins.append(f'      <set comment="spin {spin}">\n{rows}\n      </set>')
        return (
            '  <dos>\n   <i name="efermi">      0.00000000 </i>\n   <total>\n    <array>\n'
            '     <dimension dim="1">gridpoints</dimension>\n'
            '     <dimension dim="2">spin</dimension>\n'
            "     <field>energy</field>\n     <field>total</field>\n"
            "     <field>integrated</field>\n     <set>\n"
            + "\n".join(spins)
            + "\n     </set>\n    </array>\n   </total>\n  </dos>"
        )


def xml_item(key: str, value, indent: str) -> str:
    """An INCAR/parameters entry as vasprun.xml writes it."""
    if isinstance(value, bool):
        return f'{indent}<i type="logical" name="{key}"> {"T" if value else "F"}  </i>'
    if isinstance(value, int):
        return f'{indent}<i type="int" name="{key}"> {value} </i>'
    if isinstance(value, float):
        return f'{indent}<i name="{key}"> {value:16.8f} </i>'
    if isinstance(value, list):
        flat = [x for v in value for x in (v if isinstance(v, list) else [v])]
        numbers = " ".join(f"{float(x):10.4f}" for x in flat)
        return f'{indent}<v name="{key}"> {numbers} </v>'
    return f'{indent}<i type="string" name="{key}">{value}</i>'


def vector_xml(vector, indent: str) -> str:
    return f"{indent}<v> {vector[0]:16.8f} {vector[1]:16.8f} {vector[2]:16.8f} </v>"


def structure_xml(structure: Structure, name: str | None) -> str:
    basis = "\n".join(vector_xml(v, "    ") for v in structure.lattice.matrix)
    rec = structure.lattice.reciprocal_lattice_crystallographic.matrix
    rec_basis = "\n".join(vector_xml(v, "    ") for v in rec)
    positions = "\n".join(
        f"   <v> {f[0]:16.8f} {f[1]:16.8f} {f[2]:16.8f} </v>" for f in structure.frac_coords
    )
    opening = f' <structure name="{name}" >' if name else "  <structure>"
    closing = " </structure>" if name else "  </structure>"
    return f"""{opening}
  <crystal>
   <varray name="basis" >
{basis}
   </varray>
   <i name="volume"> {structure.volume:16.8f} </i>
   <varray name="rec_basis" >
{rec_basis}
   </varray>
  </crystal>
  <varray name="positions" >
{positions}
  </varray>
{closing}"""


def kpoint_list(kpoints: Kpoints, structure: Structure) -> list[list[float]]:
    """The k-points of a Γ-centred or Monkhorst-Pack mesh (no symmetry reduction)."""
    style = kpoints.style.name.lower()
    mesh = [int(n) for n in kpoints.kpts[0]] if style in ("gamma", "monkhorst") else [1, 1, 1]
    shift = 0.0 if style == "gamma" else 0.5
    axes = [(np.arange(n) + (shift if n % 2 == 0 else 0.0)) / n for n in mesh]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return (grid - np.round(grid)).tolist()


def stop_requested() -> bool:
    """True when a STOPCAR asks VASP to stop after this ionic step (LSTOP or LABORT)."""
    path = Path("STOPCAR")
    return path.exists() and bool(re.search(r"L(STOP|ABORT)\s*=\s*\.?T", path.read_text(), re.I))


def main() -> int:
    fault = next_fault()
    incar = Incar.from_file("INCAR")
    structure = Poscar.from_file("POSCAR").structure
    kpoints = Kpoints.from_file("KPOINTS") if Path("KPOINTS").exists() else Kpoints()
    writer = Writer(incar, kpoints, structure, fault)
    time.sleep(float(os.environ.get("HULLHUNTER_VASP_EMULATOR_DELAY", 0)))

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = MorseCalculator()
    nsw = int(incar.get("NSW", 0))
    ibrion = int(incar.get("IBRION", -1 if nsw == 0 else 0))
    relax = nsw > 0 and ibrion in (1, 2, 3)
    ediffg = float(incar.get("EDIFFG", 10 * float(incar.get("EDIFF", 1e-4))))
    fmax = abs(ediffg) if ediffg < 0 else 0.05
    target = FrechetCellFilter(atoms) if relax and int(incar.get("ISIF", 2)) >= 3 else atoms
    optimizer = (BFGS if ibrion == 1 else FIRE)(target, logfile=None)

    crash_step = 2 if fault in FAULT_MESSAGES else None
    step_delay = float(os.environ.get("HULLHUNTER_VASP_EMULATOR_STEP_DELAY", 0))
    stopped = False
    writer.record(atoms)
    for _ in range(max(nsw - 1, 0) if relax else 0):
        writer.write_contcar()
        time.sleep(step_delay)
        if crash_step is not None and len(writer.steps) >= crash_step:
            writer.log(FAULT_MESSAGES[fault])
            writer.write_outcar(finished=False, stopped=False)
            writer.write_vasprun(finished=False)
            return 1
        if fault == "frozen":
            time.sleep(3600)
        if stop_requested():
            stopped = True
            break
        if (target.get_forces() ** 2).sum(axis=1).max() < fmax**2:
            break
        optimizer.step()
        writer.record(atoms)
    if not relax and fault in FAULT_MESSAGES:
        writer.log(FAULT_MESSAGES[fault])
        return 1
    if fault == "unconverged":
        writer.steps[-1]["electronic"] = writer.steps[-1]["electronic"][:1] * writer.nelm
    writer.write_contcar()
    writer.write_charge_and_wavefunction()
    writer.write_outcar(finished=True, stopped=stopped)
    writer.write_vasprun(finished=True)
    writer.log(" reached required accuracy - stopping structural energy minimisation")
    return 0


def seconds_since_process_start() -> float:
    """Wall seconds since this process was started (exec'd), to about 10 ms.

    Both ends are read on the kernel's boot clock: psutil's ``create_time`` adds the boot
    time, which Linux gives in whole seconds, so it can be up to a second off.
    """
    with open("/proc/self/stat") as stat:
        start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
    return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")


def record_wall_time() -> None:
    """Append this process's wall time to the timing file, when one is named."""
    timing_file = os.environ.get("HULLHUNTER_VASP_EMULATOR_TIMING")
    if timing_file:
        with open(timing_file, "a") as file:
            file.write(f"{seconds_since_process_start():.3f}\n")


if __name__ == "__main__":
    try:
        status = main()
    finally:
        record_wall_time()
    # Exit at once, as a compiled binary does: tearing down the imported modules takes
    # Python ~0.1 s, which custodian would wait for and the timing file would not show.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
