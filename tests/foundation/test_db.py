"""Connection handling and the analyst documents on a real mongod."""

import time

import pytest
from mongoengine.errors import NotUniqueError
from pymatgen.core import Lattice, Structure

from hullhunter.db import DatabaseError, check_connection, mask_uri
from hullhunter.documents import (
    Calculation,
    Candidate,
    Material,
    chemsys_subsystems,
    ensure_indexes,
    structure_dict,
)


def test_mask_uri_hides_the_password():
    assert mask_uri("mongodb://alice:s3cr3t@db.example:27017/x") == (
        "mongodb://alice:***@db.example:27017/x"
    )
    assert mask_uri("mongodb://127.0.0.1:1/") == "mongodb://127.0.0.1:1/"


def test_unreachable_uri_fails_fast_with_masked_uri():
    start = time.monotonic()
    with pytest.raises(DatabaseError, match=r"alice:\*\*\*@127\.0\.0\.1:9.*refused"):
        check_connection("mongodb://alice:pw@127.0.0.1:9/", timeout_s=2)
    assert time.monotonic() - start < 5


def _material(campaign, material_id, structure, round_found, decomposition_energy, on_hull):
    comp = structure.composition
    return Material(
        material_id=material_id,
        campaign=campaign,
        formula=comp.reduced_formula,
        chemsys="-".join(sorted(el.symbol for el in comp.elements)),
        elements=sorted(el.symbol for el in comp.elements),
        nelements=len(comp.elements),
        structure=structure_dict(structure),
        energy_per_atom=-5.0,
        decomposition_energy=decomposition_energy,
        round_found=round_found,
        on_hull=on_hull,
        stable_vs_reference=on_hull,
    )


def test_analyst_query_new_stable_in_chemical_space(database):
    ensure_indexes()
    lattice = Lattice.cubic(4.2)
    limno = Structure(
        lattice, ["Li", "Mn", "O", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.25] * 3, [0.75] * 3]
    )
    lio = Structure(lattice, ["Li", "Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.25] * 3])
    nacl = Structure(lattice, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    docs = [
        _material("c1", "a", limno, 3, -0.020, True),
        _material("c1", "b", lio, 3, -0.050, True),
        _material("c1", "c", limno, 3, 0.030, False),
        _material("c1", "d", limno, 2, -0.100, True),
        _material("c1", "e", nacl, 3, -0.200, True),
        _material("c2", "a", limno, 3, -0.300, True),
    ]
    for doc in docs:
        doc.save()
    found = Material.objects(
        campaign="c1",
        chemsys__in=chemsys_subsystems("Li-Mn-O"),
        round_found=3,
        on_hull=True,
    ).order_by("decomposition_energy")
    assert [m.material_id for m in found] == ["b", "a"]
    assert found[0].get_structure() == lio
    plain = database.materials.find(
        {
            "campaign": "c1",
            "chemsys": {"$in": chemsys_subsystems("Li-Mn-O")},
            "round_found": 3,
            "on_hull": True,
        }
    ).sort("decomposition_energy", 1)
    assert [m["material_id"] for m in plain] == ["b", "a"]


def test_indexes_exist_for_common_queries(database):
    ensure_indexes()
    candidate_keys = [list(ix["key"]) for ix in database.candidates.list_indexes()]
    assert ["campaign", "round", "status"] in candidate_keys
    assert ["chemsys", "predicted_decomposition_energy"] in candidate_keys
    calc_index = next(
        ix
        for ix in database.calculations.list_indexes()
        if list(ix["key"]) == ["campaign", "candidate_id", "oracle"]
    )
    assert calc_index["unique"] is True


def test_one_calculation_per_candidate_and_oracle(database):
    ensure_indexes()
    fields = {"candidate_id": "x", "campaign": "c", "round": 1, "oracle": "chgnet"}
    Calculation(**fields, state="completed").save()
    with pytest.raises(NotUniqueError):
        Calculation(**fields, state="failed").save()


def test_candidate_roundtrips_structure(database):
    structure = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    Candidate(
        candidate_id="hh-1",
        campaign="c",
        round=1,
        structure=structure_dict(structure),
        formula="NaCl",
        chemsys="Cl-Na",
        generator="substitution",
    ).save()
    assert Candidate.objects.get(candidate_id="hh-1").get_structure() == structure


def test_every_client_authenticates_on_the_embedded_server(tmp_path, monkeypatch):
    """No URI configured: mongoengine, plain pymongo (the README's analyst examples),
    FireWorks and jobflow all reach the authenticated embedded server."""
    import mongoengine
    from fireworks import Firework, ScriptTask
    from pymongo import MongoClient

    from hullhunter.db import connect, server_uri
    from hullhunter.documents import Campaign
    from hullhunter.fireworks_config import get_job_store, get_launchpad
    from hullhunter.server import LocalServer
    from hullhunter.settings import get_settings

    monkeypatch.setenv("HULLHUNTER_HOME", str(tmp_path))
    monkeypatch.delenv("HULLHUNTER_DB_URI", raising=False)
    get_settings.cache_clear()
    try:
        connect()
        Campaign(name="embedded", config={"name": "embedded"}).save()
        uri = server_uri()
        assert "hullhunter:" in uri and "authSource=admin" in uri
        assert MongoClient(uri)["hullhunter"].campaigns.count_documents({}) == 1
        launchpad = get_launchpad()
        launchpad.add_wf(Firework(ScriptTask.from_str("echo hi"), name="hello"))
        assert launchpad.get_fw_ids() == [1]
        store = get_job_store()
        store.connect()
        store.update({"uuid": "u1", "index": 1, "output": 42}, key=["uuid", "index"])
        assert store.query_one({"uuid": "u1"})["output"] == 42
        store.close()
    finally:
        mongoengine.disconnect(alias="default")
        LocalServer(get_settings().local_db_dir).stop()
        get_settings.cache_clear()
