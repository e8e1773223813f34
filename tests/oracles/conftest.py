"""Fixtures for the oracle tests: the VASP emulator command and stand-in POTCARs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pymatgen.core import SETTINGS, Element
from pymatgen.io.vasp.inputs import PotcarSingle
from pymatgen.io.vasp.sets import MPRelaxSet

EMULATOR = Path(__file__).parent / "vasp_emulator" / "vasp_emulator.py"


def standin_potcar(symbol: str) -> str:
    """A POTCAR header that pymatgen parses (TITEL, ZVAL, ENMAX...) with no licensed data.

    Real POTCARs are licensed with VASP and cannot ship; atomate2's input writing only needs
    the header, and the emulator only reads the TITEL. pymatgen warns that it does not
    recognise the data, which is true and harmless here.
    """
    element = Element(symbol.split("_")[0])
    valence = float(sum(n for _, _, n in element.full_electronic_structure[-3:]))
    title = f"PAW_PBE {symbol} 06Sep2000"
    return (
        f"  {title}\n {valence:.13f}\n parameters from PSCTR are:\n"
        f"   VRHFIN ={element.symbol}: s p\n   LEXCH  = PE\n   TITEL  = {title}\n"
        f"   POMASS = {float(element.atomic_mass):8.3f}; ZVAL   = {valence:8.3f}"
        "    mass and valenz\n"
        "   ENMAX  =  400.000; ENMIN  =  300.000 eV\n"
        " END of PSCTR-controll parameters\n local part\n  100.0\n"
        "  0.1000E+01  0.2000E+01  0.3000E+01  0.4000E+01  0.5000E+01\n End of Dataset\n"
    )


@pytest.fixture(scope="session")
def standin_potcar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PMG_VASP_PSP_DIR holding a stand-in POTCAR for every element of MP's GGA set."""
    root = tmp_path_factory.mktemp("potcars")
    folder = root / PotcarSingle.functional_dir[MPRelaxSet.CONFIG["POTCAR_FUNCTIONAL"]]
    folder.mkdir()
    for symbol in MPRelaxSet.CONFIG["POTCAR"].values():
        (folder / f"POTCAR.{symbol}").write_text(standin_potcar(symbol))
    return root


@pytest.fixture
def potcars(standin_potcar_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point pymatgen at the stand-in POTCARs, as a cluster user points it at real ones."""
    monkeypatch.setitem(SETTINGS, "PMG_VASP_PSP_DIR", str(standin_potcar_dir))
    return standin_potcar_dir


@pytest.fixture
def emulator_cmd() -> str:
    """The command that runs the VASP emulator in place of vasp_std."""
    return f"{sys.executable} {EMULATOR}"
