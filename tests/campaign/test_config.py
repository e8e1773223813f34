"""Campaign files: validation that names the key, before anything is submitted."""

import pytest

from hullhunter.campaign_config import CampaignConfigError, load_config, parse_config

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
    ],
)
def test_bad_campaign_files_name_the_key(data, message):
    with pytest.raises(CampaignConfigError, match=message):
        parse_config(data)


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(CampaignConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(CampaignConfigError, match=r"broken\.yaml: not valid YAML"):
        load_config(broken)


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
