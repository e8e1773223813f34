"""Settings: environment over YAML over defaults, and one-line errors naming key and source."""

import pytest

from hullhunter.settings import SettingsError, SettingsWarning, load_settings


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HULLHUNTER_HOME", str(tmp_path))
    for var in ("HULLHUNTER_CONFIG", "HULLHUNTER_DB_URI", "HULLHUNTER_VASP_CMD"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_defaults(home):
    settings = load_settings()
    assert settings.home == home
    assert settings.db_uri is None
    assert settings.device == "cpu"
    assert settings.local_db_dir == home / "mongodb"
    assert settings.runs_dir == home / "runs"


def test_environment_beats_yaml_beats_default(home, monkeypatch):
    (home / "config.yaml").write_text("vasp_cmd: srun vasp_std\ndb_name: from_yaml\n")
    settings = load_settings()
    assert settings.vasp_cmd == "srun vasp_std"
    assert settings.db_name == "from_yaml"
    monkeypatch.setenv("HULLHUNTER_VASP_CMD", "mpirun vasp_std")
    assert load_settings().vasp_cmd == "mpirun vasp_std"


def test_hullhunter_config_names_another_file(home, tmp_path, monkeypatch):
    other = tmp_path / "site.yaml"
    other.write_text("device: cuda\n")
    monkeypatch.setenv("HULLHUNTER_CONFIG", str(other))
    assert load_settings().device == "cuda"


def test_bad_yaml_value_names_key_and_file(home):
    (home / "config.yaml").write_text("db_port: many\n")
    with pytest.raises(SettingsError, match=r"setting 'db_port' \(file .*config.yaml\)"):
        load_settings()


def test_unknown_yaml_key_is_rejected(home):
    (home / "config.yaml").write_text("vasp_comand: vasp_std\n")
    with pytest.raises(SettingsError, match="vasp_comand"):
        load_settings()


def test_bad_env_value_names_the_variable(home, monkeypatch):
    monkeypatch.setenv("HULLHUNTER_DB_URI", "localhost:27017")
    with pytest.raises(SettingsError, match=r"environment variable HULLHUNTER_DB_URI.*mongodb://"):
        load_settings()


def test_yaml_that_is_not_a_mapping(home):
    (home / "config.yaml").write_text("- just\n- a list\n")
    with pytest.raises(SettingsError, match="expected a mapping"):
        load_settings()


def test_misspelt_variable_warns_with_the_closest_name(home, monkeypatch):
    monkeypatch.setenv("HULLHUNTER_DB_URL", "mongodb://x/")
    monkeypatch.setenv("HULLHUNTER_VASP_EMULATOR_DELAY", "1")  # the test emulator's: no warning
    with pytest.warns(SettingsWarning) as caught:
        load_settings()
    assert [str(w.message) for w in caught] == [
        "environment variable HULLHUNTER_DB_URL is not a hullhunter setting: "
        "did you mean HULLHUNTER_DB_URI?"
    ]


def test_named_config_file_must_exist(home, monkeypatch):
    monkeypatch.setenv("HULLHUNTER_CONFIG", str(home / "sites.yaml"))
    with pytest.raises(SettingsError, match=r"HULLHUNTER_CONFIG names .*sites\.yaml.*not a file"):
        load_settings()


def test_device_is_validated(home, monkeypatch):
    for good in ("cpu", "cuda", "cuda:1", "mps"):
        monkeypatch.setenv("HULLHUNTER_DEVICE", good)
        assert load_settings().device == good
    monkeypatch.setenv("HULLHUNTER_DEVICE", "banana")
    with pytest.raises(SettingsError, match=r"HULLHUNTER_DEVICE.*cpu, cuda, cuda:N or mps"):
        load_settings()


def test_yaml_error_is_one_line_with_its_line(home):
    (home / "config.yaml").write_text("db_name: a\ndevice: [cpu\n")
    with pytest.raises(SettingsError, match=r"config\.yaml: not valid YAML \(line \d+: ") as info:
        load_settings()
    assert "\n" not in str(info.value)
