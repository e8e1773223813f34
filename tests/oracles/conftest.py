"""Fixtures for the oracle tests: the VASP emulator command and stand-in POTCARs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from pymatgen.core import SETTINGS

EMULATOR = Path(__file__).parent / "vasp_emulator" / "vasp_emulator.py"
_spec = importlib.util.spec_from_file_location("standin_potcars", EMULATOR.with_name("potcars.py"))
_potcars = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_potcars)
write_standin_potcars = _potcars.write_standin_potcars


@pytest.fixture(scope="session")
def standin_potcar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PMG_VASP_PSP_DIR holding a stand-in POTCAR for every element of MP's GGA set."""
    return write_standin_potcars(tmp_path_factory.mktemp("potcars"))


@pytest.fixture
def potcars(standin_potcar_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point pymatgen at the stand-in POTCARs, as a cluster user points it at real ones."""
    monkeypatch.setitem(SETTINGS, "PMG_VASP_PSP_DIR", str(standin_potcar_dir))
    return standin_potcar_dir


@pytest.fixture
def emulator_cmd() -> str:
    """The command that runs the VASP emulator in place of vasp_std."""
    return f"{sys.executable} {EMULATOR}"
