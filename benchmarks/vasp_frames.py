"""Frame energies of real recorded VASP runs: the old per-step reading against the repaired one.

For every recording in ``tests/oracles/recorded_vasp`` with ionic steps, prints the VASP
version, the number of steps, and per step (eV/atom, worst step):

- ``raw e_0 error``: vasprun.xml's step-level ``e_0_energy`` (what frames used before) minus
  pymatgen's repaired energy of that step (``final_energy`` of the run cut after it);
- ``frame error``: the oracle's step energy (``step_energy``) minus the same reference;
- ``OSZICAR``: the oracle's step energy minus VASP's own E0 in OSZICAR, where recorded.

Run: ``python benchmarks/vasp_frames.py``.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
import warnings
from pathlib import Path

from pymatgen.io.vasp import Oszicar, Vasprun
from rich.console import Console
from rich.table import Table

from hullhunter.workflows.oracles.vasp_jobs import step_energy

RECORDED = Path(__file__).resolve().parents[1] / "tests" / "oracles" / "recorded_vasp"


def _unpacked(folder: Path, target: Path) -> None:
    for packed in folder.glob("*.gz"):
        with gzip.open(packed, "rb") as source, open(target / packed.stem, "wb") as out:
            shutil.copyfileobj(source, out)


def _worst(ours: list[float], reference: list[float], n_atoms: int) -> float:
    """The largest difference per atom, in eV/atom."""
    return max(abs(a - b) for a, b in zip(ours, reference, strict=True)) / n_atoms


def main() -> None:
    table = Table(title="Step energies of recorded VASP runs (worst step, per atom)")
    for column in ("recording", "VASP", "steps", "raw e_0 error", "frame error", "vs OSZICAR"):
        table.add_column(column, justify="left" if column == "recording" else "right")
    for folder in sorted(p for p in RECORDED.iterdir() if (p / "vasprun.xml.gz").exists()):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            _unpacked(folder, work)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run = Vasprun(work / "vasprun.xml", parse_dos=False, parse_eigen=False)
            steps, n_atoms = run.ionic_steps, len(run.final_structure)
            reference = []
            for n in range(1, len(steps) + 1):
                run.ionic_steps = steps[:n]
                reference.append(float(run.final_energy))
            ours = [step_energy(step, i) for i, step in enumerate(steps)]
            raw = [step["e_0_energy"] for step in steps]
            oszicar = "-"
            if (work / "OSZICAR").exists():
                e0 = [step["E0"] for step in Oszicar(work / "OSZICAR").ionic_steps]
                oszicar = f"{_worst(ours, e0, n_atoms) * 1000:.4f} meV"
        table.add_row(
            folder.name,
            run.vasp_version.split(".18")[0],
            str(len(steps)),
            f"{_worst(raw, reference, n_atoms):.3f} eV",
            f"{_worst(ours, reference, n_atoms) * 1000:.4f} meV",
            oszicar,
        )
    Console(width=110).print(table)


if __name__ == "__main__":
    main()
