"""Fixtures for the oracle tests: the VASP emulator (command and module) and stand-in POTCARs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from pymatgen.core import SETTINGS

EMULATOR = Path(__file__).parent / "vasp_emulator" / "vasp_emulator.py"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


write_standin_potcars = _load(
    "standin_potcars", EMULATOR.with_name("potcars.py")
).write_standin_potcars


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


@pytest.fixture(scope="session")
def emulator_module() -> ModuleType:
    """The emulator as a module, for its potential: the labels every emulated run reports."""
    return _load("vasp_emulator", EMULATOR)
