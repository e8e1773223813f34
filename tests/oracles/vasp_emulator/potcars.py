"""Stand-in POTCARs: headers pymatgen parses, with no licensed pseudopotential data.

Real POTCARs ship with a VASP licence and cannot be distributed. atomate2's input writing only
needs their headers (TITEL, ZVAL, ENMAX...), and the emulator only reads the TITEL, so tests
point ``PMG_VASP_PSP_DIR`` at a folder of these, exactly as a cluster user points it at the
real ones. pymatgen warns that it does not recognise the data, which is true and harmless.
"""

from __future__ import annotations

from pathlib import Path

from pymatgen.core import Element
from pymatgen.io.vasp.inputs import PotcarSingle
from pymatgen.io.vasp.sets import MPRelaxSet


def standin_potcar(symbol: str) -> str:
    """The text of a stand-in POTCAR for a symbol such as ``Mn_pv``."""
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


def write_standin_potcars(root: Path) -> Path:
    """Fill ``root`` as a PMG_VASP_PSP_DIR for every element of MP's GGA input set."""
    folder = Path(root) / PotcarSingle.functional_dir[MPRelaxSet.CONFIG["POTCAR_FUNCTIONAL"]]
    folder.mkdir(parents=True, exist_ok=True)
    for symbol in MPRelaxSet.CONFIG["POTCAR"].values():
        (folder / f"POTCAR.{symbol}").write_text(standin_potcar(symbol))
    return Path(root)
