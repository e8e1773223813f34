"""The VASP oracle on real recorded VASP output (VASP 5.3.5 to 6.4.2, from custodian's test
data: see recorded_vasp/README.md), replayed through atomate2, custodian, emmet and MP2020.

VASP 5.x writes every ionic step's ``e_0_energy`` as 0.0 in vasprun.xml; the emulator cannot
show that, these files do.
"""

from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from atomate2.vasp.run import DEFAULT_HANDLERS as ATOMATE2_HANDLERS
from emmet.core.tasks import TaskDoc
from pymatgen.core import Lattice, Structure
from pymatgen.entries.compatibility import MaterialsProject2020Compatibility
from pymatgen.io.vasp import Incar, Oszicar, Vasprun

from hullhunter.documents import Calculation
from hullhunter.workflows.oracles import OracleResult, get_oracle
from hullhunter.workflows.oracles.result import FRAME_ENERGY_TOLERANCE, with_checked_frames
from hullhunter.workflows.oracles.vasp_custodian import HANDLERS
from hullhunter.workflows.oracles.vasp_jobs import JobChain, step_energy
from hullhunter.workflows.round.relax import save_calculation

RECORDED = Path(__file__).parent / "recorded_vasp"
REPLAY = RECORDED / "replay.py"
WITH_STEPS = [
    "FeO_vasp5.3.5_relax_ggau",
    "NaCl_vasp5.4.4_static",
    "K4Sn4O6_vasp5.4.1_static",
    "Al_vasp5.4.4_metal_ismear-5",
    "Y2O3_vasp6.4.1_unconverged",
]


def unpacked(name: str, target: Path) -> Path:
    """A recording's files, decompressed into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for packed in (RECORDED / name).glob("*.gz"):
        unpacked_file(packed, target / packed.stem)
    return target


def vasprun(folder: Path) -> Vasprun:
    return Vasprun(folder / "vasprun.xml", parse_dos=False, parse_eigen=False)


def pymatgen_step_energies(run: Vasprun) -> list[float]:
    """pymatgen's own repaired energy of every ionic step: ``final_energy`` of the run cut
    after that step (pymatgen repairs only the final one)."""
    steps, energies = run.ionic_steps, []
    for n in range(1, len(steps) + 1):
        run.ionic_steps = steps[:n]
        energies.append(float(run.final_energy))
    run.ionic_steps = steps
    return energies


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", WITH_STEPS)
def test_step_energies_equal_pymatgens_repair_and_oszicar(name: str, tmp_path: Path) -> None:
    folder = unpacked(name, tmp_path)
    run = vasprun(folder)
    ours = [step_energy(step, i) for i, step in enumerate(run.ionic_steps)]
    raw = [step["e_0_energy"] for step in run.ionic_steps]
    if run.vasp_version.startswith("5"):  # the bug these files carry: e_0_energy near 0 eV
        assert all(abs(r) < 0.01 and abs(o) > 1 for r, o in zip(raw, ours, strict=True))
    assert ours == pytest.approx(pymatgen_step_energies(run), abs=1e-8)
    if (folder / "OSZICAR").exists():  # VASP's own σ→0 energy of each step, in another file
        oszicar = [step["E0"] for step in Oszicar(folder / "OSZICAR").ionic_steps]
        assert ours == pytest.approx(oszicar, abs=1e-5)


@pytest.fixture
def replayed_vasp(
    potcars: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator_cmd: str
) -> dict:
    """VASP oracle settings whose ``vasp_std`` replays the runs named in HULLHUNTER_VASP_REPLAY."""
    monkeypatch.setenv("HULLHUNTER_VASP_REPLAY_STATE", str(tmp_path / "replayed-runs"))
    monkeypatch.setenv("HULLHUNTER_VASP_EMULATOR_STATE", str(tmp_path / "emulated-runs"))
    monkeypatch.delenv("HULLHUNTER_VASP_EMULATOR_FAULTS", raising=False)
    command = f"{sys.executable} {REPLAY}"
    handlers = [name for name in HANDLERS if name != "FrozenJobErrorHandler"]
    return {
        "vasp_cmd": command,
        "vasp_gamma_cmd": command,
        "root_dir": tmp_path / "runs",
        "handlers": handlers,
        "custodian_kwargs": {"polling_time_step": 0.1, "monitor_freq": 50},
    }


def job_folders(result: OracleResult) -> list[Path]:
    return sorted(p for p in Path(result.directory).iterdir() if p.name.startswith("job_"))


def rock_salt(a: float, cation: str, anion: str) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


@pytest.mark.filterwarnings("ignore")
def test_replayed_vasp5_run_gives_frames_on_the_result_scale(
    replayed_vasp: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name = "NaCl_vasp5.4.4_static"
    monkeypatch.setenv("HULLHUNTER_VASP_REPLAY", name)
    (result,) = get_oracle("vasp", **replayed_vasp).relax([rock_salt(5.6, "Na", "Cl")], ["nacl"])
    assert result.ok, result.error

    recorded = unpacked(name, tmp_path / "recorded")
    run = vasprun(recorded)
    entry = MaterialsProject2020Compatibility().process_entry(run.get_computed_entry())
    assert result.energy_per_atom == pytest.approx(entry.energy_per_atom, abs=1e-9)
    e0 = Oszicar(recorded / "OSZICAR").ionic_steps[-1]["E0"]
    n_atoms = len(run.final_structure)
    # each of the two legs replayed the same one-step run: two frames, both VASP's E0
    assert len(result.frames) == 2
    for frame in result.frames:
        expected = e0 / n_atoms + entry.correction_per_atom
        assert frame.energy_per_atom == pytest.approx(expected, abs=1e-6)
    assert abs(result.frames[-1].energy_per_atom - result.energy_per_atom) < FRAME_ENERGY_TOLERANCE


@pytest.mark.filterwarnings("ignore")
def test_rejected_ggau_run_names_the_potcar_and_its_steps_are_right(
    replayed_vasp: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name = "FeO_vasp5.3.5_relax_ggau"
    monkeypatch.setenv("HULLHUNTER_VASP_REPLAY", name)
    (result,) = get_oracle("vasp", **replayed_vasp).relax([rock_salt(4.3, "Fe", "O")], ["feo"])

    assert not result.ok and result.frames == []
    assert "MaterialsProject2020Compatibility rejected" in result.error
    assert "Incompatible POTCAR" in result.error and "Fe_pv" in result.error
    assert "\n" not in result.error

    # the 28-step VASP 5.3.5 relaxation, as both legs parsed it: every frame is VASP's E0
    chain = JobChain(Path(result.directory))
    chain.task_docs = [TaskDoc.from_directory(folder) for folder in job_folders(result)]
    frames = chain.frames("feo", correction_per_atom=0.0)
    oszicar = Oszicar(unpacked(name, tmp_path / "recorded") / "OSZICAR").ionic_steps
    assert len(frames) == 2 * len(oszicar) == 56
    expected = [step["E0"] / 4 for step in oszicar] * 2
    assert [f.energy_per_atom for f in frames] == pytest.approx(expected, abs=1e-6)
    assert np.ptp(expected) > 1.0  # a real relaxation, far from its start


@pytest.mark.filterwarnings("ignore")
def test_metal_under_tetrahedron_smearing_is_corrected_by_incorrect_smearing_handler(
    replayed_vasp: dict, monkeypatch: pytest.MonkeyPatch, database
) -> None:
    # the first run is a real Al relaxation under ISMEAR = -5; custodian's fix is run emulated
    monkeypatch.setenv("HULLHUNTER_VASP_REPLAY", "Al_vasp5.4.4_metal_ismear-5,emulate")
    aluminium = Structure(
        Lattice.cubic(4.05), ["Al"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    )
    (result,) = get_oracle("vasp", **replayed_vasp).relax([aluminium], ["al"])
    assert result.ok, result.error

    smearing = [c for c in result.corrections if c["handler"] == "IncorrectSmearingHandler"]
    assert smearing and smearing[0]["errors"] == ["IncorrectSmearing"]
    first = job_folders(result)[0]
    assert Incar.from_file(first / "INCAR.orig.gz")["ISMEAR"] == -5
    incar = Incar.from_file(first / "INCAR.gz")
    assert (incar["ISMEAR"], incar["SIGMA"]) == (2, 0.2)

    # the custodian history is the analyst's to query
    save_calculation("metals", 1, result)
    (stored,) = Calculation.objects(
        campaign="metals",
        corrections__handler="IncorrectSmearingHandler",
        corrections__errors="IncorrectSmearing",
    )
    (fix,) = [c for c in stored.corrections if c["handler"] == "IncorrectSmearingHandler"]
    assert {"dict": "INCAR", "action": {"_set": {"ISMEAR": 2}}} in fix["actions"]


ERROR_OUTPUTS = {
    # a metal relaxed with ISMEAR = -5 and KSPACING set for an insulator
    "Al_vasp5.4.4_metal_ismear-5": {"IncorrectSmearingHandler": [], "KspacingMetalHandler": []},
    "large_sigma_vasp": {"LargeSigmaHandler": []},
}
LOGS = RECORDED / "error_logs"
ERROR_LOGS = {  # custodian's recorded stdout/stderr of failed runs, and what they show
    "std_err.txt.kpoints_trans": {"StdErrHandler": ["kpoints_trans"]},
    "std_err.txt.oom": {"StdErrHandler": ["out_of_memory"]},
    "vasp.algo_tet_only": {"VaspErrorHandler": ["algo_tet"]},
    "vasp.amin": {"VaspErrorHandler": ["amin"]},
    "vasp.brions": {"VaspErrorHandler": ["brions"]},
    "vasp.dfpt_ncore": {"VaspErrorHandler": ["dfpt_ncore"]},
    "vasp.eddiag": {"VaspErrorHandler": ["eddiag"]},
    "vasp.fd_ncore": {"VaspErrorHandler": ["dfpt_ncore"]},
    "vasp.gradient_not_orthogonal": {"VaspErrorHandler": ["grad_not_orth"]},
    "vasp.ibzkpt": {"MeshSymmetryErrorHandler": []},
    "vasp.ksymm": {"VaspErrorHandler": ["ksymm"]},
    "vasp.nicht_konvergent": {"VaspErrorHandler": ["nicht_konv"]},
    "vasp.pdsyevx": {"VaspErrorHandler": ["pdsyevx"]},
    "vasp.point_group": {"VaspErrorHandler": ["point_group"]},
    "vasp.posmap": {"VaspErrorHandler": ["posmap"]},
    "vasp.pricelv": {"VaspErrorHandler": ["pricelv"]},
    "vasp.read_error": {"VaspErrorHandler": ["read_error"]},
    "vasp.rhosyg": {"VaspErrorHandler": ["rhosyg"]},
    "vasp.sgrcon": {"VaspErrorHandler": ["rot_matrix"]},
    "vasp.symprec_noise": {"VaspErrorHandler": ["symprec_noise"]},
    "vasp.too_few_bands_round_error": {"VaspErrorHandler": ["too_few_bands"]},
    "vasp.zbrent": {"VaspErrorHandler": ["zbrent"]},
    "vasp.ztrtri": {"VaspErrorHandler": ["zpotrf"]},
}


def error_folder(source: str, target: Path) -> Path:
    """A job folder holding one recorded error output, beside clean logs of the others."""
    for log in ("vasp.out", "std_err.txt"):  # the run's own logs, clean unless recorded
        (target / log).touch()
    if source in ERROR_OUTPUTS:
        unpacked(source, target)
        if (target / "OUTCAR_fail_sigma_check").exists():
            (target / "OUTCAR_fail_sigma_check").rename(target / "OUTCAR")
        return target
    for name in ("INCAR", "POSCAR", "KPOINTS"):  # the inputs custodian's own tests use
        unpacked_file(LOGS / f"{name}.gz", target / name)
    log = "std_err.txt" if source.startswith("std_err") else "vasp.out"
    unpacked_file(LOGS / f"{source}.gz", target / log)
    return target


def unpacked_file(packed: Path, target: Path) -> None:
    with gzip.open(packed, "rb") as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(("source", "expected"), {**ERROR_OUTPUTS, **ERROR_LOGS}.items())
def test_default_handlers_detect_what_atomate2s_defaults_detect(
    source: str, expected: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert list(HANDLERS) == [type(h).__name__ for h in ATOMATE2_HANDLERS]
    folder = error_folder(source, tmp_path)
    monkeypatch.chdir(folder)  # some handlers read their files from the working folder

    def detected(handlers) -> dict[str, list[str]]:
        return {
            type(h).__name__: sorted(getattr(h, "errors", []))
            for h in handlers
            if h.check(str(folder))
        }

    ours = detected(cls() for cls in HANDLERS.values())
    assert ours == detected(ATOMATE2_HANDLERS) == expected


def test_frames_that_do_not_end_at_the_result_fail_it(tmp_path: Path) -> None:
    from hullhunter.frames import Frame

    structure = rock_salt(5.6, "Na", "Cl")
    frame = Frame(structure, -3.0, np.zeros((2, 3)), np.zeros((3, 3)), "x", 0)
    result = OracleResult(
        "x", "NaCl", -3.0, -6.0, structure, True, 1, 0.0, "vasp", "v", frames=[frame]
    )
    assert with_checked_frames(result) is result
    off = OracleResult(
        "x", "NaCl", -6.4, -12.8, structure, True, 1, 0.0, "vasp", "v", frames=[frame]
    )
    failed = with_checked_frames(off)
    assert not failed.ok and failed.frames == [] and failed.energy_per_atom is None
    assert failed.error.startswith("inconsistent output: the last frame's energy (-3.000000")


@pytest.mark.filterwarnings("ignore")
def test_truncated_vasprun_gives_a_failed_result_with_a_one_line_reason(
    replayed_vasp: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cut = unpacked("NaCl_vasp5.4.4_static", tmp_path / "cut")
    text = (cut / "vasprun.xml").read_text()
    (cut / "vasprun.xml").write_text(text[: len(text) * 2 // 3])  # killed mid-write
    monkeypatch.setenv("HULLHUNTER_VASP_REPLAY", str(cut))
    (result,) = get_oracle("vasp", **replayed_vasp, max_errors=1).relax(
        [rock_salt(5.6, "Na", "Cl")], ["nacl"]
    )
    assert not result.ok and result.frames == []
    assert "VasprunXMLValidator" in result.error and "truncated" in result.error
    assert "\n" not in result.error
