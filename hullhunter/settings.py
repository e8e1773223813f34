"""One settings object: ``HULLHUNTER_*`` environment variables over a YAML file over defaults.

The YAML file is ``$HULLHUNTER_CONFIG`` when set, else ``$HULLHUNTER_HOME/config.yaml``
(``HULLHUNTER_HOME`` defaults to ``~/.hullhunter``). A bad value raises
:class:`SettingsError`, one line naming the key, where it came from and what was expected.
"""

from __future__ import annotations

import difflib
import os
import re
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "HULLHUNTER_"
# variables of the same prefix read by other tools: the test VASP emulator, slurm/local-cluster
OTHER_VARIABLES = ("HULLHUNTER_VASP_EMULATOR_", "HULLHUNTER_SLURM_", "HULLHUNTER_CONFIG")
DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


class SettingsError(ValueError):
    """A setting has a value hullhunter cannot use."""


class SettingsWarning(UserWarning):
    """A ``HULLHUNTER_*`` variable that no setting reads (a misspelling, most likely)."""


def hullhunter_home() -> Path:
    """The folder that holds the config file, the local database and run folders."""
    return Path(os.environ.get(f"{ENV_PREFIX}HOME", "~/.hullhunter")).expanduser()


def config_file() -> Path:
    """The YAML settings file in force; the default one need not exist, a named one must."""
    explicit = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if not explicit:
        return hullhunter_home() / "config.yaml"
    path = Path(explicit).expanduser()
    if not path.is_file():
        raise SettingsError(
            f"HULLHUNTER_CONFIG names {path}, which is not a file: fix the path, or unset "
            f"HULLHUNTER_CONFIG to use {hullhunter_home() / 'config.yaml'}"
        )
    return path


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML settings file; unknown keys are rejected by the model."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {}
        try:
            data = yaml.safe_load(self.path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SettingsError(f"{self.path}: not valid YAML ({_one_line(exc)})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{self.path}: cannot be read ({exc})") from None
        if not isinstance(data, dict):
            raise SettingsError(f"{self.path}: expected a mapping of setting: value")
        return data


class Settings(BaseSettings):
    """Everything a hullhunter process needs to know about its site."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    home: Path = Field(default_factory=hullhunter_home, description="hullhunter's own folder")
    db_uri: str | None = Field(
        None, description="MongoDB URI; unset means the embedded local server"
    )
    db_name: str = Field("hullhunter", description="database name for everything hullhunter")
    db_port: int = Field(0, ge=0, le=65535, description="local server port; 0 picks a free one")
    db_dir: Path | None = Field(None, description="local server folder (default: home/mongodb)")
    db_timeout_s: float = Field(5.0, gt=0, description="seconds to wait for MongoDB to answer")
    vasp_cmd: str = Field("vasp_std", description="command that runs VASP (standard build)")
    vasp_gamma_cmd: str = Field("vasp_gam", description="command that runs VASP (gamma build)")
    vasp_max_errors: int = Field(5, ge=1, description="custodian's max_errors for VASP")
    cp2k_cmd: str = Field("cp2k.psmp", description="command that runs CP2K")
    cp2k_data_dir: Path = Field(
        default_factory=lambda: Path(os.environ.get("CP2K_DATA_DIR") or "/usr/share/cp2k"),
        description="CP2K's basis and potential files (default: CP2K_DATA_DIR, else Debian's)",
    )
    cp2k_max_errors: int = Field(5, ge=1, description="custodian's max_errors for CP2K")
    scratch_dir: Path | None = Field(
        None, description="scratch for calculations (default: home/runs)"
    )
    fworker_name: str = Field("hullhunter-worker", description="FireWorks worker name")
    fworker_category: str = Field("cpu", description="FireWorks worker category")
    device: str = Field("cpu", description="torch device for training and screening")
    torch_threads: int | None = Field(
        None, ge=1, description="torch CPU threads in jobs (None: torch's default)"
    )

    @field_validator("device")
    @classmethod
    def _torch_device(cls, value: str) -> str:
        if not DEVICE.match(value):
            raise ValueError("expected a torch device: cpu, cuda, cuda:N or mps")
        return value

    @field_validator("db_uri")
    @classmethod
    def _uri_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("expected a URI starting with mongodb:// or mongodb+srv://")
        return value or None

    @property
    def local_db_dir(self) -> Path:
        """Folder of the embedded MongoDB server (data, log, pid file)."""
        return (self.db_dir or self.home / "mongodb").expanduser()

    @property
    def runs_dir(self) -> Path:
        """Folder where oracle calculations run."""
        return (self.scratch_dir or self.home / "runs").expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _YamlSource(settings_cls, config_file())


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning pydantic's report into one line per bad key; warn about
    ``HULLHUNTER_*`` variables that no setting reads."""
    _warn_unknown_variables()
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "?"
            origin = _origin_of(key)
            problems.append(f"setting '{key}' ({origin}): {error['msg']}")
        raise SettingsError("; ".join(problems)) from None


def _warn_unknown_variables() -> None:
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    for variable in sorted(os.environ):
        if not variable.startswith(ENV_PREFIX) or variable in known:
            continue
        if variable.startswith(OTHER_VARIABLES):
            continue
        close = difflib.get_close_matches(variable, sorted(known), n=1)
        hint = f": did you mean {close[0]}?" if close else ""
        warnings.warn(
            f"environment variable {variable} is not a hullhunter setting{hint}",
            SettingsWarning,
            stacklevel=3,
        )


def _one_line(exc: yaml.YAMLError) -> str:
    """A YAML error as 'line N: problem' (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}: {problem}" if mark is not None else problem


def _origin_of(key: str) -> str:
    env_name = f"{ENV_PREFIX}{key.upper()}"
    if env_name in os.environ:
        return f"environment variable {env_name}"
    return f"file {config_file()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` after changes)."""
    return load_settings()
