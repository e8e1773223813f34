"""Campaign files: validation that names the key, before anything is submitted."""

import pytest

from hullhunter.campaign_config import CampaignConfigError, load_config, parse_config
from hullhunter.generators.registry import GENERATORS

MINIMAL = {"name": "tiny", "chemical_space": {"systems": ["O-Li", "Na-Cl"]}}


def test_minimal_campaign_gets_gnome_defaults():
    config = parse_config(MINIMAL)
    assert config.chemical_space.systems == ["Cl-Na", "Li-O"]
    assert config.chemical_space.all_elements == ["Cl", "Li", "Na", "O"]
    assert config.screening.max_decomposition_energy == 0.05
    assert config.screening.one_per_composition is True
    assert config.oracle.name == "chgnet"
    assert parse_config(config.model_dump(mode="json")) == config  # as stored in MongoDB


def test_chemical_space_membership():
    space = parse_config(MINIMAL).chemical_space
    assert space.allows({"Li", "O"})
    assert space.allows({"Na"})
    assert not space.allows({"Li", "Cl"})
    by_elements = parse_config(
        {"name": "x", "chemical_space": {"elements": ["Li", "Mn", "O", "P"], "max_elements": 3}}
    ).chemical_space
    assert by_elements.allows({"Li", "Mn", "O"})
    assert not by_elements.allows({"Li", "Mn", "O", "P"})


def test_max_atoms_bounds_seeds_and_candidates():
    """A DFT campaign's ``max_atoms`` keeps larger cells out of its seeds and candidates."""
    from pymatgen.core import Lattice, Structure

    from hullhunter.workflows.round.generate import seed_candidates

    small = parse_config(
        {
            "name": "x",
            "chemical_space": {"elements": ["Mg", "Si"], "max_atoms": 2},
            "seeds": {"elemental_polymorphs": 1},
        }
    )
    seeds = [candidate.structure for candidate in seed_candidates(small)]
    assert {s.composition.reduced_formula for s in seeds} == {"Mg", "Si"}
    assert max(len(s) for s in seeds) <= 2
    unbounded = [
        c.structure
        for c in seed_candidates(
            parse_config({**small.model_dump(), "chemical_space": {"elements": ["Mg", "Si"]}})
        )
    ]
    assert "Mg2Si" in {s.composition.reduced_formula for s in unbounded}
    silicon = Structure(Lattice.cubic(5.43), ["Si"] * 8, [[i / 8] * 3 for i in range(8)])
    space = small.chemical_space
    pair = Structure(Lattice.cubic(5.43), ["Si"] * 2, [[0, 0, 0], [0.25, 0.25, 0.25]])
    assert not space.fits(silicon) and space.fits(pair)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**MINIMAL, "screening": {"top_kk": 3}}, r"screening\.top_kk: unknown key"),
        ({**MINIMAL, "oracel": {"name": "vasp"}}, r"oracel: unknown key"),
        ({"name": "x", "chemical_space": {"elements": ["Li", "Xx"]}}, r"unknown element.*Xx"),
        ({"name": "x", "chemical_space": {"systems": ["Li-Qq"]}}, r"Li-Qq.*Qq"),
        ({"name": "x", "chemical_space": {}}, r"give 'elements' or 'systems'"),
        ({**MINIMAL, "oracle": {"name": "dft"}}, r"oracle\.name"),
        ({**MINIMAL, "name": "bad name!"}, r"name:"),
        ({**MINIMAL, "budget": {"rounds": 0}}, r"budget\.rounds"),
        ({**MINIMAL, "oracle": {"vasp_prerelax": "chgnet"}}, r"vasp_prerelax only apply to"),
        (
            {**MINIMAL, "oracle": {"name": "vasp", "vasp_handlers": ["SmearHandler"]}},
            r"oracle\.vasp_handlers.*unknown custodian handler\(s\) SmearHandler; choose from",
        ),
        ({**MINIMAL, "generators": {"sapz": {}}}, r"generators: unknown generator 'sapz'"),
        ({**MINIMAL, "generators": {"saps": {"mode": "all"}}}, r"generators\.saps\.mode"),
        ({**MINIMAL, "generators": {"compositional": {}}}, r"top-level 'compositional:'"),
        ({**MINIMAL, "budget": {"rounds": True}}, r"budget\.rounds: Input should be a valid int"),
        ({**MINIMAL, "budget": {"max_oracle_calls": 1.0}}, r"budget\.max_oracle_calls: .*int"),
        ({**MINIMAL, "oracle": {"batch_size": "3"}}, r"oracle\.batch_size: .*integer"),
        ({**MINIMAL, "generators": {"saps": {"limit": 2.5}}}, r"generators\.saps\.limit"),
        (
            {**MINIMAL, "workers": {"generation_shards": 0}},
            r"workers\.generation_shards: Input should be greater than or equal to 1",
        ),
        (
            {**MINIMAL, "screening": {"max_decomposition_energy": -100}},
            r"screening\.max_decomposition_energy: Input should be greater than or equal to -1",
        ),
        (
            {**MINIMAL, "generators": {g: {"limit": 0} for g in ("substitution", "saps")}}
            | {"screening": {"top_k": 1}},
            None,
        ),
        (
            {**MINIMAL, "generators": {g: {"limit": 0} for g in GENERATORS}},
            r"^campaign file: generators: every generator is disabled or has limit 0",
        ),
    ],
)
def test_bad_campaign_files_name_the_key(data, message):
    if message is None:  # the control: one generator still working is enough
        assert parse_config(data).generators["prototypes"].limit > 0
        return
    with pytest.raises(CampaignConfigError, match=message):
        parse_config(data)


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(CampaignConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nchemical_space: {systems: [Li-O]}\nseeds: [unclosed\n")
    with pytest.raises(CampaignConfigError, match=r"broken\.yaml:\d+: not valid YAML: ") as info:
        load_config(broken)
    assert "\n" not in str(info.value)


def test_duplicate_keys_and_undecodable_files_are_refused(tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("name: a\nchemical_space:\n  systems: [Li-O]\nname: b\n")
    with pytest.raises(
        CampaignConfigError, match=r"twice\.yaml:4: not valid YAML: duplicate key 'name'$"
    ):
        load_config(twice)
    nested = tmp_path / "nested.yaml"
    nested.write_text("name: a\nchemical_space:\n  systems: [Li-O]\n  systems: [Na-Cl]\n")
    with pytest.raises(CampaignConfigError, match=r"nested\.yaml:4: .*duplicate key 'systems'"):
        load_config(nested)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(CampaignConfigError, match=r"latin\.yaml: not UTF-8 text \(byte 9\)"):
        load_config(latin)


def test_seeds_source_must_exist_and_is_made_absolute(tmp_path):
    campaign = tmp_path / "campaign.yaml"
    campaign.write_text("name: s\nchemical_space: {systems: [Li-O]}\nseeds: {source: cifs}\n")
    with pytest.raises(CampaignConfigError, match=r"seeds\.source: .*cifs does not exist"):
        load_config(campaign)
    (tmp_path / "cifs").mkdir()
    assert load_config(campaign).seeds.source == str(tmp_path / "cifs")
    campaign.write_text(
        "name: s\nchemical_space: {systems: [Li-O]}\nseeds: {source: /nonexistent/dir}\n"
    )
    with pytest.raises(CampaignConfigError, match="/nonexistent/dir does not exist"):
        load_config(campaign)


def test_shipped_examples_are_valid():
    from pathlib import Path

    examples = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))
    assert len(examples) >= 2
    for path in examples:
        assert load_config(path).name


def test_vasp_campaign_settings_reach_the_oracle(hh_settings):
    from hullhunter.workflows.oracles import OracleContext, build_oracle

    oracle = {
        "name": "vasp",
        "vasp_prerelax": "chgnet",
        "vasp_incar": {"ENCUT": 600},
        "vasp_handlers": ["VaspErrorHandler", "IncorrectSmearingHandler"],
    }
    config = parse_config({**MINIMAL, "oracle": oracle})
    vasp = build_oracle(config.oracle, OracleContext.for_round(hh_settings, "tiny", 2))
    assert [type(h).__name__ for h in vasp.handlers] == oracle["vasp_handlers"]
    assert vasp.prerelax == "chgnet"
    assert vasp.maker == "double_relax"
    assert vasp.user_incar_settings == {"ENCUT": 600}
    assert vasp.vasp_cmd == hh_settings.vasp_cmd
    assert vasp.root_dir == hh_settings.runs_dir.resolve() / "tiny" / "round-2"


def test_worker_thread_setting_reaches_oracle_and_models(hh_settings, monkeypatch):
    from hullhunter.settings import get_settings
    from hullhunter.workflows.oracles import OracleContext, build_oracle
    from hullhunter.workflows.round.retrain import model_config

    monkeypatch.setenv("HULLHUNTER_TORCH_THREADS", "1")
    get_settings.cache_clear()
    site = get_settings()
    config = parse_config(MINIMAL)
    assert build_oracle(config.oracle, OracleContext.for_round(site, "tiny", 1)).threads == 1
    assert model_config(config, site.device, site.torch_threads).torch_threads == 1
