"""Fixtures for the oracle tests: the VASP emulator, stand-in POTCARs and the real CP2K."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
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


CP2K_PACKAGES = ("cp2k", "cp2k-data")
CP2K_DATA = Path("/usr/share/cp2k")


def _install_cp2k() -> str | None:
    """Install Debian's CP2K packages when missing (root with apt-get); why not, else None."""
    if shutil.which("cp2k.psmp") and (CP2K_DATA / "BASIS_MOLOPT").is_file():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "CP2K is missing and this is not root with apt-get: apt-get install cp2k cp2k-data"
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([*apt, "update", "-qq"], [*apt, "install", "-y", "-qq", *CP2K_PACKAGES]):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            return f"{' '.join(command)} failed: {done.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="session")
def cp2k() -> str:
    """The CP2K command, installed with apt-get when it is missing; skips when it cannot be."""
    problem = _install_cp2k()
    if problem:
        pytest.skip(problem)
    return "cp2k.psmp"


@pytest.fixture(scope="session")
def cp2k_data(cp2k: str) -> Path:
    """CP2K's basis and potential files (Debian's cp2k-data)."""
    return CP2K_DATA
