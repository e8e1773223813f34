#!/usr/bin/env python3

"""A stand-in for ``vasp_std`` that replays recorded real VASP runs, as atomate2's tests do.

``HULLHUNTER_VASP_REPLAY`` says what successive runs do, comma-separated: a recording (a
folder of this directory, or any folder path) whose outputs (vasprun.xml, OUTCAR, OSZICAR,
CONTCAR, gzipped or not) are copied into the working folder as if VASP had written them, or
``emulate``, which runs the VASP emulator instead. Runs are counted in the file named by
``HULLHUNTER_VASP_REPLAY_STATE``; past the end of the list, the last entry repeats.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
EMULATOR = HERE.parent / "vasp_emulator" / "vasp_emulator.py"
OUTPUTS = ("vasprun.xml", "OUTCAR", "OSZICAR", "CONTCAR")


def next_entry() -> str:
    """This run's entry of ``HULLHUNTER_VASP_REPLAY`` (the run counter is advanced)."""
    entries = [e.strip() for e in os.environ["HULLHUNTER_VASP_REPLAY"].split(",") if e.strip()]
    state = Path(os.environ["HULLHUNTER_VASP_REPLAY_STATE"])
    run = int(state.read_text()) if state.exists() else 0
    state.write_text(str(run + 1))
    return entries[min(run, len(entries) - 1)]


def replay(recording: Path) -> None:
    """Copy the recording's outputs into the working folder, decompressed.

    The recordings leave out VASP's binary WAVECAR and CHGCAR; empty ones stand in for them,
    as the next job of a double relaxation copies them (and reads nothing from them here).
    """
    for binary in ("WAVECAR", "CHGCAR"):
        Path(binary).write_bytes(b"")
    for name in OUTPUTS:
        packed, plain = recording / f"{name}.gz", recording / name
        if packed.exists():
            with gzip.open(packed, "rb") as source, open(name, "wb") as target:
                shutil.copyfileobj(source, target)
        elif plain.exists():
            shutil.copyfile(plain, name)


def main() -> int:
    entry = next_entry()
    if entry == "emulate":
        return subprocess.call([sys.executable, str(EMULATOR)])
    recording = Path(entry) if Path(entry).is_absolute() else HERE / entry
    print(f" replaying the recorded VASP run {recording.name}", flush=True)
    replay(recording)
    return 0


if __name__ == "__main__":
    sys.exit(main())
